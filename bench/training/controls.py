"""The study's controls: perturbations matched to a swap, to tell what is specific to swapping from what any
perturbation of the same size does. Each draws from its own random stream."""

from __future__ import annotations

import torch

from .config import stream_seed


class Control:
    """Perturbations matched to a feature-swap plan (study controls): what the swap would change, applied as
    Gaussian noise of the same per-image L2 norm, erasure of the same fraction of values, or a random channel
    permutation of the images the protocol touches. Its own random stream."""

    def __init__(self, kind, fs, seed):
        self.kind, self.fs = kind, fs
        self.g = torch.Generator().manual_seed(stream_seed(seed, "control") & (2**63 - 1))

    def __call__(self, x, index):
        plan = self.fs.plan(x, indices=index)
        if self.kind == "sham":
            return
        swapped = self.fs.apply_(x.clone(), plan)
        delta = (swapped - x).flatten(1)
        touched = delta.ne(0).any(1)
        if self.kind == "gauss":
            noise = torch.randn(x.shape, generator=self.g).to(x)
            scale = delta.norm(dim=1) / noise.flatten(1).norm(dim=1).clamp_min(1e-12)
            x.add_(noise * scale.view(-1, 1, 1, 1))
        elif self.kind == "erase":
            frac = delta.ne(0).float().mean(1).view(-1, 1, 1, 1)
            mask = torch.rand(x.shape, generator=self.g).to(x.device) < frac
            x.masked_fill_(mask, 0.0)
        elif self.kind == "rcp":
            for n in touched.nonzero().flatten().tolist():
                x[n] = x[n, torch.randperm(x.shape[1], generator=self.g).to(x.device)]


def weight_noise_(model, ws, g):
    """Control for weight swaps: Gaussian noise with the norm the swap would inject into each parameter."""
    before = [p.detach().clone() for p in model.parameters()]
    ws.step()
    with torch.no_grad():
        for p, b in zip(model.parameters(), before, strict=True):
            d = (p - b).norm()
            p.copy_(b)
            if d > 0:
                n = torch.randn(p.shape, generator=g).to(p)
                p.add_(n * (d / n.norm()))
