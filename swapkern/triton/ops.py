"""The Triton backend's ops: same signatures, same checks as swapkern.reference; geometry built as in
csrc/plan.cpp (coalesced index groups and slices), then one kernel launch per call."""

from __future__ import annotations

import torch
import triton

from .. import reference
from .._checks import prepare_between, prepare_elements, prepare_pixels, prepare_swap
from .._common import bits, mutating, plan_views, tensor_arg
from .._index import as_index, as_int
from .._wrappers import named_wrappers
from . import kernels
from .geometry import geometry
from .loader import load_batch_  # noqa: F401  (the fused loader, same dispatch as the swaps)
from .packed import multi_pack, multi_step_  # noqa: F401  (the multi-tensor engine)

BLOCK = 1024  # elements per program
SMALL = 256  # slices below this many elements go through the flat kernel
MAX_GRID_Y = 65535
_geo_cache: dict = {}


def _geo_tensor(geo, device):
    key = (tuple(geo), device)
    t = _geo_cache.get(key)
    if t is None:
        if len(_geo_cache) > 512:
            _geo_cache.clear()
        t = _geo_cache[key] = torch.tensor(geo, dtype=torch.int64, device=device)
    return t


def _run(plan):
    """Exchanges slice a[k] of x with slice b[k] of y for every k of a checked plan, in one launch."""
    k = plan.k
    geo, (ix, iy, nd), m, inner, interleaved, vec = geometry(plan)
    if k == 0 or m == 0:
        return
    x, y, dev = plan.x, plan.y, plan.x.device
    xb, yb = bits(x), bits(y)
    a, b = plan.a, plan.b
    s = plan.sample if plan.sample is not None else a
    g = _geo_tensor(geo, dev)
    flags = dict(IX=ix, IY=iy, NDIM=nd, HAS_SAMPLE=plan.sample is not None)
    with torch.cuda.device(dev) if dev.type == "cuda" else _nullcontext():
        if m < SMALL or (interleaved and k > 1):
            grid = (triton.cdiv(k * m, BLOCK),)
            pairs_inner = interleaved and k > 1
            kernels.exchange_flat[grid](xb, yb, a, b, s, g, k * m, k, m, PAIRS_INNER=pairs_inner, BLOCK=BLOCK, **flags)
        elif inner:
            rows = m // inner
            bc = min(BLOCK, triton.next_power_of_2(inner))
            br = min(max(1, BLOCK // bc), triton.next_power_of_2(rows))
            grid = (triton.cdiv(rows, br) * triton.cdiv(inner, bc), min(k, MAX_GRID_Y))
            kernels.exchange_rows[grid](xb, yb, a, b, s, g, k, rows, inner // vec, BR=br, BC=bc, VEC=vec, **flags)
        else:
            grid = (triton.cdiv(m, BLOCK), min(k, MAX_GRID_Y))
            kernels.exchange_pairs[grid](xb, yb, a, b, s, g, k, m, BLOCK=BLOCK, **flags)


class _nullcontext:
    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False


def swap_(x, dim, a, b, *, sample=None, sample_dim=0, validate=True):
    op = "swapkern.swap_"
    tensor_arg(x, "x", op)
    dim, sample_dim = as_int(dim, "dim", op), as_int(sample_dim, "sample_dim", op)
    a, b, sample = as_index(a, "a"), as_index(b, "b"), None if sample is None else as_index(sample, "sample")
    with mutating(op, [x]):
        _run(prepare_swap(x, dim, a, b, sample, sample_dim, validate))
    return x


def swap_pixels_(x, p, q, *, sample=None, validate=True):
    op = "swapkern.swap_pixels_"
    tensor_arg(x, "x", op)
    p, q, sample = as_index(p, "p"), as_index(q, "q"), None if sample is None else as_index(sample, "sample")
    with mutating(op, [x]):
        _run(prepare_pixels(x, p, q, sample, validate))
    return x


def swap_elements_(x, i, j, *, validate=True):
    op = "swapkern.swap_elements_"
    tensor_arg(x, "x", op)
    i, j = as_index(i, "i"), as_index(j, "j")
    with mutating(op, [x]):
        _run(prepare_elements(x, i, j, validate))
    return x


def swap_between_(x, y, i, j, *, dim_x=None, dim_y=None, validate=True):
    op = "swapkern.swap_between_"
    tensor_arg(x, "x", op)
    tensor_arg(y, "y", op)
    dim_x = None if dim_x is None else as_int(dim_x, "dim_x", op)
    dim_y = None if dim_y is None else as_int(dim_y, "dim_y", op)
    i, j = as_index(i, "i"), as_index(j, "j")
    with mutating(op, [x] if x is y else [x, y]):
        _run(prepare_between(x, y, i, j, dim_x, dim_y, validate))
    return x, y


swap_channels_, swap_rows_, swap_cols_ = named_wrappers(swap_)

# Feature swaps: the plan is drawn with in-place torch ops on the device (swapkern.reference, no host sync) and
# applied through the swap ops above.
draw_feature_plan_ = reference.draw_feature_plan_


def feature_swap_(x, buf, indices, protocol, swaps, seed, step, threshold, ws, counter=None):
    """Draws a plan into buf and applies it to the batch x in place with the Triton ops (one protocol step)."""
    draw_feature_plan_(buf, indices, tuple(x.shape), protocol, swaps, seed, step, threshold, ws, counter)
    plan = plan_views(protocol, tuple(x.shape), swaps, buf)
    return plan.apply_with_(x, swap_elements_, swap_channels_, swap_pixels_)
