"""One binary for many torch versions: the stable-ABI build.

- The built swapkern._C asks libtorch for nothing but the stable C shim: no undefined at::/c10::/torch:: symbol.
- A CPU-only abi3 wheel built here against this torch installs, without a rebuild, into a fresh virtual
  environment with torch 2.13.0 and there passes the op and error tests and gives the same results and the same
  exception types as here.
- The import check says plainly what to do when a binary does not fit the running torch.
"""

import glob
import json
import os
import re
import shutil
import subprocess
import sys
import types

import pytest
import torch
from conftest import ROOT

import swapkern
from swapkern import _backend

OTHER_TORCH = "2.13.0"  # an older torch than this environment's, within the stable build's range (>= 2.10)

LIBTORCH_CXX = re.compile(r"\b(at|c10|torch|caffe2)::")


def _undefined(lib):
    out = subprocess.run(["nm", "-D", "--undefined-only", "-C", lib], check=True, capture_output=True, text=True)
    return [line.split(None, 1)[-1] for line in out.stdout.splitlines() if line.strip()]


def _libtorch_cxx(symbols):
    return [s for s in symbols if LIBTORCH_CXX.search(s)]


@pytest.mark.skipif(shutil.which("nm") is None, reason="nm not installed")
def test_built_library_uses_only_the_stable_c_shim():
    """The _C in use (the CUDA + CPU build where CUDA is present) has no libtorch C++ symbol left to resolve."""
    if swapkern._backend._C is None:
        pytest.skip("swapkern._C is not built")
    lib = swapkern._backend._C.__file__
    assert lib.endswith(".abi3.so"), f"the default build is the abi3 one, not {lib}"
    symbols = _undefined(lib)
    assert any(s.startswith("aoti_torch_") for s in symbols), "the library should call the stable C shim"
    assert _libtorch_cxx(symbols) == []
    assert swapkern._backend._C.abi == "stable" and swapkern._backend._C.target_version == "2.10"


def test_symbol_check_catches_a_libtorch_symbol():
    """The filter above does find a mangled libtorch symbol (demangled by nm -C)."""
    assert _libtorch_cxx(["at::_ops::add_Tensor::call(at::Tensor const&)", "aoti_torch_get_sizes", "memcpy"]) == [
        "at::_ops::add_Tensor::call(at::Tensor const&)"
    ]


# --- the import check -------------------------------------------------------------------------------------------


def _build(abi, torch_version="2.14.1"):
    return types.SimpleNamespace(abi=abi, torch_version=torch_version, target_version="2.10")


def test_import_check_accepts_fitting_builds():
    so = "/x/swapkern/_C.abi3.so"
    assert _backend.build_problem("2.14.1", "13.0", so) is None
    assert _backend.build_problem("2.10.0", None, so, build=_build("stable")) is None
    legacy = "/x/_C.cpython-311-x86_64-linux-gnu.so"
    assert _backend.build_problem("2.14.1", "13.0", legacy, build=_build("legacy")) is None


def test_import_check_says_what_to_do():
    so = "/x/swapkern/_C.abi3.so"
    old = _backend.build_problem("2.9.1", None, so)
    assert "torch >= 2.10" in old and "2.9.1" in old and 'pip install --upgrade "torch>=2.10"' in old
    legacy = _backend.build_problem("2.13.0", None, "/x/_C.cpython-311.so", build=_build("legacy", "2.14.1"))
    assert "SWAPKERN_LEGACY_ABI=1" in legacy and "2.14.1" in legacy and "pip install" in legacy
    missing = _backend.build_problem("2.14.1", None, None)
    assert "not built" in missing and "pip install" in missing
    failed = _backend.build_problem("2.14.1", None, so, error=ImportError("undefined symbol: aoti_torch_foo"))
    assert "failed to load" in failed and "aoti_torch_foo" in failed and "Rebuild" in failed


