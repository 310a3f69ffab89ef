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
    assert {r["group"] for r in rows} == {"chain CNN", "residual"}
    for group in ("chain CNN", "residual"):  # a chain and a residual network (its adds tie the blocks' units)
        in_g = {r["arm"]: r for r in rows if r["group"] == group}
        null = in_g["neuronx1+state"]
        assert null["max_dev"] < 1e-3, "neuron with state=True follows the baseline to float rounding"
        ulp = in_g["none+ulp"]  # the yardstick: one rounding in every initial weight
        assert null["max_dev"] <= max(1.5 * ulp["max_dev"], 1e-6), group
        assert in_g["neuronx1"]["max_dev"] > 100 * null["max_dev"], group
    assert "residual: one ulp on every initial weight" in report
    glassy = sections[2][1]
    assert {r["arm"] for r in glassy} == {"none", "mixed", "T0.01", "T0.1"}


@pytest.mark.slow
def test_quick_scale_all_experiments(tmp_path):
    sections = study.main(["--scale", "quick", "--data", "builtin-tiny", "--out", str(tmp_path)])
    assert len(sections) == len(study.experiments(study.SCALES["quick"], True))


def test_confirmatory_experiment_declares_its_test_and_stands_apart(tmp_path):
    sections = study.main(
        ["--scale", "quick", "--data", "builtin-tiny", "--only", "glassy", "confirm", "--out", str(tmp_path)]
    )
    exp, rows, *_ = sections[1]
    assert exp.name == "confirm" and exp.seed_list() == [100, 101, 102]  # fresh seeds, apart from 0, 1, 2
    assert {(r["group"], r["arm"]) for r in rows} == {
        (g, a)
        for g, arms in (("long training", "1SA"), ("batch 8", "1SA"), ("batch 32", "1PA"))
        for a in ("none", arms)
    }
    report = (tmp_path / "REPORT.md").read_text()
    exploratory, confirmatory = report.split("# Confirmatory experiments")
    assert "# Exploratory experiments" in exploratory and "## glassy" in exploratory
    assert "## confirm" in confirmatory and "## confirm" not in exploratory
    head = confirmatory.split("**Declared before the runs.**")[1].split("\n")[0]
    assert "one-sided (arm < baseline)" in head and "alpha 0.05" in head and "Holm-adjusted over the 3" in head
    assert "seeds 100..102" in head
    verdict = confirmatory.split("**Verdict.**")[1].split("\n")[0]
    assert verdict.count("confirmed") == 3  # each comparison: CONFIRMED or not confirmed
    for r in rows:
        if r["arm"] != "none":
            q = r["steps_ratio"]
            assert 0 <= q["p"] <= q["holm"]["experiment"] <= 1
    # the claim family counts the exploratory swap arms only, with chance's count beside
    assert "## Multiple comparisons" in report and "Weight swaps slow learning** (3 comparisons" in report
    assert "where chance alone predicts 0.1" in report


def test_gpu_short_dry_run_and_its_deadline(tmp_path):
    # the gpu-short code on the CPU: the speed-run trainer, seeds added round by round, the report as it goes
    out = tmp_path / "dry"
    # a deadline no machine reaches: the seeds stop at max_seeds, whatever the load (the cut is tested below)
    sections = study.main(["--dry-run", "--minutes", "600", "--out", str(out)])
    exp, rows, *_ = sections[0]
    assert exp.name == "replication-gpu-short" and exp.seeds == 3
    assert {r["arm"] for r in rows} == {"none", "1SA", "1PA", "ESA"}
    runs = list((out / "replication-gpu-short" / "runs").glob("*.json"))
    assert len(runs) == 12
    report = (out / "REPORT.md").read_text()
    assert "| all | ESA | 3 |" in report
    # a deadline that one round overruns: the study stops after it, and the report says so
    cut = tmp_path / "cut"
    sections = study.main(["--dry-run", "--minutes", "0.001", "--out", str(cut)])
    assert sections[0][0].seeds == 1
    assert "deadline left room for 1 of the 3 seeds planned" in (cut / "REPORT.md").read_text()
    with pytest.raises(SystemExit):
        study.main(["--scale", "quick", "--minutes", "1", "--out", str(tmp_path / "no")])


