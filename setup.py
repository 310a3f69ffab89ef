"""Builds swapkern._C from csrc/: CUDA + CPU kernels when a CUDA toolkit and a CUDA build of torch are present,
CPU kernels otherwise.

By default the extension is built on the LibTorch stable ABI (TORCH_TARGET_VERSION = 2.10) and the Python limited
API (3.10): swapkern/_C.abi3.so, one binary for torch >= 2.10 and CPython >= 3.10 (a wheel tagged cp310-abi3). A
CUDA build links the CUDA runtime of its toolkit (libcudart.so.<major>) and libtorch_cuda, so it needs a CUDA
build of torch for that CUDA major version.

The project's metadata, dependencies and build requirements are in pyproject.toml; this file holds what must be
code: the extension, and the version's local part on release wheels.

Environment:
  SWAPKERN_CPU_ONLY=1       build the C++ CPU kernels only, even where CUDA is available
  SWAPKERN_NO_EXTENSION=1   install the pure-Python package (torch and triton backends only)
  SWAPKERN_CUDA_EMULATION=1 also build swapkern._C_emu: the CUDA kernels compiled by the host compiler (no nvcc)
                            for CPU tensors, the "cuda-emulated" backend; =asan builds only it, with ASan + UBSan
  SWAPKERN_LEGACY_ABI=1     build the same sources for this torch and this Python only (no TORCH_TARGET_VERSION,
                            no limited API, a cpython-3XY suffix): the import refuses it under any other torch
  TORCH_CUDA_ARCH_LIST      CUDA archs to compile for (default "8.0;9.0+PTX": A100, H100/H200, newer via PTX)
  CUDA_HOME                 CUDA toolkit; defaults to /usr/local/cuda when nvcc is there
  SWAPKERN_LOCAL_VERSION=1  tag a wheel's version with the kind of build, as PyTorch's own packages do:
                            0.1.0+cpu for a CPU-only build, 0.1.0+cu130 for one against a CUDA 13.0 torch
                            (never the sdist's version)
"""

import glob
import os
import re
import sys

from setuptools import setup

# torch.utils.cpp_extension reads CUDA_HOME when imported; without it torch guesses /usr/local.
if not (os.environ.get("CUDA_HOME") or os.environ.get("CUDA_PATH")) and os.path.exists("/usr/local/cuda/bin/nvcc"):
    os.environ["CUDA_HOME"] = "/usr/local/cuda"
os.environ.setdefault("TORCH_CUDA_ARCH_LIST", "8.0;9.0+PTX")

HERE = os.path.dirname(os.path.abspath(__file__))
# The oldest torch the stable build runs on, as TORCH_TARGET_VERSION encodes it: [major][minor][patch][abi tag].
TORCH_TARGET = (2, 10)
TARGET_VERSION = f"0x{TORCH_TARGET[0]:02x}{TORCH_TARGET[1]:02x}000000000000"
PY_LIMITED = "cp310"  # the oldest CPython of the abi3 build (Py_LIMITED_API 0x030A0000)


def _flag(name):
    return os.environ.get(name, "0").lower() in ("1", "true", "yes", "on")


LEGACY = _flag("SWAPKERN_LEGACY_ABI")


def extensions():
    if _flag("SWAPKERN_NO_EXTENSION"):
        return [], {}
    import torch
    from torch.utils.cpp_extension import CUDA_HOME, BuildExtension, CppExtension, CUDAExtension

    use_cuda = not _flag("SWAPKERN_CPU_ONLY") and torch.version.cuda is not None and CUDA_HOME is not None
    sources = sorted(glob.glob("csrc/*.cpp") + glob.glob("csrc/cpu/*.cpp"))
    # The torch version goes in as bare tokens; csrc/python_module.cpp stringizes it (no quoting through ninja).
    common = [f"-DSWAPKERN_TORCH_VERSION={torch.__version__}"]
    if not LEGACY:
        common.append(f"-DTORCH_TARGET_VERSION={TARGET_VERSION}")  # any non-stable torch header: a compile error
    common += ["-include", os.path.join(HERE, "csrc", "glibc_compat.h")]  # manylinux_2_28 wheels: see the header
    cxx = ["-O3", "-std=c++20", "-fvisibility=hidden", "-fvisibility-inlines-hidden", *common]
    macros = []
    kind = CppExtension
    extra = {"cxx": cxx}
    if use_cuda:
        sources += sorted(glob.glob("csrc/cuda/*.cu"))
        macros.append(("SWAPKERN_WITH_CUDA", None))
        # USE_CUDA declares the CUDA shims of the stable ABI (the current stream) in the CUDA sources.
        extra["nvcc"] = ["-O3", "-lineinfo", "-std=c++20", "-DUSE_CUDA", *common]
        kind = CUDAExtension
    abi = "legacy (this torch only)" if LEGACY else f"stable ABI, torch >= {TORCH_TARGET[0]}.{TORCH_TARGET[1]}, abi3"
    emulation = os.environ.get("SWAPKERN_CUDA_EMULATION", "0").lower()
    exts = []
    if emulation != "asan":
        print(f"swapkern: building {'CUDA + CPU' if use_cuda else 'CPU-only'} extension, {abi}")
        exts.append(
            kind("swapkern._C", sources, define_macros=macros, extra_compile_args=extra, py_limited_api=not LEGACY)
        )
    if emulation not in ("0", "", "false", "no", "off"):
        exts.append(_emulation_extension(CppExtension, common, sanitize=emulation == "asan"))

    class Build(BuildExtension.with_options(use_ninja=True)):
        def run(self):
            super().run()
            if self.inplace:  # a stale build of the other kind would shadow this one (.cpython-3XY beats .abi3)
                built = os.path.abspath(self.get_ext_fullpath("swapkern._C"))
                for old in glob.glob(os.path.join(HERE, "swapkern", "_C.*.so")):
                    if os.path.abspath(old) != built:
                        print(f"swapkern: removing {os.path.relpath(old, HERE)}, a build of another kind")
                        os.remove(old)

    return exts, {"build_ext": Build}


