"""An independent model of the README's promises for the swap ops: from a description of a call (views into
base storages given by sizes, strides and offsets; index values as given), it says which exceptions the call may
raise, or what every base storage holds afterwards. It shares no code with swapkern: offsets are enumerated
element by element in pure Python, so it is slow and only meant for the small tensors of the fuzz test.

The rules it encodes (the README's list of errors):
  TypeError   a tensor argument that is not a tensor; a dim that is not an int; indices that are not ints
  ValueError  index tensors of more than one dim; dims out of range; sample_dim == dim; the op's shape needs;
              between: only one of dim_x / dim_y, x is y with other dims, slice shapes, dtypes differ;
              a tensor whose elements may overlap (stride 0 or any layout not provably free of overlap);
              x and y whose memory ranges intersect; index lengths that differ
  IndexError  K > 0 pairs into a dim of size 0; with validate: an index out of range
  ValueError  with validate: a[k] == b[k], an index used twice in one scope
"""

from __future__ import annotations

import itertools
import numbers
from dataclasses import dataclass, field

INT64_MIN, INT64_MAX = -(2**63), 2**63 - 1


@dataclass
class View:
    """A strided view of base storage `base` (a key into the storages dict): logical sizes, strides, offset."""

    base: str
    sizes: tuple
    strides: tuple
    offset: int = 0

    @property
    def ndim(self):
        return len(self.sizes)

    @property
    def numel(self):
        n = 1
        for s in self.sizes:
            n *= s
        return n

    def offsets(self):
        """Element offsets in row-major logical order."""
        ranges = [range(s) for s in self.sizes]
        return [
            self.offset + sum(i * st for i, st in zip(idx, self.strides, strict=True))
            for idx in itertools.product(*ranges)
        ]

    def offset_of(self, coords):
        return self.offset + sum(c * st for c, st in zip(coords, self.strides, strict=True))

    def extent(self):
        """Element range [lo, hi) the view can touch (empty for numel 0)."""
        if self.numel == 0:
            return (self.offset, self.offset)
        return (
            self.offset,
            self.offset + 1 + sum((s - 1) * st for s, st in zip(self.sizes, self.strides, strict=True)),
        )


def collides(v: View) -> bool:
    """Whether two distinct logical positions of v share an element (exact, by enumeration)."""
    offs = v.offsets()
    return len(set(offs)) != len(offs)


def provably_disjoint(v: View) -> bool:
    """The documented sufficient rule: with dims of size > 1 ordered by stride, each stride exceeds the span of
    all smaller-stride dims. Layouts that fail it are refused even when no two elements meet."""
    dims = sorted((st, s) for s, st in zip(v.sizes, v.strides, strict=True) if s > 1)
    span = 0
    for st, s in dims:
        if st <= span:
            return False
        span += (s - 1) * st
    return True


@dataclass
class Index:
    """An index argument: `kind` says how it is passed, `values` are the ints it holds (None for bad kinds)."""

    # int, list, tuple, numpy, tensor, scalar-tensor, alias, bad-float, bad-bool, bad-2d, bad-str, and the tensors the
    # dispatcher refuses before a compiled op runs: bad-meta (on the meta device), bad-sparse, bad-quantized
    kind: str
    values: list | None
    dtype: str = "int64"  # tensor / numpy element type

    @property
    def type_error(self):
        return self.kind in ("bad-float", "bad-bool", "bad-str", "bad-quantized")

    @property
    def value_error(self):
        return self.kind in ("bad-2d", "bad-meta", "bad-sparse")


@dataclass
class Call:
    op: str  # swap_, swap_channels_, swap_rows_, swap_cols_, swap_pixels_, swap_elements_, swap_between_
    x: View
    a: Index
    b: Index
    y: View | None = None  # swap_between_
    sample: Index | None = None
    dim: object = 0
    sample_dim: object = 0
    dim_x: object = None
    dim_y: object = None
    validate: bool = True
    same_xy: bool = False  # swap_between_(x, x, ...)
    dtype_y_differs: bool = False
    notes: list = field(default_factory=list)


def _is_int(v):
    return isinstance(v, numbers.Integral) and not isinstance(v, bool)


def _wrap_dim(d, ndim):
    return d + ndim if d < 0 else d


