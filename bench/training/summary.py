"""Summarising an experiment's runs against its baseline: the target, then per (group, arm) steps and time to it as
ratios to the baseline, paired by seed, with bootstrap intervals (censored runs counted), final accuracy and clean
loss with t-intervals; and the study's per-arm details (extra forwards, injected perturbation, acceptance)."""

from __future__ import annotations

from typing import NamedTuple

from ..common import stats


class Summary(NamedTuple):
    rows: list  # one per (group, arm)
    target: float | None  # the accuracy target every group shares (bench.train), else None
    desc: str  # the target in words


def time_to_target(result: dict, target: float):
    """(steps, seconds) at which test accuracy first reaches target, interpolated linearly between the two
    evaluations around the crossing; None if it never does (a censored run)."""
    c = result["curves"]
    prev = None
    for s, t, a in zip(c["step"], c["time_s"], c["test_acc"], strict=True):
        if a >= target:
            if prev is None or prev[2] >= a:
                return float(s), float(t)
            f = (target - prev[2]) / (a - prev[2])
            return prev[0] + f * (s - prev[0]), prev[1] + f * (t - prev[1])
        prev = (s, t, a)
    return None


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
    """The Summary of an experiment's labelled results (bench.training.experiment.run): rows per (group, arm).

    metric "accuracy": time to a test accuracy, exp.target if given, else auto_target of the baseline: one per
    group (the study), or with one_target one for every group from all the baselines (bench.train), the rows then
    in the order of the groups as text. metric "clean_loss": time to a clean training loss of 1.05 x the highest
    baseline minimum, expressed through the accuracy machinery (a curve that steps from 0 to 1 at the crossing)."""
    if exp.metric == "clean_loss":
        threshold = _clean_target(results)
        for r in results:  # express the metric through the accuracy machinery: a curve that crosses at the threshold
            hit = _steps_to_loss(r, threshold)
            r["curves"] = dict(r["curves"], test_acc=[0.0] * len(r["curves"]["step"]))
            if hit:
                i = r["curves"]["step"].index(hit[0])
                r["curves"]["test_acc"] = [0.0] * i + [1.0] * (len(r["curves"]["step"]) - i)
        return Summary(arm_rows(results, 1.0), None, f"clean training loss <= {threshold:.3f}")
    if one_target:
        base = [r for r in results if r["arm"] == "none"]
        target = exp.target if exp.target is not None else auto_target(base)
        return Summary(arm_rows(results, target), target, f"test accuracy >= {100 * target:.1f}%")
    rows, descs = [], []
    for g in dict.fromkeys(r["group"] for r in results):  # each group (batch size, regime) its own target
        in_g = [r for r in results if r["group"] == g]
        target = exp.target if exp.target is not None else auto_target([r for r in in_g if r["arm"] == "none"])
        rows += arm_rows(in_g, target)
        descs.append(f"{100 * target:.1f}%" + (f" ({g})" if g != "all" else ""))
    return Summary(rows, None, "test accuracy >= " + ", ".join(descs))


def arm_rows(results, target, group=_group, baseline=lambda r: r["arm"] == "none"):
    """One row per (group, arm): time and steps to target as ratios to the baseline of the same group, paired by
    seed, with bootstrap 95% intervals; censored runs counted; final accuracy and clean loss with t-intervals."""
    rows = []
    groups = sorted({group(r) for r in results}, key=str)
    for gval in groups:
        members = [r for r in results if group(r) == gval]
        base = [r for r in members if baseline(r)]
        arms = list(dict.fromkeys(r["arm"] for r in members))
        for arm in arms:
            runs = [r for r in members if r["arm"] == arm]
            by_seed = lambda rs, i: {r["config"]["seed"]: (time_to_target(r, target) or (None, None))[i] for r in rs}  # noqa: E731
            budget_steps = max(r["steps"] for r in runs)
            budget_time = max(r["train_seconds"] for r in runs)
            steps_ratio = stats.paired_ratio(by_seed(runs, 0), by_seed(base, 0), budget_steps, budget_steps)
            time_ratio = stats.paired_ratio(by_seed(runs, 1), by_seed(base, 1), budget_time, budget_time)
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
                    "seeds": len(runs),
                    "target": target,
                    "reached": sum(x is not None for x in reached),
                    "steps_to_target": stats.mean_ci([x[0] for x in reached if x])[0],
                    "seconds_to_target": stats.mean_ci([x[1] for x in reached if x])[0],
                    "steps_ratio": steps_ratio,
                    "time_ratio": time_ratio,
                    "final_acc": acc,
                    "final_acc_ci": acc_ci,
                    "delta_acc": dacc,
                    "delta_acc_ci": dacc_ci,
                    "final_clean_loss": clean,
                    "final_clean_loss_ci": clean_ci,
                    "seconds_per_step": sum(r["train_seconds"] / max(r["steps"], 1) for r in runs) / len(runs),
                }
            )
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
