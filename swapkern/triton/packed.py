"""Triton multi-tensor exchange: every job of a weight-swap step (parameters and optimizer state) in one launch per
element width. Jobs are rows of an int64 table: addresses of x, y and their index vectors, K, the slice size M,
and the geometry of kernels.py; each lane finds its job by binary search of the work prefix, then moves its
element through pointers made from those addresses."""

from __future__ import annotations

import torch
import triton
import triton.language as tl

from . import kernels
from .ops import _bits, _geometry

HEAD = 6  # x, y, a, b addresses, K, M
FIELDS = HEAD + kernels.GEO_LEN
BLOCK = 1024


@triton.jit
def _unravel(i, row, BASE: tl.constexpr, SIZES: tl.constexpr, STRIDES: tl.constexpr):
    """Offset of flat position i over 8 padded dims (size 1, stride 0 where unused) read from the job table."""
    off = i * 0
    for d in tl.static_range(8):
        size = tl.load(row + BASE + SIZES + 7 - d)
        off += (i % size) * tl.load(row + BASE + STRIDES + 7 - d)
        i = i // size
    return off


@triton.jit
def exchange_packed(table, prefix, ref_ptr, n_jobs, total, F: tl.constexpr, LOG: tl.constexpr, BLOCK: tl.constexpr):
    w = tl.program_id(0).to(tl.int64) * BLOCK + tl.arange(0, BLOCK)
    mask = w < total
    lo = w * 0
    hi = lo + n_jobs
    for _ in tl.static_range(LOG):  # prefix[lo] <= w < prefix[hi]
        mid = (lo + hi) // 2
        right = tl.load(prefix + mid, mask=mask, other=0) <= w
        lo = tl.where(right, mid, lo)
        hi = tl.where(right, hi, mid)
    row = table + lo * F
    local = w - tl.load(prefix + lo, mask=mask, other=0)
    m_size = tl.load(row + 5, mask=mask, other=1)
    k = local // m_size
    ia = tl.load(tl.load(row + 2, mask=mask, other=0).to(tl.pointer_type(tl.int64)) + k, mask=mask, other=0)
    ib = tl.load(tl.load(row + 3, mask=mask, other=0).to(tl.pointer_type(tl.int64)) + k, mask=mask, other=0)
    nx = tl.load(row + 6, mask=mask, other=1)
    ny = tl.load(row + 6 + 17, mask=mask, other=1)
    ia = tl.where(ia < 0, ia + nx, ia)
    ib = tl.where(ib < 0, ib + ny, ib)
    # Geometry (kernels.py layout, after the head): x group at 0, y group at 17, slice sizes 37, strides 45, 53.
    ox = _unravel(ia, row, 6, 1, 9) + _unravel(local - k * m_size, row, 6, 37, 45)
    oy = _unravel(ib, row, 6 + 17, 1, 9) + _unravel(local - k * m_size, row, 6, 37, 53)
    px = tl.load(row + 0, mask=mask, other=0).to(ref_ptr.dtype) + ox
    py = tl.load(row + 1, mask=mask, other=0).to(ref_ptr.dtype) + oy
    vx = tl.load(px, mask=mask)
    vy = tl.load(py, mask=mask)
    tl.store(px, vy, mask=mask)
    tl.store(py, vx, mask=mask)


def pack(jobs):
    """jobs: (x, y, dx, dy, a, b) with dx/dy None for flat elements. Returns launches: per element width, the
    job table, the work prefix, a reference tensor of that width, the job count and the total work."""
    by_width = {}
    for x, y, dx, dy, a, b in jobs:
        gx = (0, x.dim()) if dx is None else (dx, dx + 1)
        gy = (0, y.dim()) if dy is None else (dy, dy + 1)
        geo, _, m, _, _ = _geometry(x, y, gx, gy, None)
        xb, yb = _bits(x), _bits(y)
        row = [xb.data_ptr(), yb.data_ptr(), a.data_ptr(), b.data_ptr(), a.numel(), m, *geo]
        by_width.setdefault(xb.element_size(), []).append((row, a.numel() * m, xb))
    launches = []
    for rows in by_width.values():
        table = torch.tensor([r for r, _, _ in rows], dtype=torch.int64, device=rows[0][2].device)
        work = [0]
        for _, n, _ in rows:
            work.append(work[-1] + n)
        prefix = torch.tensor(work, dtype=torch.int64, device=table.device)
        launches.append((table, prefix, rows[0][2], len(rows), work[-1]))
    return launches


def run(launches):
    for table, prefix, ref, n, total in launches:
        if total == 0:
            continue
        log = max(1, (n).bit_length())
        exchange_packed[(triton.cdiv(total, BLOCK),)](table, prefix, ref, n, total, F=FIELDS, LOG=log, BLOCK=BLOCK)
