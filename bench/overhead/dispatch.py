"""Host cost of a dispatch-bound call: the fastest of 15 loops of back-to-back calls, in microseconds per call.

    python bench/overhead/dispatch.py        (prints one JSON object: case -> us per call)

Small enough that only the Python layers, the dispatcher and the op's own host work count (a one-pair swap of a
64x64 weight, the one-image protocols on 512 CIFAR images, a 40-tensor weight-swap step). The minimum over loops
is the least noisy estimate of a fixed per-call cost on a shared machine. Runs against whatever `swapkern` is
imported, so `bench.compare_builds --dispatch` can time two checkouts with one script.
"""

import json
import time

import torch

import swapkern


def per_call_us(f, calls=3000, loops=15):
    for _ in range(200):
        f()
    best = float("inf")
    n = calls // loops
    for _ in range(loops):
        t = time.perf_counter()
        for _ in range(n):
            f()
        best = min(best, (time.perf_counter() - t) / n * 1e6)
    return best


def main():
    torch.manual_seed(0)
    w = torch.randn(64, 64)
    i, j = torch.tensor([1]), torch.tensor([2])
    x = torch.randn(512, 3, 32, 32)
    fs_1pa, fs_1sa = swapkern.FeatureSwap("1PA", seed=0), swapkern.FeatureSwap("1SA", seed=0)
    mlp = torch.nn.Sequential(*[torch.nn.Linear(16, 16) for _ in range(20)])
    ws = swapkern.WeightSwap(mlp, "rows", seed=0, layers="all")
    y = torch.empty(0)
    cases = {
        "floor: y.add_(1) on an empty tensor": lambda: y.add_(1),  # one dispatch from Python, as bench.overhead's
        "swap_rows_, 1 pair of a 64x64 weight": lambda: swapkern.swap_rows_(w, i, j),
        "swap_elements_, 1 pair": lambda: swapkern.swap_elements_(w, i, j),
        "FeatureSwap('1PA')(x), 512 images": lambda: fs_1pa.swap_(x),
        "FeatureSwap('1SA')(x), 512 images": lambda: fs_1sa.swap_(x),
        "WeightSwap rows step, 40 tensors": ws.step,
    }
    with torch.no_grad():
        print(json.dumps({name: per_call_us(f, 1500 if "step" in name else 3000) for name, f in cases.items()}))


if __name__ == "__main__":
    main()
