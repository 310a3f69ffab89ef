"""Does swapping speed training up? Trains with and without swaps and reports, per protocol and batch size, steps
and wall-clock to a target test accuracy as ratios to the no-swap baseline (paired by seed, bootstrap 95%
intervals, censored runs counted), and final accuracy.

    python -m bench.train [--data auto|builtin|cifar10|PATH] [--protocols none 1SA ...] [--weight-protocol NAME]
                          [--seeds N] [--epochs N] [--batch-size N [N ...]] [--target-acc F] [--device D]
                          [--out DIR] [--quick]

Writes DIR/summary.{md,csv,json}, DIR/curves.csv, DIR/runs/*.json (every curve; a rerun skips finished runs) and
PNG plots: curves beside the baseline, time-to-target bars, and the weight-swap intensity sweep.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import time

import torch

from . import datasets, plots, runner
from .timing import machine_info
from .trainer import RunConfig

DEFAULT_PROTOCOLS = ["none", "1SA", "1PA", "ASA", "ESA", "EPA"]
QUICK_PROTOCOLS = ["none", "1SA", "ESA", "EPA"]


def build_parser():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", default=None, help="auto (default), builtin, builtin-gray, cifar10, or an image tree")
    ap.add_argument(
        "--protocols",
        nargs="+",
        default=None,
        metavar="CODE",
        help=f"feature protocols; none (the baseline) always runs (default: {' '.join(DEFAULT_PROTOCOLS)})",
    )
    ap.add_argument("--weight-protocol", default=None, metavar="NAME", help="also sweep this weight-swap protocol")
    ap.add_argument("--intensities", nargs="+", type=int, default=[1, 4, 16, 64], help="weight swaps per step")
    ap.add_argument("--temperature", type=float, default=0.05, help="T of the Metropolis weight-swap arm")
    ap.add_argument("--seeds", type=int, default=None)
    ap.add_argument("--epochs", type=float, default=None)
    ap.add_argument("--batch-size", nargs="+", type=int, default=None)
    ap.add_argument("--target-acc", type=float, default=None, help="default: 98%% of the worst baseline's best")
    ap.add_argument("--device", default="auto")
    ap.add_argument("--trainer", choices=["cpu", "gpu"], default=None, help="default: gpu on cuda, else cpu")
    ap.add_argument("--subset", type=int, default=None, help="training images (default: 10000 on the CPU)")
    ap.add_argument("--test-subset", type=int, default=None)
    ap.add_argument("--swaps", type=int, default=1, help="feature swaps per drawn image and step")
    ap.add_argument("--lr", type=float, default=None)
    ap.add_argument("--out", default=None, help="default bench/results/<timestamp>")
    ap.add_argument("--quick", action="store_true", help="a small run that finishes in minutes on a 2-core CPU")
    ap.add_argument("--no-progress", action="store_true")
    return ap


def settings(args):
    """Fills the defaults that depend on --quick, the trainer and the data."""
    device = ("cuda" if torch.cuda.is_available() else "cpu") if args.device == "auto" else args.device
    trainer = args.trainer or ("gpu" if device.startswith("cuda") else "cpu")
    data_spec = args.data or ("builtin" if args.quick else "auto")
    data = datasets.load(data_spec)
    if args.subset or args.test_subset or (trainer == "cpu" and len(data.train_y) > 20000 and not args.quick):
        data = data.subset(args.subset or 10000, args.test_subset or (2000 if trainer == "cpu" else None))
    protocols = args.protocols or (QUICK_PROTOCOLS if args.quick else DEFAULT_PROTOCOLS)
    protocols = ["none"] + [p.upper() for p in protocols if p.lower() != "none"]
    if data.channels == 1:
        skipped = [p for p in protocols if p[1:2] == "S"]
        if skipped:
            print(f"notice: 1-channel data: skipping the channel-swap protocols {' '.join(skipped)}")
        protocols = [p for p in protocols if p[1:2] != "S"]
    seeds = args.seeds or (2 if args.quick else 3)
    epochs = args.epochs or (2 if args.quick else (10 if trainer == "gpu" else 4))
    batches = args.batch_size or ([1024] if trainer == "gpu" else [64])
    return device, trainer, data, protocols, seeds, epochs, batches


def configs_for(args, device, trainer, protocols, seeds, epochs, batches):
    out = []
    for bs in batches:
        lr = args.lr or (0.4 if trainer == "gpu" else 0.05 * (bs / 64) ** 0.5)
        common = dict(
            trainer=trainer,
            device=device,
            batch_size=bs,
            epochs=epochs,
            lr=lr,
            label_smoothing=0.2 if trainer == "gpu" else 0.0,
        )
        for proto in protocols:
            for seed in range(seeds):
                out.append(RunConfig(protocol=proto, swaps=args.swaps, seed=seed, **common))
        if args.weight_protocol:
            for k in args.intensities:
                for state in (False, True):
                    for seed in range(seeds):
                        out.append(
                            RunConfig(
                                weight_protocol=args.weight_protocol,
                                weight_swaps=k,
                                weight_state=state,
                                seed=seed,
                                **common,
                            )
                        )
            for seed in range(seeds):
                out.append(
                    RunConfig(
                        weight_protocol=args.weight_protocol,
                        weight_swaps=args.intensities[0],
                        temperature=args.temperature,
                        seed=seed,
                        **common,
                    )
                )
    return out


def write_outputs(out, results, rows, target, meta):
    with open(os.path.join(out, "summary.json"), "w") as f:
        json.dump({"meta": meta, "target": target, "rows": rows}, f, indent=1)
    with open(os.path.join(out, "summary.csv"), "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(
            [
                "batch",
                "arm",
                "seeds",
                "reached",
                "steps_to_target",
                "steps_ratio",
                "steps_lo",
                "steps_hi",
                "time_ratio",
                "time_lo",
                "time_hi",
                "censored",
                "final_acc",
                "final_acc_ci",
                "clean_loss",
            ]
        )
        for r in rows:
            s, t = r["steps_ratio"], r["time_ratio"]
            w.writerow(
                [
                    r["group"],
                    r["arm"],
                    r["seeds"],
                    r["reached"],
                    r["steps_to_target"],
                    s["ratio"],
                    s["lo"],
                    s["hi"],
                    t["ratio"],
                    t["lo"],
                    t["hi"],
                    t["censored_arm"],
                    r["final_acc"],
                    r["final_acc_ci"],
                    r["final_clean_loss"],
                ]
            )
    with open(os.path.join(out, "curves.csv"), "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["batch", "arm", "seed", "step", "epoch", "time_s", "train_loss", "clean_loss", "test_acc"])
        for res in results:
            c = res["curves"]
            for i in range(len(c["step"])):
                w.writerow(
                    [
                        res["config"]["batch_size"],
                        res["arm"],
                        res["config"]["seed"],
                        c["step"][i],
                        c["epoch"][i],
                        c["time_s"][i],
                        c["train_loss"][i],
                        c["clean_loss"][i],
                        c["test_acc"][i],
                    ]
                )


def make_plots(out, results, rows, args):
    for bs in sorted({r["config"]["batch_size"] for r in results}):
        members = [r for r in results if r["config"]["batch_size"] == bs and not r["config"]["weight_protocol"]]
        by_arm = {}
        for r in members:
            by_arm.setdefault(r["arm"], []).append(r)
        plots.curves(
            by_arm, os.path.join(out, f"curves_bs{bs}.png"), f"feature swaps, batch {bs}, {members[0]['data']}"
        )
        plots.ratio_bars(
            [r for r in rows if r["group"] == bs and r["arm"] != "none"],
            os.path.join(out, f"time_to_target_bs{bs}.png"),
            f"batch {bs}",
        )
        if args.weight_protocol:
            series = {}
            for r in rows:
                if r["group"] != bs or not r["arm"].startswith("none+w:"):
                    continue
                cfg = next(x["config"] for x in results if x["arm"] == r["arm"])
                name = ("metropolis" if cfg["temperature"] else "") + (" state" if cfg["weight_state"] else " no state")
                sr = r["steps_ratio"]
                if sr["pairs"]:
                    series.setdefault(name.strip(), []).append((cfg["weight_swaps"], sr["ratio"], sr["lo"], sr["hi"]))
            if series:
                plots.sweep(
                    series,
                    os.path.join(out, f"weight_sweep_bs{bs}.png"),
                    f"{args.weight_protocol} swaps: slowdown against intensity (batch {bs})",
                )


def main(argv=None):
    args = build_parser().parse_args(argv)
    device, trainer, data, protocols, seeds, epochs, batches = settings(args)
    out = args.out or os.path.join("bench", "results", time.strftime("%Y%m%d-%H%M%S"))
    os.makedirs(out, exist_ok=True)
    print(
        f"data {data.name}: {len(data.train_y)} train / {len(data.test_y)} test images, {data.classes} classes; "
        f"trainer {trainer} on {device}; {seeds} seeds x {epochs:g} epochs; batch {batches}; out {out}"
    )
    configs = configs_for(args, device, trainer, protocols, seeds, epochs, batches)
    machine = machine_info()  # before the runs: the commit the runs are made with
    results = runner.run_all(data, configs, out, progress=not args.no_progress)
    baselines = [r for r in results if r["arm"] == "none"]
    target = args.target_acc if args.target_acc is not None else runner.auto_target(baselines)
    rows = runner.summarise(results, target)
    meta = {
        "machine": machine,
        "argv": vars(args),
        "data": data.name,
        "trainer": trainer,
        "device": device,
        "seeds": seeds,
        "epochs": epochs,
        "batch_sizes": batches,
        "protocols": protocols,
    }
    write_outputs(out, results, rows, target, meta)
    make_plots(out, results, rows, args)
    md = runner.table(rows)
    with open(os.path.join(out, "summary.md"), "w") as f:
        f.write(
            f"target test accuracy {100 * target:.1f}% ({'given' if args.target_acc else 'auto'}); "
            f"data {data.name}; trainer {trainer}; {seeds} seeds\n\n{md}\n"
        )
    print(f"\ntarget test accuracy {100 * target:.1f}%  (ratios < 1: faster than the baseline)\n")
    print(md)
    print(f"\nwrote {out}/summary.md, summary.csv, curves.csv, runs/, *.png")
    return rows


if __name__ == "__main__":
    main()
