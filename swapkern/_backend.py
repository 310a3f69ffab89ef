"""Which backends exist here, which one runs a call, and `use_backend` to choose.

Backends:
  "native"  the compiled ops in torch.ops.swapkern (C++ CPU kernels; CUDA kernels in a CUDA build)
  "triton"  the Triton kernels (CUDA tensors; CPU tensors when TRITON_INTERPRET=1)
  "torch"   swapkern.reference, pure PyTorch
  "auto"    the default: "native" where it has a kernel for the tensor's device, else "triton" on CUDA
            tensors, else "torch"
"""

from __future__ import annotations

import importlib.util
import os
import warnings

import torch

NAMES = ("auto", "native", "triton", "torch")

_native_error: Exception | None = None
try:
    from . import _C  # noqa: F401  (importing it registers torch.ops.swapkern.*)
except (ImportError, OSError) as e:  # not built, or built against another torch
    _native_error = e
    if os.environ.get("SWAPKERN_NO_EXTENSION", "0") != "1":
        warnings.warn(f"swapkern: compiled ops unavailable ({e}); using the triton/torch backends", stacklevel=2)

if _native_error is None:
    from . import _native

    _native.register_fakes()  # the fake kernels of the ops (the stable ABI has no Meta kernels to register)

_current = "auto"

# Fixed for the life of the process, and read as constants so torch.compile can trace the backend choice.
_NATIVE = {
    dev: _native_error is None and torch._C._dispatch_has_kernel_for_dispatch_key("swapkern::swap_", key)
    for dev, key in (("cpu", "CPU"), ("cuda", "CUDA"))
}
_HAS_TRITON = importlib.util.find_spec("triton") is not None and os.path.exists(
    os.path.join(os.path.dirname(__file__), "triton", "ops.py")
)
_TRITON = {
    "cpu": _HAS_TRITON and os.environ.get("TRITON_INTERPRET", "0") == "1",
    "cuda": _HAS_TRITON and torch.cuda.is_available(),
}


def native_available(device_type: str = "cpu") -> bool:
    """Whether the compiled ops have a kernel for this device type ("cpu" or "cuda")."""
    return _NATIVE.get(device_type, False)


def triton_available(device_type: str = "cuda") -> bool:
    """Whether Triton can run kernels on this device type (CPU tensors need TRITON_INTERPRET=1 set before
    swapkern is imported)."""
    return _TRITON.get(device_type, False)


def backends() -> list[str]:
    """The backends usable here, for some device of this machine."""
    out = []
    if native_available("cpu") or (native_available("cuda") and torch.cuda.is_available()):
        out.append("native")
    if triton_available("cuda") or triton_available("cpu"):
        out.append("triton")
    out.append("torch")
    return out


class use_backend:
    """Selects the backend for every swapkern call: `use_backend("triton")` sets it until changed;
    `with use_backend("torch"): ...` sets it for the block and restores the previous one on exit."""

    def __init__(self, name: str):
        global _current
        if name not in NAMES:
            raise ValueError(f"unknown backend {name!r}; choose one of {NAMES}")
        if name not in ("auto", "torch") and name not in backends():
            reason = f": {_native_error}" if name == "native" and _native_error else ""
            raise ValueError(f"backend {name!r} is not available here{reason}; available: {backends()}")
        self.name, self.previous = name, _current
        _current = name

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        global _current
        _current = self.previous
        return False


def current_backend() -> str:
    return _current


def resolve(x: torch.Tensor) -> str:
    """The backend that runs a call on tensor x."""
    dev = x.device.type
    if dev == "meta":
        raise ValueError("swapkern: tensors on the meta device hold no data to swap")
    if _current == "auto":
        if native_available(dev):
            return "native"
        return "triton" if dev == "cuda" and triton_available("cuda") else "torch"
    if _current == "native" and not native_available(dev):
        raise RuntimeError(f"swapkern: the native backend has no kernel for {dev} tensors in this build")
    if _current == "triton" and not triton_available(dev):
        raise RuntimeError(
            f"swapkern: the triton backend cannot run on {dev} tensors here"
            + (" (set TRITON_INTERPRET=1 before importing triton)" if dev == "cpu" else "")
        )
    return _current


_modules: dict = {}


def module(name: str):
    """The module of a backend: each has the same entry points (the swap ops, load_batch_, the plan draws)."""
    mod = _modules.get(name)
    if mod is None:
        if name == "native":
            from . import _native as mod
        elif name == "triton":
            from .triton import ops as mod
        else:
            from . import reference as mod
        _modules[name] = mod
    return mod


def impl(x):
    """The backend module that runs a call on tensor x: the one place that chooses."""
    if not isinstance(x, torch.Tensor):
        raise TypeError(f"swapkern: expected a torch.Tensor, got {type(x).__name__}")
    return module(resolve(x))
