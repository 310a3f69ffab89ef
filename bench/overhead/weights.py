"""The weight-swap rows of the overhead benchmark: the per-step cost of weight swaps on ResNet-18 and a large MLP,
swapkern (one packed launch) against a per-parameter loop of pure-PyTorch indexing (the "torch" backend), and as a
share of the model's own training step measured in the same run."""

from __future__ import annotations

import torch
from torch import nn

import swapkern

from . import plain
from .rows import timed_row


def _mlp(width, depth):
    layers = []
    for _ in range(depth):
        layers += [nn.Linear(width, width), nn.ReLU()]
    return nn.Sequential(*layers, nn.Linear(width, 10))


def models(device, quick):
    """(name, model, batch maker, protocols) of the models timed."""
    import torchvision

    batch = lambda: (torch.randn(128, 3, 32, 32, device=device), torch.randint(0, 10, (128,), device=device))  # noqa
    out = [
        (
            "ResNet-18 (CIFAR input, batch 128)",
            torchvision.models.resnet18(num_classes=10),
            batch,
            ("rows", "mixed", "neuron"),
        ),
    ]
    if not quick:
        out.append(
            ("ResNet-50 (CIFAR input, batch 128)", torchvision.models.resnet50(num_classes=10), batch, ("neuron",))
        )
    width, depth = (1024, 8) if quick else (4096, 6)  # ~8M or ~100M parameters
    out.append(
        (
            f"MLP {depth}x{width} (~{(width * width * depth) / 1e6:.0f}M params, batch 256)",
            _mlp(width, depth),
            lambda: (torch.randn(256, width, device=device), torch.randint(0, 10, (256,), device=device)),
            ("rows", "mixed"),
        )
    )
    wide = nn.Sequential(*[m for _ in range(100) for m in (nn.Linear(64, 64), nn.ReLU())])  # 100 weights, host-bound
    out.append(
        (
            "MLP 100x64 (100 weights, batch 256)",
            wide,
            lambda: (torch.randn(256, 64, device=device), torch.randint(0, 10, (256,), device=device)),
            ("rows",),
        )
    )
    return out


def weight_rows(device, quick, emit=None):
    """Per model: its training step (Adam), then each weight-swap protocol with and without the optimizer state, on
    swapkern and on the per-parameter loop, each as a share of that step. emit(rows) is called with each model's
    rows as it finishes (a run cut later keeps them); returns the rows not emitted."""
    rows = []
    for name, model, batch, protocols in models(device, quick):
        if emit is not None and rows:
            emit(rows)
            rows = []
        model = model.to(device)
        opt = torch.optim.Adam(model.parameters(), lr=1e-4)
        x, y = batch()

        def train_step():
            loss = nn.functional.cross_entropy(model(x), y)
            opt.zero_grad(set_to_none=False)
            loss.backward()
            opt.step()

        step_row = timed_row(
            f"{name}: training step",
            "model",
            [train_step],
            device,
            warmup=2,
            repeats=5 if device.type == "cpu" else 20,
            min_time_s=0.5,
        )
        rows.append(step_row)
        for protocol in protocols:
            for state in (False, True):
                case = f"{name}: {protocol}, state={state}"
                if protocol != "neuron":  # what a user writes: a loop over the weights, one pair of rows each
                    loop = plain.weight_loop(model, protocol, opt if state else None)
                    rows.append(timed_row(case, "plain PyTorch (per-parameter loop)", [loop], device, repeats=30))
                for backend in ("native", "torch"):
                    if backend not in swapkern.backends(device.type):
                        continue
                    ws = swapkern.WeightSwap(model, protocol, swaps=1, state=state, seed=0, layers="all")
                    call = lambda ws=ws: ws.step(optimizer=opt)  # noqa: E731
                    label = backend if backend == "native" else "torch (per-parameter loop)"

                    def share(t, label=label):  # the swap as a share of the model's own training step
                        s = t.median_us / step_row["median_us"]
                        return {"backend": f"{label}, {100 * s:.2f}% of a step", "share_of_step": s}

                    with swapkern.use_backend(backend):
                        rows.append(timed_row(case, label, [call], device, repeats=30, derived=share))
    return rows


def setup_models(quick):
    """(name, model maker) of the setup rows: ResNet-18, and without --quick ResNet-50 and DenseNet-121 (3,399
    neuron jobs with their BatchNorm entries: the largest plan here)."""
    import torchvision

    out = [("ResNet-18", lambda: torchvision.models.resnet18(num_classes=10))]
    if not quick:
        out += [
            ("ResNet-50", lambda: torchvision.models.resnet50(num_classes=10)),
            ("DenseNet-121", lambda: torchvision.models.densenet121(num_classes=10)),
        ]
    return out


def _timing(seconds) -> dict:
    us = sorted(1e6 * s for s in seconds)
    q = lambda f: us[min(len(us) - 1, round(f * (len(us) - 1)))]  # noqa: E731
    return {"median_us": q(0.5), "p20_us": q(0.2), "p80_us": q(0.8), "host_us": q(0.5), "repeats": len(us)}


def setup_rows(device, quick, models=None, protocols=("rows", "neuron"), repeats=3):
    """What a WeightSwap costs before its steps: construction (the protocol's analysis, the groups), the first step
    (which binds and packs the engine: waves, plans; with state=True the optimizer's state too), a later step and,
    part of every step, the check that the bound tensors are still those the model and optimizer hold; each timed
    `repeats` times on a fresh WeightSwap (SGD with momentum, its state present). Rows "<model>: <protocol> (<jobs>),
    state=<s>: construction / first step / later step / binding check"; backend "native" or "torch"."""
    import time

    rows = []
    for name, make in models or setup_models(quick):
        model = make().to(device)
        opt = torch.optim.SGD(model.parameters(), lr=1e-3, momentum=0.9)
        for p in model.parameters():
            p.grad = torch.zeros_like(p)
        opt.step()  # the momentum buffers exist, as in training
        jobs = {}
        for protocol in protocols:
            for state in (False, True):
                for backend in ("native", "torch"):
                    if backend not in swapkern.backends(device.type):
                        continue
                    times = {"construction": [], "first step": [], "later step": [], "binding check": []}
                    with swapkern.use_backend(backend):
                        for _ in range(repeats):
                            t0 = time.perf_counter()
                            ws = swapkern.WeightSwap(model, protocol, swaps=1, state=state, seed=0, layers="all")
                            t1 = time.perf_counter()
                            ws.step(optimizer=opt)
                            _sync(device)
                            t2 = time.perf_counter()
                            ws.step(optimizer=opt)
                            _sync(device)
                            t3 = time.perf_counter()
                            times["construction"].append(t1 - t0)
                            times["first step"].append(t2 - t1)
                            times["later step"].append(t3 - t2)
                            t4 = time.perf_counter()
                            for _ in range(100):
                                ws._binding.use(opt)  # the per-step check that the bound tensors are the model's
                            times["binding check"].append((time.perf_counter() - t4) / 100)
                            jobs[(protocol, state)] = len(ws._engine.jobs)
                    for what, ts in times.items():
                        case = f"{name}: {protocol} ({jobs[(protocol, state)]} jobs), state={state}: {what}"
                        row = {"case": case, "backend": backend, "moved_bytes": 0, "alloc_bytes": 0}
                        rows.append(row | _timing(ts))
    return rows


def _sync(device):
    if device.type == "cuda":
        torch.cuda.synchronize(device)
