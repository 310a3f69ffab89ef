"""Summarising an experiment's runs against its baseline: the target, then per (group, arm) steps and time to it as
ratios to the baseline, paired by seed, with paired t-intervals on the log ratios, a TOST verdict within the
declared margin and the smallest detectable effect (censored runs counted), final accuracy and clean loss with
t-intervals, the swap's share of a step; and the study's per-arm details (extra forwards, injected perturbation,
acceptance).

Time has one definition (trainer.TIMING): steps to the target times the run's median step, a step being its
batch's building with the feature swap, a control's perturbation, the model's step and the weight swap, timed
apart and summed. A time ratio is formed only between runs trained side by side in one lockstep (the same burst
of load hits both); runs saved before (made one after another, or timed otherwise) have steps ratios only."""

from __future__ import annotations

from typing import NamedTuple

from ..common import stats
from .trainer import PARTS, TIMING


class Summary(NamedTuple):
    rows: list  # one per (group, arm)
    target: float | None  # the accuracy target every group shares (bench.train), else None
    desc: str  # the target in words


def step_time(result: dict) -> float:
    """The run's typical step time: the median of its steps (runs saved before steps were timed one by one: the
    mean, their total over their steps)."""
    med = result.get("step_seconds_median")
    return med if med is not None else result["train_seconds"] / max(result["steps"], 1)


def _crossing(result: dict, target: float, key: str):
    """(steps, curve[key]) where test accuracy first reaches target, interpolated linearly between the two
    evaluations around the crossing; None if it never does (a censored run)."""
    c = result["curves"]
    prev = None
    for s, t, a in zip(c["step"], c[key], c["test_acc"], strict=True):
        if a >= target:
            if prev is None or prev[2] >= a:
                return float(s), float(t)
            f = (target - prev[2]) / (a - prev[2])
            return prev[0] + f * (s - prev[0]), prev[1] + f * (t - prev[1])
        prev = (s, t, a)
    return None


def time_to_target(result: dict, target: float):
    """(steps, seconds) to the target test accuracy: the steps interpolated between evaluations, the seconds those
    steps at the run's typical (median) step time, so that a stall of the machine inside one run (a few seconds
    of a shared core) cannot pass for a speed-up of the other arm; None if it is never reached (censored)."""
    hit = _crossing(result, target, "step")
    return None if hit is None else (hit[0], hit[0] * step_time(result))


def lockstepped(a: dict, b: dict) -> bool:
    """Whether the time of runs a and b compares: both timed by TIMING in the same lockstep (one process, step k of
    each before step k+1 of either)."""
    return (
        a.get("timing") == TIMING
        and b.get("timing") == TIMING
        and a.get("lockstep_started") is not None
        and a.get("lockstep_started") == b.get("lockstep_started")
    )


def swap_share(run: dict, base: dict):
    """The swap's share of the run's median step: the weight swap and a control's perturbation as timed, plus the
    feature swap as the batch building's excess over its lockstep baseline's (the swap is fused into the loader's
    one kernel); None where the two runs were not in one lockstep."""
    if not lockstepped(run, base):
        return None
    p, q = run["part_seconds_median"], base["part_seconds_median"]
    swap = p["wswap"] + p["perturb"] + (p["batch"] - q["batch"])
    return swap / max(run["step_seconds_median"], 1e-12)


def wall_to_target(result: dict, target: float):
    """(steps, seconds) to the target on the raw wall-clock of the run's steps, stalls included (kept beside)."""
    return _crossing(result, target, "time_s")


def auto_target(baselines, margin=0.98):
    """A target every baseline run reaches: margin x the lowest best accuracy among them."""
    return round(margin * min(r["best_acc"] for r in baselines), 4)


def _clean_target(results, margin=1.05):
    return margin * max(min(r["curves"]["clean_loss"]) for r in results if r["arm"] == "none")


def _steps_to_loss(result, threshold):
    c = result["curves"]
    for s, t, v in zip(c["step"], c["time_s"], c["clean_loss"], strict=True):
        if v <= threshold:
            return s, t
    return None


def _group(r):
    return r["group"]


