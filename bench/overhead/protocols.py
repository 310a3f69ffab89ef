"""The feature-protocol rows of the overhead benchmark: each poster protocol (plan drawing + swap, in place) against
the reference and the out-of-place peers, and the swap's marginal cost inside the fused loader."""

from __future__ import annotations

import torch

import swapkern
from swapkern.data import PROTOCOLS, FeatureSwap

from ..common.timing import rotation
from . import plain
from .rows import copy_row, timed_row

MEAN, STD = [0.491, 0.482, 0.447], [0.247, 0.243, 0.262]


def _peers():
    """Out-of-place channel shufflers a user might reach for instead: name -> (the protocol it matches,
    callable(batch) -> new batch). torchvision permutes the channels of the whole batch with one draw (as ASA);
    kornia draws a permutation per image (as ESA)."""
    out = {}
    try:
        from torchvision.transforms import v2

        out["peer: torchvision RandomChannelPermutation"] = ("ASA", v2.RandomChannelPermutation())
    except ImportError:
        pass
    try:  # optional: kornia is not a dependency
        import kornia.augmentation as K

        out["peer: kornia RandomChannelShuffle"] = ("ESA", K.RandomChannelShuffle(p=1.0))
    except ImportError:
        pass
    return out


def _moved_elements(fs, x):
    """Elements of one side moved by one plan of fs on x (for the bandwidth figures)."""
    plan = fs.plan(x, step=0)
    b, c, h, w = x.shape
    k = plan.a.numel()
    per_pair = {"channels": h * w, "pixels": c, "elements": 1}[plan.op]
    images = b if plan.op != "elements" and plan.sample is None else 1
    return k * per_pair * images


def part_names(part, n_images):
    """The case names a part (protocol_rows or loader_rows) produces, to skip parts --only leaves out."""
    if part is protocol_rows:
        return [f"{proto} protocol (plan + swap), {n_images} images, float32" for proto in PROTOCOLS]
    return [f"fused loader, {n_images} images, flip, swap {p}" for p in ("none", "ESA", "EPA", "1SA")]


def protocol_rows(device, n_images, backends):
    rows = []
    shape = (n_images, 3, 32, 32)
    probe = torch.rand(shape, device=device)
    copies = [probe] + [torch.rand(shape, device=device) for _ in range(rotation(probe.nbytes, device=device) - 1)]
    peers = _peers()
    for proto in PROTOCOLS:
        case = f"{proto} protocol (plan + swap), {n_images} images, float32"
        moved = 4 * _moved_elements(FeatureSwap(proto, seed=0), probe) * probe.element_size()
        for backend in backends:
            fs = FeatureSwap(proto, seed=0)
            with swapkern.use_backend(backend):
                rows.append(timed_row(case, backend, [lambda x=x: fs.swap_(x) for x in copies], device, moved=moved))
        for name, (matched, peer) in peers.items():  # each peer beside the protocol it matches
            if matched == proto:
                calls = [lambda x=x, peer=peer: peer(x) for x in copies]
                rows.append(timed_row(case, name, calls, device, moved=moved))
        by_hand = plain.protocol(proto, shape, device)
        rows.append(timed_row(case, "plain PyTorch", [lambda x=x: by_hand(x) for x in copies], device, moved=moved))
        rows.append(copy_row(case, moved, device))
    return rows


def loader_rows(device, n_images, backends):
    """The fused loader with and without a swap plan (both with flips): the swap's marginal cost."""
    rows = []
    data = torch.randint(0, 256, (max(4 * n_images, 10000), 32, 32, 3), dtype=torch.uint8, device=device)
    scale, shift = (t.to(device) for t in swapkern.normalization(MEAN, STD))
    out = torch.empty(n_images, 3, 32, 32, device=device)
    g = torch.Generator().manual_seed(0)
    indices = [torch.randint(0, data.shape[0], (n_images,), generator=g).to(device) for _ in range(4)]
    flip = torch.randint(0, 2, (n_images,), generator=g).to(device)
    moved = out.numel() * (1 + 4)  # one byte read and four written per element
    for backend in backends:
        if backend == "torch":
            continue
        times = {}
        for proto in ("none", "ESA", "EPA", "1SA"):
            fs = FeatureSwap(proto, seed=0) if proto != "none" else None
            plans = [fs.plan(out, indices=i) if fs else None for i in indices]

            def marginal(t, proto=proto, backend=backend):  # the swap's cost over the same loader without one
                times[proto] = t.median_us
                extra = "" if proto == "none" else f", swap +{100 * (t.median_us / times['none'] - 1):.1f}%"
                return {"backend": backend + extra, "marginal": t.median_us / times["none"] - 1}

            with swapkern.use_backend(backend):
                calls = [
                    lambda i=i, p=p: swapkern.load_batch_(out, data, i, scale, shift, plan=p, flip=flip, validate=False)
                    for i, p in zip(indices, plans, strict=True)
                ]
                case = f"fused loader, {n_images} images, flip, swap {proto}"
                rows.append(timed_row(case, backend, calls, device, moved=moved, derived=marginal))
    return rows
