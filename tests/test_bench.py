"""The benchmark code, tested fast on tiny data: outputs exist and are consistent, statistics are right on
known answers, a no-op protocol matches the baseline exactly, and reruns resume."""

import glob
import json
import math
import os
import sys

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
    # Two seeds give no interval and no test: the table says n/a and why.
    r = next(r for r in rows if r["arm"] == "EPA" and r["group"] == 64)
    accs = [x["final_acc"] for x in runs if x["arm"] == "EPA" and x["config"]["batch_size"] == 64]
    assert math.isclose(r["final_acc"], float(np.mean(accs)))
    assert math.isnan(r["final_acc_ci"]) and math.isnan(r["steps_ratio"]["lo"]) and math.isnan(r["time_ratio"]["p"])
    md = (out / "summary.md").read_text()
    assert "[n/a]" in md and "an interval needs at least 3 seeds" in md
    # Every run kept its raw wall-clock beside the median step time that times it to the target, timed in parts; the
    # arms of one batch size and seed trained in one lockstep (8 arms: 3 feature arms, 4 sweep arms, metropolis).
    assert all(x["timing"] == "parts" and 0 < x["step_seconds_median"] <= x["step_seconds_p90"] for x in runs)
    assert all(
        x["lockstep"] == 8 and set(x["part_seconds_median"]) == {"batch", "perturb", "model", "wswap"} for x in runs
    )
    assert len({x["lockstep_started"] for x in runs}) == 4  # 2 batch sizes x 2 seeds
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


def test_lockstep_trains_each_arm_exactly_as_alone(tiny):
    # Arms stepped side by side (step k of each before step k+1 of any) compute what each computes alone, bit for
    # bit: their random streams are their own. The sham arm times its plan's drawing apart, the weight swap its own.
    from bench.training.summary import lockstepped, swap_share
    from bench.training.trainer import train_lockstep

    common = dict(epochs=0.5, batch_size=32, seed=1)
    cfgs = [
        RunConfig(**common),
        RunConfig(protocol="EPA", **common),
        RunConfig(protocol="1SA", control="sham", **common),
        RunConfig(weight_protocol="rows", **common),
    ]
    together = train_lockstep(tiny, cfgs)
    for cfg, res in zip(cfgs, together, strict=True):
        alone = train_one(tiny, cfg)
        for key in ("step", "train_loss", "clean_loss", "test_acc"):
            assert res["curves"][key] == alone["curves"][key], (cfg.arm(), key)
        assert res["lockstep"] == 4 and alone["lockstep"] == 1
    base, epa, sham, rows = together
    assert lockstepped(base, sham) and not lockstepped(base, train_one(tiny, cfgs[0]))
    assert sham["part_seconds_median"]["perturb"] > 0 and base["part_seconds_median"]["perturb"] == 0
    assert rows["part_seconds_median"]["wswap"] > 0 and base["part_seconds_median"]["wswap"] == 0
    for r in together:
        total = sum(r["part_seconds_median"].values())
        assert r["step_seconds_median"] > 0 and total > 0
    # the share itself is a difference of timings (it may be negative on a busy machine): only its presence is tested
    assert isinstance(swap_share(rows, base), float) and swap_share(epa, train_one(tiny, cfgs[0])) is None


def test_sham_arm_is_accepted_by_bench_train(tmp_path):
    assert train.arm_code("1sa+sham") == "1SA+sham" and train.arm_overrides("1SA+sham", 1)["control"] == "sham"
    assert "1SA+sham" in train.QUICK_PROTOCOLS
    with pytest.raises(SystemExit, match="control after"):
        train.arm_code("1SA+bogus")


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
    assert m == 2.0 and h == pytest.approx(4.303 * 1.0 / math.sqrt(3), rel=1e-4)  # t(0.975, 2 df) = 4.303


def test_intervals_and_tests_need_three_seeds():
    m, h = stats.mean_ci([1.0, 2.0])
    assert m == 1.5 and math.isnan(h)
    r = stats.paired_ratio({0: 50.0, 1: 60.0}, {0: 100.0, 1: 100.0}, 1000, 1000)
    assert r["ratio"] == pytest.approx(math.sqrt(0.3)) and math.isnan(r["lo"]) and math.isnan(r["p"])
    assert stats.fmt_ratio(r) == "0.55 [n/a]"
    assert stats.fmt_mean(0.5, float("nan"), 100) == "50.0 ± n/a"


