"""Per-step cost of weight swaps on ResNet-18 and a large MLP: swapkern (one packed launch) against a
per-parameter loop of pure-PyTorch indexing (the "torch" backend), and as a share of the model's own
training step measured in the same run."""

from __future__ import annotations

import torch
from torch import nn

import swapkern

from .timing import allocated_bytes, measure


def _mlp(width, depth):
    layers = []
    for _ in range(depth):
        layers += [nn.Linear(width, width), nn.ReLU()]
    return nn.Sequential(*layers, nn.Linear(width, 10))


def models(device, quick):
    import torchvision

    out = [
        (
            "ResNet-18 (CIFAR input, batch 128)",
            torchvision.models.resnet18(num_classes=10),
            lambda: (torch.randn(128, 3, 32, 32, device=device), torch.randint(0, 10, (128,), device=device)),
        )
    ]
    width, depth = (1024, 8) if quick else (4096, 6)  # ~8M or ~100M parameters
    out.append(
        (
            f"MLP {depth}x{width} (~{(width * width * depth) / 1e6:.0f}M params, batch 256)",
            _mlp(width, depth),
            lambda: (torch.randn(256, width, device=device), torch.randint(0, 10, (256,), device=device)),
        )
    )
    return out


def weight_rows(device, quick):
    rows = []
    for name, model, batch in models(device, quick):
        model = model.to(device)
        opt = torch.optim.Adam(model.parameters(), lr=1e-4)
        x, y = batch()

        def train_step():
            loss = nn.functional.cross_entropy(model(x), y)
            opt.zero_grad(set_to_none=False)
            loss.backward()
            opt.step()

        t_train = measure([train_step], device, warmup=2, repeats=5 if device.type == "cpu" else 20, min_time_s=0.5)
        rows.append(
            {
                "case": f"{name}: training step",
                "backend": "model",
                "moved_bytes": 0,
                "alloc_bytes": allocated_bytes(train_step, device),
                **t_train.as_dict(),
            }
        )
        for protocol in ("rows", "mixed"):
            for state in (False, True):
                case = f"{name}: {protocol}, state={state}"
                for backend in ("native", "torch"):
                    if backend == "native" and not swapkern._backend.native_available(device.type):
                        continue
                    ws = swapkern.WeightSwap(model, protocol, swaps=1, state=state, seed=0)
                    call = lambda ws=ws: ws.step(optimizer=opt)  # noqa: E731
                    with swapkern.use_backend(backend):
                        t = measure([call], device, repeats=30)
                        alloc = allocated_bytes(call, device)
                    share = t.median_us / t_train.median_us
                    label = backend if backend == "native" else "torch (per-parameter loop)"
                    rows.append(
                        {
                            "case": case,
                            "backend": f"{label}, {100 * share:.2f}% of a step",
                            "moved_bytes": 0,
                            "alloc_bytes": alloc,
                            "share_of_step": share,
                            **t.as_dict(),
                        }
                    )
    return rows
