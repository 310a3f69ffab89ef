"""The CUDA emulation build (swapkern._C_emu: csrc/cuda/*.cu compiled by the host compiler through
csrc/cuda/emulation.h) and the "cuda-emulated" backend that runs it on CPU tensors.

The backend matrix itself (ops, dtypes, layouts, protocols, engine, loader, the differential fuzz test) runs on
"cuda-emulated" through the shared backend fixtures (tests/conftest.py, marker `emulation`); here: the backend's
registration, SWAPKERN_BACKEND, that the build compiles the very sources nvcc compiles, the kernel coverage, and
(marker `asan`, a step of .ci/run) the same tests under AddressSanitizer + UndefinedBehaviorSanitizer.
"""

import glob
import os
import re
import shutil
import subprocess
import sys

import pytest
import torch
from conftest import ROOT, assert_bits_equal, make

import swapkern
from swapkern import reference as ref

BUILT = "cuda-emulated" in swapkern.backends()
needs_build = pytest.mark.skipif(not BUILT, reason="the CUDA emulation is not built (SWAPKERN_CUDA_EMULATION=1)")
CUDA_SOURCES = sorted(glob.glob(os.path.join(ROOT, "csrc", "cuda", "*.cu")))


def _python(code, **env):
    e = dict(os.environ, **env)
    return subprocess.run([sys.executable, "-c", code], cwd=ROOT, env=e, capture_output=True, text=True, timeout=300)


def test_ci_builds_the_emulation():
    # .ci/run builds it (SWAPKERN_CUDA_EMULATION=1) and says so: there the backend must be there, not skipped
    if os.environ.get("SWAPKERN_REQUIRE_EMULATION") == "1":
        assert BUILT, swapkern._backend._emulation_error
    else:
        assert BUILT == (swapkern._backend._emulation_path is not None)


@needs_build
def test_backend_is_listed_and_runs_the_cuda_launchers():
    assert swapkern.backends()[-1] == "cuda-emulated"
    x = make((4, 6, 8, 8), torch.float32, "channels_last")
    want = x.clone()
    with swapkern.use_backend("cuda-emulated"):
        assert swapkern._backend.impl(x).__name__ == "swapkern._native_emulated"
        swapkern.swap_channels_(x, [0, 1], [5, 3])
    ref.swap_channels_(want, [0, 1], [5, 3])
    assert_bits_equal(x, want)
    assert x._version == 1  # the same wrappers as the native backend: one version bump


def test_backend_is_not_listed_without_the_build():
    r = _python(
        "import warnings; warnings.simplefilter('ignore'); import swapkern; print(swapkern.backends())",
        SWAPKERN_EMULATION_LIBRARY="/nonexistent/_C_emu.so",
    )
    assert r.returncode == 0, r.stderr
    assert "cuda-emulated" not in r.stdout and "'torch'" in r.stdout
    with pytest.raises(ValueError, match="not available") if not BUILT else _nothing():
        swapkern.use_backend("cuda-emulated")
    swapkern.use_backend("auto")


class _nothing:
    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False


def test_swapkern_backend_selects_the_default_at_import():
    r = _python("import swapkern; print(swapkern.current_backend())", SWAPKERN_BACKEND="torch")
    assert r.returncode == 0 and r.stdout.strip() == "torch", r.stderr
    r = _python("import swapkern", SWAPKERN_BACKEND="cuda-fast")
    assert r.returncode != 0 and "ValueError: unknown backend 'cuda-fast'" in r.stderr
    if BUILT:
        code = "import torch, swapkern; x = torch.arange(6.); swapkern.swap_elements_(x, [0], [5]); print(x[0].item())"
        r = _python(code + "; print(swapkern._backend.resolve(x))", SWAPKERN_BACKEND="cuda-emulated")
        assert r.returncode == 0 and r.stdout.split() == ["5.0", "cuda-emulated"], r.stderr


@needs_build
def test_cuda_tensors_are_refused_by_the_emulated_backend():
    x = torch.empty(0, device="meta")
    with swapkern.use_backend("cuda-emulated"), pytest.raises((RuntimeError, ValueError)):
        swapkern._backend.resolve(x)


def test_the_emulation_compiles_the_cuda_sources_as_they_are():
    # setup.py compiles each csrc/cuda/*.cu through a one-line file that includes it, nothing else
    setup = open(os.path.join(ROOT, "setup.py")).read()
    assert 'glob.glob("csrc/cuda/*.cu")' in setup and "compiled as it is" in setup
    launches = 0
    for path in CUDA_SOURCES:
        text = open(path).read()
        assert "<<<" not in text, f"{path}: launch with SK_LAUNCH (csrc/cuda/stream.h), not <<<>>>"
        launches += text.count("SK_LAUNCH(")
    assert launches == 13
    stream = open(os.path.join(ROOT, "csrc", "cuda", "stream.h")).read()
    # under nvcc the macro is the launch itself, token for token
    assert "#define SK_LAUNCH(grid, block, smem, stream, ...) __VA_ARGS__<<<grid, block, smem, stream>>>" in stream


