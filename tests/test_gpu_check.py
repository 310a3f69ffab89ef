"""bench/gpu_check.sh, proved on the CPU: its dry run goes through every stage (build check, smoke, overhead,
tests, the sanitizer's workload, the gpu-short study) and leaves at most 8 files, none in a folder, under $OUT;
with a short deadline it cuts the stage in flight, skips the rest with a line each, and still packs its logs."""

import json
import os
import subprocess
import tarfile
import time
import xml.etree.ElementTree as ET

from conftest import ROOT

SCRIPT = os.path.join(ROOT, "bench", "gpu_check.sh")


def _run(out, seconds=None, timeout=200):
    env = dict(os.environ, SWAPKERN_GPU_CHECK_DRY="1", OUT=str(out))
    if seconds is not None:
        env["GPU_CHECK_SECONDS"] = str(seconds)
    t0 = time.time()
    proc = subprocess.run(["bash", SCRIPT], env=env, capture_output=True, text=True, timeout=timeout)
    return proc, time.time() - t0


def _files(out):
    entries = os.listdir(out)
    assert all(os.path.isfile(os.path.join(out, e)) for e in entries), entries  # nothing deeper than $OUT
    return set(entries)


def test_dry_run_goes_through_every_stage(tmp_path):
    out = tmp_path / "out"
    proc, seconds = _run(out)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-2000:]
    assert seconds < 180
    files = _files(out)
    assert len(files) <= 8
    assert files == {
        "summary.txt",
        "overhead.jsonl",
        "overhead.txt",
        "junit.xml",
        "sanitize.txt",
        "study.md",
        "logs.tgz",
    }
    summary = (out / "summary.txt").read_text()
    for stage in ("build", "smoke", "overhead", "gpu_tests", "memcheck", "rest"):
        assert f"== {stage}: budget" in summary and f"{stage}: rc 0 in" in summary, stage
    assert "native cpu: yes" in summary and "status 0" in summary
    assert "using the carried binary: no build" in summary  # the binary that came along is tried first
    rows = [json.loads(line) for line in (out / "overhead.jsonl").read_text().splitlines()]
    assert {r["backend"] for r in rows} >= {"native", "plain PyTorch", "copy of the moved bytes"}
    assert any("mixed: 4096" in r["case"] for r in rows)
    suite = ET.parse(out / "junit.xml").getroot()
    assert int(suite.find("testsuite").get("tests")) > 0 and int(suite.find("testsuite").get("failures")) == 0
    sanitize = (out / "sanitize.txt").read_text()
    assert "compute-sanitizer: SKIPPED (dry run" in sanitize and "checks passed" in sanitize
    assert "| all | ESA |" in (out / "study.md").read_text()
    with tarfile.open(out / "logs.tgz") as tar:
        names = {os.path.basename(n) for n in tar.getnames()}
    assert {"build.log", "overhead.log", "gpu_tests.log", "memcheck.log", "rest.log", "REPORT.md"} <= names


def test_deadline_cuts_the_stage_in_flight_and_skips_the_rest(tmp_path):
    out = tmp_path / "out"
    proc, seconds = _run(out, seconds=35)
    summary = (out / "summary.txt").read_text()
    assert proc.returncode == 1, summary  # a cut stage fails the check
    assert seconds < 35 + 20
    assert "CUT at its" in summary and "SKIPPED" in summary, summary
    assert "== done: status 1" in summary
    assert len(_files(out)) <= 8 and (out / "logs.tgz").exists()
