"""The geometry vector the Triton exchange kernels read (layout: kernels.py), built from a checked plan exactly as
csrc/plan.cpp fills a Plan, in the units of the tensors' bits view (16-byte elements: two int64 words)."""

from __future__ import annotations

from typing import NamedTuple

from .._checks import MAX_DIMS
from . import kernels


def _pad(v):
    return list(v) + [1] * (MAX_DIMS - len(v))


class Geometry(NamedTuple):
    geo: list  # the int64 geometry vector of kernels.py
    dims: tuple  # (index dims of x, of y, slice dims): the launch is specialised on them
    m: int  # slice numel
    inner: int  # contiguous row length when slices are rows of contiguous elements, else 0
    interleaved: bool  # pairs closer in memory than the elements of one slice (columns, channels_last channels)
    vec: int  # elements per 16-byte access in exchange_rows (1: no promise of alignment)


def geometry(plan) -> Geometry:
    """The geometry of a checked plan (swapkern._checks.Plan), in the units of its bits view."""
    x = plan.x
    nx, zx, sx = plan.group_x
    ny, zy, sy = plan.group_y
    sl = list(plan.slice)
    sd = plan.sample_dim
    ss = (x.shape[sd], x.stride(sd), plan.y.stride(sd)) if sd is not None else (1, 0, 0)
    if x.element_size() == 16:  # 16-byte elements move as two int64 words
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
    # Rows that all start 16-byte aligned and are whole 16-byte units move 16 bytes per access (exchange_rows VEC).
    vec = 16 // min(x.element_size(), 8)
    outer = [st for _, a, b in sl[:-1] for st in (a, b)] + list(sx) + list(sy) + [ss[1], ss[2]]
    ptrs_aligned = plan.x.data_ptr() % 16 == 0 and plan.y.data_ptr() % 16 == 0
    if not (inner and inner % vec == 0 and ptrs_aligned and all(st % vec == 0 for st in outer)):
        vec = 1
    return Geometry(geo, (len(zx), len(zy), len(sl)), m, inner, interleaved, vec)
