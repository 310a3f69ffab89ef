"""The fused loader's checks, as csrc/loader.cpp's prepare_load (the Python twin of the loader's rules; the rules it
shares with the swap ops, such as index conversion and ranges, are swapkern._checks')."""

from __future__ import annotations

import torch

from ._checks import check_range, check_swappable, memory_intersects, prepare_index
from ._codes import refuse


def check_plan_fits(op, plan, out):
    """A FeaturePlan applies to a batch of the shape it was drawn for (the kernels see only its tensors, so the
    native backend checks this in Python before the op: the first of the loader's rules on every backend)."""
    if plan is not None and tuple(plan.shape) != tuple(out.shape):
        raise refuse("load.plan", f"{op}: the plan was drawn for {tuple(plan.shape)}, out is {tuple(out.shape)}")


def prepare_load(out, data, index, scale, shift, plan, flip, nhwc, validate):
    """-> (index, scale, shift, pairs, at, image, active, flip) on out's device, checked as csrc prepare_load checks."""
    op = "swapkern.load_batch_"
    check_plan_fits(op, plan, out)
    if out.dim() != 4:
        raise refuse("load.shape", f"{op}: out must be (B, C, H, W), got {tuple(out.shape)}")
    if out.dtype not in (torch.float32, torch.float16, torch.bfloat16):
        raise refuse("load.dtype", f"{op}: out must be float32, float16 or bfloat16, got {out.dtype}")
    if data.dtype != torch.uint8:
        raise refuse("load.dtype", f"{op}: data must be uint8, got {data.dtype}")
    if data.dim() != 4 or data.device != out.device:
        raise refuse(
            "load.shape",
            f"{op}: data must be a 4-d uint8 tensor on out's device, got {tuple(data.shape)} on {data.device}",
        )
    check_swappable(op, out, "out")
    if data.layout != torch.strided:
        raise refuse("tensor.layout", f"{op}: data must be a strided tensor, got layout {data.layout}")
    if memory_intersects(out, data):
        raise refuse("tensors.overlap", f"{op}: out and data overlap in memory")
    b, c, h, w = out.shape
    dc, dh, dw = (data.shape[3], data.shape[1], data.shape[2]) if nhwc else tuple(data.shape[1:])
    if (dc, dh, dw) != (c, h, w):
        raise refuse("load.shape", f"{op}: data images are (C, H, W) = {(dc, dh, dw)} but out is {(c, h, w)}")
    if index.dim() != 1 or index.numel() != b:
        raise refuse("load.shape", f"{op}: index must have shape [{b}]")
    for t in (scale, shift):
        if t.dim() != 1 or t.numel() != c or t.dtype != torch.float32:
            raise refuse("load.shape", f"{op}: scale and shift must be float32 of shape [{c}]")
    index, u_index = prepare_index(op, index, "index", out, out)
    scale, shift = (t.to(out.device).contiguous() for t in (scale, shift))
    scale, shift = (t.clone() if memory_intersects(t, out) else t for t in (scale, shift))
    pairs = at = image = active = None
    unsigned = {}
    if plan is not None:
        which, what, extent = plan.protocol
        g = b if which == "E" else 1
        if plan.pairs.dim() != 3 or plan.pairs.shape[0] != g or plan.pairs.shape[2] != 2:
            raise refuse("load.plan", f"{op}: pairs must be ({g}, swaps, 2), got {tuple(plan.pairs.shape)}")
        if plan.at.numel() != g or plan.image.numel() != 1 or plan.active.numel() != 1:
            raise refuse("load.plan", f"{op}: at must have {g} entries, image and active one each")
        (pairs, unsigned["pairs"]), (at, unsigned["at"]), (image, unsigned["image"]), (active, _) = (
            prepare_index(op, t, name, out, out, kind)
            for t, name, kind in (
                (plan.pairs, "pairs", "any"),
                (plan.at, "at", "any"),
                (plan.image, "image", "any"),
                (plan.active, "active", "flags"),
            )
        )
    if flip is not None:
        if flip.numel() != b:
            raise refuse("load.shape", f"{op}: flip must have {b} entries")
        flip, _ = prepare_index(op, flip, "flip", out, out, "flags")
    if validate:
        check_range(op, index, data.shape[0], u_index, "index", "data", wrap=False)
        if plan is not None:
            channels = plan.protocol[1] == "S"
            n_pairs, n_at = (c, h * w) if channels else (h * w, c)
            what_pairs, what_at = ("the channels", "the pixels") if channels else ("the pixels", "the channels")
            check_range(op, pairs, n_pairs, unsigned["pairs"], "pairs", what_pairs, wrap=False)
            if plan.protocol[2] == "1":
                check_range(op, at, n_at, unsigned["at"], "at", what_at, wrap=False)
            check_range(op, image, max(b, 1), unsigned["image"], "image", "the batch", wrap=False)
    return index, scale, shift, pairs, at, image, active, flip
