"""Every op against its reference, bit-exact, over dtypes, layouts, K and odd or empty shapes."""

import pytest
import torch
from conftest import DTYPES, LAYOUTS, assert_bits_equal, disjoint_pairs, make, sampled_pairs

import swapkern
from swapkern import reference as ref

KS = ["zero", "one", "many", "all"]


def _k(n, which):
    return {"zero": 0, "one": min(1, n // 2), "many": max(n // 4, min(1, n // 2)), "all": n // 2}[which]


def check(op, ref_op, x, *args, **kwargs):
    """Runs op on x and ref_op on a copy; both must agree bit for bit, and op must work in place."""
    want = x.clone()
    ptr, stride = x.data_ptr(), x.stride()
    out = op(x, *args, **kwargs)
    ref_op(want, *args, **kwargs)
    assert out is x
    assert x.data_ptr() == ptr and x.stride() == stride
    assert_bits_equal(x, want)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("layout", LAYOUTS)
@pytest.mark.parametrize("k", KS)
def test_swap_dims(backend, device, dtype, layout, k):
    x = make((5, 6, 7), dtype, layout, device=device)
    for dim in range(3):
        a, b = disjoint_pairs(x.shape[dim], _k(x.shape[dim], k), negative=True)
        check(swapkern.swap_, ref.swap_, x, dim, a, b)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("layout", LAYOUTS)
@pytest.mark.parametrize("k", ["one", "many", "all"])
def test_swap_sampled(backend, device, dtype, layout, k):
    x = make((4, 6, 3, 5), dtype, layout, device=device)
    for dim, sample_dim in [(1, 0), (0, 1), (3, 2), (2, -1)]:
        n = x.shape[dim]
        sample, a, b = sampled_pairs(x.shape[sample_dim], n, 3 * _k(n, k))
        check(swapkern.swap_, ref.swap_, x, dim, a, b, sample=sample, sample_dim=sample_dim)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("layout", LAYOUTS)
@pytest.mark.parametrize("k", KS)
def test_elements(backend, device, dtype, layout, k):
    x = make((3, 5, 7), dtype, layout, device=device)
    i, j = disjoint_pairs(x.numel(), _k(x.numel(), k), negative=True)
    check(swapkern.swap_elements_, ref.swap_elements_, x, i, j)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("layout", LAYOUTS)
@pytest.mark.parametrize("k", KS)
def test_channels_and_pixels(backend, device, dtype, layout, k):
    x = make((3, 4, 5, 3), dtype, layout, device=device)
    c = _k(4, k)
    a, b = disjoint_pairs(4, c)
    check(swapkern.swap_channels_, ref.swap_channels_, x, a, b)
    p, q = disjoint_pairs(15, _k(15, k))
    check(swapkern.swap_pixels_, ref.swap_pixels_, x, p, q)
    sample, p, q = sampled_pairs(3, 15, 2 * _k(15, k))
    check(swapkern.swap_pixels_, ref.swap_pixels_, x, p, q, sample=sample)
    sample, a, b = sampled_pairs(3, 4, 2 * c)
    check(swapkern.swap_channels_, ref.swap_channels_, x, a, b, sample=sample)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("layout", LAYOUTS)
@pytest.mark.parametrize("shape", [(8, 3), (6, 4, 3, 3), (16, 5, 1, 2)])
def test_rows_cols(backend, device, dtype, layout, shape):
    w = make(shape, dtype, layout, device=device)
    a, b = disjoint_pairs(shape[0], shape[0] // 2)
    check(swapkern.swap_rows_, ref.swap_rows_, w, a, b)
    a, b = disjoint_pairs(shape[1], 1)
    check(swapkern.swap_cols_, ref.swap_cols_, w, a, b)


def check_between(x, y, i, j, **dims):
    wx, wy = x.clone(), y.clone()
    ptrs = (x.data_ptr(), y.data_ptr())
    out = swapkern.swap_between_(x, y, i, j, **dims)
    ref.swap_between_(wx, wy, i, j, **dims)
    assert out[0] is x and out[1] is y and (x.data_ptr(), y.data_ptr()) == ptrs
    assert_bits_equal(x, wx)
    assert_bits_equal(y, wy)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("layout", LAYOUTS)
@pytest.mark.parametrize("k", KS)
def test_between(backend, device, dtype, layout, k):
    x = make((5, 6, 7), dtype, layout, device=device)
    y = make((6, 9, 7), dtype, "contiguous" if layout == "sliced" else "sliced", device=device)
    kk = _k(5, k)
    i, _ = disjoint_pairs(5, kk)
    j, _ = disjoint_pairs(9, kk)
    check_between(x, y, i, j, dim_x=0, dim_y=1)  # slices of shape (6, 7) on both sides
    kk = _k(x.numel(), k)
    i = torch.randperm(x.numel())[:kk] - x.numel() * (kk % 2)
    j = torch.randperm(y.numel())[:kk]
    check_between(x, y, i, j)  # elements


@pytest.mark.parametrize(
    "shape", [(1,), (2,), (7,), (1, 129), (129, 1), (3, 1, 5), (2, 3, 4, 5, 6), (1023, 3), (1025, 2)]
)
def test_odd_shapes(backend, device, shape):
    x = make(shape, torch.float32, "contiguous", device=device)
    for dim in range(len(shape)):
        a, b = disjoint_pairs(shape[dim], shape[dim] // 2)
        check(swapkern.swap_, ref.swap_, x, dim, a, b)
    i, j = disjoint_pairs(x.numel(), x.numel() // 2)
    check(swapkern.swap_elements_, ref.swap_elements_, x, i, j)


@pytest.mark.parametrize("shape", [(0,), (0, 3), (3, 0, 2), (4, 3, 0, 2)])
def test_zero_size(backend, device, shape):
    x = torch.empty(shape, device=device)
    for dim in range(len(shape)):
        n = shape[dim]
        a, b = disjoint_pairs(n, n // 2)
        check(swapkern.swap_, ref.swap_, x, dim, a, b)  # K pairs of empty slices, or K = 0
    check(swapkern.swap_elements_, ref.swap_elements_, x, [], [])


def test_python_index_forms(backend, device):
    x = make((6, 4), torch.float32, "contiguous", device=device)
    check(swapkern.swap_, ref.swap_, x, 0, 1, 4)
    check(swapkern.swap_, ref.swap_, x, 0, [1, -1], (0, 2))
    check(swapkern.swap_, ref.swap_, x, 0, torch.tensor(2), torch.tensor(3))
    check(swapkern.swap_, ref.swap_, x, 0, torch.tensor([0], dtype=torch.int32), torch.tensor([3], dtype=torch.int16))
    check(swapkern.swap_, ref.swap_, x, 0, [], [])
    on_device = torch.tensor([1, -2], device=device), torch.tensor([0, 2], device=device)
    check(swapkern.swap_, ref.swap_, x, 0, *on_device)


def test_reference_by_hand():
    x = torch.arange(12).view(3, 4)
    ref.swap_(x, 0, [0], [2])
    assert x.tolist() == [[8, 9, 10, 11], [4, 5, 6, 7], [0, 1, 2, 3]]
    ref.swap_elements_(x, [0], [-1])
    assert x.tolist() == [[3, 9, 10, 11], [4, 5, 6, 7], [0, 1, 2, 8]]
    x = torch.arange(8).view(2, 2, 2)
    ref.swap_(x, 2, [0], [1], sample=[1], sample_dim=0)
    assert x.tolist() == [[[0, 1], [2, 3]], [[5, 4], [7, 6]]]
    img = torch.arange(16).view(2, 2, 2, 2)
    ref.swap_pixels_(img, [0], [3], sample=[0])
    assert img[0].tolist() == [[[3, 1], [2, 0]], [[7, 5], [6, 4]]]
    assert torch.equal(img[1], torch.arange(8, 16).view(2, 2, 2))
    a, b = torch.arange(4.0), torch.zeros(2, 3)
    ref.swap_between_(a, b, [1, 3], [5, 0])
    assert a.tolist() == [0, 0, 2, 0] and b.tolist() == [[3, 0, 0], [0, 0, 1]]


def test_large_many_pairs(backend, device):
    # Many pairs of tiny slices, and few pairs of large slices: both work splits of the kernels.
    x = make((4096, 3), torch.float32, "contiguous", device=device)
    a, b = disjoint_pairs(4096, 2048)
    check(swapkern.swap_, ref.swap_, x, 0, a, b)
    x = make((4, 70000), torch.bfloat16, "contiguous", device=device)
    check(swapkern.swap_, ref.swap_, x, 0, [0, 1], [3, 2])


@pytest.mark.parametrize("dtype", [torch.complex64, torch.complex128])
@pytest.mark.parametrize("layout", LAYOUTS)
def test_complex_elements_move_whole(backend, device, dtype, layout):
    # 8- and 16-byte elements beyond the listed dtypes: both halves of a complex number move together.
    x = make((4, 6, 5), dtype, layout, device=device)
    check(swapkern.swap_, ref.swap_, x, 1, [0, 1], [5, 3])
    check(swapkern.swap_elements_, ref.swap_elements_, x, [0, 7, -1], [100, 8, 3])


def test_duplicate_found_in_a_large_scope(backend, device):
    # A few pairs in a big tensor: the repeat check sorts instead of using a bitmap; both must catch repeats.
    x = torch.zeros(1 << 20, device=device)
    with pytest.raises(ValueError, match="more than once"):
        swapkern.swap_elements_(x, [5, 999_999], [70_000, 5])
    swapkern.swap_elements_(x, [5, 999_999], [70_000, 6])


def test_gpu_sanitize_workload_runs():
    # bench/gpu/sanitize.py is what compute-sanitizer runs on a GPU; here it runs on the CPU kernels.
    from bench.gpu import sanitize as gpu_sanitize

    gpu_sanitize.main()


@pytest.mark.parametrize("dtype", [torch.uint8, torch.bfloat16, torch.float32, torch.float64])
@pytest.mark.parametrize("layout", LAYOUTS)
def test_large_slices_every_work_split(backend, device, dtype, layout):
    # Slices of >= 256 elements, contiguous rows, strided, and interleaved (pairs closer than slice elements):
    # each layout and dim lands in a different kernel variant of the GPU backends.
    x = make((7, 48, 40), dtype, layout, device=device)
    for dim in range(3):
        a, b = disjoint_pairs(x.shape[dim], 3)
        check(swapkern.swap_, ref.swap_, x, dim, a, b)
    w = make((300, 64), dtype, layout, device=device)
    check(swapkern.swap_cols_, ref.swap_cols_, w, *disjoint_pairs(64, 20))
    check(swapkern.swap_rows_, ref.swap_rows_, w, *disjoint_pairs(300, 100))