def summarise(exp, results, *, one_target=False) -> Summary:
    """The Summary of an experiment's labelled results (bench.training.experiment.run): rows per (group, arm), their
    p-values Holm-adjusted over the experiment's comparisons (ratio["holm"]["experiment"]).

    metric "accuracy": time to a test accuracy, exp.target if given, else auto_target of the baseline: one per
    group (the study), or with one_target one for every group from all the baselines (bench.train), the rows then
    in the order of the groups as text. metric "clean_loss": time to a clean training loss of 1.05 x the highest
    baseline minimum, expressed through the accuracy machinery (a curve that steps from 0 to 1 at the crossing).
    A declared (confirmatory) experiment tests its declared alternative; the others are two-sided."""
    alt = exp.declared.alternative if getattr(exp, "declared", None) else "two-sided"
    if exp.metric == "clean_loss":
        threshold = _clean_target(results)
        for r in results:  # express the metric through the accuracy machinery: a curve that crosses at the threshold
            hit = _steps_to_loss(r, threshold)
            r["curves"] = dict(r["curves"], test_acc=[0.0] * len(r["curves"]["step"]))
            if hit:
                i = r["curves"]["step"].index(hit[0])
                r["curves"]["test_acc"] = [0.0] * i + [1.0] * (len(r["curves"]["step"]) - i)
        rows = add_holm(arm_rows(results, 1.0, alternative=alt))
        return Summary(rows, None, f"clean training loss <= {threshold:.3f}")
    if one_target:
        base = [r for r in results if r["arm"] == "none"]
        target = exp.target if exp.target is not None else auto_target(base)
        return Summary(
            add_holm(arm_rows(results, target, alternative=alt)), target, f"test accuracy >= {100 * target:.1f}%"
        )
    rows, descs = [], []
    for g in dict.fromkeys(r["group"] for r in results):  # each group (batch size, regime) its own target
        in_g = [r for r in results if r["group"] == g]
        target = exp.target if exp.target is not None else auto_target([r for r in in_g if r["arm"] == "none"])
        rows += arm_rows(in_g, target, alternative=alt)
        descs.append(f"{100 * target:.1f}%" + (f" ({g})" if g != "all" else ""))
    return Summary(add_holm(rows), None, "test accuracy >= " + ", ".join(descs))


def _kind(cfg: dict):
    """What a run tests: "feature" (a feature swap), "weight" (a weight swap), "control" (a matched perturbation
    or the rounding yardstick in place of a swap), or None (the baseline)."""
    if cfg.get("control") or cfg.get("weight_noise") or cfg.get("init_ulp"):
        return "control"
    if cfg.get("weight_protocol"):
        return "weight"
    return "feature" if cfg.get("protocol", "none") != "none" else None