def test_report_is_rewritten_after_every_finished_seed(tmp_path):
    # killed mid-study, the report on disk already holds every seed whose runs all finished
    out = tmp_path / "killed"
    cmd = [sys.executable, "-m", "bench.study", "--dry-run", "--out", str(out)]
    proc = subprocess.Popen(cmd, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    runs = out / "replication-gpu-short" / "runs"
    deadline = time.time() + 120
    while time.time() < deadline and (not runs.exists() or len(list(runs.glob("*.json"))) < 8):
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    report = (out / "REPORT.md").read_text()
    rows = [line.split("|") for line in report.splitlines() if line.startswith("| all | ")]
    # every finished run is in it (but perhaps the 8th, killed between its file and the rewrite)
    assert sum(int(r[3]) for r in rows) >= 7 and {r[2].strip() for r in rows} == {"none", "1SA", "1PA", "ESA"}


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
    assert 3 <= len(done) < 36, "killed mid-way"
    subprocess.run(cmd, cwd=ROOT, check=True, capture_output=True)
    after = {p.name: p.stat().st_mtime for p in runs.glob("*.json")}
    assert len(after) == 36  # 6 arms x 2 batch sizes x 3 seeds
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


def test_poster_rate_is_chosen_from_the_saved_grid_and_declared_before_the_comparison(tmp_path):
    import json

    from bench.training.suite import POSTER_BATCHES, POSTER_LR_GRID, SCALES, choose_lr, poster_experiments

    sc = SCALES["poster"]
    assert sc.train is None and sc.seeds >= 10  # the whole training set, 10 seeds
    grid = poster_experiments(sc, None)
    assert [e.name for e in grid] == ["poster-lr-grid"]  # no comparison while the grid is unfinished
    assert study.declare_choice(str(tmp_path), sc) is None
    runs = tmp_path / "poster-lr-grid" / "runs"
    runs.mkdir(parents=True)
    best = {32: 0.1, 128: 0.2}
    for b in POSTER_BATCHES:
        for lr in POSTER_LR_GRID:
            for seed in grid[0].seed_list():
                acc = 0.5 if lr == best[b] else 0.4
                cfg = {"batch_size": b, "lr": lr * (b / 64) ** 0.5, "seed": seed}
                (runs / f"b{b}-lr{lr}-s{seed}.json").write_text(json.dumps({"config": cfg, "best_acc": acc}))
    chosen = study.declare_choice(str(tmp_path), sc)
    assert chosen == best == choose_lr([json.loads(p.read_text()) for p in runs.glob("*.json")])
    saved = json.loads((tmp_path / "poster-lr-grid" / "choice.json").read_text())
    assert saved["grid_runs"] == 16 and "highest mean best test accuracy" in saved["rule"]
    # the choice, once declared, stands: later runs in the folder do not change it
    (runs / "late.json").write_text(json.dumps({"config": {"batch_size": 32, "lr": 1.0, "seed": 200}, "best_acc": 1}))
    assert study.declare_choice(str(tmp_path), sc) == best
    decisive = poster_experiments(sc, chosen)[1]
    assert decisive.declared and decisive.seed0 == 300 and decisive.seeds == 10
    assert [a for a, _ in decisive.arms] == ["none", "1SA"]
    rates = {g: o["lr"] for g, o in decisive.groups}
    assert rates == pytest.approx({"batch 32": 0.1 * 0.5**0.5, "batch 128": 0.2 * 2**0.5})


def test_dose_trend_is_a_per_seed_slope_with_a_t_interval():
    import math

    from bench.training.verdicts import dose_trend, dose_verdict

    # accuracy lost = 2 + 3 * log10(p) + seed noise: the mean slope is 3 points per tenfold rate
    rows = [{"arm": "none", "delta_acc_by_seed": {s: 0.0 for s in range(5)}}]
    for p in (0.01, 0.1, 1.0):
        rows.append(
            {
                "arm": f"rows@p{p:g}",
                "delta_acc_by_seed": {s: -(2 + (3 + 0.1 * s) * math.log10(p) + 2) / 100 for s in range(5)},
                "delta_acc": 0.0,
                "delta_acc_ci": 0.0,
            }
        )
    est, lo, hi, p, n, k = dose_trend(rows, "rows")
    assert est == pytest.approx(3.2) and lo < 3.2 < hi and n == 5 and k == 3 and p < 0.01
    assert "trend +3.2 points lost per tenfold rate" in dose_verdict(rows)


def test_poster_scale_runs_end_to_end_on_tiny_data(tmp_path, monkeypatch):
    # The whole --scale poster flow on the tiny built-in set: the grid (no baseline arm: saved, not summarised),
    # the declared choice, the decisive comparison, REPORT.md; and bench.report's tables of both from the folder.
    from bench import report
    from bench.training.suite import Scale

    monkeypatch.setitem(study.SCALES, "poster", Scale("poster", "builtin-tiny", None, None, 2, 0.5))
    sections = study.main(["--scale", "poster", "--data", "builtin-tiny", "--out", str(tmp_path)])
    assert [s[0].name for s in sections] == ["poster-decisive"]
    assert (tmp_path / "poster-lr-grid" / "choice.json").exists() and (tmp_path / "REPORT.md").exists()
    assert len(list((tmp_path / "poster-lr-grid" / "runs").glob("*.json"))) == 16
    assert len(list((tmp_path / "poster-decisive" / "runs").glob("*.json"))) == 8
    monkeypatch.setattr(report, "POSTER", str(tmp_path))
    grid = report.poster_grid()
    assert grid.count("\n| 32 |") == 4 and grid.count("\n| 128 |") == 4 and "Chosen by the declared rule" in grid
    assert "1SA" in report.poster_decisive()
