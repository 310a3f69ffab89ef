"""Packaging: one version, the environment report, and the distributions a package index would accept.

- The version is written once (swapkern/_version.py); setup.py reads it and adds +cpu / +cuXYZ on release wheels.
- swapkern.info() and `python -m swapkern` report the same environment, and the facts the modules themselves hold;
  a missing or unloadable binary is reported with its reason, and the import warning points to the report.
- The CUDA archs of a library are read right from what nvcc makes.
- (marked build: run by .ci/run, left out of the quick loop) the sdist holds the sources and no build outputs; a
  fresh virtual environment builds a wheel from it with build isolation; twine accepts both; auditwheel repairs the
  wheel to manylinux_2_28 without grafting torch's libraries; the wheel installs beside the oldest supported torch
  (2.10.0) in another fresh virtual environment, where the op and error tests pass with the results of here.
"""

import fnmatch
import glob
import json
import os
import re
import shutil
import subprocess
import sys
import tarfile
import zipfile

import pytest
import torch
from conftest import ROOT
from test_abi import _run, check_installed, copy_source

import swapkern
from swapkern import _backend, _info

OLDEST_TORCH = "2.10.0"  # the oldest torch the stable-ABI build targets (TORCH_TARGET_VERSION 2.10)
# What torch provides: never grafted into a swapkern wheel (torch loads them before swapkern._C).
TORCH_LIBS = ["libtorch*.so", "libc10*.so", "libcudart.so.*"]


