"""Running many training runs resumably and summarising them against the baseline."""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import random

from . import stats
from .trainer import RunConfig, time_to_target, train

# RunConfig fields added after results were committed, with their defaults: left out of the key while at the
# default, so every run saved before a field existed keeps its key and is found, not retrained.
_KEY_ADDED_LATER = {"init_ulp": False}


def run_key(cfg: RunConfig, data_name: str) -> str:
    fields = dataclasses.asdict(cfg)
    for name, default in _KEY_ADDED_LATER.items():
        if fields[name] == default:
            del fields[name]
    blob = json.dumps({"cfg": fields, "data": data_name}, sort_keys=True)
    safe = cfg.arm().replace(":", "-").replace("+", "_").replace("@", "at").replace("(", "").replace(")", "")
    return f"{safe}-bs{cfg.batch_size}-seed{cfg.seed}-{hashlib.sha1(blob.encode()).hexdigest()[:8]}"


def run_order(blocks, seeds):
    """The order to run configs in: block by block (e.g. one batch size), seed by seed, and inside one seed every
    arm in a shuffled order (fixed by the seed). Runs of one arm made one after another would turn a drift of the
    shared machine's load (or the first run's warm-up) into a bias of that arm's wall-clock; interleaved, it
    becomes noise that the seed-paired intervals carry."""
    firsts = {}
    for b in blocks:
        firsts.setdefault(b, len(firsts))
    buckets = {}
    for i, (b, s) in enumerate(zip(blocks, seeds, strict=True)):
        buckets.setdefault((firsts[b], s), []).append(i)
    order = []
    for (bi, s), idx in sorted(buckets.items()):
        random.Random(1_000_003 * bi + s).shuffle(idx)
        order += idx
    return order


def run_all(data, configs, out_dir, *, progress=True, log=print):
    """Runs every config not already saved under out_dir/runs (each saved as it finishes: an interrupted run
    loses at most the run in progress), in run_order (by batch size and seed). Returns the results in config
    order."""
    runs_dir = os.path.join(out_dir, "runs")
    os.makedirs(runs_dir, exist_ok=True)
    todo = [c for c in configs if not os.path.exists(os.path.join(runs_dir, run_key(c, data.name) + ".json"))]
    if len(todo) < len(configs):
        log(f"resuming: {len(configs) - len(todo)} of {len(configs)} runs already done")
    bar = None
    if progress and todo:
        from tqdm import tqdm

        total = sum(int(round(c.epochs * (len(data.train_y) // c.batch_size))) for c in todo)
        bar = tqdm(total=total, unit="step", desc=f"{len(todo)} runs", mininterval=2.0)
    results = [None] * len(configs)
    for i in run_order([c.batch_size for c in configs], [c.seed for c in configs]):
        cfg = configs[i]
        path = os.path.join(runs_dir, run_key(cfg, data.name) + ".json")
        if os.path.exists(path):
            with open(path) as f:
                results[i] = json.load(f)
            continue
        if bar is not None:
            bar.set_postfix_str(f"{cfg.arm()} bs{cfg.batch_size} seed{cfg.seed}")
        res = train(data, cfg, progress=bar)
        with open(path + ".tmp", "w") as f:
            json.dump(res, f)
        os.replace(path + ".tmp", path)
        results[i] = res
    if bar is not None:
        bar.close()
    return results


def auto_target(baselines, margin=0.98):
    """A target every baseline run reaches: margin x the lowest best accuracy among them."""
    return round(margin * min(r["best_acc"] for r in baselines), 4)


def summarise(results, target, group=lambda r: r["config"]["batch_size"], baseline=lambda r: r["arm"] == "none"):
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


def table(rows, group_name="batch") -> str:
    head = (
        f"| {group_name} | arm | seeds | reached | steps to target | steps ratio [95% CI] | time ratio [95% CI] "
        f"| final acc | vs baseline (pts) | clean loss | s/step |"
    )
    lines = [head, "|" + "|".join(["---"] * 11) + "|"]
    for r in rows:
        steps = f"{r['steps_to_target']:.0f}" if r["reached"] else "-"
        lines.append(
            f"| {r['group']} | {r['arm']} | {r['seeds']} | {r['reached']}/{r['seeds']} | {steps} "
            f"| {stats.fmt_ratio(r['steps_ratio'])} | {stats.fmt_ratio(r['time_ratio'])} "
            f"| {100 * r['final_acc']:.1f} ± {100 * r['final_acc_ci']:.1f} "
            f"| {100 * r['delta_acc']:+.1f} ± {100 * r['delta_acc_ci']:.1f} "
            f"| {r['final_clean_loss']:.3f} | {r['seconds_per_step'] * 1e3:.1f} ms |"
        )
    return "\n".join(lines)
