"""Why swapkern's compiled ops cannot serve the torch installed here, in one plain sentence that ends with what to do
(swapkern._backend asks it when it loads them; the environment report, swapkern._info, reads the same facts)."""

from __future__ import annotations

import os
import re

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


def cuda_major(origin: str | None) -> int | None:
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
        major = cuda_major(origin)
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
