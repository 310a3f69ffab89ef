"""The per-image row: one 3x32x32 image through FeatureSwap as a DataLoader worker runs it (one thread), beside
torchvision's RandomChannelPermutation, kornia's RandomChannelShuffle, the plain-PyTorch clone-and-swap, and, on
a 32x32x3 uint8 NumPy array, albumentations' ChannelShuffle (kornia and albumentations when installed).

    python -m bench.overhead.perimage [--rounds 9] [--calls 2000]      (also: python -m bench.overhead --per-image)

Every candidate returns a new image and leaves its input alone. The candidates are timed side by side: each round
times each of them over `calls` back-to-back calls (the order rotates between rounds); a candidate's time is its
median over rounds, and each ratio is the median over rounds of that round's ratio, so machine load that comes and
goes cancels within a round.
"""

from __future__ import annotations

import argparse
import json
import random
import statistics
import time

import numpy as np
import torch

import swapkern


def _plain(img):
    """What a user writes: a copy with two random channels exchanged."""

    def call():
        i, j = random.sample(range(img.shape[0]), 2)
        out = img.clone()
        out[[i, j]] = img[[j, i]]
        return out

    return call


def candidates(dtype):
    """name -> callable() for one image of dtype (torch.float32 or torch.uint8), and the NumPy HWC uint8 ones."""
    g = torch.Generator().manual_seed(0)
    img = torch.rand(3, 32, 32, generator=g)
    img = (img * 255).to(torch.uint8) if dtype == torch.uint8 else img
    fs = swapkern.FeatureSwap("1SA", seed=0)
    out = {"swapkern FeatureSwap('1SA')(img)": lambda: fs(img), "plain clone-and-swap": _plain(img)}
    try:
        from torchvision.transforms import v2

        rcp = v2.RandomChannelPermutation()
        out["torchvision RandomChannelPermutation"] = lambda: rcp(img)
    except ImportError:
        pass
    if dtype == torch.float32:  # kornia's augmentations take float images
        try:
            import kornia.augmentation as K

            shuffle = K.RandomChannelShuffle(p=1.0)
            out["kornia RandomChannelShuffle"] = lambda: shuffle(img)
        except ImportError:
            pass
    if dtype == torch.uint8:  # the HWC NumPy image of OpenCV / albumentations pipelines
        arr = np.ascontiguousarray(img.permute(1, 2, 0).numpy())
        fs_np = swapkern.FeatureSwap("1SA", seed=0)
        out["swapkern FeatureSwap('1SA')(array HWC)"] = lambda: fs_np(arr)
        try:
            import albumentations as A

            cs = A.ChannelShuffle(p=1.0)
            out["albumentations ChannelShuffle (array HWC)"] = lambda: cs(image=arr)["image"]
        except ImportError:
            pass
    return out


def _round_us(f, calls):
    t = time.perf_counter()
    for _ in range(calls):
        f()
    return (time.perf_counter() - t) / calls * 1e6


def per_image_rows(rounds=9, calls=2000, threads=1):
    """Rows {case, dtype, median_us, vs_torchvision (its time / this one's), vs_swapkern (this / swapkern's)} for
    float32 and uint8, timed side by side on `threads` threads."""
    before = torch.get_num_threads()
    torch.set_num_threads(threads)
    rows = []
    try:
        with torch.no_grad():
            for dtype in (torch.float32, torch.uint8):
                cands = candidates(dtype)
                names = list(cands)
                for f in cands.values():  # warm-up: first-call buffers, lazy imports
                    for _ in range(max(50, calls // 20)):
                        f()
                times = {n: [] for n in names}
                for r in range(rounds):
                    order = names[r % len(names) :] + names[: r % len(names)]
                    for n in order:
                        times[n].append(_round_us(cands[n], calls))
                tv = "torchvision RandomChannelPermutation"
                ours = "swapkern FeatureSwap('1SA')(img)"
                for n in names:
                    dt = str(dtype).replace("torch.", "")
                    row = {"case": n, "dtype": dt, "median_us": statistics.median(times[n])}
                    if tv in times:
                        ratios = (a / b for a, b in zip(times[tv], times[n], strict=True))
                        row["vs_torchvision"] = statistics.median(ratios)
                    row["vs_swapkern"] = statistics.median(a / b for a, b in zip(times[n], times[ours], strict=True))
                    rows.append(row)
    finally:
        torch.set_num_threads(before)
    return rows


def print_table(rows):
    print(f"\nper image, 3x32x32, {torch.get_num_threads()} thread(s) outside, 1 inside the timing")
    print(f"{'case':44} {'dtype':8} {'median us':>10} {'torchvision/this':>17} {'this/swapkern':>14}")
    for r in rows:
        vs_tv = f"{r['vs_torchvision']:.2f}" if "vs_torchvision" in r else "-"
        print(f"{r['case']:44} {r['dtype']:8} {r['median_us']:10.2f} {vs_tv:>17} {r['vs_swapkern']:14.2f}", flush=True)


def main(argv=None):
    ap = argparse.ArgumentParser(prog="python -m bench.overhead.perimage", description=__doc__)
    ap.add_argument("--rounds", type=int, default=9)
    ap.add_argument("--calls", type=int, default=2000)
    ap.add_argument("--json", action="store_true", help="also print the rows as one JSON line")
    args = ap.parse_args(argv)
    rows = per_image_rows(args.rounds, args.calls)
    print_table(rows)
    if args.json:
        print(json.dumps(rows))
    return rows


if __name__ == "__main__":
    main()