def arm_rows(results, target, group=_group, baseline=lambda r: r["arm"] == "none", alternative="two-sided"):
    """One row per (group, arm): steps and time to target as ratios to the baseline of the same group, paired by
    seed (stats.paired_ratio: t-intervals, p-values with alternative "two-sided" or "less", TOST verdict,
    detectable effect); censored runs counted; time only between runs of one lockstep; the raw wall-clock ratio
    beside; final accuracy and clean loss with t-intervals; the swap's share of the step (lockstep runs)."""
    rows = []
    groups = sorted({group(r) for r in results}, key=str)
    for gval in groups:
        members = [r for r in results if group(r) == gval]
        base = [r for r in members if baseline(r)]
        arms = list(dict.fromkeys(r["arm"] for r in members))
        for arm in arms:
            runs = [r for r in members if r["arm"] == arm]

            base_by = {r["config"]["seed"]: r for r in base}

            def ratio(hit, i, budget, pairs=lambda r, b: True):
                kept = [r for r in runs if r["config"]["seed"] in base_by and pairs(r, base_by[r["config"]["seed"]])]
                a = {r["config"]["seed"]: (hit(r, target) or (None, None))[i] for r in kept}
                b = {s: (hit(base_by[s], target) or (None, None))[i] for s in a}
                return stats.paired_ratio(a, b, budget, budget, alternative=alternative)

            budget_steps = max(r["steps"] for r in runs)
            steps_ratio = ratio(time_to_target, 0, budget_steps)
            # a censored run's time counts at its own budget (its steps at its own step time), never at another
            # seed's: the seeds of a study run at different hours, under different loads
            own = lambda f: {r["config"]["seed"]: f(r) for r in runs}  # noqa: E731
            time_ratio = ratio(time_to_target, 1, own(lambda r: r["steps"] * step_time(r)), lockstepped)
            wall_ratio = ratio(wall_to_target, 1, own(lambda r: r["train_seconds"]))
            shares = [
                swap_share(r, base_by[r["config"]["seed"]]) for r in runs if r["config"]["seed"] in base_by
            ]
            shares = [x for x in shares if x is not None]
            acc, acc_ci = stats.mean_ci([r["final_acc"] for r in runs])
            clean, clean_ci = stats.mean_ci([r["final_clean_loss"] for r in runs])
            base_acc = {r["config"]["seed"]: r["final_acc"] for r in base}
            dacc, dacc_ci = stats.mean_ci(
                [r["final_acc"] - base_acc[r["config"]["seed"]] for r in runs if r["config"]["seed"] in base_acc]
            )
            reached = [time_to_target(r, target) for r in runs]
            rows.append(
                {
                    "group": gval,
                    "arm": arm,
                    "kind": _kind(runs[0]["config"]),
                    "seeds": len(runs),
                    "target": target,
                    "reached": sum(x is not None for x in reached),
                    "steps_to_target": stats.mean_ci([x[0] for x in reached if x])[0],
                    "seconds_to_target": stats.mean_ci([x[1] for x in reached if x])[0],
                    "steps_ratio": steps_ratio,
                    "time_ratio": time_ratio,
                    "wall_ratio": wall_ratio,
                    "final_acc": acc,
                    "final_acc_ci": acc_ci,
                    "delta_acc": dacc,
                    "delta_acc_by_seed": {
                        r["config"]["seed"]: r["final_acc"] - base_acc[r["config"]["seed"]]
                        for r in runs
                        if r["config"]["seed"] in base_acc
                    },
                    "delta_acc_ci": dacc_ci,
                    "final_clean_loss": clean,
                    "final_clean_loss_ci": clean_ci,
                    "seconds_per_step": sum(step_time(r) for r in runs) / len(runs),
                    "timing": sorted({r.get("timing", "step") for r in runs}),
                    "swap_share": sum(shares) / len(shares) if shares else None,
                    "parts": {
                        k: sum(r["part_seconds_median"][k] for r in runs) / len(runs)
                        for k in PARTS
                        if all("part_seconds_median" in r for r in runs)
                    },
                }
            )
    return rows


def add_holm(rows, family="experiment", keys=("steps_ratio", "time_ratio")):
    """Holm-adjusts, over the rows given (one family of comparisons), the p-values of each ratio in keys: stored
    as ratio["holm"][family]. The baseline's rows are not comparisons and are skipped."""
    comps = [r for r in rows if r["arm"] != "none"]
    for key in keys:
        adjusted = stats.holm([r[key]["p"] for r in comps])
        for r, q in zip(comps, adjusted, strict=True):
            r[key].setdefault("holm", {})[family] = q
    return rows


def add_details(rows, results):
    """Adds to each row (in place) what the study's report shows beside the ratios: extra forward passes per run,
    the injected weight perturbation per step, the Metropolis acceptance, and max_dev: the largest clean-loss
    deviation of a run from its seed's baseline."""
    for row in rows:
        runs = [r for r in results if r["arm"] == row["arm"] and r["group"] == row["group"]]
        row["extra_forward_passes"] = sum(r["extra_forward_passes"] for r in runs) / len(runs)
        pert = [r["perturbation"] for r in runs if r.get("perturbation") is not None]
        row["perturbation"] = sum(pert) / len(pert) if pert else None
        acc = [
            r["weight_stats"]["accepted"] / max(r["weight_stats"]["proposals"], 1)
            for r in runs
            if r.get("weight_stats") and r["config"]["temperature"]
        ]
        row["acceptance"] = sum(acc) / len(acc) if acc else None
        base = {r["config"]["seed"]: r for r in results if r["arm"] == "none" and r["group"] == row["group"]}
        devs = [
            max(
                abs(a - b)
                for a, b in zip(
                    r["curves"]["clean_loss"], base[r["config"]["seed"]]["curves"]["clean_loss"], strict=False
                )
            )
            for r in runs
            if r["config"]["seed"] in base
        ]
        row["max_dev"] = max(devs) if devs else float("nan")
    return rows
