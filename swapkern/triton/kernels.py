"""Triton kernels: K pairs of equally shaped strided slices exchanged in place, in one launch.

Geometry (see ops.py, which fills it exactly as csrc/plan.cpp fills a Plan) is one small int64 tensor:
    [0]      numel of x's index group     [1:9]  its sizes    [9:17]  its strides     (X = 0)
    [17]     numel of y's index group     [18:26] its sizes   [26:34] its strides     (Y = 17)
    [34]     sample dim size              [35] x sample stride [36] y sample stride
    [37:45]  slice sizes                  [45:53] x slice strides [53:61] y slice strides
All offsets are int64 (elements); indices may be negative and count from the end.
"""

import triton
import triton.language as tl

GEO_LEN = 61
X, Y, SAMPLE, SLICE = 0, 17, 34, 37


@triton.jit
def _group_offset(i, geo, BASE: tl.constexpr, NDIM: tl.constexpr):
    """Offset of position i of an index group (row-major over its sizes)."""
    i = i.to(tl.int64)
    i = tl.where(i < 0, i + tl.load(geo + BASE), i)
    off = i * 0
    for d in tl.static_range(NDIM):
        size = tl.load(geo + BASE + NDIM - d)
        off += (i % size) * tl.load(geo + BASE + 8 + NDIM - d)
        i = i // size
    return off


@triton.jit
def _slice_offsets(m, geo, NDIM: tl.constexpr):
    """Offsets in x and in y of element m of a slice (row-major over the coalesced slice geometry)."""
    m = m.to(tl.int64)
    ox = m * 0
    oy = m * 0
    for d in tl.static_range(NDIM):
        dd = NDIM - 1 - d
        size = tl.load(geo + 37 + dd)
        c = m % size
        ox += c * tl.load(geo + 45 + dd)
        oy += c * tl.load(geo + 53 + dd)
        m = m // size
    return ox, oy


@triton.jit
def _pair_offsets(k, a_ptr, b_ptr, s_ptr, geo, mask, IX: tl.constexpr, IY: tl.constexpr, HAS_SAMPLE: tl.constexpr):
    ox = _group_offset(tl.load(a_ptr + k, mask=mask, other=0), geo, 0, IX)
    oy = _group_offset(tl.load(b_ptr + k, mask=mask, other=0), geo, 17, IY)
    if HAS_SAMPLE:
        s = tl.load(s_ptr + k, mask=mask, other=0).to(tl.int64)
        s = tl.where(s < 0, s + tl.load(geo + 34), s)
        ox += s * tl.load(geo + 35)
        oy += s * tl.load(geo + 36)
    return ox, oy


@triton.jit
def _swap(x_ptr, y_ptr, ox, oy, mask):
    """x[ox] <-> y[oy] where mask."""
    vx = tl.load(x_ptr + ox, mask=mask)
    vy = tl.load(y_ptr + oy, mask=mask)
    tl.store(x_ptr + ox, vy, mask=mask)
    tl.store(y_ptr + oy, vx, mask=mask)


@triton.jit
def exchange_flat(
    x_ptr,
    y_ptr,
    a_ptr,
    b_ptr,
    s_ptr,
    geo,
    total,
    K,
    M,
    IX: tl.constexpr,
    IY: tl.constexpr,
    NDIM: tl.constexpr,
    HAS_SAMPLE: tl.constexpr,
    PAIRS_INNER: tl.constexpr,
    BLOCK: tl.constexpr,
):
    """Many small slices: one flat range over all K * M element exchanges. Grid: cdiv(total, BLOCK).
    PAIRS_INNER (interleaved slices, e.g. columns): neighbouring lanes take neighbouring pairs at one element."""
    w = tl.program_id(0).to(tl.int64) * BLOCK + tl.arange(0, BLOCK)
    mask = w < total
    if PAIRS_INNER:
        m = w // K
        k = w - m * K
    else:
        k = w // M
        m = w - k * M
    ox, oy = _pair_offsets(k, a_ptr, b_ptr, s_ptr, geo, mask, IX, IY, HAS_SAMPLE)
    sx, sy = _slice_offsets(m, geo, NDIM)
    _swap(x_ptr, y_ptr, ox + sx, oy + sy, mask)


@triton.jit
def exchange_rows(
    x_ptr,
    y_ptr,
    a_ptr,
    b_ptr,
    s_ptr,
    geo,
    K,
    R,
    CV,
    IX: tl.constexpr,
    IY: tl.constexpr,
    NDIM: tl.constexpr,
    HAS_SAMPLE: tl.constexpr,
    BR: tl.constexpr,
    BC: tl.constexpr,
    VEC: tl.constexpr,
):
    """Slices made of R rows of C = CV * VEC contiguous elements (innermost stride 1 in x and y): (BR, BC) tiles
    that are contiguous along C. VEC > 1 (decided on the host) promises that every row starts 16 bytes aligned and
    C is a multiple of VEC, so loads and stores move 16 bytes at a time. Axis 0 walks the tiles, axis 1 the pairs.
    Grid: (cdiv(R, BR) * cdiv(C, BC), min(K, 65535))."""
    C = CV * VEC
    tile = tl.program_id(0).to(tl.int64)
    n_col_tiles = tl.cdiv(C, BC)
    row_tile = tile // n_col_tiles
    rows = row_tile * BR + tl.arange(0, BR)
    cols = (tile - row_tile * n_col_tiles) * BC + tl.arange(0, BC)
    rx, ry = _slice_offsets(rows, geo, NDIM - 1)
    mask = (rows < R)[:, None] & (cols < C)[None, :]
    tx = rx[:, None] + cols[None, :]
    ty = ry[:, None] + cols[None, :]
    for k in tl.range(tl.program_id(1), K, tl.num_programs(1)):
        ox, oy = _pair_offsets(k, a_ptr, b_ptr, s_ptr, geo, k < K, IX, IY, HAS_SAMPLE)
        px = ox + tx
        py = oy + ty
        if VEC > 1:
            px = tl.multiple_of(px, [1, VEC])
            py = tl.multiple_of(py, [1, VEC])
        _swap(x_ptr, y_ptr, px, py, mask)


@triton.jit
def exchange_pairs(
    x_ptr,
    y_ptr,
    a_ptr,
    b_ptr,
    s_ptr,
    geo,
    K,
    M,
    IX: tl.constexpr,
    IY: tl.constexpr,
    NDIM: tl.constexpr,
    HAS_SAMPLE: tl.constexpr,
    BLOCK: tl.constexpr,
):
    """Large strided slices: axis 0 walks blocks of one slice, axis 1 walks the pairs (pair offsets are
    scalars). Grid: (cdiv(M, BLOCK), min(K, 65535))."""
    m = tl.program_id(0).to(tl.int64) * BLOCK + tl.arange(0, BLOCK)
    mask = m < M
    sx, sy = _slice_offsets(m, geo, NDIM)
    for k in tl.range(tl.program_id(1), K, tl.num_programs(1)):
        ox, oy = _pair_offsets(k, a_ptr, b_ptr, s_ptr, geo, k < K, IX, IY, HAS_SAMPLE)
        _swap(x_ptr, y_ptr, ox + sx, oy + sy, mask)
