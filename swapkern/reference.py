"""Pure-PyTorch reference of every public op: the specification, written for clarity, not speed.

Same signatures and the same exceptions as the public ops in `swapkern` (the checks live in _checks.py and
are shared with the Triton backend). Each op copies the slices it moves out of one side into a temporary, then
writes both sides through views of the argument: in place as far as the caller sees (same tensor, same
data_ptr), though it allocates that temporary.
"""

from __future__ import annotations

import torch

from ._checks import prepare_between, prepare_elements, prepare_pixels, prepare_swap
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


def _exchange(view_a, view_b, ia, ib):
    """view_a[ia] <-> view_b[ib] (advanced indexing; ia, ib are index tuples)."""
    from_a = view_a[ia].clone()
    view_a[ia] = view_b[ib]
    view_b[ib] = from_a


def _wrapped(t, n, device):
    """Indices on the tensor's device, negative ones counted from the end."""
    return t.to(device) % max(n, 1)


def swap_(x, dim, a, b, *, sample=None, sample_dim=0, validate=True):
    """In place: for each k, exchange x.select(dim, a[k]) and x.select(dim, b[k]) (inside
    x.select(sample_dim, sample[k]) when `sample` is given). Returns x."""
    dim, a, b, sample, sample_dim = prepare_swap(x, dim, a, b, sample, sample_dim, validate)
    if a.numel() == 0:
        return x
    a, b = _wrapped(a, x.shape[dim], x.device), _wrapped(b, x.shape[dim], x.device)
    if sample is None:
        xv = x.movedim(dim, 0)
        _exchange(xv, xv, (a,), (b,))
    else:
        xv = x.movedim((sample_dim, dim), (0, 1))
        s = _wrapped(sample, x.shape[sample_dim], x.device)
        _exchange(xv, xv, (s, a), (s, b))
    return x


def swap_pixels_(x, p, q, *, sample=None, validate=True):
    """In place: exchange pixels p[k] and q[k] (flat indices into H*W) of an (N, C, H, W) batch x, all
    channels, in every image or only in image sample[k]. Returns x."""
    p, q, sample = prepare_pixels(x, p, q, sample, validate)
    if p.numel() == 0:
        return x
    n, _, h, w = x.shape
    p, q = _wrapped(p, h * w, x.device), _wrapped(q, h * w, x.device)
    xv = x.permute(0, 2, 3, 1)  # (N, H, W, C): a pixel is a row of channels
    s = slice(None) if sample is None else _wrapped(sample, n, x.device)
    _exchange(xv, xv, (s, p // w, p % w), (s, q // w, q % w))
    return x


def _coords(flat, shape):
    return torch.unravel_index(flat, shape) if len(shape) else ()


def swap_elements_(x, i, j, *, validate=True):
    """In place: exchange the elements of x at row-major flat indices i[k] and j[k]. Returns x."""
    i, j = prepare_elements(x, i, j, validate)
    if i.numel() == 0:
        return x
    i, j = _wrapped(i, x.numel(), x.device), _wrapped(j, x.numel(), x.device)
    _exchange(x, x, _coords(i, x.shape), _coords(j, x.shape))
    return x


def swap_between_(x, y, i, j, *, dim_x=None, dim_y=None, validate=True):
    """In place: exchange x.select(dim_x, i[k]) with y.select(dim_y, j[k]) (equal slice shapes), or, with
    both dims None, the elements at flat indices i[k] of x and j[k] of y. Returns (x, y)."""
    i, j, dim_x, dim_y = prepare_between(x, y, i, j, dim_x, dim_y, validate)
    if i.numel() == 0:
        return x, y
    if dim_x is None:
        i, j = _wrapped(i, x.numel(), x.device), _wrapped(j, y.numel(), x.device)
        _exchange(x, y, _coords(i, x.shape), _coords(j, y.shape))
    else:
        i, j = _wrapped(i, x.shape[dim_x], x.device), _wrapped(j, y.shape[dim_y], x.device)
        _exchange(x.movedim(dim_x, 0), y.movedim(dim_y, 0), (i,), (j,))
    return x, y


swap_channels_, swap_rows_, swap_cols_ = named_wrappers(swap_)


def apply_feature_plan_(x, plan):
    """In place: applies a FeaturePlan (swapkern.data) to x image by image and pair by pair, from its compact
    form, with the reference ops above. The specification the FeatureSwap kernels are held to. Returns x."""
    b, c, h, w = x.shape
    which, what, extent = plan.protocol
    if not int(plan.active[0]):
        return x
    images = [int(plan.image[0])] if which == "1" else range(b)
    for n in images:
        g = n if which == "E" else 0
        for u, v in plan.pairs[g].tolist():
            if extent == "A":
                swap = swap_channels_ if what == "S" else swap_pixels_
                swap(x, [u], [v], sample=[n])
            else:
                fixed = int(plan.at[g])
                if what == "S":  # channels u, v at pixel `fixed`
                    i, j = (n * c + u) * h * w + fixed, (n * c + v) * h * w + fixed
                else:  # pixels u, v in channel `fixed`
                    i, j = (n * c + fixed) * h * w + u, (n * c + fixed) * h * w + v
                swap_elements_(x, [i], [j])
    return x


def load_batch_(out, data, index, scale, shift, *, plan=None, flip=None, nhwc=True, validate=True):
    """The fused loader's specification. In place on out (B, C, H, W): gather images data[index] (uint8, stored
    (N, H, W, C) if nhwc else (N, C, H, W)), normalise v * scale[c] + shift[c] in float32, apply the FeaturePlan,
    flip horizontally the images whose flip flag is set, then round once to out's dtype. Returns out."""
    from ._checks import prepare_load

    index = prepare_load(out, data, index, scale, shift, plan, flip, nhwc, validate)
    images = data[index.to(data.device)]
    if nhwc:
        images = images.permute(0, 3, 1, 2)
    v = images.float() * scale.view(1, -1, 1, 1) + shift.view(1, -1, 1, 1)
    if plan is not None:
        apply_feature_plan_(v, plan)
    if flip is not None:
        v = torch.where(flip.to(v.device).view(-1, 1, 1, 1) != 0, v.flip(3), v)
    out.copy_(v)
    return out
