"""The experiment suite on the poster's two claims: feature swaps speed training up (up to 2x); weight swaps slow
learning in step with their intensity.

    python -m bench.study --scale {quick,cpu,gpu} [--data ...] [--only NAME ...] --out DIR

Each experiment is a declarative spec (arms, seeds, data, budget, metric) in bench/training/suite.py. Every
(experiment, arm, seed) run is saved as it finishes under DIR/<experiment>/runs/; a rerun skips finished runs.
DIR/REPORT.md has a table and a one-line verdict per experiment, beside plots and the raw per-run JSON.
Scales: quick (built-in data, minutes), cpu (CIFAR-10 subsets on the CPU trainer, about two hours on 2 cores),
gpu (the speed-run trainer on full CIFAR-10).
"""

from __future__ import annotations

import argparse
import os
import time

import torch

from .common.provenance import machine_info
from .training import datasets, experiment, report
from .training.suite import SCALES, experiments
from .training.summary import add_details, summarise
from .training.verdicts import verdict

__all__ = ["SCALES", "experiments", "main"]


def section(exp, sc, data, device, out):
    """Runs one experiment (resumably, under out/<name>/runs), summarises it, writes its figures and JSON, prints its
    verdict; returns its REPORT.md section: (exp, rows, target in words, figure paths, provenance)."""
    t0 = time.time()

    def each(group, label, cfg, res, seconds):
        if seconds > 0.5:  # trained now, not loaded
            print(
                f"  {exp.name} | {group} | {label} | seed {cfg.seed}: final acc {100 * res['final_acc']:.1f}%, "
                f"{res['train_seconds']:.1f} s",
                flush=True,
            )

    quiet = lambda *_: None
    results = experiment.run(exp, data, sc.defaults(device), os.path.join(out, exp.name), log=quiet, each=each)
    summary = summarise(exp, results)
    rows = add_details(summary.rows, results)
    paths = report.write(exp, results, summary, out)
    print(f"[{exp.name}] {len(results)} runs, {time.time() - t0:.0f} s: {verdict(exp, rows)}")
    return exp, rows, summary.desc, paths, report.provenance(results)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--scale", choices=list(SCALES), default="quick")
    ap.add_argument("--data", default=None)
    ap.add_argument("--only", nargs="+", default=None, metavar="NAME")
    ap.add_argument("--out", required=True)
    ap.add_argument("--device", default=None)
    ap.add_argument("--note", default="", help="a paragraph for the report's head (how the runs were made)")
    args = ap.parse_args(argv)
    sc = SCALES[args.scale]
    device = args.device or ("cuda" if sc.trainer == "gpu" and torch.cuda.is_available() else "cpu")
    data = datasets.load(args.data or sc.data)
    if sc.train or sc.test:
        data = data.subset(sc.train, sc.test)
    exps = experiments(sc, args.scale == "quick")
    if args.only:
        unknown = set(args.only) - {e.name for e in exps}
        if unknown:
            raise SystemExit(f"--only: unknown experiments {sorted(unknown)}; known: {[e.name for e in exps]}")
        exps = [e for e in exps if e.name in args.only]
    if data.channels == 1:
        for e in exps:
            skipped = [label for label, over in e.arms if over.get("protocol", "none")[1:2] == "S"]
            if skipped:
                e.skipped = f"1-channel data: the channel-swap arms {', '.join(skipped)} were skipped"
                print(f"notice: {e.name}: {e.skipped}")
            e.arms = [(label, over) for label, over in e.arms if over.get("protocol", "none")[1:2] != "S"]
    os.makedirs(args.out, exist_ok=True)
    started, sections, machine = time.time(), [], machine_info()
    for exp in exps:
        sections.append(section(exp, sc, data, device, args.out))
        report.report(args.out, sc, data, sections, started, machine, args.note)
    print(f"wrote {os.path.join(args.out, 'REPORT.md')}")
    return sections


if __name__ == "__main__":
    main()
