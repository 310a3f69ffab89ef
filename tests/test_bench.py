"""The benchmark code, tested fast on tiny data: outputs exist and are consistent, statistics are right on
known answers, a no-op protocol matches the baseline exactly, and reruns resume."""

import glob
import json
import math
import os

import numpy as np
import pytest
from conftest import ROOT

from bench import train
from bench.common import stats
from bench.training import datasets, runner
from bench.training.config import RunConfig
from bench.training.summary import time_to_target
from bench.training.trainer import train as train_one


@pytest.fixture(scope="module")
def tiny():
    return datasets.load("builtin-tiny")


def test_quick_smoke_run(tmp_path, tiny):
    out = tmp_path / "run"
    argv = [
        "--data",
        "builtin-tiny",
        "--protocols",
        "1SA",
        "EPA",
        "--seeds",
        "2",
        "--epochs",
        "1",
        "--batch-size",
        "32",
        "64",
        "--out",
        str(out),
        "--no-progress",
        "--weight-protocol",
        "mixed",
        "--intensities",
        "1",
        "4",
    ]
    rows = train.main(argv)
    for name in (
        "summary.md",
        "summary.csv",
        "summary.json",
        "curves.csv",
        "curves_bs32.png",
        "curves_bs64.png",
        "time_to_target_bs32.png",
        "weight_sweep_bs64.png",
    ):
        assert (out / name).exists(), name
    runs = [json.loads(p.read_text()) for p in (out / "runs").glob("*.json")]
    assert len(runs) == 2 * 2 * (3 + 2 * 2 + 1)  # batch sizes x seeds x (3 feature arms + 4 sweep + metropolis)
    for r in runs:
        steps = r["curves"]["step"]
        assert steps == sorted(steps) and steps[0] == 0 and steps[-1] == r["steps"]
        assert r["curves"]["time_s"] == sorted(r["curves"]["time_s"])
        assert all(0 <= a <= 1 for a in r["curves"]["test_acc"])
    base = [r for r in rows if r["arm"] == "none"]
    assert all(r["steps_ratio"]["ratio"] == 1.0 for r in base)
    # The intervals come from the seeds: the final-accuracy interval matches a t-interval of the saved runs.
    r = next(r for r in rows if r["arm"] == "EPA" and r["group"] == 64)
    accs = [x["final_acc"] for x in runs if x["arm"] == "EPA" and x["config"]["batch_size"] == 64]
    assert math.isclose(r["final_acc"], float(np.mean(accs)))
    assert math.isclose(r["final_acc_ci"], 12.706 * float(np.std(accs, ddof=1)) / math.sqrt(2))
    # A rerun resumes: nothing left to train.
    before = {p: p.stat().st_mtime for p in (out / "runs").glob("*.json")}
    train.main(argv)
    assert before == {p: p.stat().st_mtime for p in (out / "runs").glob("*.json")}


def test_p_zero_and_sham_match_the_baseline_exactly(tiny):
    common = dict(epochs=1, batch_size=32, seed=3)
    base = train_one(tiny, RunConfig(**common))
    for cfg in (
        RunConfig(protocol="ESA", p=0.0, **common),
        RunConfig(protocol="EPA", control="sham", **common),
        RunConfig(weight_protocol="mixed", weight_p=0.0, **common),
    ):
        other = train_one(tiny, cfg)
        for key in ("train_loss", "clean_loss", "test_acc"):
            assert other["curves"][key] == base["curves"][key], (cfg.arm(), key)
    swapped = train_one(tiny, RunConfig(protocol="ESA", **common))
    assert swapped["curves"]["clean_loss"] != base["curves"]["clean_loss"]


def test_controls_run(tiny):
    for control in ("gauss", "erase", "rcp"):
        r = train_one(tiny, RunConfig(protocol="ESA", control=control, epochs=0.5, batch_size=32))
        assert r["finite"] and r["arm"] == f"ESA+{control}"
    r = train_one(tiny, RunConfig(weight_protocol="mixed", weight_swaps=4, weight_noise=True, epochs=0.5))
    assert r["finite"]


def test_bootstrap_on_known_answers():
    est, lo, hi = stats.bootstrap([1.0] * 10)
    assert est == lo == hi == 1.0
    rng = np.random.default_rng(0)
    x = rng.normal(5.0, 1.0, 400)
    est, lo, hi = stats.bootstrap(x)
    assert lo < 5.0 < hi and hi - lo == pytest.approx(2 * 1.96 / 20, rel=0.2)
    m, h = stats.mean_ci([1.0, 2.0, 3.0])
    assert m == 2.0 and h == pytest.approx(4.303 * 1.0 / math.sqrt(3))