def test_t_test_and_holm_on_known_answers():
    # a paired t-test on log ratios: scipy's one-sample test; a one-sided p is half the two-sided one below 1
    logs = [-0.1, -0.05, -0.12, -0.02]
    two = stats.t_test(logs)
    t = np.mean(logs) / (np.std(logs, ddof=1) / 2)
    assert two == pytest.approx(2 * __import__("scipy").stats.t.cdf(t, 3))
    assert stats.t_test(logs, "less") == pytest.approx(two / 2)
    assert stats.t_test([0.1, 0.1, 0.1]) == 0.0 and stats.t_test([0.0] * 3) == 1.0
    assert stats.t_test([0.1, 0.1, 0.1], "less") == 1.0
    # Holm: sorted p times (m - rank), running maximum, capped at 1; untested (nan) entries stay out of the family
    adj = stats.holm([0.01, 0.04, 0.03, float("nan"), 0.5])
    assert adj[:3] == pytest.approx([0.04, 0.09, 0.09]) and math.isnan(adj[3]) and adj[4] == 0.5
    assert stats.holm([0.02, 0.9]) == pytest.approx([0.04, 0.9])


def test_t_interval_tost_and_detectable_effect_on_known_answers():
    from scipy import stats as sp

    # Three log ratios: the 95% interval is the t-interval (t(0.975, 2) = 4.303), not the min-max a bootstrap gives.
    logs = [math.log(1.05), math.log(1.01), math.log(0.67)]
    r = stats.paired_ratio({0: 105.0, 1: 101.0, 2: 67.0}, {0: 100.0, 1: 100.0, 2: 100.0}, 1e3, 1e3)
    half = 4.303 * np.std(logs, ddof=1) / math.sqrt(3)
    assert r["lo"] == pytest.approx(math.exp(np.mean(logs) - half), rel=1e-3) and r["lo"] < 0.67
    assert r["method"] == stats.METHOD and r["verdict"] == "inconclusive" and r["mde"] < 0.8  # 0.8 not excluded
    # Ten pairs within 1% of each other: equivalent within the 10% margin (TOST), and a 10% effect is detectable.
    ten = {i: 100.0 * (1 + 0.01 * ((i % 3) - 1)) for i in range(10)}
    e = stats.paired_ratio(ten, {i: 100.0 for i in range(10)}, 1e3, 1e3)
    assert e["verdict"] == "equivalent" and e["tost_p"] < 0.05 and 0.9 < e["mde"] < 1.0 < e["mde_up"]
    assert 0.9 < e["lo"] <= e["lo90"] < 1 < e["hi90"] <= e["hi"] < 1.1
    # TOST p is the larger of the two one-sided tests against the margins
    v = np.array([0.02, 0.05, -0.01, 0.03])
    p1 = sp.ttest_1samp(v, math.log(0.9), alternative="greater").pvalue
    p2 = sp.ttest_1samp(v, math.log(1.1), alternative="less").pvalue
    assert stats.tost(v) == pytest.approx(max(p1, p2))
    # A clear, large speed-up is "faster"; a censored arm can only be "slower" or "inconclusive".
    f = stats.paired_ratio({0: 50.0, 1: 52.0, 2: 49.0}, {0: 100.0, 1: 100.0, 2: 100.0}, 1e3, 1e3)
    assert f["verdict"] == "faster" and f["hi"] < 0.9
    c = stats.paired_ratio({0: 50.0, 1: None, 2: 49.0}, {0: 100.0, 1: 100.0, 2: 100.0}, 1e3, 1e3)
    assert c["lower_bound"] and c["verdict"] == "inconclusive"
    # Power: at the detectable effect, the noncentral t rejects with 80% probability.
    d, sd, n = -math.log(e["mde"]), e["sd_log"], 10
    crit = sp.t.ppf(0.975, n - 1)
    nc = d / (sd / math.sqrt(n))
    assert sp.nct.sf(crit, n - 1, nc) + sp.nct.cdf(-crit, n - 1, nc) == pytest.approx(0.8, abs=1e-4)


