"""Argument checks in Python, shared by the reference and the Triton backend.

The compiled ops (csrc/plan.cpp) make the same checks in C++; tests hold both to the same exceptions.
Every check runs before any element moves.
"""

from __future__ import annotations

import torch


def wrap_dim(op: str, dim: int, ndim: int, name: str = "dim") -> int:
    if not -ndim <= dim < ndim:
        raise ValueError(f"{op}: {name}={dim} is out of range for a tensor with {ndim} dims")
    return dim % ndim


def check_index_tensor(op: str, t: torch.Tensor, name: str, device: torch.device) -> None:
    if t.dtype == torch.bool or t.is_floating_point() or t.is_complex():
        raise TypeError(f"{op}: {name} must hold integers, got a tensor of dtype {t.dtype}")
    if t.dim() > 1:
        raise ValueError(f"{op}: {name} must have shape [K], got {tuple(t.shape)}")
    if t.device.type != "cpu" and t.device != device:
        raise ValueError(f"{op}: {name} is on {t.device} but the tensor is on {device}")


def check_tensor(op: str, x: torch.Tensor) -> None:
    if x.layout != torch.strided:
        raise ValueError(f"{op}: only strided tensors")
    if x.element_size() > 16:
        raise TypeError(f"{op}: unsupported dtype {x.dtype}")
    if torch._debug_has_internal_overlap(x) == 1:
        raise ValueError(f"{op}: a tensor whose elements overlap in memory (e.g. from expand) cannot be swapped")


def _extent(t: torch.Tensor) -> tuple[int, int]:
    span = 1 + sum((s - 1) * st for s, st in zip(t.shape, t.stride(), strict=True))
    return t.data_ptr(), t.data_ptr() + span * t.element_size()


def check_pair_of_tensors(op: str, x: torch.Tensor, y: torch.Tensor) -> None:
    if x.dtype != y.dtype:
        raise ValueError(f"{op}: x has dtype {x.dtype} but y has {y.dtype}")
    if x.device != y.device:
        raise ValueError(f"{op}: x is on {x.device} but y is on {y.device}")
    if x is not y and x.numel() and y.numel():
        (x0, x1), (y0, y1) = _extent(x), _extent(y)
        if x0 < y1 and y0 < x1:
            raise ValueError(f"{op}: x and y overlap in memory; to swap within one tensor use swap_")


def check_lengths(op, a, b, n_a, n_b, *, sample=None, n_sample=1):
    """The static part of check_plan, made even with validate=False: lengths agree, no index into size 0."""
    k = a.numel()
    if b.numel() != k:
        raise ValueError(f"{op}: a has {k} indices but b has {b.numel()}")
    if sample is not None and sample.numel() != k:
        raise ValueError(f"{op}: a has {k} indices but sample has {sample.numel()}")
    if k and (n_a == 0 or n_b == 0 or (sample is not None and n_sample == 0)):
        raise IndexError(f"{op}: cannot index into a dim of size 0")


def check_plan(op, a, b, n_a, n_b, *, sample=None, n_sample=1, same=True):
    """Checks lengths, ranges and disjointness of a plan; returns (a, b, sample) normalised to [0, n) on the CPU.

    same=True: a and b index one scope (per sample), so all of a and b are distinct and a[k] != b[k].
    same=False: a indexes x and b indexes y; each must be free of repeats.
    """
    check_lengths(op, a, b, n_a, n_b, sample=sample, n_sample=n_sample)
    k = a.numel()

    def normalise(t, n, name):
        t = t.detach().to("cpu", torch.int64)
        bad = (t < -n) | (t >= n)
        if bool(bad.any()):
            raise IndexError(f"{op}: {name} index {int(t[bad][0])} is out of range for size {n}")
        return torch.where(t < 0, t + n, t)

    a, b = normalise(a, n_a, "a"), normalise(b, n_b, "b")
    s = normalise(sample, n_sample, "sample") if sample is not None else torch.zeros(k, dtype=torch.int64)
    if same:
        same_k = a == b
        if bool(same_k.any()):
            i = int(a[same_k][0])
            raise ValueError(f"{op}: a pair exchanges index {i} with itself; a[k] must differ from b[k]")
        _check_unique(op, torch.cat([s, s]), torch.cat([a, b]), n_a, "the tensor" if sample is None else "a sample")
    else:
        _check_unique(op, s, a, n_a, "x")
        _check_unique(op, s, b, n_b, "y")
    return a, b, (s if sample is not None else None)


def _check_unique(op, scope, idx, n, where):
    keys = scope * max(n, 1) + idx
    if torch.unique(keys).numel() != keys.numel():
        raise ValueError(f"{op}: an index appears more than once in {where}; the exchanges must be disjoint")


# Full argument preparation of each op, shared by the reference and the Triton backend. Each returns the
# normalised arguments (dims wrapped; with validate=True, indices checked and wrapped to [0, n) on the CPU).


def _indices(op, x, named):
    from ._index import as_index

    out = []
    for name, v in named.items():
        t = as_index(v, f"{op}: {name}")
        check_index_tensor(op, t, name, x.device)
        out.append(t)
    return out


def _plan(op, validate, a, b, n_a, n_b, **kw):
    """The full checks, or only the static ones with validate=False."""
    if validate:
        return check_plan(op, a, b, n_a, n_b, **kw)
    kw.pop("same", None)
    check_lengths(op, a, b, n_a, n_b, **kw)
    return a, b, kw.get("sample")