def _emulation_extension(CppExtension, common, sanitize):
    """swapkern._C_emu: the CUDA kernels and launchers of csrc/cuda/*.cu compiled by the host compiler through
    csrc/cuda/emulation.h, registered as torch.ops.swapkern_emu for CPU tensors (the "cuda-emulated" backend). Each
    .cu file is compiled as it is, through a one-line C++ file that includes it. No Python module (swapkern loads it
    with torch.ops.load_library). sanitize (SWAPKERN_CUDA_EMULATION=asan): built with AddressSanitizer and
    UndefinedBehaviorSanitizer (load it with libasan preloaded, from the build directory, never in place)."""
    # Every source through a one-line file that includes it: objects of their own (the build directory is shared
    # with swapkern._C, whose objects of the same sources must not be overwritten).
    wrappers = os.path.join(HERE, "build", "emulation-asan" if sanitize else "emulation", "sources")
    os.makedirs(wrappers, exist_ok=True)
    originals = [s for s in sorted(glob.glob("csrc/*.cpp")) if os.path.basename(s) != "python_module.cpp"]
    originals += sorted(glob.glob("csrc/cuda/*.cu")) + ["csrc/cuda/emulation.cpp"]  # + the kernel registry
    sources = []
    for src in originals:
        wrapper = os.path.join(wrappers, src.replace("/", "_").replace(".", "_") + ".cpp")
        text = f'#include "{os.path.relpath(os.path.join(HERE, src), wrappers)}"  // compiled as it is (setup.py)\n'
        if not os.path.exists(wrapper) or open(wrapper).read() != text:
            with open(wrapper, "w") as f:
                f.write(text)
        sources.append(os.path.relpath(wrapper, HERE))
    cxx = ["-std=c++20", "-fvisibility=hidden", "-fvisibility-inlines-hidden", *common]
    # A kernel reads floats as uint4 as a GPU does: no strict aliasing; __fmul_rn/__fadd_rn round twice: no FMA.
    cxx += ["-fno-strict-aliasing", "-ffp-contract=off", "-Wno-unknown-pragmas"]
    link = []
    if sanitize:
        # Without the shift, signed-overflow and divide-by-zero checks: GCC 12 instruments
        # `(t % 2 ? b : a)[t / 2] = v` (csrc/weights.h, a lambda's store through a conditional pointer) wrongly
        # with them on, even at -O0: wrong stores, or a segfault, and no report (the same code is right at -O0..-O3
        # without them, with every other check on).
        off = "-fno-sanitize=vptr,shift,signed-integer-overflow,integer-divide-by-zero"
        san = ["-fsanitize=address,undefined", off, "-fno-sanitize-recover=undefined"]
        cxx += ["-O1", "-g", "-fno-omit-frame-pointer", *san]
        link += san
    else:
        cxx.append("-O3")
    print(f"swapkern: building the CUDA emulation (swapkern._C_emu{', ASan + UBSan' if sanitize else ''})")
    return CppExtension(
        "swapkern._C_emu",
        sources,
        define_macros=[("SWAPKERN_WITH_CUDA", None), ("SWAPKERN_CUDA_EMULATION", None)],
        extra_compile_args={"cxx": cxx},
        extra_link_args=link,
        py_limited_api=not LEGACY,
    )


def version(ext_modules):
    """swapkern/_version.py's __version__ (the one place it is written), with the local part of a release wheel."""
    with open(os.path.join(HERE, "swapkern", "_version.py")) as f:
        base = re.search(r'^__version__ = "([^"]+)"', f.read(), re.M).group(1)
    if not _flag("SWAPKERN_LOCAL_VERSION") or "sdist" in sys.argv[1:]:
        return base
    import torch

    cuda = ext_modules and ("SWAPKERN_WITH_CUDA", None) in ext_modules[0].define_macros
    return f"{base}+cu{torch.version.cuda.replace('.', '')}" if cuda else f"{base}+cpu"


ext_modules, cmdclass = extensions()

setup(
    version=version(ext_modules),
    ext_modules=ext_modules,
    cmdclass=cmdclass,
    options={} if LEGACY or not ext_modules else {"bdist_wheel": {"py_limited_api": PY_LIMITED}},
)