def test_stall_in_one_run_is_not_a_speed_up():
    # Two identical runs, one with a 4-second stall of the machine in its third step: by the raw wall-clock it takes
    # far longer to the target; by steps times the median step time, the same.
    from bench.training.summary import arm_rows, wall_to_target

    def run(arm, seed, stall):
        t = np.cumsum([0.0] + [0.01 + (4.0 if stall and i == 2 else 0.0) for i in range(10)])
        steps = list(range(0, 11))
        acc = [i / 10 for i in steps]
        return {
            "arm": arm,
            "group": "all",
            "config": {"seed": seed},
            "curves": {"step": steps, "time_s": list(t), "test_acc": acc},
            "steps": 10,
            "train_seconds": float(t[-1]),
            "step_seconds_median": 0.01,
            "part_seconds_median": {"batch": 0.002, "perturb": 0.0, "model": 0.008, "wswap": 0.0},
            "timing": "parts",
            "lockstep_started": f"seed {seed}",  # each seed's arms stepped side by side
            "final_acc": 1.0,
            "final_clean_loss": 0.1,
        }

    results = [run("none", s, stall=(s == 0)) for s in range(3)] + [run("1SA", s, False) for s in range(3)]
    assert wall_to_target(results[0], 0.8)[1] > 4.0 and time_to_target(results[0], 0.8) == pytest.approx((8, 0.08))
    row = next(r for r in arm_rows(results, 0.8) if r["arm"] == "1SA")
    assert row["time_ratio"]["ratio"] == pytest.approx(1.0) and row["wall_ratio"]["ratio"] < 0.5
    assert row["time_ratio"]["pairs"] == 3 and row["swap_share"] == pytest.approx(0.0)
    # Runs not trained in one lockstep (made one after another) have no time ratio at all: only steps compare.
    for r in results:
        r["lockstep_started"] = r["arm"]
    row = next(r for r in arm_rows(results, 0.8) if r["arm"] == "1SA")
    assert row["time_ratio"]["pairs"] == 0 and row["steps_ratio"]["pairs"] == 3 and row["swap_share"] is None


def test_paired_ratio_and_censoring():
    base = {0: 100.0, 1: 200.0, 2: 400.0}
    r = stats.paired_ratio({0: 50.0, 1: 100.0, 2: 200.0}, base, 1000, 1000)
    assert r["ratio"] == pytest.approx(0.5) and r["lo"] == pytest.approx(0.5) and r["pairs"] == 3
    assert not r["lower_bound"]
    c = stats.paired_ratio({0: 50.0, 1: None, 2: 200.0}, base, 1000, 1000)
    assert c["censored_arm"] == 1 and c["lower_bound"] and c["pairs"] == 3
    assert c["ratio"] == pytest.approx(math.exp((math.log(0.5) + math.log(5.0) + math.log(0.5)) / 3))
    # a censored run counts at its own budget when budgets differ by seed (its own steps x its own step time)
    own = stats.paired_ratio({0: 50.0, 1: None, 2: 200.0}, base, {0: 9e9, 1: 400.0, 2: 9e9}, 1000)
    assert own["ratio"] == pytest.approx(math.exp((math.log(0.5) + math.log(2.0) + math.log(0.5)) / 3))
    d = stats.paired_ratio({0: 50.0, 1: 60.0}, {0: 100.0, 1: None}, 1000, 1000)
    assert d["censored_base"] == 1 and d["pairs"] == 1 and stats.fmt_ratio(d).startswith("0.50")


def test_time_to_target_interpolates_and_censors():
    res = {
        "curves": {"step": [0, 10, 20], "time_s": [0.0, 1.0, 2.0], "test_acc": [0.1, 0.5, 0.9]},
        "steps": 20,
        "train_seconds": 2.0,  # a run saved before steps were timed one by one: its mean step time, 0.1 s
    }
    assert time_to_target(res, 0.7) == pytest.approx((15.0, 1.5))
    assert time_to_target(res, 0.5) == pytest.approx((10.0, 1.0))
    assert time_to_target(res, 0.95) is None
    assert time_to_target(dict(res, step_seconds_median=0.05), 0.7) == pytest.approx((15.0, 0.75))


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


def test_poster_regime_optimizer_and_schedule(tiny):
    from torch import nn

    from bench.training.trainer import optimizer

    model = nn.Linear(4, 2)
    opt, sched = optimizer(model, RunConfig(optimizer="sgd", schedule="constant", lr=0.2), 100)
    g = opt.param_groups[0]
    assert g["momentum"] == 0 and g["weight_decay"] == 0 and not g["nesterov"]
    for _ in range(50):
        opt.step()
        sched.step()
    assert g["lr"] == 0.2
    opt, sched = optimizer(model, RunConfig(lr=0.2), 100)
    assert opt.param_groups[0]["momentum"] == 0.9 and opt.param_groups[0]["lr"] < 0.2  # warming up
    with pytest.raises(ValueError, match="adam"):
        optimizer(model, RunConfig(optimizer="adam"), 100)
    # no flips: the loader's batches are the plain normalised images, and the run trains
    r = train_one(tiny, RunConfig(flip=False, optimizer="sgd", schedule="constant", epochs=0.25, batch_size=32))
    assert r["finite"]
    keys = {runner.run_key(RunConfig(**kw), tiny.name) for kw in ({}, {"flip": False}, {"optimizer": "sgd"})}
    assert len(keys) == 3


