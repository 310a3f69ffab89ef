"""Does swapping speed training up? Trains with and without swaps and reports, per protocol and batch size, steps
and time to a target test accuracy as ratios to the no-swap baseline (paired by seed, 95% paired t-intervals on
the log ratios, censored runs counted), each with its verdict within the declared 10% margin (faster, slower,
equivalent, inconclusive: TOST), the smallest speed-up its seeds could detect, the swap's share of a step, and final
accuracy. The arms of one seed train side by side in one process (step k of every arm before step k+1 of any), so
machine load hits them alike; time to target is the steps to it times the run's median step (its batch's building
with the swap, the model's step, the weight swap, timed apart). A protocol written CODE+sham (or +gauss, +erase,
+rcp) is a control arm: it draws CODE's plan and applies nothing (or a matched perturbation); --quick keeps one.

    python -m bench.train [--data auto|builtin|cifar10|PATH] [--protocols none 1SA ...] [--weight-protocol NAME]
                          [--seeds N] [--epochs N] [--batch-size N [N ...]] [--target-acc F] [--device D]
                          [--out DIR] [--quick]

Writes DIR/summary.{md,csv,json}, DIR/curves.csv, DIR/runs/*.json (every curve; a rerun skips finished runs) and
PNG plots: curves beside the baseline, time-to-target bars, and the weight-swap intensity sweep.
The flags build one experiment of bench.study's machinery (bench/training): arms are the protocols and the weight
sweep, groups the batch sizes.
"""

from __future__ import annotations

import argparse
import os
import time

import torch

from .common.provenance import machine_info
from .training import datasets, experiment, report
from .training.config import CONTROLS, RunConfig
from .training.experiment import Experiment, default_lr
from .training.summary import summarise

DEFAULT_PROTOCOLS = ["none", "1SA", "1PA", "ASA", "ESA", "EPA"]
QUICK_PROTOCOLS = ["none", "1SA", "1SA+sham", "ESA", "EPA"]


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
    protocols = ["none"] + [arm_code(p) for p in protocols if p.lower() != "none"]
    if data.channels == 1:
        skipped = [p for p in protocols if p[1:2] == "S"]
        if skipped:
            print(f"notice: 1-channel data: skipping the channel-swap protocols {' '.join(skipped)}")
        protocols = [p for p in protocols if p[1:2] != "S"]
    seeds = args.seeds or 3
    epochs = args.epochs or (2 if args.quick else (10 if trainer == "gpu" else 4))
    batches = args.batch_size or ([1024] if trainer == "gpu" else [64])
    return device, trainer, data, protocols, seeds, epochs, batches


def arm_code(text: str) -> str:
    """A --protocols entry as an arm: a protocol code ("1sa" -> "1SA"), or CODE+CONTROL ("1SA+sham")."""
    code, _, control = text.partition("+")
    if control and control.lower() not in CONTROLS:
        raise SystemExit(f"--protocols: {text!r}: the control after + must be one of {', '.join(CONTROLS)}")
    return code.upper() + (f"+{control.lower()}" if control else "")


def arm_overrides(arm: str, swaps: int) -> dict:
    """RunConfig overrides of an arm_code: the protocol, its swaps, and the control if any."""
    code, _, control = arm.partition("+")
    return {"protocol": code, "swaps": swaps, **({"control": control} if control else {})}


def experiment_for(args, trainer, protocols, seeds, batches) -> Experiment:
    """The flags as one experiment: arms are the feature protocols (the baseline first) and, with
    --weight-protocol, the weight-swap sweep (each intensity without and with the optimizer state, then one
    Metropolis arm); groups are the batch sizes, each with its learning rate (--lr, else the trainer's rule)."""
    overrides = [arm_overrides(p, args.swaps) for p in protocols]
    if args.weight_protocol:
        w = args.weight_protocol
        overrides += [
            {"weight_protocol": w, "weight_swaps": k, "weight_state": state}
            for k in args.intensities
            for state in (False, True)
        ]
        overrides.append({"weight_protocol": w, "weight_swaps": args.intensities[0], "temperature": args.temperature})
    return Experiment(
        "train",
        "Does swapping speed training up?",
        [(RunConfig(**over).arm(), over) for over in overrides],  # the arm's name is its config's
        seeds,
        base={"label_smoothing": 0.2 if trainer == "gpu" else 0.0},
        groups=[(bs, {"batch_size": bs, "lr": args.lr or default_lr(trainer, bs)}) for bs in batches],
        target=args.target_acc,
    )


def main(argv=None):
    args = build_parser().parse_args(argv)
    device, trainer, data, protocols, seeds, epochs, batches = settings(args)
    out = args.out or os.path.join("bench", "results", time.strftime("%Y%m%d-%H%M%S"))
    os.makedirs(out, exist_ok=True)
    print(
        f"data {data.name}{' (' + data.source + ')' if data.source else ''}: {len(data.train_y)} train / "
        f"{len(data.test_y)} test images, {data.classes} classes; "
        f"trainer {trainer} on {device}; {seeds} seeds x {epochs:g} epochs; batch {batches}; out {out}"
    )
    exp = experiment_for(args, trainer, protocols, seeds, batches)
    machine = machine_info()  # before the runs: the commit the runs are made with
    defaults = dict(trainer=trainer, device=device, epochs=epochs)
    results = experiment.run(exp, data, defaults, out, progress=not args.no_progress)
    summary = summarise(exp, results, one_target=True)  # one target for every batch size: the worst baseline's
    meta = {
        "machine": machine,
        "argv": vars(args),
        "data": data.name,
        "source": data.source,
        "trainer": trainer,
        "device": device,
        "seeds": seeds,
        "epochs": epochs,
        "batch_sizes": batches,
        "protocols": protocols,
    }
    report.write(exp, results, summary, out, layout=report.SUMMARY, meta=meta)
    print(f"\ntarget test accuracy {100 * summary.target:.1f}%  (ratios < 1: faster than the baseline)\n")
    print(report.legend() + "\n")
    print(report.table(summary.rows))
    print(f"\nwrote {out}/summary.md, summary.csv, curves.csv, runs/, *.png")
    return summary.rows


if __name__ == "__main__":
    main()
