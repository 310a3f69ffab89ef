"""bench.study: a quick-scale smoke run on tiny data, the report, and resumption after a killed run."""

import os
import signal
import subprocess
import sys
import time

import pytest
from conftest import ROOT

from bench import study


def test_quick_smoke_three_experiments(tmp_path):
    sections = study.main(
        [
            "--scale",
            "quick",
            "--data",
            "builtin-tiny",
            "--only",
            "replication",
            "symmetry-null",
            "glassy",
            "--out",
            str(tmp_path),
        ]
    )
    report = (tmp_path / "REPORT.md").read_text()
    for name in ("replication", "symmetry-null", "glassy"):
        assert f"## {name}" in report and (tmp_path / f"{name}.json").exists()
    assert report.count("**Verdict.**") == 3
    exp, rows, _, paths, made = sections[1]
    assert made.startswith(f"{exp.seeds * len(rows)} runs made at commit")
    assert exp.name == "symmetry-null" and all(os.path.exists(p) for p in paths)
    null = next(r for r in rows if r["arm"] == "neuronx1+state")
    assert null["max_dev"] < 1e-3, "neuron with state=True follows the baseline to float rounding"
    ulp = next(r for r in rows if r["arm"] == "none+ulp")  # the yardstick: one rounding in every initial weight
    assert null["max_dev"] <= max(1.5 * ulp["max_dev"], 1e-6)
    assert next(r for r in rows if r["arm"] == "neuronx1")["max_dev"] > 100 * null["max_dev"]
    glassy = sections[2][1]
    assert {r["arm"] for r in glassy} == {"none", "mixed", "T0.01", "T0.1"}


@pytest.mark.slow
def test_quick_scale_all_experiments(tmp_path):
    sections = study.main(["--scale", "quick", "--data", "builtin-tiny", "--out", str(tmp_path)])
    assert len(sections) == len(study.experiments(study.SCALES["quick"], True))


def test_unknown_experiment_is_refused(tmp_path):
    with pytest.raises(SystemExit):
        study.main(["--scale", "quick", "--data", "builtin-tiny", "--only", "nonsense", "--out", str(tmp_path)])


def test_one_channel_data_skips_channel_arms(tmp_path, capsys):
    study.main(["--scale", "quick", "--data", "builtin-gray", "--only", "controls", "--out", str(tmp_path)])
    assert "channel-swap arms ESA" in capsys.readouterr().out
    report = (tmp_path / "REPORT.md").read_text()
    assert "1-channel data: the channel-swap arms" in report


def test_resumes_after_a_killed_run(tmp_path):
    out = tmp_path / "study"
    cmd = [
        sys.executable,
        "-m",
        "bench.study",
        "--scale",
        "quick",
        "--data",
        "builtin-tiny",
        "--only",
        "replication",
        "--out",
        str(out),
    ]
    runs = out / "replication" / "runs"
    proc = subprocess.Popen(cmd, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 120
    while time.time() < deadline and (not runs.exists() or len(list(runs.glob("*.json"))) < 3):
        time.sleep(0.2)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    done = {p.name: p.stat().st_mtime for p in runs.glob("*.json")}
    assert 3 <= len(done) < 24, "killed mid-way"
    subprocess.run(cmd, cwd=ROOT, check=True, capture_output=True)
    after = {p.name: p.stat().st_mtime for p in runs.glob("*.json")}
    assert len(after) == 24  # 6 arms x 2 batch sizes x 2 seeds
    assert all(after[name] == mtime for name, mtime in done.items()), "finished runs are not rerun"
    assert (out / "REPORT.md").exists()


def test_intensity_arms_parse_and_verdict_counts_censored_arms():
    from bench.training.verdicts import _intensity_arm, _intensity_verdict

    assert _intensity_arm("mixedx16+state") == ("mixed", 16, "+state")  # an x inside the protocol name
    assert _intensity_arm("in-rowx1(noise)") == ("in-row", 1, "(noise)")

    def row(arm, lost):
        return {"arm": arm, "reached": 0 if arm != "none" else 2, "seeds": 2, "delta_acc": -lost}

    rows = [row("none", 0.0)] + [row(f"mixedx{k}", 0.01 * k) for k in (1, 4, 16)]
    v = _intensity_verdict(rows)
    assert v.startswith("0 of 3 swapped arms reach") and "in 1 of 1 protocol/kind series" in v
    assert "mixed -1.0 points" in v
