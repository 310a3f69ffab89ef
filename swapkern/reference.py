"""Pure-PyTorch reference of every public op: the specification, written for clarity, not speed.

Same signatures and the same exceptions as the public ops in `swapkern`. Each op copies the slices it moves
out of one side into a temporary, then writes both sides through views of the argument: in place as far as the
caller sees (same tensor, same data_ptr), though it allocates that temporary.
"""

from __future__ import annotations

import torch

from . import _checks
from ._index import as_index
from ._wrappers import named_wrappers

__all__ = [
    "swap_",
    "swap_elements_",
    "swap_between_",
    "swap_channels_",
    "swap_pixels_",
    "swap_rows_",
    "swap_cols_",
]


def _indices(op, x, **named):
    out = []
    for name, v in named.items():
        t = as_index(v, f"{op}: {name}")
        _checks.check_index_tensor(op, t, name, x.device)
        out.append(t)
    return out


def _plan(op, validate, a, b, n_a, n_b, **kw):
    """The full checks, or only the static ones with validate=False."""
    if validate:
        return _checks.check_plan(op, a, b, n_a, n_b, **kw)
    kw.pop("same", None)
    _checks.check_lengths(op, a, b, n_a, n_b, **kw)
    return a, b, kw.get("sample")


def _exchange(view_a, view_b, ia, ib):
    """view_a[ia] <-> view_b[ib] (advanced indexing; ia, ib are index tuples)."""
    from_a = view_a[ia].clone()
    view_a[ia] = view_b[ib]
    view_b[ib] = from_a


def swap_(x, dim, a, b, *, sample=None, sample_dim=0, validate=True):
    """In place: for each k, exchange x.select(dim, a[k]) and x.select(dim, b[k]) (inside
    x.select(sample_dim, sample[k]) when `sample` is given). Returns x."""
    op = "swapkern.swap_"
    _checks.check_tensor(op, x)
    a, b = _indices(op, x, a=a, b=b)
    dim = _checks.wrap_dim(op, dim, x.dim())
    if sample is not None:
        (sample,) = _indices(op, x, sample=sample)
        sample_dim = _checks.wrap_dim(op, sample_dim, x.dim(), "sample_dim")
        if sample_dim == dim:
            raise ValueError(f"{op}: sample_dim and dim are both {dim}")
    n_s = x.shape[sample_dim] if sample is not None else 1
    a, b, sample = _plan(op, validate, a, b, x.shape[dim], x.shape[dim], sample=sample, n_sample=n_s)
    a, b = a.to(x.device), b.to(x.device)
    if a.numel() == 0:
        return x
    if sample is None:
        xv = x.movedim(dim, 0)
        _exchange(xv, xv, (a,), (b,))
    else:
        xv = x.movedim((sample_dim, dim), (0, 1))
        s = sample.to(x.device)
        _exchange(xv, xv, (s, a), (s, b))
    return x


def swap_pixels_(x, p, q, *, sample=None, validate=True):
    """In place: exchange pixels p[k] and q[k] (flat indices into H*W) of an (N, C, H, W) batch x, all
    channels, in every image or only in image sample[k]. Returns x."""
    op = "swapkern.swap_pixels_"
    _checks.check_tensor(op, x)
    if x.dim() != 4:
        raise ValueError(f"{op}: expected an (N, C, H, W) batch, got shape {tuple(x.shape)}")
    p, q = _indices(op, x, p=p, q=q)
    if sample is not None:
        (sample,) = _indices(op, x, sample=sample)
    n, _, h, w = x.shape
    p, q, sample = _plan(op, validate, p, q, h * w, h * w, sample=sample, n_sample=n)
    p, q = p.to(x.device) % max(h * w, 1), q.to(x.device) % max(h * w, 1)
    if p.numel() == 0:
        return x
    xv = x.permute(0, 2, 3, 1)  # (N, H, W, C): a pixel is a row of channels
    if sample is None:
        _exchange(xv, xv, (slice(None), p // w, p % w), (slice(None), q // w, q % w))
    else:
        s = sample.to(x.device)
        _exchange(xv, xv, (s, p // w, p % w), (s, q // w, q % w))
    return x


def _coords(flat, shape):
    return torch.unravel_index(flat, shape) if len(shape) else ()


def swap_elements_(x, i, j, *, validate=True):
    """In place: exchange the elements of x at row-major flat indices i[k] and j[k]. Returns x."""
    op = "swapkern.swap_elements_"
    _checks.check_tensor(op, x)
    i, j = _indices(op, x, i=i, j=j)
    i, j, _ = _plan(op, validate, i, j, x.numel(), x.numel())
    if i.numel() == 0:
        return x
    i, j = i.to(x.device) % x.numel(), j.to(x.device) % x.numel()
    _exchange(x, x, _coords(i, x.shape), _coords(j, x.shape))
    return x


def swap_between_(x, y, i, j, *, dim_x=None, dim_y=None, validate=True):
    """In place: exchange x.select(dim_x, i[k]) with y.select(dim_y, j[k]) (equal slice shapes), or, with
    both dims None, the elements at flat indices i[k] of x and j[k] of y. Returns (x, y)."""
    op = "swapkern.swap_between_"
    _checks.check_tensor(op, x)
    _checks.check_tensor(op, y)
    _checks.check_pair_of_tensors(op, x, y)
    i, j = _indices(op, x, i=i, j=j)
    if (dim_x is None) != (dim_y is None):
        raise ValueError(f"{op}: give both dim_x and dim_y (slices) or neither (elements)")
    if dim_x is None:
        n_x, n_y = x.numel(), y.numel()
    else:
        dim_x = _checks.wrap_dim(op, dim_x, x.dim(), "dim_x")
        dim_y = _checks.wrap_dim(op, dim_y, y.dim(), "dim_y")
        if x is y and dim_x != dim_y:
            raise ValueError(f"{op}: x is y, so dim_x and dim_y must be equal")
        sx = x.shape[:dim_x] + x.shape[dim_x + 1 :]
        sy = y.shape[:dim_y] + y.shape[dim_y + 1 :]
        if sx != sy:
            raise ValueError(f"{op}: the slices of x have shape {tuple(sx)} but those of y have shape {tuple(sy)}")
        n_x, n_y = x.shape[dim_x], y.shape[dim_y]
    i, j, _ = _plan(op, validate, i, j, n_x, n_y, same=x is y)
    if i.numel() == 0:
        return x, y
    i, j = i.to(x.device) % n_x, j.to(x.device) % n_y
    if dim_x is None:
        _exchange(x, y, _coords(i, x.shape), _coords(j, y.shape))
    else:
        _exchange(x.movedim(dim_x, 0), y.movedim(dim_y, 0), (i,), (j,))
    return x, y


swap_channels_, swap_rows_, swap_cols_ = named_wrappers(swap_)
