"""The "native" backend: thin calls into the compiled ops (torch.ops.swapkern.*), same signatures as the
reference. The C++ ops validate their arguments themselves (csrc/plan.cpp), so a torch.compile graph that
calls them does not break on data-dependent checks."""

from __future__ import annotations

import torch


def swap_(x, dim, a, b, *, sample=None, sample_dim=0, validate=True):
    torch.ops.swapkern.swap_(x, dim, a, b, sample, sample_dim, validate)
    return x


def swap_pixels_(x, p, q, *, sample=None, validate=True):
    torch.ops.swapkern.swap_pixels_(x, p, q, sample, validate)
    return x


def swap_elements_(x, i, j, *, validate=True):
    torch.ops.swapkern.swap_elements_(x, i, j, validate)
    return x


def swap_between_(x, y, i, j, *, dim_x=None, dim_y=None, validate=True):
    torch.ops.swapkern.swap_between_(x, y, i, j, dim_x, dim_y, validate)
    return x, y


def load_batch_(out, data, index, scale, shift, *, plan=None, flip=None, nhwc=True, validate=True):
    if plan is None:
        swap = (None, None, None, None, 1, 0, True)
    else:
        which, what, extent = plan.protocol
        swap = (plan.pairs, plan.at, plan.image, plan.active, "1AE".index(which), "SP".index(what), extent == "A")
    pairs, at, image, active, which, what, extent_all = swap
    torch.ops.swapkern.load_batch_(
        out, data, index, scale, shift, pairs, at, image, active, flip, which, what, extent_all, nhwc, validate
    )
    return out