def test_compare_builds_judges_rows_against_their_noise():
    """bench.compare_builds: a row 2x slower in every round is 'slower'; one that wobbles around 1 is 'same';
    a 3% change that every round shows is still 'same' (under the 5% floor); a steady 2x gain is 'faster'."""
    from bench.compare_builds import compare

    def rounds(values):
        return [
            {(case, "native"): v for case, v in zip(("slow", "wobble", "tiny", "fast"), r, strict=True)} for r in values
        ]

    base = rounds([(10, 10, 10, 10), (11, 9, 10.5, 11), (10.5, 10, 10.2, 10.5), (10, 11, 10, 10)])
    head = rounds([(20, 11, 10.3, 5), (23, 8.5, 10.8, 5.5), (21, 10.5, 10.5, 5.2), (19, 10, 10.3, 5)])
    got = {r["case"]: r for r in compare(base, head)}
    assert got["slow"]["verdict"] == "slower" and abs(got["slow"]["ratio"] - 2) < 0.05
    assert got["wobble"]["verdict"] == "same within noise"
    assert got["tiny"]["verdict"] == "same within noise" and got["tiny"]["ratio"] > 1
    assert got["fast"]["verdict"] == "faster"
    lo, hi = got["slow"]["ci95"]
    assert lo < got["slow"]["ratio"] < hi


