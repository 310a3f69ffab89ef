"""A WeightSwap's setup on the largest plan here, DenseNet-121 with `neuron` (3,399 jobs): construction (the
neuron analysis, torch.fx tracing) and packing (the first step's engine_new), timed `--repeats` times each with
Python's cyclic garbage collector on, as a user runs it, and off, to show what a full collection adds when one
falls inside (one thread).

    python -m bench.overhead.construction [--repeats 8]        (prints one JSON object: seconds per repeat)
"""

from __future__ import annotations

import argparse
import gc
import json
import time

import torch


def measure(repeats: int = 8, model=None) -> dict:
    import torchvision

    import swapkern

    torch.set_num_threads(1)
    m = model if model is not None else torchvision.models.densenet121(num_classes=10)
    swapkern.WeightSwap(m, "neuron", seed=0, layers="all")  # imports and first-call caches out of the timing
    out = {}
    for collector in ("gc on", "gc off"):
        construction, packing = [], []
        for _ in range(repeats):
            if collector == "gc off":
                gc.disable()
            try:
                t0 = time.perf_counter()
                ws = swapkern.WeightSwap(m, "neuron", seed=0, layers="all")
                t1 = time.perf_counter()
                ws._engine.pack()
                t2 = time.perf_counter()
            finally:
                gc.enable()
            construction.append(t1 - t0)
            packing.append(t2 - t1)
        out[collector] = {"jobs": len(ws._engine.jobs), "construction_s": construction, "packing_s": packing}
    return out


def main(argv=None):
    ap = argparse.ArgumentParser(prog="python -m bench.overhead.construction", description=__doc__)
    ap.add_argument("--repeats", type=int, default=8)
    args = ap.parse_args(argv)
    print(json.dumps(measure(args.repeats)))


if __name__ == "__main__":
    main()
