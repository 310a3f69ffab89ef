"""Index arguments: Python ints, lists of ints, or integer tensors of shape [K] -> 1-D integer tensors."""

from __future__ import annotations

import numbers

import torch

IndexLike = "int | list[int] | tuple[int, ...] | torch.Tensor"


def as_index(v, name: str) -> torch.Tensor:
    """Returns `v` as a 1-D integer tensor (a tensor argument is returned as is, flattened if 0-d).

    Raises TypeError for float, bool or complex indices and ValueError for a tensor of more than one dim.
    """
    if isinstance(v, torch.Tensor):
        if v.dtype == torch.bool or v.is_floating_point() or v.is_complex():
            raise TypeError(f"{name} must hold integers, got a tensor of dtype {v.dtype}")
        if v.dim() > 1:
            raise ValueError(f"{name} must have shape [K], got {tuple(v.shape)}")
        return v.reshape(-1)
    if isinstance(v, bool) or not isinstance(v, (numbers.Integral, list, tuple)):
        raise TypeError(f"{name} must be an int, a list of ints or an integer tensor, got {type(v).__name__}")
    values = [v] if isinstance(v, numbers.Integral) else list(v)
    for e in values:
        if isinstance(e, bool) or not isinstance(e, numbers.Integral):
            raise TypeError(f"{name} must hold ints, got {type(e).__name__}")
    return torch.tensor([int(e) for e in values], dtype=torch.int64)