def test_paired_ratio_and_censoring():
    base = {0: 100.0, 1: 200.0, 2: 400.0}
    r = stats.paired_ratio({0: 50.0, 1: 100.0, 2: 200.0}, base, 1000, 1000)
    assert r["ratio"] == pytest.approx(0.5) and r["lo"] == pytest.approx(0.5) and r["pairs"] == 3
    assert not r["lower_bound"]
    c = stats.paired_ratio({0: 50.0, 1: None, 2: 200.0}, base, 1000, 1000)
    assert c["censored_arm"] == 1 and c["lower_bound"] and c["pairs"] == 3
    assert c["ratio"] == pytest.approx(math.exp((math.log(0.5) + math.log(5.0) + math.log(0.5)) / 3))
    d = stats.paired_ratio({0: 50.0, 1: 60.0}, {0: 100.0, 1: None}, 1000, 1000)
    assert d["censored_base"] == 1 and d["pairs"] == 1 and stats.fmt_ratio(d).startswith("0.50")


def test_time_to_target_interpolates_and_censors():
    res = {"curves": {"step": [0, 10, 20], "time_s": [0.0, 1.0, 2.0], "test_acc": [0.1, 0.5, 0.9]}}
    assert time_to_target(res, 0.7) == pytest.approx((15.0, 1.5))
    assert time_to_target(res, 0.5) == pytest.approx((10.0, 1.0))
    assert time_to_target(res, 0.95) is None


def test_one_channel_data_runs_pixel_protocols_only(tmp_path, capsys):
    rows = train.main(
        [
            "--data",
            "builtin-gray",
            "--protocols",
            "1SA",
            "EPA",
            "--seeds",
            "1",
            "--epochs",
            "0.25",
            "--out",
            str(tmp_path),
            "--no-progress",
        ]
    )
    assert "skipping the channel-swap protocols 1SA" in capsys.readouterr().out
    assert {r["arm"] for r in rows} == {"none", "EPA"}


def test_run_keys_differ_by_config(tiny):
    a = runner.run_key(RunConfig(protocol="ESA", seed=0), tiny.name)
    b = runner.run_key(RunConfig(protocol="ESA", seed=1), tiny.name)
    c = runner.run_key(RunConfig(protocol="ESA", seed=0, lr=0.1), tiny.name)
    assert len({a, b, c}) == 3 and os.sep not in a


def test_committed_runs_keep_their_keys(tiny):
    # A field added to RunConfig must not orphan the committed results: each saved run's config, read back, still
    # maps to its file name, so a rerun of the committed studies resumes instead of retraining.
    files = sorted(glob.glob(os.path.join(ROOT, "bench", "results", "**", "runs", "*.json"), recursive=True))
    assert len(files) > 100
    for path in files[:: max(1, len(files) // 40)]:
        with open(path) as f:
            r = json.load(f)
        assert runner.run_key(RunConfig(**r["config"]), r["data"]) == os.path.basename(path)[:-5], path
    plain = runner.run_key(RunConfig(), tiny.name)
    assert runner.run_key(RunConfig(init_ulp=True), tiny.name) != plain


def test_init_ulp_changes_the_run_by_rounding_size(tiny):
    common = dict(epochs=0.25, batch_size=32, seed=2)
    base, ulp = train_one(tiny, RunConfig(**common)), train_one(tiny, RunConfig(init_ulp=True, **common))
    assert ulp["arm"] == "none+ulp"
    curves = [(ulp["curves"][k], base["curves"][k]) for k in ("train_loss", "clean_loss")]
    dev = [abs(a - b) for u, b0 in curves for a, b in zip(u, b0, strict=True)]
    assert 0 < max(dev) < 1e-5  # a difference, of rounding size


def test_run_order_interleaves_arms_by_seed():
    # three arms x two seeds in two blocks (batch sizes), listed arm-major as the configs are built
    blocks = [128] * 6 + [32] * 6
    seeds = [0, 1] * 6
    order = runner.run_order(blocks, seeds)
    assert sorted(order) == list(range(12))  # a permutation: every config runs once
    ran = [(blocks[i], seeds[i]) for i in order]
    assert ran == [(128, 0)] * 3 + [(128, 1)] * 3 + [(32, 0)] * 3 + [(32, 1)] * 3  # block, then seed, then arms
    assert order == runner.run_order(blocks, seeds)  # fixed, so a resumed run continues the same sequence
    firsts = {tuple(order[k : k + 3]) for k in range(0, 12, 3)}
    assert len({t[0] % 6 // 2 for t in firsts}) > 1  # not always the same arm first (no arm always pays warm-up)
