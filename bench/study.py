"""The experiment suite on the poster's two claims: feature swaps speed training up (up to 2x); weight swaps slow
learning in step with their intensity.

    python -m bench.study --scale {quick,cpu,gpu,gpu-short} [--data ...] [--only NAME ...] --out DIR [--dry-run]

Each experiment is a declarative spec (arms, seeds, data, budget, metric) in bench/training/suite.py. Every
(experiment, arm, seed) run is saved as it finishes under DIR/<experiment>/runs/; a rerun skips finished runs.
DIR/REPORT.md has a table and a one-line verdict per experiment, beside plots and the raw per-run JSON.
Scales: quick (built-in data, minutes), cpu (subsets of the image tree given, e.g. the JPEG re-encoding of CIFAR-10,
on the CPU trainer, about three hours on 2 cores), poster (the poster's regime decisively, on the whole tree: a
saved learning-rate grid, its choice written to poster-lr-grid/choice.json, then 10 seeds of none and 1SA),
gpu (the speed-run trainer on full CIFAR-10), gpu-short (the replication on the speed-run trainer, seeds added
round by round while they fit in 5 minutes; the report rewritten after every run, so a cut loses only the run in
flight). --dry-run: gpu-short's code on the CPU in seconds (tiny data, a narrow net).
Each verdict counts its comparisons: raw intervals, the number chance alone predicts, and Holm-adjusted decisions
per experiment and per claim; the confirmatory experiment (`confirm`) declares its test before it runs.
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import time

import torch

from .common.provenance import machine_info
from .training import datasets, experiment, report
from .training.suite import DRY_RUN, SCALES, choice_path, choose_lr, experiments, poster_experiments, saved_choice
from .training.summary import add_details, summarise
from .training.verdicts import verdict

__all__ = ["SCALES", "experiments", "main"]


def section(exp, sc, data, device, out, rewrite=None):
    """Runs one experiment (resumably, under out/<name>/runs), summarises it, writes its figures and JSON, prints its
    verdict; returns its REPORT.md section: (exp, rows, target in words, figure paths, provenance), or None for a
    rate grid without a baseline arm (poster-lr-grid: its runs are saved, the choice is made from them).

    With a deadline (sc.minutes), the experiment grows one seed (a round of every arm) at a time while another
    round is predicted to fit, up to sc.max_seeds. rewrite(section), if given, is called after each run trained
    (without figures: they come at the end), so the report on disk holds every finished run."""
    t0 = time.time()
    done = {}

    def each(group, label, cfg, res, seconds, trained):
        done[(group, label, cfg.seed)] = res
        if trained:
            print(
                f"  {exp.name} | {group} | {label} | seed {cfg.seed}: final acc {100 * res['final_acc']:.1f}%, "
                f"{res['train_seconds']:.1f} s",
                flush=True,
            )
            finished = _finished(done)
            if rewrite is not None and finished:
                rewrite(_summarised(exp, finished, out, t0, figures=False))

    quiet = lambda *_: None
    run = lambda e: experiment.run(e, data, sc.defaults(device), os.path.join(out, exp.name), log=quiet, each=each)
    if not sc.minutes:
        results = run(exp)
    else:
        deadline, seeds, results = t0 + 60 * sc.minutes, 1, []
        while True:
            r0 = time.time()
            results = run(dataclasses.replace(exp, seeds=seeds))
            round_s = time.time() - r0
            if seeds >= sc.max_seeds or time.time() + round_s > deadline:
                break
            seeds += 1
        exp.seeds = seeds
        if seeds < sc.seeds:
            exp.skipped = f"the {sc.minutes:g}-minute deadline left room for {seeds} of the {sc.seeds} seeds planned"
    if not any(label == "none" for label, _ in exp.arms):  # a rate grid (poster-lr-grid): no comparison to make
        print(f"[{exp.name}] {len(results)} runs, {time.time() - t0:.0f} s: saved (a grid, not a comparison)")
        return None
    sec = _summarised(exp, results, out, t0)
    print(f"[{exp.name}] {len(results)} runs, {time.time() - t0:.0f} s: {verdict(exp, sec[1])}")
    return sec


def _finished(done):
    """The runs finished so far, if every group that has one has its baseline too (else nothing to compare yet)."""
    groups = {g for g, _, _ in done}
    based = {g for g, label, _ in done if label == "none"}
    return list(done.values()) if groups <= based else []


def _summarised(exp, results, out, t0, figures=True):
    summary = summarise(exp, results)
    rows = add_details(summary.rows, results)
    paths = report.write(exp, results, summary, out, figures=figures)
    return exp, rows, summary.desc, paths, report.provenance(results)


def declare_choice(out, sc):
    """The decisive experiment's rates, chosen by suite.choose_lr from the saved grid's runs and written with the
    rule to out/poster-lr-grid/choice.json before any comparison run (kept if already written, so a resumed study
    keeps the choice it declared); None while the grid is unfinished."""
    import glob
    import json

    saved = saved_choice(out)
    if saved is not None:
        return saved
    grid = poster_experiments(sc, None)[0]
    want = sum(len(g[2]) for g in grid.groups) * grid.seeds
    runs = [json.load(open(p)) for p in glob.glob(os.path.join(out, "poster-lr-grid", "runs", "*.json"))]
    runs = [r for r in runs if r["config"]["seed"] in grid.seed_list()]
    if len(runs) < want:
        return None
    chosen = choose_lr(runs)
    with open(choice_path(out), "w") as f:
        declared = {"rule": choose_lr.__doc__, "chosen": chosen, "grid_runs": len(runs), "at": time.ctime()}
        json.dump(declared, f, indent=1)
    return chosen


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--scale", choices=list(SCALES), default="quick")
    ap.add_argument("--data", default=None)
    ap.add_argument("--only", nargs="+", default=None, metavar="NAME")
    ap.add_argument("--out", required=True)
    ap.add_argument("--device", default=None)
    ap.add_argument("--minutes", type=float, default=None, help="the deadline of a gpu-short study (default 5)")
    ap.add_argument("--dry-run", action="store_true", help="gpu-short's code on the CPU in seconds (tiny data, net)")
    ap.add_argument("--note", default="", help="a paragraph for the report's head (how the runs were made)")
    args = ap.parse_args(argv)
    sc = DRY_RUN if args.dry_run else SCALES[args.scale]
    if args.minutes is not None:
        if not sc.minutes:
            raise SystemExit("--minutes: only a scale with a deadline (gpu-short) takes one")
        sc = dataclasses.replace(sc, minutes=args.minutes)
    if args.dry_run:
        device = "cpu"
    else:
        device = args.device or ("cuda" if sc.trainer == "gpu" and torch.cuda.is_available() else "cpu")
    data = datasets.load(args.data or sc.data)
    if sc.train or sc.test:
        data = data.subset(sc.train, sc.test)
    exps = experiments(sc, args.scale == "quick") if sc.name != "poster" else poster_experiments(sc, {})
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
    write = lambda secs: report.report(args.out, sc, data, secs, started, machine, args.note)  # noqa: E731
    for exp in exps:
        if exp.name == "poster-decisive":  # its rate: chosen from the saved grid by the declared rule, first
            chosen = declare_choice(args.out, sc)
            if chosen is None:
                print("poster-decisive: not run, the grid poster-lr-grid is unfinished (run it first)")
                continue
            exp = next(e for e in poster_experiments(sc, chosen) if e.name == exp.name)
        rewrite = (lambda sec: write([*sections, sec])) if sc.minutes else None  # as it goes, under a deadline
        sec = section(exp, sc, data, device, args.out, rewrite=rewrite)
        if sec is not None:
            sections.append(sec)
            write(sections)
    print(f"wrote {os.path.join(args.out, 'REPORT.md')}")
    return sections


if __name__ == "__main__":
    main()
