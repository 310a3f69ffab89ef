"""Running many training runs resumably: each run saved under its key as it finishes, found again by that key, in
an order that interleaves the arms."""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import random
import time

from .config import RunConfig
from .trainer import train_lockstep

# RunConfig fields added after results were committed, with their defaults: left out of the key while at the
# default, so every run saved before a field existed keeps its key and is found, not retrained.
_KEY_ADDED_LATER = {"init_ulp": False, "flip": True, "optimizer": "sgd-nesterov", "schedule": "warmup-linear"}


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


def run_all(data, configs, out_dir, *, blocks=None, progress=True, log=print, each=None):
    """Runs every config not already saved under out_dir/runs (each saved as it finishes: an interrupted run
    loses at most the runs in progress), in run_order by block (default: the batch size) and seed, the unsaved
    runs of one block and seed side by side in lockstep (trainer.train_lockstep). Returns the results in config
    order.

    data: the Data, or a function config -> Data (a run on a subset). each(i, result, seconds, trained): called
    after config i is loaded (trained False) or trained, with the seconds that took."""
    data_for = data if callable(data) else (lambda cfg: data)
    runs_dir = os.path.join(out_dir, "runs")
    os.makedirs(runs_dir, exist_ok=True)
    paths = [os.path.join(runs_dir, run_key(c, data_for(c).name) + ".json") for c in configs]
    todo = [c for c, path in zip(configs, paths, strict=True) if not os.path.exists(path)]
    if len(todo) < len(configs):
        log(f"resuming: {len(configs) - len(todo)} of {len(configs)} runs already done")
    bar = None
    if progress and todo:
        from tqdm import tqdm

        total = sum(int(round(c.epochs * (len(data_for(c).train_y) // c.batch_size))) for c in todo)
        bar = tqdm(total=total, unit="step", desc=f"{len(todo)} runs", mininterval=2.0)
    results = [None] * len(configs)
    blocks = blocks if blocks is not None else [c.batch_size for c in configs]
    order = run_order(blocks, [c.seed for c in configs])
    # the runs of one block and seed (the arms that share a baseline) train in lockstep, in one process
    cohorts = {}
    for i in order:
        cohorts.setdefault((blocks[i], configs[i].seed), []).append(i)
    for idx in cohorts.values():
        for i in idx:
            if os.path.exists(paths[i]):
                with open(paths[i]) as f:
                    results[i] = json.load(f)
                if each is not None:
                    each(i, results[i], 0.0, False)
        todo_idx = [i for i in idx if results[i] is None]
        if not todo_idx:
            continue
        if bar is not None:
            c0 = configs[todo_idx[0]]
            bar.set_postfix_str(f"{len(todo_idx)} arms in lockstep, bs{c0.batch_size} seed{c0.seed}")
        t0 = time.time()

        def finished(j, res, todo_idx=todo_idx, t0=t0):
            i = todo_idx[j]
            with open(paths[i] + ".tmp", "w") as f:
                json.dump(res, f)
            os.replace(paths[i] + ".tmp", paths[i])
            results[i] = res
            if each is not None:
                each(i, res, time.time() - t0, True)

        train_lockstep(lambda c: data_for(c), [configs[i] for i in todo_idx], progress=bar, each=finished)
    if bar is not None:
        bar.close()
    return results