@pytest.mark.skipif(shutil.which("nvcc") is None, reason="needs nvcc")
def test_under_nvcc_every_sk_launch_is_a_chevron_launch(tmp_path):
    # The preprocessor of the real CUDA build turns each SK_LAUNCH into kernel<<<...>>>(...): what nvcc compiles
    # is the launch it compiled before the emulation existed.
    from torch.utils.cpp_extension import include_paths

    incs = [f"-I{p}" for p in include_paths()]
    for path in CUDA_SOURCES:
        out = subprocess.run(
            ["nvcc", "-E", "-x", "cu", "-std=c++20", "-DUSE_CUDA", "-DSWAPKERN_WITH_CUDA", *incs, path],
            capture_output=True,
            text=True,
            timeout=300,
        )
        assert out.returncode == 0, out.stderr[-3000:]
        text = open(path).read()
        body = out.stdout[out.stdout.rfind("namespace swapkern") :]
        kernels = re.findall(r"SK_LAUNCH\((?:[^()]|\([^()]*\))*?,\s*([\w:]+(?:<[^;]*?>)?)\)\(", text)
        assert len(kernels) == text.count("SK_LAUNCH("), path
        assert "SK_LAUNCH" not in out.stdout
        for k in kernels:
            assert re.search(re.escape(k.replace(" ", "")) + r"\s*<<<", body.replace(" ", "")), (path, k)


@needs_build
def test_every_kernel_but_the_largest_launches_under_the_test_workload():
    # bench.gpu.emulate without its one 4 GiB case: every other kernel instantiation is launched and checked
    from bench.gpu import emulate

    with swapkern.use_backend("cuda-emulated"):
        emulate.exchanges(torch.Generator().manual_seed(0))
        emulate.features()
        emulate.loader()
        emulate.weights()
    kernels = emulate.registry()
    never = [name for name, n in kernels if n == 0]
    assert len(kernels) >= 40
    assert all("load_kernel" in name and "long" in name for name in never), never
    assert len(never) <= 3


@needs_build
def test_emulated_errors_match_the_native_backend():
    x = make((3, 4, 5), torch.float32, "contiguous")
    before = x.clone()
    for backend in ("native", "cuda-emulated"):
        with swapkern.use_backend(backend):
            with pytest.raises(IndexError):
                swapkern.swap_(x, 1, [0], [4])
            with pytest.raises(ValueError):
                swapkern.swap_(x, 1, [0, 1], [1, 0])
    assert_bits_equal(x, before)


def _runtime(name):
    for cc in ("g++", "c++", "gcc"):
        if shutil.which(cc):
            path = subprocess.run([cc, f"-print-file-name={name}"], capture_output=True, text=True).stdout.strip()
            if os.path.isabs(path) and os.path.exists(path):
                return os.path.realpath(path)
    return None


def _libasan():
    """What LD_PRELOAD needs to load an ASan-built extension into python (a program not built with ASan): the ASan
    runtime first, and libstdc++ with it (else ASan's __cxa_throw interceptor finds no real __cxa_throw when the
    first C++ exception is thrown, by triton's module at import)."""
    asan, cxx = _runtime("libasan.so"), _runtime("libstdc++.so.6")
    return f"{asan} {cxx}" if asan and cxx else None


@pytest.mark.asan
@pytest.mark.skipif(_libasan() is None, reason="no libasan")
def test_asan_ubsan_build_runs_the_op_and_fuzz_tests_clean():
    """SWAPKERN_CUDA_EMULATION=asan: the emulation built with -fsanitize=address,undefined (outside the package),
    loaded with libasan preloaded, runs the op matrix and the fuzz test's crash-prone classes on cuda-emulated. An
    out-of-bounds read or write of a kernel, a shared-memory tile overrun (the bytes past a launch's dynamic
    shared memory are poisoned) or undefined behaviour ends the run with a report."""
    where = os.path.join(ROOT, "build", "emulation-asan")
    lib_dir, temp = os.path.join(where, "lib"), os.path.join(where, "temp")
    env = dict(os.environ, SWAPKERN_CUDA_EMULATION="asan", MAX_JOBS=os.environ.get("MAX_JOBS", "2"))
    cmd = [sys.executable, "setup.py", "build_ext", "--build-lib", lib_dir, "--build-temp", temp]
    r = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=1800)
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    (lib,) = glob.glob(os.path.join(lib_dir, "swapkern", "_C_emu*.so"))
    env = dict(
        os.environ,
        LD_PRELOAD=_libasan(),
        ASAN_OPTIONS="detect_leaks=0:halt_on_error=1:exitcode=86",
        UBSAN_OPTIONS="halt_on_error=1:print_stacktrace=1",
        SWAPKERN_EMULATION_LIBRARY=lib,
        SWAPKERN_REQUIRE_EMULATION="1",
        TRITON_INTERPRET="0",  # the sanitizers watch the emulated kernels; leave the interpreter out
    )
    runs = [
        (["tests/test_ops.py", "-k", "cuda-emulated"], {}),
        (["tests/test_emulation.py", "-k", "every_kernel or errors_match"], {}),
        (["tests/test_fuzz.py", "-k", "inprocess"], {"SWAPKERN_FUZZ_CRASH_PRONE": "1"}),
    ]
    for args, extra in runs:
        cmd = [sys.executable, "-m", "pytest", "-q", "-x", "-p", "no:cacheprovider", *args]
        r = subprocess.run(cmd, cwd=ROOT, env=dict(env, **extra), capture_output=True, text=True, timeout=1800)
        out = r.stdout + r.stderr
        assert "AddressSanitizer" not in out and "runtime error:" not in out, out[-8000:]
        assert r.returncode == 0 and " passed" in r.stdout, out[-6000:]