def test_dispatch_probe_times_every_case_against_the_swapkern_it_imports():
    """bench/overhead/dispatch.py (the probe bench.compare_builds --dispatch runs in each checkout) prints one
    JSON object of microseconds per call, against the swapkern on its PYTHONPATH."""
    import subprocess

    env = {**os.environ, "PYTHONPATH": ROOT}
    res = subprocess.run(
        [sys.executable, os.path.join(ROOT, "bench", "overhead", "dispatch.py")],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert res.returncode == 0, res.stderr[-2000:]
    got = json.loads(res.stdout.strip().splitlines()[-1])
    assert len(got) == 6 and "WeightSwap rows step, 40 tensors" in got and "floor: y.add_(1) on an empty tensor" in got
    assert all(0 < us < 10_000 for us in got.values()), got


@pytest.mark.timeout(600)
def test_sharded_rows_time_a_step_on_two_ranks_and_count_the_bytes():
    """bench.overhead --sharded: 2 gloo ranks make the same fixed number of sharded steps (a time-based count
    differed between ranks and hung one in a collective); every protocol gets an unsharded and an FSDP2 row, and
    the FSDP2 rows report the bytes a step sends."""
    from bench.overhead.sharded import PROTOCOLS, sharded_rows

    rows = sharded_rows()
    assert len(rows) == len(PROTOCOLS) * 2 * 2
    fsdp = [r for r in rows if r["backend"].startswith("FSDP2")]
    assert len(fsdp) == len(rows) // 2 and all(r["median_us"] > 0 for r in rows)
    assert any(r["bytes_sent_per_step"] > 0 for r in fsdp if ", rows," in r["case"])


def test_overhead_setup_rows_time_construction_and_first_steps():
    """bench.overhead --setup: construction, first and later step per protocol, state and backend (a tiny model)."""
    import torch

    import swapkern
    from bench.overhead.weights import setup_rows

    make = lambda: torch.nn.Sequential(torch.nn.Linear(4, 6), torch.nn.ReLU(), torch.nn.Linear(6, 3))  # noqa: E731
    rows = setup_rows(torch.device("cpu"), True, models=[("tiny", make)], protocols=("rows",), repeats=2)
    backends = 1 + swapkern._backend.native_available("cpu")
    assert len(rows) == 4 * 2 * backends
    kinds = {"construction", "first step", "later step", "binding check"}
    assert {r["case"].rsplit(": ", 1)[1] for r in rows} == kinds
    assert all(r["repeats"] == 2 and r["median_us"] > 0 for r in rows)
    # two weights; with state=True their momentum buffers move too
    assert all(("(2 jobs), state=False" in r["case"]) != ("(4 jobs), state=True" in r["case"]) for r in rows)


def test_report_check_passes_on_the_saved_runs_and_catches_a_hand_edit(tmp_path, monkeypatch):
    # Every generated block of RESULTS.md and the README is what the saved runs give (python -m bench.report --check)
    from bench import report

    assert report.main(["--check"]) == 0
    # A number edited by hand inside a block is caught; text outside the blocks (sections appended for other
    # issues) is neither read nor changed; a rewrite restores the block.
    values, _ = report.blocks()
    copy = tmp_path / "RESULTS.md"
    text = open(report.FILES["results"]).read()
    edited = text.replace("<!-- report:sharded -->\n", "<!-- report:sharded -->\n| rows | 1 us |\n", 1)
    edited += "\n## Issue 99: appended by someone else\n\n| a | b |\n|---|---|\n| 1 | 2 |\n"
    copy.write_text(edited)
    monkeypatch.setitem(report.FILES, "results", str(copy))
    assert report.main(["--check"]) == 1
    new, changed, found = report.fill(edited, values)
    assert changed == ["sharded"] and set(found) >= {"cifar10-table", "claims", "goals", "sharded"}
    assert new.endswith("| 1 | 2 |\n") and new.replace("## Issue 99", "") != new
    assert report.fill(new, values)[1] == []


def test_overhead_run_times_the_dispatch_floor_first_and_every_row_against_it(tmp_path):
    """bench.overhead: the floor of one dispatch (an in-place ATen op on an empty tensor; our op with nothing to do)
    is timed in the same run as every case, and each row carries its time over that floor (the "x floor" column)."""
    from bench.overhead.cli import main
    from bench.overhead.rows import FLOOR_ATEN, FLOOR_CASE

    out = tmp_path / "o.json"
    result = main(
        ["--device", "cpu", "--quick", "--images", "8", "--no-weights", "--only", "1PA protocol", "--out", str(out)]
    )
    cpu = result["devices"]["cpu"]
    rows = cpu["rows"]
    assert rows[0]["case"] == FLOOR_CASE and rows[0]["backend"] == FLOOR_ATEN
    assert cpu["floor_us"] == rows[0]["median_us"] > 0
    assert any(r["case"].startswith("1PA protocol") for r in rows)
    for r in rows:
        assert r["times_floor"] == r["median_us"] / cpu["floor_us"]
    assert json.loads(out.read_text())["devices"]["cpu"]["floor_us"] == cpu["floor_us"]


def test_breakdown_times_each_layer_of_one_small_call():
    """bench.overhead.breakdown: the same call with one more layer around it, each layer a positive time."""
    import swapkern
    from bench.overhead.breakdown import layers

    if not swapkern._backend.native_available("cpu"):
        pytest.skip("the native backend is not built")
    rows = dict(layers())
    assert len(rows) == 10 and rows["floor: y.add_(1), an empty tensor"] > 0
    assert all(0 < us < 10_000 for us in rows.values()), rows


def test_compiled_bench_times_the_twin_and_the_op():
    """bench.overhead.compiled: a compiled call with the checked twin, with the op directly, and the eager call."""
    import torch

    import swapkern
    from bench.overhead.compiled import measure

    if not swapkern._backend.native_available("cpu"):
        pytest.skip("the native backend is not built")
    threads = torch.get_num_threads()
    try:
        got = measure(calls=50, loops=1)
    finally:
        torch.set_num_threads(threads)
    assert set(got) == {"compiled, checked twin", "compiled, the op directly", "eager"}
    assert all(0 < us < 1e6 for us in got.values()), got


def test_construction_bench_times_setups_with_and_without_the_collector():
    """bench.overhead.construction on a small model: construction and packing timed with gc on and off, and the
    collector left on afterwards."""
    import gc

    import torch
    import torchvision

    import swapkern
    from bench.overhead.construction import measure

    if not swapkern._backend.native_available("cpu"):
        pytest.skip("the native backend is not built")
    threads = torch.get_num_threads()
    try:
        got = measure(repeats=2, model=torchvision.models.resnet18(num_classes=10))
    finally:
        torch.set_num_threads(threads)
    assert gc.isenabled()
    for collector in ("gc on", "gc off"):
        assert got[collector]["jobs"] > 0
        assert all(t > 0 for t in got[collector]["construction_s"] + got[collector]["packing_s"])
