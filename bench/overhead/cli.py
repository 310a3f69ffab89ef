"""Swap overhead: every op and protocol, every backend here, against the reference and the device's copy
bandwidth measured in the same run.

    python -m bench.overhead [--device cpu|cuda|all] [--quick] [--out FILE.json] [--only SUBSTRING ...] [--setup]

Prints a table and writes a JSON file with every figure, the machine, the versions and the commit.
Bytes moved by a swap = 4 x the bytes of one side's slices (each pair: read both slices, write both).
"""

from __future__ import annotations

import argparse
import json
import os
import time

import torch

import swapkern

from ..common.provenance import machine_info
from .cases import all_cases, run_case
from .protocols import loader_rows, part_names, protocol_rows
from .report import annotate, header, print_rows
from .rows import FLOOR_ATEN, backends_for, copy_bandwidth, floor_rows
from .sharded import sharded_rows
from .weights import setup_rows, weight_rows


def main(argv=None):
    """Runs the benchmark on each device asked for, prints its table; writes and returns the result (a dict)."""
    ap = argparse.ArgumentParser(
        prog="python -m bench.overhead", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--device", default="all", choices=["cpu", "cuda", "all"])
    ap.add_argument("--quick", action="store_true", help="smaller tensors, one dtype on the CPU")
    ap.add_argument("--only", nargs="*", default=None, help="run cases whose name contains one of these")
    ap.add_argument("--out", default=None, help="JSON path (default bench/results/overhead-<timestamp>.json)")
    ap.add_argument("--no-weights", action="store_true", help="skip the weight-swap rows (ResNets, MLPs)")
    ap.add_argument("--jsonl", default=None, help="also append each row to this JSON-lines file as it is measured")
    ap.add_argument(
        "--setup",
        action="store_true",
        help="add the weight-swap setup rows: construction and first step (ResNet-18; without --quick ResNet-50, "
        "DenseNet-121)",
    )
    ap.add_argument("--sharded", action="store_true", help="add the 2-process gloo FSDP2 weight-swap rows (CPU)")
    ap.add_argument("--per-image", action="store_true", help="add the per-image rows (bench.overhead.perimage)")
    ap.add_argument(
        "--images",
        type=int,
        nargs="*",
        default=None,
        help="batch sizes of the protocol and loader rows (default 512 4096; --quick: 512)",
    )
    args = ap.parse_args(argv)
    devices = [torch.device("cpu")] if args.device in ("cpu", "all") else []
    if args.device in ("cuda", "all") and torch.cuda.is_available():
        devices.append(torch.device("cuda"))
    if args.device == "cuda" and not devices:
        raise SystemExit("--device cuda: no CUDA device here")
    result = {"machine": machine_info(), "backends": swapkern.backends(), "devices": {}}
    wanted = lambda name: not args.only or any(s in name for s in args.only)  # noqa: E731
    for device in devices:
        g = torch.Generator().manual_seed(0)
        copy_gbs = copy_bandwidth(device, 256 << 20 if device.type == "cuda" else 64 << 20)
        rows = []
        header(device, copy_gbs)

        floor = floor_rows(device)  # first, so that every row of the run has its "x floor"
        floor_us = next(r["median_us"] for r in floor if r["backend"] == FLOOR_ATEN)

        def emit(new):  # printed and saved as each case finishes: a cut run keeps what it measured
            annotate(new, copy_gbs, floor_us)
            print_rows(new)
            rows.extend(new)
            if args.jsonl:
                with open(args.jsonl, "a") as f:
                    for r in new:
                        f.write(json.dumps({"device": device.type, **r}) + "\n")

        emit(floor)
        for case in all_cases(device, args.quick):
            if wanted(case.name):
                emit(run_case(case, device, g))
        if not args.no_weights and (not args.only or any("weight" in s for s in args.only)):
            emit(weight_rows(device, args.quick, emit=emit))
        for n in args.images or ([512] if args.quick else [512, 4096]):
            for part in (protocol_rows, loader_rows):
                if any(wanted(name) for name in part_names(part, n)):
                    emit([r for r in part(device, n, backends_for(device)) if wanted(r["case"])])
        if args.setup:
            emit(setup_rows(device, args.quick))
        if args.sharded and device.type == "cpu":
            emit(sharded_rows())
        result["devices"][device.type] = {"copy_gbs": copy_gbs, "floor_us": floor_us, "rows": rows}
    if args.per_image:
        from .perimage import per_image_rows, print_table

        result["per_image"] = per_image_rows(rounds=5 if args.quick else 9, calls=1000 if args.quick else 2000)
        print_table(result["per_image"])
    out = args.out or os.path.join("bench", "results", f"overhead-{time.strftime('%Y%m%d-%H%M%S')}.json")
    os.makedirs(os.path.dirname(out) or ".", exist_ok=True)
    with open(out, "w") as f:
        json.dump(result, f, indent=1)
    print(f"\nwrote {out}")
    return result
