"""Public in-place swap ops: convert index arguments, pick the backend, run one kernel.

Every op mutates its tensor arguments in place and returns them; data_ptr(), shape and strides are unchanged
and nothing the size of the data is allocated (the "torch" backend, the reference, is the exception: it
gathers from a copy). Index arguments are Python ints, lists of ints, or integer tensors of shape [K] on the
CPU or on the tensor's device; K = 0 is a no-op; negative indices count from the end. The K exchanges of one
call are one permutation applied at once: within a scope (the whole tensor, or one sample) every index appears
at most once among a and b, and a[k] != b[k].

Errors (raised before any element moves): IndexError for an index out of range; TypeError for float or bool
indices; ValueError for a repeated index in a scope, a[k] == b[k], mismatched lengths, a dim out of range,
mismatched slice shapes or dtypes, indices on another device.

validate=False skips the data-dependent checks (range, repeats). It is UNSAFE: use it only for plans that are
valid by construction, such as those swapkern's samplers draw. On CUDA tensors the checks copy the indices to
the host (one device-to-host copy and sync per call); validate=False is sync-free and allocation-free when the
indices are int64 tensors already on the device, so the call can be captured in a CUDA graph.
"""

from __future__ import annotations

import torch

from . import _backend
from ._codes import refuse
from ._wrappers import named_wrappers

__all__ = ["swap_", "swap_elements_", "swap_between_", "swap_channels_", "swap_pixels_", "swap_rows_", "swap_cols_"]

_impl = _backend.impl


def _flag(v, op):
    """validate: a bool (TypeError otherwise, on every backend, before anything else is looked at)."""
    if not isinstance(v, bool):
        raise refuse("arg.type", f"swapkern.{op}: validate must be True or False, got {type(v).__name__}")
    return v


def swap_(x, dim, a, b, *, sample=None, sample_dim=0, validate=True):
    """In place: for each k, exchange the slices x.select(dim, a[k]) and x.select(dim, b[k]); with `sample`,
    only inside x.select(sample_dim, sample[k]). Returns x."""
    _flag(validate, "swap_")
    return _impl(x).swap_(x, dim, a, b, sample=sample, sample_dim=sample_dim, validate=validate)


def swap_pixels_(x, p, q, *, sample=None, validate=True):
    """In place: exchange pixels p[k] and q[k] (flat indices into H*W) of an (N, C, H, W) batch in any memory
    format, all channels, in every image or only in image sample[k]. Returns x."""
    _flag(validate, "swap_pixels_")
    return _impl(x).swap_pixels_(x, p, q, sample=sample, validate=validate)


def swap_elements_(x, i, j, *, validate=True):
    """In place: exchange the elements at flat indices i[k] and j[k] of x (row-major logical order, whatever the
    memory layout). Returns x."""
    _flag(validate, "swap_elements_")
    return _impl(x).swap_elements_(x, i, j, validate=validate)


def swap_between_(x, y, i, j, *, dim_x=None, dim_y=None, validate=True):
    """In place: exchange slices x.select(dim_x, i[k]) and y.select(dim_y, j[k]) (equal slice shapes) of two
    tensors of one dtype and device, or, with both dims None, the elements at flat indices i[k] of x and j[k]
    of y. Returns (x, y)."""
    _flag(validate, "swap_between_")
    return _impl(x).swap_between_(x, y, i, j, dim_x=dim_x, dim_y=dim_y, validate=validate)


swap_channels_, swap_rows_, swap_cols_ = named_wrappers(swap_)


def normalization(mean, std):
    """(scale, shift) float32 tensors for load_batch_: v = byte * scale + shift = (byte / 255 - mean) / std."""
    mean = torch.as_tensor(mean, dtype=torch.float64)
    std = torch.as_tensor(std, dtype=torch.float64)
    return (1.0 / (255.0 * std)).float(), (-mean / std).float()


def load_batch_(out, data, index, scale, shift, *, plan=None, flip=None, nhwc=True, validate=True):
    """The fused loader, in place on out (B, C, H, W; float32, float16 or bfloat16; any memory format): gathers
    uint8 images data[index] (stored (N, H, W, C) if nhwc else (N, C, H, W)), normalises byte * scale[c] +
    shift[c] in float32 (see `normalization`), applies a FeaturePlan drawn for out's shape, flips horizontally the
    images whose flip flag (a [B] tensor of 0/1) is set, and rounds once to out's dtype. data is never written.
    One kernel; defined as swapkern.reference.load_batch_. Returns out."""
    _flag(validate, "load_batch_")
    return _impl(out).load_batch_(out, data, index, scale, shift, plan=plan, flip=flip, nhwc=nhwc, validate=validate)
