"""The Triton backend's ops: same signatures, same checks as swapkern.reference; geometry built as in
csrc/plan.cpp (coalesced index groups and slices), then one kernel launch per call."""

from __future__ import annotations

import torch
import triton

from .._checks import prepare_between, prepare_elements, prepare_pixels, prepare_swap
from . import kernels

MAX_DIMS = 8
BLOCK = 1024  # elements per program
SMALL = 256  # slices below this many elements go through the flat kernel
MAX_GRID_Y = 65535
_BITS = {1: torch.uint8, 2: torch.int16, 4: torch.int32, 8: torch.int64, 16: torch.int64}
_geo_cache: dict = {}


def _group(t, begin, end):
    """Index group [begin, end) of t, flattened row-major: numel, coalesced sizes and strides (elements)."""
    numel, sizes, strides = 1, [], []
    for d in range(begin, end):
        size, stride = t.shape[d], t.stride(d)
        numel *= size
        if size == 1:
            continue
        if sizes and strides[-1] == stride * size:
            sizes[-1] *= size
            strides[-1] = stride
        else:
            sizes.append(size)
            strides.append(stride)
    if len(sizes) > MAX_DIMS:
        raise ValueError(f"swapkern: the indexed dims of shape {tuple(t.shape)} do not coalesce into {MAX_DIMS} dims")
    return numel, sizes, strides


def _slice(x, y, skip_x, skip_y):
    """Slice geometry: dims outside the index group and sample dim, ordered by x's strides, coalesced."""
    keep_x = [d for d in range(x.dim()) if d not in skip_x]
    keep_y = [d for d in range(y.dim()) if d not in skip_y]
    sizes = [x.shape[d] for d in keep_x]
    if sizes != [y.shape[d] for d in keep_y]:
        raise ValueError("swapkern: the slices of x and y differ in shape")
    dims = [(x.shape[dx], x.stride(dx), y.stride(dy)) for dx, dy in zip(keep_x, keep_y, strict=True)]
    dims = sorted((d for d in dims if d[0] != 1), key=lambda d: -d[1])
    out = []
    for size, sx, sy in dims:
        if out and out[-1][1] == sx * size and out[-1][2] == sy * size:
            out[-1] = (out[-1][0] * size, sx, sy)
        else:
            out.append((size, sx, sy))
    if len(out) > MAX_DIMS:
        raise ValueError(f"swapkern: slices of shape {tuple(x.shape)} do not coalesce into {MAX_DIMS} dims")
    return out


def _pad(v):
    return list(v) + [1] * (MAX_DIMS - len(v))


def _geometry(x, y, gx, gy, sample_dim):
    """The int64 geometry vector of kernels.py, and the dims counts the kernel is specialised on."""
    nx, zx, sx = _group(x, *gx)
    ny, zy, sy = _group(y, *gy)
    skip = {sample_dim} if sample_dim is not None else set()
    sl = _slice(x, y, set(range(*gx)) | skip, set(range(*gy)) | skip)
    ss = (x.shape[sample_dim], x.stride(sample_dim), y.stride(sample_dim)) if sample_dim is not None else (1, 0, 0)
    scale = 2 if x.element_size() == 16 else 1  # 16-byte elements move as two int64 words
    if scale == 2:
        sx, sy = [2 * s for s in sx], [2 * s for s in sy]
        ss = (ss[0], 2 * ss[1], 2 * ss[2])
        sl = [(z, 2 * a, 2 * b) for z, a, b in sl] + [(2, 1, 1)]
    sizes = [z for z, _, _ in sl]
    geo = [
        nx,
        *_pad(zx),
        *_pad(sx),
        ny,
        *_pad(zy),
        *_pad(sy),
        *ss,
        *_pad(sizes),
        *_pad([a for _, a, _ in sl]),
        *_pad([b for _, _, b in sl]),
    ]
    assert len(geo) == kernels.GEO_LEN
    m = 1
    for z in sizes:
        m *= z
    inner = sl[-1][0] if sl and sl[-1][1] == 1 and sl[-1][2] == 1 else 0  # contiguous row length, if rows
    interleaved = bool(sl) and bool(sx) and sx[-1] < sl[-1][1]
    return geo, (len(zx), len(zy), len(sl)), m, inner, interleaved


def _geo_tensor(geo, device):
    key = (tuple(geo), device)
    t = _geo_cache.get(key)
    if t is None:
        if len(_geo_cache) > 512:
            _geo_cache.clear()
        t = _geo_cache[key] = torch.tensor(geo, dtype=torch.int64, device=device)
    return t


def _bits(t):
    """An integer view of t's storage with the same strides (the kernels move bits, never values)."""
    if t.element_size() == 16:  # complex128: two int64 words per element, the last dim of view_as_real
        return torch.view_as_real(t).view(torch.int64)
    return t.view(_BITS[t.element_size()])


def _index(t, device):
    return t.to(device=device, dtype=torch.int64).contiguous()


def _run(x, y, gx, gy, a, b, sample=None, sample_dim=None):
    """Exchanges slice a[k] of x with slice b[k] of y for every k, in one launch."""
    k = a.numel()
    geo, (ix, iy, nd), m, inner, interleaved = _geometry(x, y, gx, gy, sample_dim if sample is not None else None)
    if k == 0 or m == 0:
        return
    dev = x.device
    xb, yb = _bits(x), _bits(y)
    a, b = _index(a, dev), _index(b, dev)
    s = _index(sample, dev) if sample is not None else a
    g = _geo_tensor(geo, dev)
    flags = dict(IX=ix, IY=iy, NDIM=nd, HAS_SAMPLE=sample is not None)
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
            kernels.exchange_rows[grid](xb, yb, a, b, s, g, k, rows, inner, BR=br, BC=bc, **flags)
        else:
            grid = (triton.cdiv(m, BLOCK), min(k, MAX_GRID_Y))
            kernels.exchange_pairs[grid](xb, yb, a, b, s, g, k, m, BLOCK=BLOCK, **flags)


class _nullcontext:
    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False


def swap_(x, dim, a, b, *, sample=None, sample_dim=0, validate=True):
    dim, a, b, sample, sample_dim = prepare_swap(x, dim, a, b, sample, sample_dim, validate)
    _run(x, x, (dim, dim + 1), (dim, dim + 1), a, b, sample, sample_dim)
    return x


def swap_pixels_(x, p, q, *, sample=None, validate=True):
    p, q, sample = prepare_pixels(x, p, q, sample, validate)
    _run(x, x, (2, 4), (2, 4), p, q, sample, 0)
    return x


def swap_elements_(x, i, j, *, validate=True):
    i, j = prepare_elements(x, i, j, validate)
    _run(x, x, (0, x.dim()), (0, x.dim()), i, j)
    return x


def swap_between_(x, y, i, j, *, dim_x=None, dim_y=None, validate=True):
    i, j, dim_x, dim_y = prepare_between(x, y, i, j, dim_x, dim_y, validate)
    if dim_x is None:
        _run(x, y, (0, x.dim()), (0, y.dim()), i, j)
    else:
        _run(x, y, (dim_x, dim_x + 1), (dim_y, dim_y + 1), i, j)
    return x, y


from .loader import load_batch_  # noqa: E402,F401  (the fused loader, same dispatch as the swaps)
