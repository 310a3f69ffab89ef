"""Triton fused loader: out[n] = flip(swap(data[index[n]] * scale + shift)), one launch per batch. Each output
element walks the chain backwards (flip, then the swap involution) to the stored byte it comes from."""

from __future__ import annotations

import contextlib

import torch
import triton
import triton.language as tl

from .._codes import protocol_codes
from .._common import mutating, tensor_arg
from .._index import as_index
from .._loadchecks import prepare_load

BLOCK = 1024


@triton.jit
def _load_kernel(
    out_ptr,
    data_ptr,
    index_ptr,
    scale_ptr,
    shift_ptr,
    pairs_ptr,
    at_ptr,
    image_ptr,
    active_ptr,
    flip_ptr,
    total,
    C,
    H,
    W,
    o0,
    o1,
    o2,
    o3,
    d0,
    d1,
    d2,
    d3,
    SWAPS: tl.constexpr,
    WHICH: tl.constexpr,
    WHAT: tl.constexpr,
    EXTENT_ALL: tl.constexpr,
    HAS_PLAN: tl.constexpr,
    HAS_FLIP: tl.constexpr,
    CL_ORDER: tl.constexpr,
    BF16_BITS: tl.constexpr,
    BLOCK: tl.constexpr,
):
    t = tl.program_id(0).to(tl.int64) * BLOCK + tl.arange(0, BLOCK)
    mask = t < total
    if CL_ORDER:  # walk the output in its memory order (B, H, W, C)
        c = t % C
        w = (t // C) % W
        h = (t // (C * W)) % H
        n = t // (C * W * H)
    else:
        w = t % W
        h = (t // W) % H
        c = (t // (W * H)) % C
        n = t // (W * H * C)
    ws = w
    if HAS_FLIP:
        f = tl.load(flip_ptr + n, mask=mask, other=0)
        ws = tl.where(f != 0, W - 1 - w, w)
    pix = h * W + ws
    cs = c
    if HAS_PLAN:
        mine = (t * 0 + tl.load(active_ptr)) != 0
        if WHICH == 0:
            mine = mine & (n == tl.load(image_ptr))
        if WHICH == 2:
            g = n
        else:
            g = n * 0
        if not EXTENT_ALL:
            fixed = tl.load(at_ptr + g, mask=mask, other=-1)
            if WHAT == 0:
                mine = mine & (pix == fixed)
            else:
                mine = mine & (c == fixed)
        if WHAT == 0:
            q = c
        else:
            q = pix
        moved = q
        for j in tl.static_range(SWAPS):
            u = tl.load(pairs_ptr + (g * SWAPS + j) * 2, mask=mask, other=-1)
            v = tl.load(pairs_ptr + (g * SWAPS + j) * 2 + 1, mask=mask, other=-1)
            moved = tl.where(q == u, v, tl.where(q == v, u, moved))
        q = tl.where(mine, moved, q)
        if WHAT == 0:
            cs = q
        else:
            pix = q
    src = tl.load(index_ptr + n, mask=mask, other=0) * d0 + cs * d1 + (pix // W) * d2 + (pix % W) * d3
    val = tl.load(data_ptr + src, mask=mask, other=0).to(tl.float32)
    scaled = val * tl.load(scale_ptr + cs, mask=mask, other=0.0)
    v = scaled + tl.load(shift_ptr + cs, mask=mask, other=0.0)
    if BF16_BITS:  # round to nearest even by hand: the same bits on a GPU and in the interpreter
        u = v.to(tl.uint32, bitcast=True)
        r = ((u + 0x7FFF + ((u >> 16) & 1)) >> 16).to(tl.uint16).to(tl.int16, bitcast=True)
        tl.store(out_ptr + n * o0 + c * o1 + h * o2 + w * o3, r, mask=mask)
    else:
        tl.store(out_ptr + n * o0 + c * o1 + h * o2 + w * o3, v.to(out_ptr.dtype.element_ty), mask=mask)


def load_batch_(out, data, index, scale, shift, *, plan=None, flip=None, nhwc=True, validate=True):
    op = "swapkern.load_batch_"
    for t, name in ((out, "out"), (data, "data"), (scale, "scale"), (shift, "shift")):
        tensor_arg(t, name, op)
    index = as_index(index, "index")
    flip = None if flip is None else as_index(flip, "flip")
    with mutating(op, [out]):
        args = prepare_load(out, data, index, scale, shift, plan, flip, nhwc, validate)
        _launch(out, data, plan, nhwc, *args)
    return out


def _launch(out, data, plan, nhwc, index, scale, shift, pairs, at, image, active, flip):
    b, c, h, w = out.shape
    total = out.numel()
    if total == 0:
        return
    order = (0, 3, 1, 2) if nhwc else (0, 1, 2, 3)
    ds = [data.stride(d) for d in order]
    flags = dict(SWAPS=1, WHICH=1, WHAT=0, EXTENT_ALL=True, HAS_PLAN=plan is not None, HAS_FLIP=flip is not None)
    if plan is None:
        pairs = at = image = active = index  # placeholders, never read without their flag
    else:
        which, what, extent_all = protocol_codes(plan.protocol)
        flags.update(SWAPS=plan.pairs.shape[1], WHICH=which, WHAT=what, EXTENT_ALL=extent_all)
    flip = flip if flip is not None else index
    cl = c > 1 and out.stride(1) == 1 and not out.is_contiguous()
    grid = (triton.cdiv(total, BLOCK),)
    bf16 = out.dtype == torch.bfloat16
    target = out.view(torch.int16) if bf16 else out
    tensors = (target, data, index, scale, shift, pairs, at, image, active, flip)
    with torch.cuda.device(out.device) if out.device.type == "cuda" else contextlib.nullcontext():
        # No fused multiply-add: the reference rounds the product and the sum separately (compiled Triton would
        # otherwise contract them into one fma.rn.f32 and differ from it in the last bits).
        _load_kernel[grid](
            *tensors,
            total,
            c,
            h,
            w,
            *out.stride(),
            *ds,
            CL_ORDER=cl,
            BF16_BITS=bf16,
            BLOCK=BLOCK,
            enable_fp_fusion=False,
            **flags,
        )
