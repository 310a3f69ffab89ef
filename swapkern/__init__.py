"""swapkern: fused in-place swap kernels for feature swaps (data) and weight swaps (optimizer) in PyTorch.

Ops (in place, return their tensor arguments): swap_, swap_elements_, swap_between_, swap_channels_,
swap_pixels_, swap_rows_, swap_cols_. Backends: backends(), use_backend(name). Specification: swapkern.reference.
The environment report: info() (a dict), `python -m swapkern` (printed).
"""

from . import reference
from ._backend import backends, current_backend, use_backend
from ._info import info
from ._version import __version__  # noqa: F401  (written once, in _version.py: setup.py reads it)
from .align import Alignment, align_
from .data import FeaturePlan, FeatureSwap
from .loader import DeviceLoader, SwapCollate, WithIndex
from .ops import (
    load_batch_,
    normalization,
    swap_,
    swap_between_,
    swap_channels_,
    swap_cols_,
    swap_elements_,
    swap_pixels_,
    swap_rows_,
)
from .optim import WeightSwap
from .permutation import PermutationSpec, apply_permutation_, permutation_groups

__all__ = [
    "DeviceLoader",
    "SwapCollate",
    "WeightSwap",
    "WithIndex",
    "FeaturePlan",
    "FeatureSwap",
    "backends",
    "load_batch_",
    "normalization",
    "current_backend",
    "info",
    "reference",
    "swap_",
    "swap_between_",
    "swap_channels_",
    "swap_cols_",
    "swap_elements_",
    "swap_pixels_",
    "swap_rows_",
    "use_backend",
    "PermutationSpec",
    "apply_permutation_",
    "permutation_groups",
    "Alignment",
    "align_",
]