def test_import_check_names_a_cuda_mismatch(tmp_path):
    """A CUDA 13 build under a CPU-only torch: the message names both and the two ways out."""
    so = tmp_path / "_C.abi3.so"
    so.write_bytes(b"\0ELF...libcudart.so.13\0...")
    text = _backend.build_problem("2.13.0+cpu", None, str(so), error=ImportError("libtorch_cuda.so: cannot open"))
    assert "CUDA 13" in text and "CPU-only" in text and "cu130" in text and "SWAPKERN_CPU_ONLY=1" in text


# --- the same wheel under another torch ---------------------------------------------------------------------------

# Runs in both environments: results of every op family and the exception types of bad calls, as JSON.
PROBE = r"""
import hashlib, json, sys, torch, swapkern
from swapkern import _backend
assert _backend._C is not None, _backend._native_error
def digest(t):
    return hashlib.sha256(t.contiguous().view(torch.uint8).numpy().tobytes()).hexdigest()[:16]
out = {"torch": torch.__version__, "backends": _backend.backends(), "file": _backend._C.__file__}
with swapkern.use_backend("native"):
    g = torch.Generator().manual_seed(0)
    x = torch.randn(8, 3, 16, 16, generator=g)
    swapkern.swap_channels_(x, [0, 1], [2, 0], sample=[1, 5])
    swapkern.swap_pixels_(x, [0, 7], [255, 3])
    w = torch.randn(64, 48, generator=g)
    swapkern.swap_rows_(w, [0, 5, 9], [63, 6, 10])
    swapkern.swap_cols_(w, [0, 5], [47, 6])
    swapkern.swap_elements_(w, [0, 100], [3071, 7])
    c = x.to(memory_format=torch.channels_last)
    swapkern.swap_channels_(c, [0], [2])
    h = torch.arange(60, dtype=torch.float16).view(6, 10)
    swapkern.swap_rows_(h, [0, 1], [5, 4])
    fs = swapkern.FeatureSwap("1PA", generator=torch.Generator().manual_seed(3))
    y = fs.swap_(torch.randn(16, 3, 8, 8, generator=g))
    out["results"] = [digest(t) for t in (x, w, c, h, y)]
    errors = {}
    bad = {
        "index": lambda t: swapkern.swap_rows_(t, [0], [64]),
        "overlap": lambda t: swapkern.swap_rows_(t, [0, 1], [1, 2]),
        "same": lambda t: swapkern.swap_rows_(t, [3], [3]),
        "dtype": lambda t: swapkern.swap_rows_(t, torch.tensor([0.0]), torch.tensor([1.0])),
        "grad": lambda t: swapkern.swap_rows_(t.clone().requires_grad_(), [0], [1]),
    }
    for name, call in bad.items():
        t = torch.randn(64, 4, generator=g)
        before = t.clone()
        try:
            call(t)
            errors[name] = "no error"
        except Exception as e:
            errors[name] = type(e).__name__
        assert torch.equal(t, before), name
    out["errors"] = errors
print("PROBE" + json.dumps(out))
"""


def _probe(python, cwd, env=None):
    res = subprocess.run([python, "-c", PROBE], cwd=cwd, env=env, capture_output=True, text=True, timeout=300)
    assert res.returncode == 0, res.stdout + res.stderr
    return json.loads(res.stdout.split("PROBE", 1)[1])


def copy_source(dst):
    """The files a build needs (those an sdist holds), copied from this checkout without its build outputs."""
    os.makedirs(dst)
    for name in ("setup.py", "pyproject.toml", "MANIFEST.in", "README.md", "LICENSE"):
        shutil.copy(os.path.join(ROOT, name), os.path.join(dst, name))
    ignore = shutil.ignore_patterns("*.so", "__pycache__", "*.pyc")
    for name in ("csrc", "swapkern"):
        shutil.copytree(os.path.join(ROOT, name), os.path.join(dst, name), ignore=ignore)
    return dst


def _run(cmd, **kw):
    res = subprocess.run(cmd, capture_output=True, text=True, **kw)
    assert res.returncode == 0, f"{' '.join(map(str, cmd))}\n{res.stdout[-4000:]}\n{res.stderr[-4000:]}"
    return res


