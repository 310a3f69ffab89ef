"""CMakeLists.txt configures, builds csrc/ against LibTorch, and the library loads with torch.ops.load_library."""

import os
import shutil
import subprocess
import sys

import pytest
import torch
from conftest import ROOT

# Run in a fresh interpreter: this process already registered the swapkern ops from swapkern._C.
LOAD = """
import sys, torch
torch.ops.load_library(sys.argv[1])
x = torch.arange(12).view(4, 3)
torch.ops.swapkern.swap_(x, 0, torch.tensor([0, 1]), torch.tensor([3, 2]), None, 0, True)
assert x[:, 0].tolist() == [9, 6, 3, 0], x
for op in ("swap_", "swap_pixels_", "swap_elements_", "swap_between_"):
    assert torch._C._dispatch_has_kernel_for_dispatch_key("swapkern::" + op, "CPU"), op
try:
    torch.ops.swapkern.swap_(x, 0, torch.tensor([0]), torch.tensor([0]), None, 0, True)
except ValueError:
    print("loaded ok")
"""


@pytest.mark.cmake
@pytest.mark.skipif(shutil.which("cmake") is None, reason="cmake not installed")
def test_cmake_build_and_load(tmp_path):
    build = tmp_path / "build"
    env = {**os.environ, "CUDA_HOME": os.environ.get("CUDA_HOME", "/usr/local/cuda")}
    subprocess.run(
        ["cmake", "-S", ROOT, "-B", str(build), f"-DCMAKE_PREFIX_PATH={torch.utils.cmake_prefix_path}"],
        check=True,
        env=env,
        capture_output=True,
    )
    subprocess.run(["cmake", "--build", str(build), "-j", str(os.cpu_count() or 2)], check=True, capture_output=True)
    lib = build / "libswapkern_ops.so"
    assert lib.exists()
    out = subprocess.run([sys.executable, "-c", LOAD, str(lib)], check=True, capture_output=True, text=True)
    assert "loaded ok" in out.stdout
