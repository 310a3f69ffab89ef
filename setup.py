"""Builds swapkern._C from csrc/: CUDA + CPU kernels when a CUDA toolkit and a CUDA build of torch are present,
CPU kernels otherwise.

Environment:
  SWAPKERN_CPU_ONLY=1       build the C++ CPU kernels only, even where CUDA is available
  SWAPKERN_NO_EXTENSION=1   install the pure-Python package (torch and triton backends only)
  TORCH_CUDA_ARCH_LIST      CUDA archs to compile for (default "8.0;9.0+PTX": A100, H100/H200, newer via PTX)
  CUDA_HOME                 CUDA toolkit; defaults to /usr/local/cuda when nvcc is there
"""

import glob
import os

from setuptools import find_packages, setup

# torch.utils.cpp_extension reads CUDA_HOME when imported; without it torch guesses /usr/local.
if not (os.environ.get("CUDA_HOME") or os.environ.get("CUDA_PATH")) and os.path.exists("/usr/local/cuda/bin/nvcc"):
    os.environ["CUDA_HOME"] = "/usr/local/cuda"
os.environ.setdefault("TORCH_CUDA_ARCH_LIST", "8.0;9.0+PTX")

HERE = os.path.dirname(os.path.abspath(__file__))


def _flag(name):
    return os.environ.get(name, "0").lower() in ("1", "true", "yes", "on")


def extensions():
    if _flag("SWAPKERN_NO_EXTENSION"):
        return [], {}
    import torch
    from torch.utils.cpp_extension import CUDA_HOME, BuildExtension, CppExtension, CUDAExtension

    use_cuda = not _flag("SWAPKERN_CPU_ONLY") and torch.version.cuda is not None and CUDA_HOME is not None
    sources = sorted(glob.glob("csrc/*.cpp") + glob.glob("csrc/cpu/*.cpp"))
    cxx = ["-O3", "-std=c++20", "-fvisibility=hidden"]
    macros = []
    kind = CppExtension
    extra = {"cxx": cxx}
    if use_cuda:
        sources += sorted(glob.glob("csrc/cuda/*.cu"))
        macros.append(("SWAPKERN_WITH_CUDA", None))
        extra["nvcc"] = ["-O3", "-lineinfo", "-std=c++20"]
        kind = CUDAExtension
    print(f"swapkern: building {'CUDA + CPU' if use_cuda else 'CPU-only'} extension")
    ext = kind("swapkern._C", sources, define_macros=macros, extra_compile_args=extra)
    return [ext], {"build_ext": BuildExtension.with_options(use_ninja=True)}


ext_modules, cmdclass = extensions()

setup(
    name="swapkern",
    version="0.1.0",
    description="Fused in-place swap kernels (feature and weight swaps) for PyTorch training loops",
    long_description=open(os.path.join(HERE, "README.md")).read() if os.path.exists("README.md") else "",
    long_description_content_type="text/markdown",
    packages=find_packages(include=["swapkern", "swapkern.*"]),
    ext_modules=ext_modules,
    cmdclass=cmdclass,
    python_requires=">=3.10",
    install_requires=["torch>=2.9"],
    extras_require={
        "test": ["pytest", "pytest-timeout", "pytest-benchmark", "hypothesis", "numpy"],
        "bench": ["torchvision", "matplotlib", "tqdm", "numpy", "scipy", "nvtx"],
        "peers": ["kornia"],  # bench.overhead adds kornia's RandomChannelShuffle row when it is installed
    },
)
