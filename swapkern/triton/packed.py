"""Triton multi-tensor exchange: every job of a weight-swap step (parameters and optimizer state) in one launch per
wave and element width. Jobs are rows of an int64 table: addresses of x, y, their index vectors, the keep flags and
the INTER pick slot (0: none), K, the slice size M, the job's candidate number, and the geometry of kernels.py;
each lane finds its job by binary search of the work prefix, then moves its element through pointers made from
those addresses."""

from __future__ import annotations

from typing import NamedTuple

import torch
import triton
import triton.language as tl

from .. import reference
from .._checks import bump_versions, make_plan
from .._common import APPLY, DRAW, bits, fingerprint
from .._groups import INTER
from . import kernels
from .geometry import geometry

N_HEAD = 9  # x, y, a, b, keep, select addresses, K, M, select value
HEAD = tl.constexpr(N_HEAD)  # readable inside the kernel (compiled Triton reads only constexpr globals)
FIELDS = N_HEAD + kernels.GEO_LEN
BLOCK = 1024


@triton.jit
def _unravel(i, row, BASE: tl.constexpr, SIZES: tl.constexpr, STRIDES: tl.constexpr, ND: tl.constexpr):
    """Offset of flat position i over the first ND of the 8 padded dims (size 1, stride 0 past a job's own dims)
    read from the job table. ND is the most dims any job of the launch has: each dim costs an int64 division."""
    off = i * 0
    for d in tl.static_range(ND):
        size = tl.load(row + BASE + SIZES + ND - 1 - d)
        off += (i % size) * tl.load(row + BASE + STRIDES + ND - 1 - d)
        i = i // size
    return off


@triton.jit
def exchange_packed(
    table, prefix, ref_ptr, n_jobs, total, F: tl.constexpr, LOG: tl.constexpr, ND: tl.constexpr, BLOCK: tl.constexpr
):
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
    m_size = tl.load(row + 7, mask=mask, other=1)
    k = local // m_size
    keep_at = tl.load(row + 4, mask=mask, other=0)
    select_at = tl.load(row + 5, mask=mask, other=0)
    keep = tl.load(keep_at.to(tl.pointer_type(tl.int64)) + k, mask=mask, other=0)
    picked = tl.load(tl.where(select_at != 0, select_at, keep_at).to(tl.pointer_type(tl.int64)), mask=mask, other=0)
    mask = mask & (keep != 0) & ((select_at == 0) | (picked == tl.load(row + 8, mask=mask, other=0)))
    ia = tl.load(tl.load(row + 2, mask=mask, other=0).to(tl.pointer_type(tl.int64)) + k, mask=mask, other=0)
    ib = tl.load(tl.load(row + 3, mask=mask, other=0).to(tl.pointer_type(tl.int64)) + k, mask=mask, other=0)
    nx = tl.load(row + HEAD, mask=mask, other=1)
    ny = tl.load(row + HEAD + 17, mask=mask, other=1)
    ia = tl.where(ia < 0, ia + nx, ia)
    ib = tl.where(ib < 0, ib + ny, ib)
    # Geometry (kernels.py layout, after the head): x group at 0, y group at 17, slice sizes 37, strides 45, 53.
    ox = _unravel(ia, row, HEAD, 1, 9, ND) + _unravel(local - k * m_size, row, HEAD, 37, 45, ND)
    oy = _unravel(ib, row, HEAD + 17, 1, 9, ND) + _unravel(local - k * m_size, row, HEAD, 37, 53, ND)
    px = tl.load(row + 0, mask=mask, other=0).to(ref_ptr.dtype) + ox
    py = tl.load(row + 1, mask=mask, other=0).to(ref_ptr.dtype) + oy
    vx = tl.load(px, mask=mask)
    vy = tl.load(py, mask=mask)
    tl.store(px, vy, mask=mask)
    tl.store(py, vx, mask=mask)


def pack(jobs):
    """jobs: (x, y, dx, dy, a, b, keep, select, select value) with dx/dy None for flat elements and select None or
    a one-element tensor. Returns launches: per element width, the job table, the work prefix, a reference tensor
    of that width, the job count and the total work."""
    by_width = {}
    for x, y, dx, dy, a, b, keep, select, value in jobs:
        gx = (0, x.dim()) if dx is None else (dx, dx + 1)
        gy = (0, y.dim()) if dy is None else (dy, dy + 1)
        plan = make_plan("swapkern.pack", x, y, gx, gy, a, b, None, 0, False)
        if plan.a.data_ptr() != a.data_ptr() or plan.b.data_ptr() != b.data_ptr():
            raise ValueError("swapkern.pack: indices must be int64 on the tensors' device, apart from their memory")
        g = geometry(plan)
        geo, m = g.geo, g.m
        xb, yb = bits(x), bits(y)
        sel = 0 if select is None else select.data_ptr()
        row = [xb.data_ptr(), yb.data_ptr(), a.data_ptr(), b.data_ptr(), keep.data_ptr(), sel, a.numel(), m, value]
        by_width.setdefault(xb.element_size(), []).append((row + geo, a.numel() * m, xb, max(g.dims)))
    launches = []
    for rows in by_width.values():
        table = torch.tensor([r[0] for r in rows], dtype=torch.int64, device=rows[0][2].device)
        work = [0]
        for r in rows:
            work.append(work[-1] + r[1])
        prefix = torch.tensor(work, dtype=torch.int64, device=table.device)
        nd = max(1, max(r[3] for r in rows))
        launches.append(Launch(table, prefix, rows[0][2], len(rows), work[-1], nd))
    return launches


class Launch(NamedTuple):
    table: torch.Tensor  # one row of FIELDS int64 per job
    prefix: torch.Tensor  # cumulative work of the jobs
    ref: torch.Tensor  # a tensor of the element width (the pointer type)
    jobs: int
    total: int
    nd: int  # most dims of any job


def run(launches):
    for ln in launches:
        if ln.total == 0:
            continue
        log = max(1, ln.jobs.bit_length())
        with torch.cuda.device(ln.ref.device) if ln.ref.device.type == "cuda" else _null():
            exchange_packed[(triton.cdiv(ln.total, BLOCK),)](
                ln.table, ln.prefix, ln.ref, ln.jobs, ln.total, F=FIELDS, LOG=log, ND=ln.nd, BLOCK=BLOCK
            )


class _null:
    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False


# -- the multi-tensor engine's entry points (swapkern.multi) --------------------------------------------------------
def multi_pack(engine):
    per_wave: dict = {}
    for job, wave in zip(engine.jobs, engine.wave, strict=True):
        a, b, keep = engine.slices(job.group)
        inter = engine.groups[job.group].kind == INTER
        select = engine.pick_slot(job.group) if inter else None
        per_wave.setdefault(wave, []).append((job.x, job.y, job.dx, job.dy, a, b, keep, select, job.job))
    return fingerprint(engine.watched), [pack(per_wave[w]) for w in sorted(per_wave)]


def multi_step_(engine, packed, seed, step, mode):
    prints, waves = packed
    if fingerprint(engine.watched) != prints:
        return False
    if mode & DRAW:
        reference.draw_weights_(engine, seed, step)
    if mode & APPLY:
        for launches in waves:
            run(launches)
        bump_versions(engine.watched)
    return True
