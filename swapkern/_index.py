"""Index arguments as the public ops take them -> tensors: ints, lists or tuples of ints, NumPy integer arrays or
scalars, and tensors (passed through untouched: each backend's validator checks their dtype, shape and device)."""

from __future__ import annotations

import numbers

import torch

from ._codes import refuse

try:
    import numpy as _np
except ImportError:  # numpy is optional
    _np = None

IndexLike = "int | list[int] | tuple[int, ...] | numpy.ndarray | torch.Tensor"
_INT64 = (-(2**63), 2**63 - 1)
# Short index lists seen before, as tensors: making a tensor from a list costs microseconds, a lookup much less.
# The tensors are never written (every backend only reads indices), so sharing them is safe.
_SMALL: dict = {}
_INT_TYPES = [(int,) * n for n in range(9)]  # the element types of a cacheable list of n ints


def _ints(values, name):
    out = []
    for e in values:
        if isinstance(e, bool) or not isinstance(e, numbers.Integral):
            raise refuse("index.dtype", f"{name} must hold ints, got {type(e).__name__}")
        e = int(e)
        if not _INT64[0] <= e <= _INT64[1]:
            raise refuse("index.int64", f"{name}: index {e} is out of range (indices are 64-bit integers)")
        out.append(e)
    return out


def as_index(v, name: str):
    """Returns v as a tensor of indices: tensors as they are, everything else as a new int64 CPU tensor.

    TypeError for anything that is not an integer index (floats, bools, strings, float arrays); IndexError for an
    int that no int64 holds."""
    if isinstance(v, torch.Tensor):
        return v
    # Small indices are cached under one rule: an int, or a list or tuple of 1 to 8 ints (never bools or floats
    # that equal them: True == 1, 5.0 == 5); a hit costs one lookup.
    kind, key = type(v), None
    if kind is int:
        key = (v,)
    elif kind is list or kind is tuple:
        t = tuple(v)
        n = len(t)
        if (type(t[0]) is int) if n == 1 else (0 < n <= 8 and tuple(map(type, t)) == _INT_TYPES[n]):
            key = t
    if key is not None:
        hit = _SMALL.get(key)
        if hit is not None:
            return hit
    if _np is not None and isinstance(v, (_np.ndarray, _np.generic)):
        arr = _np.asarray(v)
        if arr.dtype == _np.bool_ or not _np.issubdtype(arr.dtype, _np.integer):
            raise refuse("index.dtype", f"{name} must hold integers, got a NumPy array of dtype {arr.dtype}")
        if arr.ndim > 1:
            raise refuse("index.shape", f"{name} must have shape [K], got {arr.shape}")
        arr = _np.ascontiguousarray(arr.reshape(-1))
        return torch.from_numpy(arr if arr.flags.writeable else arr.copy())
    if isinstance(v, bool) or not isinstance(v, (numbers.Integral, list, tuple)):
        raise refuse(
            "arg.type",
            f"{name} must be an int, a list of ints, a NumPy integer array or an integer tensor, "
            f"got {type(v).__name__}",
        )
    out = torch.tensor(_ints([v] if isinstance(v, numbers.Integral) else v, name), dtype=torch.int64)
    if key is not None:
        if len(_SMALL) >= 4096:
            _SMALL.clear()
        _SMALL[key] = out
    return out


def as_int(v, name: str, op: str) -> int:
    """A dim argument: an int (NumPy integers included), never a bool or a float (TypeError)."""
    if isinstance(v, bool) or not isinstance(v, numbers.Integral):
        raise refuse("arg.type", f"{op}: {name} must be an int, got {type(v).__name__}")
    return int(v)
