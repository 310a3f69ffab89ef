"""In place for real: same storage and strides, no allocation the size of the data, version counters."""

import pytest
import torch
from conftest import disjoint_pairs, make
from torch.profiler import ProfilerActivity, profile

import swapkern


def _max_alloc(fn):
    """Largest single CPU allocation (bytes) made while fn runs, from the profiler's memory events."""
    with profile(activities=[ProfilerActivity.CPU], profile_memory=True) as prof:
        fn()
    return max([e.cpu_memory_usage for e in prof.events() if e.cpu_memory_usage > 0], default=0)


# Index tensors of a few hundred entries are allowed; the moved data (here >= 24 KiB) is not.
LIMIT = 4096

CALLS = {
    "swap_": lambda x, a, b: swapkern.swap_(x, 0, a, b),
    "swap_ sampled": lambda x, a, b: swapkern.swap_(x, 1, a % 3, (a + 1) % 3, sample=b, sample_dim=0),
    "channels": lambda x, a, b: swapkern.swap_channels_(x, [0], [2]),
    "pixels": lambda x, a, b: swapkern.swap_pixels_(x, a, b),
    "elements": lambda x, a, b: swapkern.swap_elements_(x, a, b),
    "rows": lambda x, a, b: swapkern.swap_rows_(x, a, b),
    "cols": lambda x, a, b: swapkern.swap_cols_(x, [0], [1]),
}


@pytest.mark.parametrize("name", sorted(CALLS))
@pytest.mark.parametrize("layout", ["contiguous", "channels_last"])
def test_no_data_sized_allocation(name, layout):
    x = make((512, 3, 32, 32), torch.float32, layout)
    a, b = disjoint_pairs(512, 100)
    ptr, stride = x.data_ptr(), x.stride()
    CALLS[name](x, a, b)  # warm-up
    biggest = _max_alloc(lambda: CALLS[name](x, a, b))
    assert biggest < LIMIT, f"allocated {biggest} bytes for a {x.nbytes}-byte tensor"
    assert x.data_ptr() == ptr and x.stride() == stride


def test_profiler_sees_allocations():
    # The measurement above can fail: the reference gathers the moved slices into a temporary.
    x = torch.randn(512, 3, 32, 32)
    with swapkern.use_backend("torch"):
        assert _max_alloc(lambda: swapkern.swap_(x, 0, [0, 1], [2, 3])) >= 2 * x[0].nbytes > LIMIT


def test_between_no_allocation():
    x, y = torch.randn(256, 1024), torch.randn(512, 1024)
    i, _ = disjoint_pairs(256, 64)
    j, _ = disjoint_pairs(512, 64)
    assert _max_alloc(lambda: swapkern.swap_between_(x, y, i, j, dim_x=0, dim_y=0)) < LIMIT


def test_version_counter_and_grad_mode():
    w = torch.nn.Parameter(torch.randn(4, 4))
    with pytest.raises(RuntimeError, match="not differentiable"):
        swapkern.swap_rows_(w, [0], [1])
    v = w._version
    with torch.no_grad():
        swapkern.swap_rows_(w, [0], [1])
    assert w._version == v + 1
    h = w * 1
    y = h.sin()  # saves h for backward
    with torch.no_grad():
        swapkern.swap_rows_(h, [0], [1])
    with pytest.raises(RuntimeError, match="modified by an inplace operation"):
        y.sum().backward()


def test_between_bumps_both_versions():
    x, y = torch.randn(3, 4), torch.randn(5, 4)
    vx, vy = x._version, y._version
    swapkern.swap_between_(x, y, [0], [1], dim_x=0, dim_y=0)
    assert (x._version, y._version) == (vx + 1, vy + 1)
