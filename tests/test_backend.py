"""Backend discovery and selection; the build registers kernels for every op on every device it was built for."""

import os
import shutil
from unittest import mock

import pytest
import torch

import swapkern
from swapkern import _backend

OPS = ("swap_", "swap_pixels_", "swap_elements_", "swap_between_")


def test_backends_lists_torch_and_native():
    names = swapkern.backends()
    assert "torch" in names
    assert "native" in names, "the compiled extension did not load"


def test_use_backend_setter_and_context():
    assert swapkern.current_backend() == "auto"
    with swapkern.use_backend("torch"):
        assert swapkern.current_backend() == "torch"
        with swapkern.use_backend("native"):
            assert swapkern.current_backend() == "native"
        assert swapkern.current_backend() == "torch"
    assert swapkern.current_backend() == "auto"
    swapkern.use_backend("torch")
    try:
        assert swapkern.current_backend() == "torch"
    finally:
        swapkern.use_backend("auto")


def test_auto_picks_native_on_cpu_and_torch_forces_reference():
    x = torch.randn(4, 3)
    assert _backend.resolve(x) == "native"
    spying = mock.patch.object(swapkern.reference, "swap_", wraps=swapkern.reference.swap_)
    with swapkern.use_backend("torch"), spying as spy:
        swapkern.swap_rows_(x, [0], [1])
    assert spy.call_count == 1
    with mock.patch.object(swapkern.reference, "swap_") as spy:
        swapkern.swap_rows_(x, [0], [1])
    assert spy.call_count == 0


def test_unavailable_backend_is_refused():
    with mock.patch.dict(_backend._TRITON, {"cpu": False, "cuda": False}):
        with pytest.raises(ValueError, match="not available"):
            swapkern.use_backend("triton")
    assert swapkern.current_backend() == "auto"


@pytest.mark.parametrize("op", OPS)
def test_cpu_kernels_registered(op):
    assert torch._C._dispatch_has_kernel_for_dispatch_key(f"swapkern::{op}", "CPU")


def _cuda_build_expected():
    nvcc = shutil.which("nvcc") or os.path.exists("/usr/local/cuda/bin/nvcc")
    cpu_only = os.environ.get("SWAPKERN_CPU_ONLY", "0") == "1"
    return bool(nvcc) and torch.version.cuda is not None and not cpu_only


@pytest.mark.skipif(not _cuda_build_expected(), reason="no CUDA toolkit or CPU-only torch: CPU-only build expected")
@pytest.mark.parametrize("op", OPS)
def test_cuda_kernels_registered(op):
    # Where nvcc and a CUDA torch exist the build must include the CUDA kernels: a silent CPU-only fallback fails.
    assert torch._C._dispatch_has_kernel_for_dispatch_key(f"swapkern::{op}", "CUDA")
