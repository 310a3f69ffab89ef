"""The readable wrappers, defined once over any implementation of swap_ (the public one, the reference)."""

from __future__ import annotations

import math

import torch

from ._codes import refuse


def _need(op, x, what, min_dim, max_dim=math.inf):
    if not isinstance(x, torch.Tensor):
        raise refuse("arg.type", f"swapkern.{op}: expected a torch.Tensor, got {type(x).__name__}")
    d = x.dim()
    if d < min_dim or d > max_dim:
        raise refuse("op.shape", f"swapkern.{op}: expected {what}, got shape {tuple(x.shape)}")


def named_wrappers(swap_):
    """Returns (swap_channels_, swap_rows_, swap_cols_) built on `swap_`."""

    def swap_channels_(x, a, b, *, sample=None, validate=True):
        """In place: exchange channels a[k] and b[k] of an (N, C, H, W) batch (any memory format), in every
        image or only in image sample[k]. Returns x."""
        _need("swap_channels_", x, "an (N, C, H, W) batch", 4, 4)
        return swap_(x, 1, a, b, sample=sample, sample_dim=0, validate=validate)

    def swap_rows_(w, a, b, *, validate=True):
        """In place: exchange rows a[k] and b[k] (dim 0: output units, or output channels of a conv kernel)
        of a weight of 2 or more dims. Returns w."""
        _need("swap_rows_", w, "a weight of 2 or more dims", 2)
        return swap_(w, 0, a, b, validate=validate)

    def swap_cols_(w, a, b, *, validate=True):
        """In place: exchange columns a[k] and b[k] (dim 1: input units, or input channels of a conv kernel)
        of a weight of 2 or more dims. Returns w."""
        _need("swap_cols_", w, "a weight of 2 or more dims", 2)
        return swap_(w, 1, a, b, validate=validate)

    for f in (swap_channels_, swap_rows_, swap_cols_):
        f.__module__ = swap_.__module__
    return swap_channels_, swap_rows_, swap_cols_
