"""Which backends exist here, which one runs a call, and `use_backend` to choose.

Backends:
  "native"  the compiled ops in torch.ops.swapkern (C++ CPU kernels; CUDA kernels in a CUDA build)
  "triton"  the Triton kernels (CUDA tensors; CPU tensors when TRITON_INTERPRET=1)
  "torch"   swapkern.reference, pure PyTorch
  "cuda-emulated"  the CUDA kernels and their launchers compiled for the host (csrc/cuda/emulation.h), on CPU
            tensors: only where swapkern._C_emu is built (SWAPKERN_CUDA_EMULATION=1 at build time); for tests
  "auto"    the default: "native" where it has a kernel for the tensor's device, else "triton" on CUDA
            tensors, else "torch"

SWAPKERN_BACKEND=<name> selects the backend at import (as use_backend(name) would), so that any program or test
file runs on it; SWAPKERN_EMULATION_LIBRARY=<path> loads that build of the emulation instead of swapkern._C_emu
(the sanitizer build).
"""

from __future__ import annotations

import importlib
import importlib.util
import os
import warnings

import torch

from . import _fakes, _native, reference
from ._codes import refuse
from ._diagnose import build_problem

NAMES = ("auto", "native", "triton", "torch", "cuda-emulated")


def package_binary(name: str) -> str | None:
    """The path of the compiled module swapkern.<name> in this package's own directory, or None. A module of that
    name found elsewhere (an editable install's finder maps swapkern.* to another source tree) is not this copy's
    binary and is not loaded."""
    try:
        spec = importlib.util.find_spec(f"{__package__}.{name}")
    except (ImportError, ValueError):
        return None
    origin = spec.origin if spec is not None else None
    if origin is None or os.path.dirname(os.path.abspath(origin)) != os.path.dirname(os.path.abspath(__file__)):
        return None
    return origin


def _load_native(torch_version: str = torch.__version__, torch_cuda: str | None = torch.version.cuda):
    """Imports swapkern._C (which registers torch.ops.swapkern.*) when it fits this torch. Returns (module, None)
    or (None, problem: the sentence of build_problem)."""
    origin = package_binary("_C")
    problem = build_problem(torch_version, torch_cuda, origin)
    if problem is not None:
        return None, problem
    try:
        module = importlib.import_module(f"{__package__}._C")
    except (ImportError, OSError) as e:  # built against a torch or a CUDA that is not the one here
        return None, build_problem(torch_version, torch_cuda, origin, error=e)
    problem = build_problem(torch_version, torch_cuda, origin, build=module)
    return (module, None) if problem is None else (None, problem)


_C, _native_problem = _load_native()
# The reason the native backend is missing (use_backend("native") repeats it), or None.
_native_error: str | None = _native_problem
if _native_problem is not None and os.environ.get("SWAPKERN_NO_EXTENSION", "0") != "1":
    warnings.warn(f"{_native_problem} (the environment report: python -m swapkern)", stacklevel=2)


def _register(ops):
    """What Python registers beside a loaded library: the fake kernels, the checked twins and theirs."""
    _fakes.register_fakes(ops)
    _fakes.register_fakes(_native.register_checked(ops, _fakes.MUTATING), engine=False)


if _C is not None:
    _register(torch.ops.swapkern)

_emulation_path: str | None = None  # the emulation library loaded (bench.gpu.emulate reads its kernel registry)


def _load_emulation():
    """Loads the CUDA emulation library (torch.ops.swapkern_emu) when it is built. Returns (loaded, problem)."""
    path = os.environ.get("SWAPKERN_EMULATION_LIBRARY")
    if not path:
        path = package_binary("_C_emu")
        if path is None:
            return False, "swapkern: the CUDA emulation is not built (build with SWAPKERN_CUDA_EMULATION=1)"
    if _native_error is not None:  # it is built like _C: the same torch and build checks apply
        return False, _native_error
    global _emulation_path
    try:
        torch.ops.load_library(path)
        _emulation_path = path
    except OSError as e:
        return False, f"swapkern: the CUDA emulation library {path} failed to load ({e})"
    if not torch._C._dispatch_has_kernel_for_dispatch_key("swapkern_emu::swap_", "CPU"):
        return False, f"swapkern: {path} registers no swapkern_emu ops"
    _register(torch.ops.swapkern_emu)
    return True, None


_EMULATED, _emulation_error = _load_emulation()
if _emulation_error is not None and os.environ.get("SWAPKERN_EMULATION_LIBRARY"):
    warnings.warn(_emulation_error, stacklevel=2)

# The selected backend's name: public, and read-only outside use_backend. A caller that caches a call bound to one
# backend (FeatureSwap's fast path) keeps this string and compares it by identity on each call (one attribute read).
selected = "auto"

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


