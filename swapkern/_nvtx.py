"""NVTX ranges named swapkern/... so Nsight shows swap and loader calls; a no-op without nvtx or CUDA."""

from __future__ import annotations

import contextlib

import torch

try:
    import nvtx as _nvtx_pkg
except ImportError:  # optional
    _nvtx_pkg = None

_CUDA = torch.cuda.is_available()


@contextlib.contextmanager
def _torch_range(name):
    torch.cuda.nvtx.range_push(name)
    try:
        yield
    finally:
        torch.cuda.nvtx.range_pop()


def nvtx_range(name: str):
    """A context manager marking `name` on the NVTX timeline (CUDA via torch, else the nvtx package)."""
    if _CUDA:
        return _torch_range(name)
    if _nvtx_pkg is not None:
        return _nvtx_pkg.annotate(name, domain="swapkern")
    return contextlib.nullcontext()
