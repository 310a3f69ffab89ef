"""Shared fixtures: seeds, tensor makers in every layout, plan makers, and the backend matrix.

Triton runs on CPU tensors in interpreter mode, so TRITON_INTERPRET is set before anything imports triton
when no GPU is present.
"""

import os

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))  # the repository

try:  # decided before torch or triton are imported
    import subprocess

    _has_gpu = subprocess.run(["nvidia-smi", "-L"], capture_output=True, timeout=10).returncode == 0
except Exception:
    _has_gpu = False
if not _has_gpu:
    os.environ.setdefault("TRITON_INTERPRET", "1")

import torch  # noqa: E402
from hypothesis import HealthCheck, settings  # noqa: E402

import swapkern  # noqa: E402

# The backend fixture only selects a backend, so reusing it across examples is safe.
_quiet = [HealthCheck.function_scoped_fixture, HealthCheck.too_slow]
settings.register_profile("ci", max_examples=60, deadline=None, derandomize=True, suppress_health_check=_quiet)
settings.register_profile("thorough", max_examples=600, deadline=None, suppress_health_check=_quiet)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "ci"))

DTYPES = [
    torch.bool,
    torch.uint8,
    torch.int8,
    torch.int16,
    torch.int32,
    torch.int64,
    torch.float16,
    torch.bfloat16,
    torch.float32,
    torch.float64,
]
LAYOUTS = ["contiguous", "channels_last", "transposed", "sliced"]
HAS_CUDA = torch.cuda.is_available()


def pytest_collection_modifyitems(config, items):
    skip_gpu = pytest.mark.skip(reason="needs a CUDA GPU")
    for item in items:
        if "gpu" in item.keywords and not HAS_CUDA:
            item.add_marker(skip_gpu)


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)
    yield


def random_bits(shape, dtype, device="cpu", generator=None):
    """A tensor of random bit patterns (NaNs included for floats): swaps move bits, so any pattern goes."""
    n = 1
    for s in shape:
        n *= s
    if dtype == torch.bool:
        return torch.randint(0, 2, shape, generator=generator).bool().to(device)
    nbytes = n * torch.empty((), dtype=dtype).element_size()
    return torch.randint(0, 256, (nbytes,), dtype=torch.uint8, generator=generator).view(dtype).view(shape).to(device)


def make(shape, dtype, layout, device="cpu"):
    """A tensor of logical `shape` with random bits in the given memory layout (a view for the last two)."""
    shape = tuple(shape)
    if layout == "contiguous" or len(shape) < 2:
        return random_bits(shape, dtype, device)
    if layout == "channels_last":  # dim 1 innermost, the rest in order: NHWC for 4-d tensors
        order = (0, *range(2, len(shape)), 1)
        base = random_bits(tuple(shape[d] for d in order), dtype, device)
        return base.permute(*[order.index(d) for d in range(len(shape))])
    if layout == "transposed":
        return random_bits(shape[:-2] + (shape[-1], shape[-2]), dtype, device).transpose(-1, -2)
    if layout == "sliced":  # storage offset and a stride of 2 in the last dim
        base = random_bits(shape[:-1] + (2 * shape[-1] + 1,), dtype, device)
        return base[..., 1::2]
    raise ValueError(layout)


def bits(t):
    """Raw bytes of t in logical order, for bit-exact comparison (NaN-safe)."""
    flat = torch.empty(t.shape, dtype=t.dtype).copy_(t.detach())  # fresh strides, even for size-1 dims
    return flat.reshape(-1).view(torch.uint8)


def assert_bits_equal(got, want):
    assert got.shape == want.shape and got.dtype == want.dtype
    assert torch.equal(bits(got), bits(want)), "tensors differ bit-wise"


def disjoint_pairs(n, k, generator=None, negative=False):
    """k disjoint pairs (a, b) of distinct indices in [0, n); some negative when asked."""
    perm = torch.randperm(n, generator=generator)[: 2 * k]
    a, b = perm[:k].clone(), perm[k:].clone()
    if negative and k:
        a[::2] -= n
    return a, b


def sampled_pairs(n_samples, n, k, generator=None):
    """k pairs, each inside a random sample (at most n // 2 per sample); disjoint within each sample."""
    slots = torch.arange(n_samples).repeat_interleave(n // 2)
    assert k <= len(slots), "more pairs than the samples can hold"
    sample = slots[torch.randperm(len(slots), generator=generator)[:k]]
    a = torch.empty(k, dtype=torch.int64)
    b = torch.empty(k, dtype=torch.int64)
    for s in sample.unique():
        pos = (sample == s).nonzero().flatten()
        pa, pb = disjoint_pairs(n, len(pos), generator)
        a[pos], b[pos] = pa, pb
    return sample, a, b


def _emulated(device_type):
    return device_type == "cpu" and "cuda-emulated" in swapkern.backends()


def usable_backends(device_type="cpu"):
    """The backends that can run on tensors of this device type here ("torch" always; "cuda-emulated", the CUDA
    kernels compiled for the host, on CPU tensors where that build is there)."""
    ok = {
        "native": swapkern._backend.native_available,
        "triton": swapkern._backend.triton_available,
        "cuda-emulated": _emulated,
    }
    return [b for b in ("native", "triton") if ok[b](device_type)] + ["torch"] + (
        ["cuda-emulated"] if _emulated(device_type) else []
    )


def _backend_params():
    params = []
    for name in ("native", "triton", "cuda-emulated"):
        marks = []
        if name not in swapkern.backends():
            marks.append(pytest.mark.skip(reason=f"backend {name} unavailable here"))
        if name == "triton":
            marks.append(pytest.mark.triton)
        if name == "cuda-emulated":
            marks.append(pytest.mark.emulation)
        params.append(pytest.param(name, marks=marks))
    return params


@pytest.fixture(params=["cpu", pytest.param("cuda", marks=pytest.mark.gpu)])
def device(request):
    """Tensor device of a test: the CPU always, a GPU where there is one."""
    return torch.device(request.param)


@pytest.fixture(
    params=[
        "native",
        "torch",
        pytest.param("triton", marks=pytest.mark.triton),
        pytest.param("cuda-emulated", marks=pytest.mark.emulation),
    ]
)
def any_backend(request):
    """Each backend by name, on CPU tensors (skipped where it cannot run them here; "torch" always runs): for tests
    of what every backend must do alike, whatever `device` the test has."""
    if request.param not in usable_backends("cpu"):
        pytest.skip(f"backend {request.param} cannot run on CPU tensors here")
    with swapkern.use_backend(request.param):
        yield request.param


@pytest.fixture(params=_backend_params())
def backend(request):
    # The tensors' device: the test's `device` parameter, else the CPU (tests without one use CPU tensors).
    dev = request.getfixturevalue("device") if "device" in request.fixturenames else torch.device("cpu")
    if request.param not in usable_backends(dev.type):
        pytest.skip(f"backend {request.param} cannot run on {dev.type} tensors here")
    with swapkern.use_backend(request.param):
        yield request.param