@pytest.mark.build
def test_one_cpu_wheel_serves_another_torch(tmp_path):
    """Build the CPU-only abi3 wheel once against this torch; install it, unbuilt, beside torch 2.13.0 in a fresh
    virtual environment; there the op and error tests pass and every result and exception type is as here."""
    if torch.__version__.split("+")[0] == OTHER_TORCH:
        pytest.skip(f"this environment already runs torch {OTHER_TORCH}")
    src = copy_source(tmp_path / "src")  # a copy, so the wheel build leaves this checkout's build/ alone
    env = {**os.environ, "SWAPKERN_CPU_ONLY": "1", "MAX_JOBS": str(os.cpu_count() or 2)}
    dist = tmp_path / "dist"
    _run(
        [sys.executable, "-m", "pip", "wheel", "--no-build-isolation", "--no-deps", "-w", str(dist), str(src)],
        cwd=src,
        env=env,
        timeout=1200,
    )
    wheels = glob.glob(str(dist / "swapkern-*.whl"))
    assert len(wheels) == 1 and wheels[0].endswith("-cp310-abi3-linux_x86_64.whl"), wheels

    venv = tmp_path / "venv"
    _run([sys.executable, "-m", "venv", str(venv)], timeout=300)
    py = str(venv / "bin" / "python")
    _run([py, "-m", "pip", "install", "-q", f"torch=={OTHER_TORCH}", "numpy", "pytest", "hypothesis"], timeout=1200)
    # --no-deps: the wheel as built, nothing rebuilt or upgraded (its torch>=2.10 requirement is met)
    _run([py, "-m", "pip", "install", "-q", "--no-deps", "--no-build-isolation", wheels[0]], timeout=300)

    check_installed(venv, tmp_path, OTHER_TORCH)


def check_installed(venv, work, torch_version, triton=True):
    """In a virtual environment with an installed swapkern wheel and torch `torch_version`: the compiled ops load
    from the wheel, give the same results and the same exception types as here, and the op and error tests pass
    (those of the Triton backend too unless triton=False)."""
    py = str(venv / "bin" / "python")
    clean = {k: v for k, v in os.environ.items() if not k.startswith(("PYTHON", "VIRTUAL_ENV"))}
    clean.update({"SWAPKERN_NO_EXTENSION": "0", "PATH": f"{venv / 'bin'}:{clean.get('PATH', '')}"})
    there = _probe(py, cwd=work, env=clean)  # cwd outside the checkout: the installed wheel is imported
    assert there["torch"].startswith(torch_version) and "native" in there["backends"], there
    assert there["file"].startswith(str(venv)) and there["file"].endswith("_C.abi3.so"), there
    here = _probe(sys.executable, cwd=ROOT)
    assert there["results"] == here["results"]
    assert there["errors"] == here["errors"]
    assert set(here["errors"].values()) == {"IndexError", "ValueError", "TypeError", "RuntimeError"}, here

    tests = work / "tests"  # the op and error tests, run against the installed wheel
    tests.mkdir()
    for name in ("conftest.py", "oracle.py", "test_ops.py", "test_errors.py"):
        shutil.copy(os.path.join(ROOT, "tests", name), tests / name)
    shutil.copy(os.path.join(ROOT, "pyproject.toml"), work / "pyproject.toml")  # the pytest settings
    res = subprocess.run(
        # (the GPU sanitizer workload lives in bench/, not in the wheel)
        [py, "-m", "pytest", "-q", "-p", "no:cacheprovider", "tests/test_ops.py", "tests/test_errors.py"]
        + ["--deselect", "tests/test_ops.py::test_gpu_sanitize_workload_runs"]
        + ([] if triton else ["-m", "not slow and not gpu_bench and not triton"]),
        cwd=work,
        env=clean,
        capture_output=True,
        text=True,
        timeout=1200,
    )
    assert res.returncode == 0, res.stdout[-6000:] + res.stderr[-3000:]
    passed = re.search(r"(\d+) passed", res.stdout)
    assert passed and int(passed.group(1)) > 500 and " failed" not in res.stdout, res.stdout[-2000:]