def expect(call: Call, storages: dict, elem: dict):
    """-> ("raise", set of acceptable exception types) or ("ok", {base: new storage list}).

    storages: base -> list of element values (any hashable stand-ins; swaps only move them); elem: base ->
    element size in bytes (for the byte extent of x vs y)."""
    # Every fault the arguments hold adds its exception; which of them a backend meets first is its business, but
    # all backends must agree (the test checks that) and raise one of these.
    hard, soft = set(), set()  # exceptions the call must raise (one of), and ones it may raise instead
    x, y = call.x, call.y
    idx_args = [call.a, call.b] + ([call.sample] if call.sample is not None else [])
    for t in idx_args:
        if t.type_error:
            hard.add(TypeError)
        if t.value_error:
            hard.add(ValueError)
        if t.values is not None and any(not INT64_MIN <= v <= INT64_MAX for v in t.values):
            hard.add(IndexError)  # not representable as an index at all
    dims_ok = True
    if call.op == "swap_" and not (_is_int(call.dim) and _is_int(call.sample_dim)):
        hard.add(TypeError)
        dims_ok = False
    if call.op == "swap_between_" and any(v is not None and not _is_int(v) for v in (call.dim_x, call.dim_y)):
        hard.add(TypeError)
        dims_ok = False
    # The op's own shape needs.
    if call.op in ("swap_channels_", "swap_pixels_") and x.ndim != 4:
        hard.add(ValueError)
        dims_ok = False
    if call.op in ("swap_rows_", "swap_cols_") and x.ndim < 2:
        hard.add(ValueError)
        dims_ok = False
    if not dims_ok:
        return "raise", hard

    # Index groups (begin, end) on x and y, and the sample dim.
    sample_dim = None
    if call.op in ("swap_", "swap_channels_", "swap_rows_", "swap_cols_"):
        dim = {"swap_channels_": 1, "swap_rows_": 0, "swap_cols_": 1}.get(call.op, call.dim)
        if not -x.ndim <= dim < x.ndim:
            return "raise", hard | {ValueError}
        dim = _wrap_dim(dim, x.ndim)
        gx = gy = (dim, dim + 1)
        if call.sample is not None:
            sd = 0 if call.op == "swap_channels_" else call.sample_dim
            if not -x.ndim <= sd < x.ndim:
                return "raise", hard | {ValueError}
            sample_dim = _wrap_dim(sd, x.ndim)
            if sample_dim == dim:
                return "raise", hard | {ValueError}
        y = x
    elif call.op == "swap_pixels_":
        gx = gy = (2, 4)
        sample_dim = 0 if call.sample is not None else None
        y = x
    elif call.op == "swap_elements_":
        gx = gy = (0, x.ndim)
        y = x
    else:  # swap_between_
        if call.same_xy:
            y = x
        if call.dtype_y_differs:
            hard.add(ValueError)
        if (call.dim_x is None) != (call.dim_y is None):
            return "raise", {ValueError} | hard
        if call.dim_x is None:
            gx, gy = (0, x.ndim), (0, y.ndim)
        else:
            if not (-x.ndim <= call.dim_x < x.ndim and -y.ndim <= call.dim_y < y.ndim):
                return "raise", {ValueError} | hard
            dx, dy = _wrap_dim(call.dim_x, x.ndim), _wrap_dim(call.dim_y, y.ndim)
            if call.same_xy and dx != dy:
                return "raise", {ValueError} | hard
            gx, gy = (dx, dx + 1), (dy, dy + 1)
            sx = [s for d, s in enumerate(x.sizes) if d != dx]
            sy = [s for d, s in enumerate(y.sizes) if d != dy]
            if sx != sy:
                hard.add(ValueError)
    same = y is x

    # Memory: self-overlap of each tensor, then x against y.
    for v in {id(x): x, id(y): y}.values():
        if collides(v):
            hard.add(ValueError)
        elif not provably_disjoint(v):
            soft.add(ValueError)
    if not same and x.numel and y.numel and x.base == y.base:
        (x0, x1), (y0, y1) = x.extent(), y.extent()
        ex, ey = elem[x.base], elem[y.base]
        if x0 * ex < y1 * ey and y0 * ey < x1 * ex:
            hard.add(ValueError)
    if any(t.values is None or len(t.values) != len(call.a.values or []) for t in idx_args):
        hard.add(ValueError)
    if hard:
        return "raise", hard | soft

    # The static index checks.
    k = len(call.a.values)

    def group_numel(v, g):
        n = 1
        for d in range(*g):
            n *= v.sizes[d]
        return n

    nx, ny = group_numel(x, gx), group_numel(y, gy)
    ns = x.sizes[sample_dim] if sample_dim is not None else 1
    if k and (nx == 0 or ny == 0 or ns == 0):
        return "raise", {IndexError} | soft

    # Data-dependent checks.
    a, b = list(call.a.values), list(call.b.values)
    s = list(call.sample.values) if call.sample is not None else [0] * k
    if call.validate:
        for vals, n in ((a, nx), (b, ny), (s, ns)):
            if any(not -n <= v < n for v in vals):
                return "raise", {IndexError} | soft
        a = [v % nx for v in a]
        b = [v % ny for v in b]
        s = [v % ns for v in s]
        if same:
            if any(p == q for p, q in zip(a, b, strict=True)):
                return "raise", {ValueError} | soft
            keys = [(sc, v) for sc, v in zip(s + s, a + b, strict=True)]
            if len(set(keys)) != len(keys):
                return "raise", {ValueError} | soft
        else:
            if len(set(a)) != len(a) or len(set(b)) != len(b):
                return "raise", {ValueError} | soft
    else:
        a = [v % nx for v in a]
        b = [v % ny for v in b]
        s = [v % ns for v in s]

    # The exchanges, element by element.
    out = {name: list(vals) for name, vals in storages.items()}

    def slice_offsets(v, g, idx, sample):
        coords = {}
        rest = idx
        for d in reversed(range(g[0], g[1])):
            coords[d] = rest % v.sizes[d]
            rest //= v.sizes[d]
        if sample is not None:
            coords[sample_dim] = sample
        free = [d for d in range(v.ndim) if d not in coords]
        offs = []
        for tail in itertools.product(*[range(v.sizes[d]) for d in free]):
            full = dict(coords)
            full.update(zip(free, tail, strict=True))
            offs.append(v.offset_of([full[d] for d in range(v.ndim)]))
        return offs

    for kk in range(k):
        sm = s[kk] if sample_dim is not None else None
        ox = slice_offsets(x, gx, a[kk], sm)
        oy = slice_offsets(y, gy, b[kk], sm)
        bx, by = out[x.base], out[y.base]
        for i, j in zip(ox, oy, strict=True):
            bx[i], by[j] = by[j], bx[i]
    return ("ok", out) if not soft else ("ok-or", (out, soft))
