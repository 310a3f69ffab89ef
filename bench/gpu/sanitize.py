"""A small GPU workload for compute-sanitizer (memcheck, racecheck): every kernel of the native backend on small
tensors (the CUDA kernels; the CPU ones where there is no GPU), each result checked against the reference.

Covered: the exchange kernels (flat and per-pair, units and tiled, contiguous, channels_last and strided, 1- to
16-byte elements), swap_between_, the feature-plan draw (draw_feature_plan_) and the fused draw+swap
(feature_swap_, then feature_step_ through the binding of a shape; through FeatureSwap and FeatureSwap.plan), the
fused loader (load_batch_, through a DeviceLoader batch with a swap and flips), and the packed multi-tensor engine
(engine_step_, through WeightSwap steps: rows, mixed, and neuron with the optimizer state on a residual MLP: Linear
layers only, no cuDNN). Exits non-zero on a wrong result.

    PYTORCH_NO_CUDA_MEMORY_CACHING=1 compute-sanitizer --tool memcheck --error-exitcode 9 --kernel-name kns=swapkern \
        --report-api-errors no python -m bench.gpu.sanitize

Run it without the caching allocator: inside a pooled block an out-of-bounds access is not an error to memcheck.
"""

from __future__ import annotations

import sys

import torch
from torch import nn
from torch.nn import functional as F

import swapkern
from swapkern import reference as ref


def _ops(dev, g):
    checks = 0
    for dtype in (torch.uint8, torch.bfloat16, torch.float32, torch.float64, torch.complex128):
        for layout in ("contiguous", "channels_last"):
            x = (torch.randn(9, 3, 40, 40, generator=g) * 50).to(dtype).to(dev)
            if layout == "channels_last":
                x = x.contiguous(memory_format=torch.channels_last)
            calls = [
                ("swap_channels_", (x, [0], [2]), {}),
                ("swap_channels_", (x, [0, 1], [1, 2]), {"sample": [3, 5]}),
                ("swap_pixels_", (x, torch.arange(0, 800, 2), torch.arange(1, 800, 2)), {}),
                ("swap_pixels_", (x, [0, 5], [1599, 7]), {"sample": [8, 8]}),
                ("swap_", (x, 0, [0, 1, 2], [8, 7, 6]), {}),
                ("swap_elements_", (x, torch.arange(0, 4000, 2), torch.arange(1, 4000, 2)), {}),
                ("swap_", (x[:, :, ::3, 1:], 3, [0, 3], [38, 10]), {}),
            ]
            for name, args, kw in calls:
                want = args[0].clone()
                getattr(swapkern, name)(*args, **kw)
                getattr(ref, name)(want, *args[1:], **kw)
                assert torch.equal(args[0], want), (name, dtype, layout)
                checks += 1
    w, v = torch.randn(300, 70, device=dev), torch.randn(40, 70, device=dev)
    ww, vv = w.clone(), v.clone()
    swapkern.swap_between_(w, v, [0, 299], [39, 1], dim_x=0, dim_y=0)
    ref.swap_between_(ww, vv, [0, 299], [39, 1], dim_x=0, dim_y=0)
    swapkern.swap_cols_(w, torch.arange(0, 70, 2), torch.arange(1, 70, 2))  # interleaved pairs: the tiled kernel
    ref.swap_cols_(ww, torch.arange(0, 70, 2), torch.arange(1, 70, 2))
    assert torch.equal(w, ww) and torch.equal(v, vv)
    return checks + 1


def _features(dev):
    """FeatureSwap: the fused draw+swap, the plan drawn on the device then applied, each against the reference."""
    checks = 0
    from swapkern._codes import PROTOCOLS

    for proto in PROTOCOLS:  # all 12
        x = torch.randn(33, 7, 17, 19, device=dev)
        want = x.clone()
        fs = swapkern.FeatureSwap(proto, swaps=3, seed=11)
        plan = fs.plan(x, step=4)  # draw_feature_plan_ on the device
        plan.apply_(want)
        with swapkern.use_backend("torch"):
            expect = x.clone()
            swapkern.FeatureSwap(proto, swaps=3, seed=11).plan(expect, step=4).apply_(expect)
        assert torch.equal(want, expect), proto
        fs.step = 4
        fs.swap_(x)  # feature_swap_: drawn and applied in one call
        assert torch.equal(x, want), proto
        fs.swap_(x)  # feature_step_: the same shape again, through its binding (step 5)
        with swapkern.use_backend("torch"):
            swapkern.FeatureSwap(proto, swaps=3, seed=11).plan(expect, step=5).apply_(expect)
        assert torch.equal(x, expect), proto
        checks += 3
    return checks