def backends(device_type: str | None = None) -> list[str]:
    """The backends usable here: for some device of this machine, or for tensors of `device_type` ("cpu", "cuda")."""
    if device_type is not None:
        usable = {
            "native": native_available(device_type),
            "triton": triton_available(device_type),
            "torch": True,
            "cuda-emulated": _EMULATED and device_type == "cpu",
        }
        return [name for name, ok in usable.items() if ok]
    out = []
    if native_available("cpu") or (native_available("cuda") and torch.cuda.is_available()):
        out.append("native")
    if triton_available("cuda") or triton_available("cpu"):
        out.append("triton")
    out.append("torch")
    if _EMULATED:
        out.append("cuda-emulated")
    return out


def native_library():
    """The loaded compiled ops (swapkern._C: its build description, abi, torch_version...), or None."""
    return _C


def native_problem() -> str | None:
    """Why the native backend is missing (use_backend("native") repeats it), or None."""
    return _native_error


def emulation_library() -> str | None:
    """The path of the CUDA emulation library loaded (torch.ops.swapkern_emu), or None."""
    return _emulation_path


def emulation_problem() -> str | None:
    """Why the cuda-emulated backend is missing, or None."""
    return _emulation_error


class use_backend:
    """Selects the backend for every swapkern call: `use_backend("triton")` sets it until changed;
    `with use_backend("torch"): ...` sets it for the block and restores the previous one on exit."""

    def __init__(self, name: str):
        global selected
        if name not in NAMES:
            raise ValueError(f"unknown backend {name!r}; choose one of {NAMES}")
        if name not in ("auto", "torch") and name not in backends():
            reason = f" ({_native_error})" if name == "native" and _native_error else ""
            reason = f" ({_emulation_error})" if name == "cuda-emulated" else reason
            raise ValueError(f"backend {name!r} is not available here{reason}; available: {backends()}")
        self.name, self.previous = name, selected
        if name != "auto":
            module(name)  # made now, not inside a trace (torch.compile cannot trace an import)
        selected = name

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        global selected
        selected = self.previous
        return False


def current_backend() -> str:
    return selected


def resolve(x, name: str | None = None) -> str:
    """The backend that runs a call on tensor x when `name` (by default the selected backend) is selected."""
    name = selected if name is None else name
    dev = x.device.type
    if dev == "meta":
        raise ValueError("swapkern: tensors on the meta device hold no data to swap")
    if name == "auto":
        if native_available(dev):
            return "native"
        return "triton" if dev == "cuda" and triton_available("cuda") else "torch"
    if name == "native" and not native_available(dev):
        raise RuntimeError(f"swapkern: the native backend has no kernel for {dev} tensors in this build")
    if name == "triton" and not triton_available(dev):
        raise RuntimeError(
            f"swapkern: the triton backend cannot run on {dev} tensors here"
            + (" (set TRITON_INTERPRET=1 before importing triton)" if dev == "cpu" else "")
        )
    if name == "cuda-emulated" and dev != "cpu":
        raise RuntimeError(f"swapkern: the cuda-emulated backend runs on CPU tensors only, not on {dev} tensors")
    return name


_modules: dict = {}


def module(name: str):
    """The module of a backend: each has the same entry points (the swap ops, load_batch_, the plan draws, the
    engine's multi_pack and multi_step_)."""
    mod = _modules.get(name)
    if mod is None:
        if name == "native":
            mod = _native
        elif name == "triton":
            # Deliberately lazy: importing triton (and compiling nothing yet) costs about a second at import time,
            # and only processes that run the triton backend pay it.
            from .triton import ops as mod
        elif name == "cuda-emulated":
            mod = _native.emulated()
        else:
            mod = reference
        _modules[name] = mod
    return mod


def _route(name: str, dev: str) -> str | None:
    """resolve() for a selected backend and a device type, or None where resolve raises."""
    try:
        return resolve(_Probe(dev), name)
    except (RuntimeError, ValueError):
        return None


class _Probe:
    """Stands for a tensor of a device type this process may not have (resolve reads only x.device.type)."""

    def __init__(self, dev):
        self.device = torch.device(dev)


# resolve() of every (selected backend, device type) pair it allows, computed once (what it reads is fixed for the
# life of the process), so impl() is a lookup; a pair it refuses is left out (impl calls resolve, which raises).
_ROUTES = {
    (name, dev): route
    for name in ("auto", "native", "triton", "torch", "cuda-emulated")
    for dev in ("cpu", "cuda")
    if (route := _route(name, dev)) is not None
}


def impl(x):
    """The backend module that runs a call on tensor x: the one place that chooses, and the one function that the
    callers above the seam (ops, data, loader, multi, the benchmarks) ask."""
    if not isinstance(x, torch.Tensor):
        raise refuse("arg.type", f"swapkern: expected a torch.Tensor, got {type(x).__name__}")
    name = _ROUTES.get((selected, "cpu" if x.is_cpu else x.device.type))
    return module(name if name is not None else resolve(x))


if os.environ.get("SWAPKERN_BACKEND"):  # the default backend of this process: checked as use_backend checks it
    use_backend(os.environ["SWAPKERN_BACKEND"])
