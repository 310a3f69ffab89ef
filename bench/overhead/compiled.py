"""What a compiled graph pays for the checked twins (swapkern._native.register_checked): one small swap
(`swap_rows_` of two row pairs of a 64x64 weight) as the whole of a torch.compile(fullgraph=True) function, with the
twin in the graph and with the compiled op called directly, beside the eager call (fastest of 5 loops of 20,000
calls after 200 to warm up, one thread: bench/overhead/dispatch.py's timer).

    python -m bench.overhead.compiled        (prints one JSON object: us per call)
"""

from __future__ import annotations

import json

import torch

import swapkern
from swapkern import _native

from .dispatch import per_call_us


def measure(calls: int = 100000, loops: int = 5) -> dict:
    torch.set_num_threads(1)
    w = torch.randn(64, 64)
    a, b = torch.tensor([0, 1]), torch.tensor([2, 3])
    out = {}
    for mode in ("compiled, checked twin", "compiled, the op directly"):
        torch._dynamo.reset()
        saved = dict(_native._CHECKED)
        if mode.endswith("directly"):
            _native._CHECKED.clear()  # _mutate then puts the compiled op itself in the graph
        try:
            f = torch.compile(lambda: swapkern.swap_rows_(w, a, b), fullgraph=True)
            f()
            out[mode] = per_call_us(f, calls, loops)
        finally:
            _native._CHECKED.update(saved)
    torch._dynamo.reset()
    out["eager"] = per_call_us(lambda: swapkern.swap_rows_(w, a, b), calls, loops)
    return out


if __name__ == "__main__":
    print(json.dumps({k: round(v, 2) for k, v in measure().items()}))