def _loader(dev):
    """A DeviceLoader epoch (load_batch_: gather, normalise, swap, flip) against the reference loader."""
    data = torch.randint(0, 256, (70, 12, 12, 3), dtype=torch.uint8, device=dev)
    labels = torch.arange(70, device=dev)
    kw = dict(batch_size=16, mean=(0.5, 0.4, 0.3), std=(0.2, 0.25, 0.3), flip=True, seed=3, drop_last=False)
    got = [
        (x.clone(), y.clone())
        for x, y in swapkern.DeviceLoader(data, labels, feature_swap=swapkern.FeatureSwap("EPA", seed=1), **kw)
    ]
    with swapkern.use_backend("torch"):
        loader = swapkern.DeviceLoader(data, labels, feature_swap=swapkern.FeatureSwap("EPA", seed=1), **kw)
        want = [(x.clone(), y.clone()) for x, y in loader]  # the loader refills two buffers in turn
    assert len(got) == len(want) == 5
    for (a, ya), (b, yb) in zip(got, want, strict=True):
        assert torch.equal(a, b) and torch.equal(ya, yb)
    return len(got)


class _Res(nn.Module):
    """Linear layers only (a residual MLP): under memcheck without the caching allocator, cuDNN convolutions and
    their workspaces take minutes and are not swapkern's kernels."""

    def __init__(self):
        super().__init__()
        self.stem = nn.Linear(12, 8)
        self.mid = nn.Linear(8, 8)
        self.head = nn.Linear(8, 5)

    def forward(self, x):
        h = F.relu(self.stem(x))
        h = F.relu(self.mid(h) + h)
        return self.head(h)


def _weights(dev):
    """WeightSwap steps (engine_step_: the packed multi-tensor op, draws on the device) against the reference,
    neuron with the optimizer state on a residual network among them; the neuron step keeps the function."""
    checks = 0
    for proto, state in (("rows", False), ("mixed", True), ("cols", True), ("neuron", True)):
        torch.manual_seed(0)
        models = [_Res().double().to(dev) for _ in range(2)]
        models[1].load_state_dict(models[0].state_dict())
        x = torch.randn(4, 12, dtype=torch.float64, device=dev)
        outs = []
        for backend, m in zip(("native", "torch"), models, strict=True):
            opt = torch.optim.Adam(m.parameters(), lr=1e-3)
            m(x).sum().backward()
            opt.step()
            with swapkern.use_backend(backend):
                ws = swapkern.WeightSwap(m, proto, swaps=2, state=state, seed=5)
                before = m.eval()(x)
                for _ in range(3):
                    ws.step(optimizer=opt)
                outs.append((m(x), before, [p.detach().clone() for p in m.parameters()]))
        (y, y0, p), (yr, _, pr) = outs
        assert all(torch.equal(a, b) for a, b in zip(p, pr, strict=True)), proto
        if proto == "neuron":
            assert torch.allclose(y, y0, rtol=1e-10, atol=1e-12), "neuron keeps the function"
        checks += 1
    return checks


def main():
    g = torch.Generator().manual_seed(0)
    dev = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    parts = {"ops": _ops, "features": _features, "loader": _loader, "weights": _weights}
    total = 0
    for name, part in parts.items():
        n = part(dev, g) if name == "ops" else part(dev)
        if dev.type == "cuda":
            torch.cuda.synchronize()
        print(f"gpu_sanitize: {name}: {n} checks passed on {dev.type}", flush=True)
        total += n
    print(f"gpu_sanitize: {total} checks passed")
    return 0


if __name__ == "__main__":
    sys.exit(main())
