"""bench/gpu/check.sh, run as people run it (bench/gpu_check.sh execs it), proved on the CPU: its dry run goes
through every stage (build check, smoke, overhead, tests, the sanitizer's workload, the gpu-short study) and
leaves at most 8 files, none in a folder, under $OUT;
a stage that outlives its budget is cut (SIGINT first: pytest still writes its junit XML), the stages after it are
skipped with a line each, and the logs are still packed. The cut is made deterministic by a stage that waits on
purpose (GPU_CHECK_STALL), not by the speed of the machine. The script runs this interpreter (PYTHON)."""

import json
import os
import re
import subprocess
import sys
import tarfile
import time
import xml.etree.ElementTree as ET

import pytest
from conftest import ROOT

SCRIPT = os.path.join(ROOT, "bench", "gpu", "check.sh")
WRAPPER = os.path.join(ROOT, "bench", "gpu_check.sh")  # the path people and notes run: it execs SCRIPT


def _run(out, seconds=None, timeout=200, **extra):
    # this interpreter, not whatever python3 is first on PATH (a venv's python run without activating it)
    env = dict(os.environ, SWAPKERN_GPU_CHECK_DRY="1", OUT=str(out), PYTHON=sys.executable, **extra)
    env.pop("GPU_CHECK_STALL_TARGET", None)
    if seconds is not None:
        env["GPU_CHECK_SECONDS"] = str(seconds)
    t0 = time.time()
    proc = subprocess.run(["bash", WRAPPER], env=env, capture_output=True, text=True, timeout=timeout)
    return proc, time.time() - t0


def _log(out, name):
    with tarfile.open(out / "logs.tgz") as tar:
        for member in tar.getmembers():
            if os.path.basename(member.name) == name:
                return tar.extractfile(member).read().decode(errors="replace")
    return ""


def _files(out):
    entries = os.listdir(out)
    assert all(os.path.isfile(os.path.join(out, e)) for e in entries), entries  # nothing deeper than $OUT
    return set(entries)


def test_the_old_path_is_a_wrapper_that_execs_the_script():
    with open(WRAPPER) as f:
        lines = f.read().splitlines()
    assert len(lines) == 2 and lines[1].startswith('exec bash "$(dirname "$0")/gpu/check.sh" "$@"'), lines
    assert os.access(SCRIPT, os.X_OK) and os.access(WRAPPER, os.X_OK)


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
    first = summary.splitlines()[0]  # before any stage: did the carried binary load, with CUDA kernels?
    assert "carried binary: swapkern/_C.abi3.so loaded with" in first, first
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
    # The build stage waits on purpose: it is cut at its budget (the deadline less the reserve) however fast the
    # machine is, and every later stage finds no time left.
    out = tmp_path / "out"
    proc, seconds = _run(out, seconds=60, GPU_CHECK_STALL="build")
    summary = (out / "summary.txt").read_text()
    assert proc.returncode == 1, summary  # a cut stage fails the check
    assert seconds < 60 + 30
    assert "stalling on purpose" in (out / "summary.txt").read_text() + _log(out, "build.log")
    assert re.search(r"build: CUT at its \d+s budget", summary), summary
    for stage in ("smoke", "overhead", "gpu_tests", "memcheck", "rest"):
        assert f"== {stage}: SKIPPED" in summary, summary
    assert "== done: status 1" in summary
    assert len(_files(out)) <= 8 and (out / "logs.tgz").exists()


def test_a_cut_pytest_stage_still_writes_its_junit_xml(tmp_path):
    # gpu_tests alone, waiting inside a test: the stage's SIGINT lets pytest write the XML, naming the test.
    out = tmp_path / "out"
    proc, _ = _run(out, seconds=90, GPU_CHECK_STALL="gpu_tests", GPU_CHECK_STAGES="gpu_tests")
    summary = (out / "summary.txt").read_text()
    assert proc.returncode == 1, summary
    assert re.search(r"gpu_tests: CUT at its \d+s budget", summary) and "== build: not selected" in summary, summary
    log = _log(out, "gpu_tests.log")
    assert "KeyboardInterrupt" in log and "test_gpu_check.py:" in log, log  # interrupted inside the waiting test
    suite = ET.parse(out / "junit.xml").getroot()  # written on SIGINT
    assert suite.find("testsuite") is not None


def test_stall_target():
    """The test the stalled gpu_tests stage runs (GPU_CHECK_STALL_TARGET=1): it waits until the stage is cut."""
    if os.environ.get("GPU_CHECK_STALL_TARGET") != "1":
        pytest.skip("only for bench/gpu_check.sh with GPU_CHECK_STALL=gpu_tests")
    time.sleep(100000)
