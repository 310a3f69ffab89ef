"""Where the microseconds of one small call go: the same call timed layer by layer, from the floor of one dispatch
up to the public call (fastest of 15 loops of back-to-back calls, as bench/overhead/dispatch.py).

    python -m bench.overhead.breakdown        (prints a table; --json for one JSON object)

For `FeatureSwap("1PA").swap_(x)` on 512 images (native backend, CPU): the ATen floor (`y.add_(1)` on an empty
tensor), our op with nothing to do, the unbound op (feature_swap_, its eleven arguments, x's layout checked on every
call), the bound op (feature_step_(x, handle): two arguments, x's layout checked once; the draw and the exchange of
one pixel pair), the bound call (the autograd flags and the version bump), and the public call (the last fast
call's shape and device compared). For `swap_pixels_(x, [5], [1000], sample=[7])`: the op with ready index
tensors, the native wrapper, the public call with Python lists. Each layer's cost is its time minus the layer below.
"""

from __future__ import annotations

import argparse
import json

import torch

import swapkern
from swapkern import _backend, _native

from .dispatch import per_call_us


def layers() -> list[tuple[str, float]]:
    torch.manual_seed(0)
    if not _backend.native_available("cpu"):
        raise SystemExit("bench.overhead.breakdown: the native backend is not built")
    x = torch.randn(512, 3, 32, 32)
    y, e, none = torch.empty(0), torch.empty(0), torch.empty(0, dtype=torch.int64)
    fs = swapkern.FeatureSwap("1PA", seed=0)
    with swapkern.use_backend("native"):
        fs.swap_(x)  # binds the shape's fast call
        slot = fs._slots[(x.shape, x.device)]
        bound = slot.fast.call
        # the op itself with the bound arguments: the fast call's closure holds them
        cells = dict(zip(bound.__code__.co_freevars, (c.cell_contents for c in bound.__closure__), strict=True))
        op, args = cells["op"], cells["args"]
        p, q, s = torch.tensor([5]), torch.tensor([1000]), torch.tensor([7])
        unbound = torch.ops.swapkern.feature_swap_.default
        codes = swapkern.data.protocol_codes("1PA")
        counter = fs._counter
        unbound_args = (slot.buf, None, *codes, fs.swaps, fs._args()[2], 0, fs._threshold(), counter)
        raw = torch.ops.swapkern.swap_pixels_.default
        empty = torch.ops.swapkern.swap_elements_.default
        calls = [
            ("floor: y.add_(1), an empty tensor", lambda: y.add_(1)),
            ("our op with nothing to do (swap_elements_, no pairs)", lambda: empty(e, none, none, True)),
            ("1PA unbound: the op feature_swap_ (11 arguments)", lambda: unbound(x, *unbound_args)),
            ("1PA: the bound op, feature_step_(x, handle)", lambda: op(x, *args)),
            ("1PA: the bound call (autograd flags, version bump)", lambda: bound(x)),
            ("1PA: fs.swap_(x), the public call", lambda: fs.swap_(x)),
            ("pixels: the op, index tensors ready", lambda: raw(x, p, q, s, True)),
            ("pixels: _native.swap_pixels_, index tensors", lambda: _native.swap_pixels_(x, p, q, sample=s)),
            ("pixels: swapkern.swap_pixels_, index tensors", lambda: swapkern.swap_pixels_(x, p, q, sample=s)),
            ("pixels: swapkern.swap_pixels_, Python lists", lambda: swapkern.swap_pixels_(x, [5], [1000], sample=[7])),
        ]
        with torch.no_grad():
            return [(name, per_call_us(f)) for name, f in calls]


def main(argv=None):
    ap = argparse.ArgumentParser(prog="python -m bench.overhead.breakdown", description=__doc__)
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args(argv)
    rows = layers()
    if args.json:
        print(json.dumps(dict(rows)))
        return rows
    floor = rows[0][1]
    print(f"{'layer':56} {'us':>6} {'x floor':>8} {'+ us':>6}")
    prev = None
    for name, us in rows:
        step = "" if prev is None or name.split(":")[0] != prev[0].split(":")[0] else f"{us - prev[1]:+6.2f}"
        print(f"{name:56} {us:6.2f} {us / floor:8.2f} {step:>6}")
        prev = (name, us)
    return rows


if __name__ == "__main__":
    main()