def _python(args, cwd, env=None, timeout=300):
    return subprocess.run([sys.executable, *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout)


# --- the version ----------------------------------------------------------------------------------------------------


def _setup_version(**env):
    res = _python(["setup.py", "--version"], cwd=ROOT, env={**os.environ, **env})
    assert res.returncode == 0, res.stderr[-3000:]
    return res.stdout.strip().splitlines()[-1]


def test_version_is_written_once():
    with open(os.path.join(ROOT, "pyproject.toml")) as f:
        pyproject = f.read()
    assert re.search(r'^dynamic = \["version"\]', pyproject, re.M) and not re.search(r"^version =", pyproject, re.M)
    assert _setup_version(SWAPKERN_LOCAL_VERSION="0") == swapkern.__version__
    # a release wheel says which kind of build it holds, as PyTorch's own packages do
    assert _setup_version(SWAPKERN_LOCAL_VERSION="1", SWAPKERN_CPU_ONLY="1") == swapkern.__version__ + "+cpu"
    if torch.version.cuda and (os.environ.get("CUDA_HOME") or os.path.exists("/usr/local/cuda/bin/nvcc")):
        want = swapkern.__version__ + "+cu" + torch.version.cuda.replace(".", "")  # 0.1.0+cu130
        assert _setup_version(SWAPKERN_LOCAL_VERSION="1", SWAPKERN_CPU_ONLY="0") == want


# --- the environment report -----------------------------------------------------------------------------------------


def test_info_reports_this_environment():
    data = swapkern.info()
    assert data["swapkern"]["version"] == swapkern.__version__
    assert data["swapkern"]["path"] == os.path.dirname(swapkern.__file__)
    assert data["torch"]["version"] == torch.__version__ and data["torch"]["cuda"] == torch.version.cuda
    assert data["python"]["version"] == ".".join(map(str, sys.version_info[:3]))
    assert data["backends"]["available"] == swapkern.backends()
    with swapkern.use_backend("auto"):
        assert data["backends"]["auto"]["cpu"] == _backend.resolve(torch.empty(0))
    if not torch.cuda.is_available():
        assert data["backends"]["auto"]["cuda"].startswith("none")
    assert data["triton"]["interpreter"] == (os.environ.get("TRITON_INTERPRET") == "1")
    assert data["threads"]["torch"] == torch.get_num_threads()
    binary = data["binary"]
    assert binary["loaded"] == (_backend._C is not None) and binary["problem"] == _backend._native_error
    if _backend._C is not None:
        assert binary["path"] == _backend._C.__file__
        assert binary["abi"] == _backend._C.abi and binary["stable_abi_target"] == "2.10"
        assert binary["built_with_torch"] == _backend._C.torch_version
        assert binary["kernels"][0] == "cpu"
        if _backend._C.cuda:  # a CUDA build holds device code, and the report lists it
            assert binary["cuda_runtime"] == _backend._C.cuda_version and "cuda" in binary["kernels"]
            assert binary["cuda_archs"] and all(re.fullmatch(r"(sm|compute)_\d+", a) for a in binary["cuda_archs"])
        else:
            assert binary["cuda_archs"] == []
    json.dumps(data)  # plain data


def test_python_m_swapkern_prints_the_same_report():
    res = _python(["-m", "swapkern", "--json"], cwd=ROOT)
    assert res.returncode == 0, res.stderr
    there = json.loads(res.stdout)
    here = swapkern.info()
    for section in ("swapkern", "python", "torch", "binary", "backends", "triton"):
        assert there[section] == here[section], section
    res = _python(["-m", "swapkern"], cwd=ROOT)
    assert res.returncode == 0, res.stderr
    assert res.stdout.strip() == _info.report(there)
    for line in ("swapkern:", "torch:", "binary:", "backends:", "triton:", "threads:", "stable_abi_target"):
        assert line in res.stdout


def _package_copy(tmp_path, binary=None):
    """This swapkern package alone in a directory, with no compiled ops or with the given file as swapkern._C."""
    shutil.copytree(os.path.join(ROOT, "swapkern"), tmp_path / "swapkern",
                    ignore=shutil.ignore_patterns("*.so", "__pycache__"))
    if binary is not None:
        (tmp_path / "swapkern" / "_C.abi3.so").write_bytes(binary)
    return {**os.environ, "SWAPKERN_NO_EXTENSION": "0"}


def test_report_says_why_the_binary_is_missing(tmp_path):
    env = _package_copy(tmp_path)
    res = _python(["-W", "always", "-c", "import swapkern"], cwd=tmp_path, env=env)
    assert res.returncode == 0 and "not built" in res.stderr and "python -m swapkern" in res.stderr, res.stderr
    res = _python(["-W", "ignore", "-m", "swapkern", "--json"], cwd=tmp_path, env=env)
    binary = json.loads(res.stdout)["binary"]
    assert binary["path"] is None and binary["loaded"] is False and "not built" in binary["problem"]
    assert "native" not in json.loads(res.stdout)["backends"]["available"]


def test_a_binary_outside_the_package_directory_is_not_loaded(tmp_path):
    # An editable install's finder (setuptools) maps swapkern.* to the source tree, so a copy of the package without
    # a binary would find the tree's swapkern._C through it: that is another copy's binary, and it is not loaded.
    env = _package_copy(tmp_path)
    built = os.path.join(ROOT, "swapkern", "_C.abi3.so")
    finder = f"""
import importlib.machinery, importlib.util, sys
class EditableLike:  # what setuptools' editable finder does for a mapped package's submodules
    @classmethod
    def find_spec(cls, name, path=None, target=None):
        if name == "swapkern._C":
            loader = importlib.machinery.ExtensionFileLoader(name, {built!r})
            return importlib.util.spec_from_file_location(name, {built!r}, loader=loader)
sys.meta_path.append(EditableLike)
import swapkern
"""
    res = _python(["-W", "always", "-c", finder], cwd=tmp_path, env=env)
    assert res.returncode == 0 and "not built" in res.stderr, res.stderr


def test_report_says_why_the_binary_does_not_load(tmp_path):
    env = _package_copy(tmp_path, binary=b"not a shared library\0libcudart.so.13\0")
    res = _python(["-W", "always", "-c", "import swapkern"], cwd=tmp_path, env=env)
    assert "failed to load" in res.stderr and "python -m swapkern" in res.stderr, res.stderr
    res = _python(["-W", "ignore", "-m", "swapkern", "--json"], cwd=tmp_path, env=env)
    assert res.returncode == 0, res.stderr
    data = json.loads(res.stdout)
    binary = data["binary"]
    assert binary["path"].endswith("_C.abi3.so") and binary["loaded"] is False and "failed to load" in binary["problem"]
    # read from the file: a stable-ABI name, a CUDA 13 runtime named inside, no device code to list
    assert binary["abi"] == "stable" and binary["stable_abi_target"] == "2.10"
    assert binary["cuda_runtime"].startswith("13")
    assert binary["cuda_archs"] == [] and binary["kernels"] == []
    assert data["backends"]["auto"]["cpu"] in ("triton", "torch")


@pytest.mark.build  # nvcc compiles (a minute on 2 loaded cores)
@pytest.mark.skipif(shutil.which("nvcc") is None, reason="nvcc not installed")
def test_cuda_archs_are_read_from_what_nvcc_makes(tmp_path):
    """A library compiled by nvcc for sm_75 code and compute_86 PTX: the report lists exactly those, and a library
    without device code lists none."""
    src = tmp_path / "k.cu"
    src.write_text('__global__ void k(float* x) { x[threadIdx.x] *= 2; }\nextern "C" void* f() { return (void*)k; }\n')
    lib = tmp_path / "libk.so"
    gencode = ["-gencode", "arch=compute_75,code=sm_75", "-gencode", "arch=compute_86,code=compute_86"]
    _run(["nvcc", "-shared", "-Xcompiler", "-fPIC", *gencode, str(src), "-o", str(lib)], timeout=600)
    archs, how = _info.cuda_archs(str(lib))
    assert archs == ["sm_75", "compute_86"], (archs, how)
    with open(lib, "rb") as f:  # the reader without a toolkit, whichever one the report used
        assert _info.fatbin_archs(_info._elf_section(f.read(), ".nv_fatbin")) == ["sm_75", "compute_86"]
    assert _info.cuda_archs(sys.executable)[0] == []


# --- the distributions ----------------------------------------------------------------------------------------------


@pytest.mark.build
def test_sdist_wheel_repair_and_install_beside_the_oldest_torch(tmp_path):
    """sdist -> a wheel built from it with build isolation in a fresh venv -> twine check -> auditwheel repair to
    manylinux_2_28 (torch's libraries left out) -> installed beside torch 2.10.0 in another fresh venv, where the op
    and error tests pass and every result and exception type is as here."""
    src = copy_source(tmp_path / "src")
    dist = tmp_path / "dist"
    # The sdist needs no compiler; built here without isolation (this environment has the build requirements).
    _run([sys.executable, "-m", "build", "--sdist", "--no-isolation", "--outdir", str(dist), str(src)], timeout=600)
    sdist = dist / f"swapkern-{swapkern.__version__}.tar.gz"
    with tarfile.open(sdist) as tar:
        names = [n.split("/", 1)[1] for n in tar.getnames() if "/" in n]
    for need in ("pyproject.toml", "setup.py", "LICENSE", "README.md", "PKG-INFO", "swapkern/__init__.py",
                 "swapkern/triton/ops.py", "csrc/bindings.cpp", "csrc/glibc_compat.h", "csrc/cuda/exchange_cuda.cu",
                 "csrc/cpu/launchers.h"):
        assert need in names, need
    bad = [n for n in names if n.endswith((".so", ".o", ".pyc")) or n.startswith(("tests/", "bench/", "build/"))]
    assert bad == []

    # A fresh venv (nothing but pip) builds the wheel from the sdist, in pip's isolated build environment.
    builder = tmp_path / "builder"
    _run([sys.executable, "-m", "venv", str(builder)], timeout=300)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PYTHON", "VIRTUAL_ENV"))}
    env.update({"SWAPKERN_CPU_ONLY": "1", "SWAPKERN_LOCAL_VERSION": "1", "MAX_JOBS": str(os.cpu_count() or 2)})
    _run([str(builder / "bin" / "pip"), "wheel", "--no-deps", "-w", str(dist), str(sdist)], env=env, timeout=2400)
    wheels = glob.glob(str(dist / "*.whl"))
    want = f"swapkern-{swapkern.__version__}+cpu-cp310-abi3-linux_x86_64.whl"
    assert [os.path.basename(w) for w in wheels] == [want]
    _run([sys.executable, "-m", "twine", "check", "--strict", str(sdist), wheels[0]], timeout=300)

    # auditwheel: the manylinux_2_28 tag, nothing grafted (the library needs only libc, libstdc++ and torch's).
    house = tmp_path / "wheelhouse"
    excl = [a for lib in TORCH_LIBS for a in ("--exclude", lib)]
    repair = [sys.executable, "-m", "auditwheel", "repair", "--plat", "manylinux_2_28_x86_64", "--only-plat", *excl]
    repair += ["-w", str(house)]
    _run([*repair, wheels[0]], timeout=600)
    repaired = glob.glob(str(house / "*.whl"))
    assert [os.path.basename(w) for w in repaired] == [want.replace("linux_x86_64", "manylinux_2_28_x86_64")]
    with zipfile.ZipFile(repaired[0]) as z:
        libs = [n for n in z.namelist() if ".so" in n]
    assert libs == ["swapkern/_C.abi3.so"], libs  # no swapkern.libs/: torch's libraries were not grafted
    audit_shows_manylinux_2_28(repaired[0])
    _run([sys.executable, "-m", "twine", "check", "--strict", repaired[0]], timeout=300)

    # Another fresh venv: the oldest supported torch, then the repaired wheel as built.
    venv = tmp_path / "venv"
    _run([sys.executable, "-m", "venv", str(venv)], timeout=300)
    pip = [str(venv / "bin" / "python"), "-m", "pip", "install", "-q"]
    _run([*pip, f"torch=={OLDEST_TORCH}", "numpy", "pytest", "hypothesis"], timeout=2400)
    _run([*pip, "--no-deps", repaired[0]], timeout=300)
    # Triton's tests are left out there: torch 2.10 pins triton 3.6, whose interpreter fails 20 of them (numpy
    # scalars); the Triton backend is tested with the triton of this environment (3.8).
    check_installed(venv, tmp_path, OLDEST_TORCH, triton=False)
    # the report there: the wheel's own version, its binary loaded beside torch 2.10.0, no device code
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PYTHON", "VIRTUAL_ENV"))}
    res = subprocess.run([str(venv / "bin" / "python"), "-m", "swapkern", "--json"], cwd=tmp_path, env=env,
                         capture_output=True, text=True, timeout=300)
    assert res.returncode == 0, res.stderr[-3000:]
    there = json.loads(res.stdout)
    assert there["swapkern"]["distribution"] == f"{swapkern.__version__}+cpu" and there["swapkern"]["commit"] is None
    assert there["torch"]["version"].startswith(OLDEST_TORCH) and there["binary"]["loaded"], there
    assert there["binary"]["path"].startswith(str(venv)) and there["binary"]["cuda_archs"] == []
    assert there["backends"]["auto"]["cpu"] == "native"


def audit_shows_manylinux_2_28(wheel):
    """`auditwheel show`: the symbols fit manylinux_2_28, and the only libraries outside the manylinux set are
    torch's (which auditwheel cannot place, so its overall verdict for any torch extension stays linux_x86_64)."""
    shown = json.loads(_run([sys.executable, "-m", "auditwheel", "show", "--json", wheel], timeout=300).stdout)
    glibc = re.fullmatch(r"manylinux_2_(\d+)_x86_64", shown["sym_tag"])
    assert glibc and int(glibc.group(1)) <= 28, shown["sym_tag"]
    assert shown["external_libs"] and all(any(fnmatch.fnmatch(lib, p) for p in TORCH_LIBS)
                                          for lib in shown["external_libs"]), shown["external_libs"]
    assert not shown["unsupported_isa"]
