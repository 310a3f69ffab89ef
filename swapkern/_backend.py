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
import re
import warnings

import torch

NAMES = ("auto", "native", "triton", "torch", "cuda-emulated")

# The oldest torch the default (stable-ABI) build runs on: setup.py's TORCH_TARGET.
MIN_TORCH = (2, 10)
_CUDA_INDEX = {12: "cu128", 13: "cu130"}  # the torch wheel index of each CUDA major version


def _release(version: str) -> tuple[int, int]:
    m = re.match(r"(\d+)\.(\d+)", version)
    return (int(m.group(1)), int(m.group(2))) if m else (0, 0)


def _rebuild_command(env: str = "") -> str:
    """The pip command that builds the ops for the torch installed here: an editable install of this checkout
    when swapkern runs from one, else a reinstall from swapkern's sources."""
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    if os.path.exists(os.path.join(root, "setup.py")):
        return f"{env}pip install --no-build-isolation -e {root}"
    return f"{env}pip install --no-build-isolation --force-reinstall --no-deps <swapkern source directory>"


def _cuda_major(origin: str | None) -> int | None:
    """The CUDA major version a build links (its libcudart.so.N), read from the library file; None for a CPU build."""
    try:
        with open(origin, "rb") as f:
            m = re.search(rb"libcudart\.so\.(\d+)", f.read())
    except (OSError, TypeError):
        return None
    return int(m.group(1)) if m else None


def build_problem(torch_version: str, torch_cuda: str | None, origin: str | None, build=None, error=None):
    """Why the compiled ops (the library at `origin`) cannot serve this torch, in one plain sentence that ends with
    what to do; None when nothing is wrong. Asked before the import (build and error None), after a failed import
    (error: the exception) and after a successful one (build: the module, its build description)."""
    fallback = "using the triton/torch backends"
    rebuild = _rebuild_command()
    if origin is None:
        return f"swapkern: the compiled ops are not built (no swapkern._C); {fallback}. To build them: {rebuild}"
    stable = ".abi3." in os.path.basename(origin)
    if build is None and error is None:  # before the import: what the file name and the versions tell
        if stable and _release(torch_version) < MIN_TORCH:
            need = ".".join(map(str, MIN_TORCH))
            return (
                f"swapkern: the compiled ops need torch >= {need} (they are built on its stable ABI), but torch "
                f'{torch_version} is installed; {fallback}. To use them: pip install --upgrade "torch>={need}"'
            )
        return None
    if error is not None:
        text = str(error)
        major = _cuda_major(origin)
        if major is not None and re.search(r"lib(torch_cuda|c10_cuda|cudart)", text):
            have = "is CPU-only" if torch_cuda is None else f"is built for CUDA {torch_cuda}"
            index = _CUDA_INDEX.get(major, f"cu{major}0")
            return (
                f"swapkern: the compiled ops are a CUDA {major} build (libcudart.so.{major}, libtorch_cuda) but "
                f"torch {torch_version} {have}, so they cannot load ({text}); {fallback}. Install a CUDA {major} "
                f'build of torch: pip install --force-reinstall "torch>=2.10" --index-url '
                f"https://download.pytorch.org/whl/{index} ; or build the ops for the CPU: "
                f"{_rebuild_command('SWAPKERN_CPU_ONLY=1 ')}"
            )
        kind = "stable-ABI" if stable else "version-locked (SWAPKERN_LEGACY_ABI=1)"
        return f"swapkern: the {kind} compiled ops failed to load ({text}); {fallback}. Rebuild them: {rebuild}"
    if build.abi == "legacy" and build.torch_version != torch_version:
        return (
            f"swapkern: the compiled ops were built with SWAPKERN_LEGACY_ABI=1 for torch {build.torch_version} "
            f"only, but torch {torch_version} is installed; {fallback}. Rebuild them for this torch, or as the "
            f"default stable-ABI build that serves every torch >= 2.10: {rebuild}"
        )
    return None


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
if _C is not None:
    from . import _native

    _native.register_fakes()



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
    _native.register_fakes(torch.ops.swapkern_emu)
    return True, None


_EMULATED, _emulation_error = _load_emulation()
if _emulation_error is not None and os.environ.get("SWAPKERN_EMULATION_LIBRARY"):
    warnings.warn(_emulation_error, stacklevel=2)

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
    if _EMULATED:
        out.append("cuda-emulated")
    return out


class use_backend:
    """Selects the backend for every swapkern call: `use_backend("triton")` sets it until changed;
    `with use_backend("torch"): ...` sets it for the block and restores the previous one on exit."""

    def __init__(self, name: str):
        global _current
        if name not in NAMES:
            raise ValueError(f"unknown backend {name!r}; choose one of {NAMES}")
        if name not in ("auto", "torch") and name not in backends():
            reason = f" ({_native_error})" if name == "native" and _native_error else ""
            reason = f" ({_emulation_error})" if name == "cuda-emulated" else reason
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
    if _current == "cuda-emulated" and dev != "cpu":
        raise RuntimeError(f"swapkern: the cuda-emulated backend runs on CPU tensors only, not on {dev} tensors")
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
        elif name == "cuda-emulated":
            from ._native import emulated

            mod = emulated()
        else:
            from . import reference as mod
        _modules[name] = mod
    return mod


def impl(x):
    """The backend module that runs a call on tensor x: the one place that chooses."""
    if not isinstance(x, torch.Tensor):
        raise TypeError(f"swapkern: expected a torch.Tensor, got {type(x).__name__}")
    return module(resolve(x))


if os.environ.get("SWAPKERN_BACKEND"):  # the default backend of this process: checked as use_backend checks it
    use_backend(os.environ["SWAPKERN_BACKEND"])