def prepare_swap(x, dim, a, b, sample, sample_dim, validate):
    """-> (dim, a, b, sample, sample_dim) for swap_."""
    op = "swapkern.swap_"
    check_tensor(op, x)
    a, b = _indices(op, x, {"a": a, "b": b})
    dim = wrap_dim(op, dim, x.dim())
    if sample is not None:
        (sample,) = _indices(op, x, {"sample": sample})
        sample_dim = wrap_dim(op, sample_dim, x.dim(), "sample_dim")
        if sample_dim == dim:
            raise ValueError(f"{op}: sample_dim and dim are both {dim}")
    n_s = x.shape[sample_dim] if sample is not None else 1
    a, b, sample = _plan(op, validate, a, b, x.shape[dim], x.shape[dim], sample=sample, n_sample=n_s)
    return dim, a, b, sample, sample_dim


def prepare_pixels(x, p, q, sample, validate):
    """-> (p, q, sample) for swap_pixels_."""
    op = "swapkern.swap_pixels_"
    check_tensor(op, x)
    if x.dim() != 4:
        raise ValueError(f"{op}: expected an (N, C, H, W) batch, got shape {tuple(x.shape)}")
    p, q = _indices(op, x, {"p": p, "q": q})
    if sample is not None:
        (sample,) = _indices(op, x, {"sample": sample})
    n, _, h, w = x.shape
    return _plan(op, validate, p, q, h * w, h * w, sample=sample, n_sample=n)


def prepare_elements(x, i, j, validate):
    """-> (i, j) for swap_elements_."""
    op = "swapkern.swap_elements_"
    check_tensor(op, x)
    i, j = _indices(op, x, {"i": i, "j": j})
    i, j, _ = _plan(op, validate, i, j, x.numel(), x.numel())
    return i, j


def prepare_between(x, y, i, j, dim_x, dim_y, validate):
    """-> (i, j, dim_x, dim_y) for swap_between_ (dims None for elements)."""
    op = "swapkern.swap_between_"
    check_tensor(op, x)
    check_tensor(op, y)
    check_pair_of_tensors(op, x, y)
    i, j = _indices(op, x, {"i": i, "j": j})
    if (dim_x is None) != (dim_y is None):
        raise ValueError(f"{op}: give both dim_x and dim_y (slices) or neither (elements)")
    if dim_x is None:
        n_x, n_y = x.numel(), y.numel()
    else:
        dim_x = wrap_dim(op, dim_x, x.dim(), "dim_x")
        dim_y = wrap_dim(op, dim_y, y.dim(), "dim_y")
        if x is y and dim_x != dim_y:
            raise ValueError(f"{op}: x is y, so dim_x and dim_y must be equal")
        sx = x.shape[:dim_x] + x.shape[dim_x + 1 :]
        sy = y.shape[:dim_y] + y.shape[dim_y + 1 :]
        if sx != sy:
            raise ValueError(f"{op}: the slices of x have shape {tuple(sx)} but those of y have shape {tuple(sy)}")
        n_x, n_y = x.shape[dim_x], y.shape[dim_y]
    i, j, _ = _plan(op, validate, i, j, n_x, n_y, same=x is y)
    return i, j, dim_x, dim_y


def prepare_load(out, data, index, scale, shift, plan, flip, nhwc, validate):
    """Checks the fused loader's arguments as csrc/loader.cpp does; returns index as a tensor."""
    from ._index import as_index

    op = "swapkern.load_batch_"
    if out.dim() != 4:
        raise ValueError(f"{op}: out must be (B, C, H, W), got {tuple(out.shape)}")
    if out.dtype not in (torch.float32, torch.float16, torch.bfloat16):
        raise TypeError(f"{op}: out must be float32, float16 or bfloat16, got {out.dtype}")
    if data.dtype != torch.uint8:
        raise TypeError(f"{op}: data must be uint8, got {data.dtype}")
    if data.dim() != 4 or data.device != out.device:
        raise ValueError(f"{op}: data must be a 4-d uint8 tensor on out's device")
    b, c, h, w = out.shape
    dc, dh, dw = (data.shape[3], data.shape[1], data.shape[2]) if nhwc else tuple(data.shape[1:])
    if (dc, dh, dw) != (c, h, w):
        raise ValueError(f"{op}: data images are (C, H, W) = {(dc, dh, dw)} but out is {(c, h, w)}")
    index = as_index(index, f"{op}: index")
    if index.numel() != b:
        raise ValueError(f"{op}: index must have shape [{b}]")
    for t in (scale, shift):
        if t.dim() != 1 or t.numel() != c or t.dtype != torch.float32:
            raise ValueError(f"{op}: scale and shift must be float32 of shape [{c}]")
    if flip is not None and flip.numel() != b:
        raise ValueError(f"{op}: flip must have {b} entries")
    if plan is not None and tuple(plan.shape) != tuple(out.shape):
        raise ValueError(f"{op}: the plan was drawn for {plan.shape}, out is {tuple(out.shape)}")
    if validate and index.numel():
        lo, hi = int(index.min()), int(index.max())
        if lo < 0 or hi >= data.shape[0]:
            raise IndexError(f"{op}: index holds values in [{lo}, {hi}], outside [0, {data.shape[0]})")
    return index
