"""Property-based tests: random shapes, dims, layouts, dtypes and plans; every op against its reference, and
random invalid plans raising the documented error with the tensor untouched."""

import pytest
import torch
from conftest import DTYPES, LAYOUTS, assert_bits_equal, bits, make
from hypothesis import given
from hypothesis import strategies as st

import swapkern
from swapkern import reference as ref

shapes = st.lists(st.integers(0, 6), min_size=1, max_size=4).map(tuple)


@st.composite
def plans(draw, n, *, max_k=None, negative=True):
    """A valid plan over n positions: disjoint pairs (a, b), some indices negative."""
    k = draw(st.integers(0, (n // 2) if max_k is None else min(max_k, n // 2)))
    perm = draw(st.permutations(range(n)))[: 2 * k]
    a, b = perm[:k], perm[k:]
    if negative:
        a = [i - n if draw(st.booleans()) else i for i in a]
    return a, b


@st.composite
def tensors(draw, shape=None):
    shape = draw(shapes) if shape is None else shape
    x = make(shape, draw(st.sampled_from(DTYPES)), draw(st.sampled_from(LAYOUTS)))
    return x


def _both(op, ref_op, x, *args, **kw):
    want = x.clone()
    op(x, *args, **kw)
    ref_op(want, *args, **kw)
    assert_bits_equal(x, want)


@given(data=st.data())
def test_swap_any_dim(backend, data):
    x = data.draw(tensors())
    dim = data.draw(st.integers(-x.dim(), x.dim() - 1))
    a, b = data.draw(plans(x.shape[dim]))
    _both(swapkern.swap_, ref.swap_, x, dim, a, b)


@given(data=st.data())
def test_swap_sampled_any_dims(backend, data):
    x = data.draw(tensors(data.draw(st.lists(st.integers(1, 5), min_size=2, max_size=4).map(tuple))))
    dim, sample_dim = data.draw(st.permutations(range(x.dim())))[:2]
    n, ns = x.shape[dim], x.shape[sample_dim]
    sample, a, b = [], [], []
    for s in range(ns):  # an independent valid plan inside each drawn sample
        if data.draw(st.booleans()):
            pa, pb = data.draw(plans(n))
            sample += [s] * len(pa)
            a += pa
            b += pb
    _both(swapkern.swap_, ref.swap_, x, dim, a, b, sample=sample, sample_dim=sample_dim)


@given(data=st.data())
def test_elements(backend, data):
    x = data.draw(tensors())
    i, j = data.draw(plans(x.numel(), max_k=40))
    _both(swapkern.swap_elements_, ref.swap_elements_, x, i, j)


@given(data=st.data())
def test_pixels(backend, data):
    x = data.draw(tensors(data.draw(st.tuples(*[st.integers(1, 4)] * 4))))
    p, q = data.draw(plans(x.shape[2] * x.shape[3]))
    _both(swapkern.swap_pixels_, ref.swap_pixels_, x, p, q)


@given(data=st.data())
def test_between(backend, data):
    x = data.draw(tensors())
    dtype = x.dtype
    if data.draw(st.booleans()):  # slices
        dx = data.draw(st.integers(0, x.dim() - 1))
        n_y = data.draw(st.integers(0, 6))
        yshape = list(x.shape)
        yshape[dx] = n_y
        y = make(tuple(yshape), dtype, data.draw(st.sampled_from(LAYOUTS)))
        k = min(x.shape[dx], n_y)
        i = data.draw(st.permutations(range(x.shape[dx])))[: data.draw(st.integers(0, k))]
        j = data.draw(st.permutations(range(n_y)))[: len(i)]
        kw = dict(dim_x=dx, dim_y=dx)
    else:  # elements
        y = make(data.draw(shapes), dtype, "contiguous")
        k = min(x.numel(), y.numel(), 30)
        i = data.draw(st.permutations(range(x.numel())))[: data.draw(st.integers(0, k))]
        j = data.draw(st.permutations(range(y.numel())))[: len(i)]
        kw = {}
    wx, wy = x.clone(), y.clone()
    swapkern.swap_between_(x, y, i, j, **kw)
    ref.swap_between_(wx, wy, i, j, **kw)
    assert_bits_equal(x, wx)
    assert_bits_equal(y, wy)


BREAKS = ["duplicate", "self", "high", "low", "length"]


@given(data=st.data())
@pytest.mark.parametrize("impl", ["native", "torch"])
def test_invalid_plans(impl, data):
    if impl not in swapkern.backends():
        pytest.skip(f"{impl} unavailable")
    x = data.draw(tensors(data.draw(st.lists(st.integers(2, 6), min_size=1, max_size=3).map(tuple))))
    dim = data.draw(st.integers(0, x.dim() - 1))
    n = x.shape[dim]
    a, b = data.draw(plans(n, negative=False))
    a, b = list(a) or [0], list(b) or [1]
    how = data.draw(st.sampled_from(BREAKS))
    k = data.draw(st.integers(0, len(a) - 1))
    if how == "duplicate":
        (a if data.draw(st.booleans()) else b).append(data.draw(st.sampled_from(a + b)))
        (b if len(a) > len(b) else a).append(data.draw(st.sampled_from(a + b)))
        exc = ValueError
    elif how == "self":
        b[k] = a[k] - n * data.draw(st.integers(0, 1))
        exc = ValueError
    elif how == "high":
        a[k] = data.draw(st.integers(n, 3 * n))
        exc = IndexError
    elif how == "low":
        b[k] = data.draw(st.integers(-3 * n, -n - 1))
        exc = IndexError
    else:
        a = a + [0]
        exc = ValueError
    before = bits(x).clone()
    with swapkern.use_backend(impl), pytest.raises(exc):
        swapkern.swap_(x, dim, a, b)
    assert torch.equal(bits(x), before)
