"""The fuzz campaign's findings, one test each: every backend behaves the same, refuses before it moves anything,
and never reads or writes memory it should not."""

import subprocess
import sys
import textwrap

import numpy as np
import pytest
import torch
from conftest import ROOT, bits
from torch import nn

import swapkern
from swapkern import FeatureSwap, SwapCollate, WeightSwap, WithIndex


# 1. Index tensors that share memory with the swapped tensor are read once, before anything moves.
def test_index_views_of_the_swapped_tensor_are_read_before_anything_moves(any_backend):
    buf = torch.tensor([777, 1, 5, 4, 6, -1001, 2, 9, 8])
    x = buf[1:]
    swapkern.swap_elements_(x, x[0:2], x[2:4])  # pairs (1, 4) and (5, 6) as they were before the call
    assert buf.tolist() == [777, 1, -1001, 4, 6, 5, 9, 2, 8]
    w = torch.arange(12).view(6, 2)
    w[0] = torch.tensor([2, 3])
    swapkern.swap_(w, 0, w[0, :1], w[0, 1:], sample=None)  # rows 2 <-> 3, read before row 0 could move
    assert w[:, 0].tolist() == [2, 2, 6, 4, 8, 10]


def test_aliasing_index_rows_no_longer_crash():
    # The fuzz campaign's segfault, in a subprocess so that a crash fails this test and not the run.
    code = textwrap.dedent(
        """
        import torch, swapkern
        torch.set_num_threads(1)
        x = torch.zeros(64, 4096, dtype=torch.int64)
        x[1, :4] = torch.tensor([1, 3, 2, 4]); x[2, 1] = -100
        swapkern.swap_rows_(x, x[1, 0:2], x[1, 2:4])
        assert x[1, 1] == -100 and x[2, :4].tolist() == [1, 3, 2, 4] and x[3:5].eq(0).all(), x[:5, :4]
        print("ok")
        """
    )
    r = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert r.returncode == 0 and "ok" in r.stdout, (r.returncode, r.stdout, r.stderr[-2000:])


def test_sample_aliasing_the_batch_is_read_first(any_backend):
    x = torch.zeros(4, 3, 2, 2, dtype=torch.int64)
    x[0, 0, 0, 0] = 2  # the sample index lives inside the batch it selects from
    x[2, 0] = 7
    swapkern.swap_channels_(x, [0], [1], sample=x.view(-1)[:1])
    assert x[2, 1].eq(7).all() and x[2, 0].eq(0).all() and x[0, 0, 0, 0] == 2


def test_the_engine_refuses_an_index_buffer_inside_the_tensors_it_moves():
    if not swapkern._backend.native_available("cpu"):
        pytest.skip("native backend not built")
    from swapkern.multi import Engine

    w = torch.zeros(8, 4, dtype=torch.int64)
    ws = WeightSwap([("w", w.float())], "rows", seed=0)
    engine = Engine(ws.groups, w.device, None)
    table, n = engine.table, len(ws.groups)
    for index in (w.view(-1)[: engine.index.numel()], engine.index):  # aliasing w; then a proper buffer
        call = lambda: torch.ops.swapkern.engine_new(index, [w], [w], [0], [0], [0], [0], [0], table, n, [w])  # noqa
        if index is engine.index:
            torch.ops.swapkern.engine_free(call())
        else:
            with pytest.raises(ValueError, match="share memory"):
                call()


def test_loader_plan_tensors_aliasing_out_are_read_first(any_backend):
    data = torch.randint(0, 256, (6, 4, 4, 2), dtype=torch.uint8)
    out = torch.zeros(2, 2, 4, 4, dtype=torch.float32)
    scale, shift = swapkern.normalization([0.5, 0.5], [0.25, 0.25])
    index = out.view(-1).view(torch.int32)[:2]  # int32 view of out's own memory, holding 3 and 5
    index.copy_(torch.tensor([3, 5], dtype=torch.int32))
    want = swapkern.reference.load_batch_(torch.zeros_like(out), data, torch.tensor([3, 5]), scale, shift)
    swapkern.load_batch_(out, data, index, scale, shift)
    assert torch.equal(out, want)


# 2. Every backend bumps version counters and refuses tensors that require grad, as the native one does.
def test_every_backend_bumps_versions_and_refuses_grad(any_backend):
    w = nn.Parameter(torch.randn(4, 4))
    before = w.detach().clone()
    with pytest.raises(RuntimeError, match="not differentiable"):
        swapkern.swap_rows_(w, [0], [1])
    assert torch.equal(w.detach(), before)
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


# 3. Overlapping views are refused by every backend (the backends used to disagree on them).
@pytest.mark.parametrize(
    "view",
    [
        lambda b: b.as_strided((4, 2), (1, 1)),  # elements overlap
        lambda b: b[:2].unsqueeze(1).expand(2, 3),  # stride 0
        lambda b: b.unfold(0, 3, 1),  # sliding windows
        lambda b: b.as_strided((3, 2), (2, 3)),  # no element overlaps, but not provably: refused by the rule
    ],
)
def test_overlapping_views_are_refused_by_every_backend(any_backend, view):
    base = torch.arange(10.0)
    before = base.clone()
    with pytest.raises(ValueError, match="overlap"):
        swapkern.swap_rows_(view(base), [0], [1])
    assert torch.equal(base, before)


def test_two_views_of_one_geometry_are_refused_but_two_empty_tensors_are_not(any_backend):
    """swap_between_ of x with a second view of x's memory is an overlap; two empty tensors (both perhaps with a
    null data pointer) hold no memory and swap nothing, on every backend."""
    base = torch.arange(12.0).view(3, 4)
    before = base.clone()
    with pytest.raises(ValueError, match="overlap"):
        swapkern.swap_between_(base, base.view(3, 4), [0], [1], dim_x=0, dim_y=0)
    assert torch.equal(base, before)
    for dtype in (torch.bool, torch.float32):
        x, y = torch.tensor([], dtype=dtype), torch.tensor([], dtype=dtype)
        assert swapkern.swap_between_(x, y, [], [])[0] is x
        x, y = torch.empty(0, 3, dtype=dtype), torch.empty(0, 3, dtype=dtype)
        swapkern.swap_between_(x, y, [], [], dim_x=0, dim_y=0)
        swapkern.swap_between_(x, y, [0], [0], dim_x=1, dim_y=1)  # index 0 of each: two tensors, not one
        swapkern.swap_between_(x, torch.empty(3, 0, dtype=dtype), [1], [2], dim_x=1, dim_y=0)
    with pytest.raises(TypeError, match="torch.Tensor"):
        swapkern.swap_between_([1.0], torch.zeros(1), [0], [0])


# 4. max_gap never exchanges far-apart values, also between two tensors, and applying a draw twice undoes it.
@pytest.mark.parametrize("protocol", ["bias", "inter-layer", "mixed", "rows"])
def test_max_gap_between_tensors_keeps_far_values_and_undoes(any_backend, protocol):
    lin1, lin2 = nn.Linear(6, 6), nn.Linear(6, 6)
    with torch.no_grad():
        lin1.weight.copy_(torch.arange(36.0).view(6, 6) * 100)
        lin1.bias.copy_(torch.arange(6.0) * 1000 + 5000)
        lin2.weight.copy_(torch.arange(36.0).view(6, 6) * 100 + 50000)
    named = [("a.weight", lin1.weight), ("a.bias", lin1.bias), ("b.weight", lin2.weight), ("b.bias", lin2.bias)]
    snap = [p.detach().clone() for _, p in named]
    ws = WeightSwap(named, protocol, swaps=4, max_gap=1e-3, seed=3)
    for _ in range(3):
        ws.step()  # every gap is >= 68: nothing may move
    assert all(torch.equal(p.detach(), s) for (_, p), s in zip(named, snap, strict=True))
    ws = WeightSwap(named, protocol, swaps=4, max_gap=1e9, seed=3)
    drawn = ws.draw()
    ws.apply(drawn)
    assert any(not torch.equal(p.detach(), s) for (_, p), s in zip(named, snap, strict=True))
    ws.apply(drawn)
    assert all(torch.equal(p.detach(), s) for (_, p), s in zip(named, snap, strict=True))


# 5. Narrow index dtypes are widened to int64 before anything else, on every backend.
@pytest.mark.parametrize("dtype", [torch.uint8, torch.int8, torch.int16, torch.uint16, torch.uint32, torch.uint64])
def test_narrow_index_dtypes_widen_before_wrapping(any_backend, dtype):
    x = torch.arange(300)
    i = torch.tensor([100], dtype=dtype) if dtype == torch.int8 else torch.tensor([225], dtype=dtype)
    swapkern.swap_elements_(x, i, [0], validate=False)
    k = int(i[0])
    assert x[k] == 0 and x[0] == k


def test_uint64_indices_of_2_pow_63_and_more_are_out_of_range(any_backend):
    x = torch.arange(10)
    with pytest.raises(IndexError):
        swapkern.swap_elements_(x, torch.tensor([2**63 + 1], dtype=torch.uint64), [0])
    assert torch.equal(x, torch.arange(10))


# 6. swapped() owns its plan: draws inside the block do not change what is undone.
def test_swapped_restores_although_the_same_featureswap_draws_inside():
    x = torch.randn(8, 3, 4, 4)
    before = x.clone()
    fs = FeatureSwap("ESA", seed=0)
    with fs.swapped(x):
        assert not torch.equal(x, before)
        fs.plan(x)
        fs.plan(x)
    assert torch.equal(x, before)


# 7. load_batch_: the same checks on every backend.
def _loader_args():
    data = torch.randint(0, 256, (10, 8, 8, 3), dtype=torch.uint8)
    scale, shift = swapkern.normalization([0.5] * 3, [0.25] * 3)
    return data, torch.tensor([0, 1, 2, 3]), scale, shift


def test_loader_plan_out_of_range_is_an_index_error_on_every_backend(any_backend):
    data, index, scale, shift = _loader_args()
    out = torch.zeros(4, 3, 8, 8)
    plan = FeatureSwap("APA", seed=0).plan(out).clone()
    plan.pairs.fill_(64)  # one past the last pixel
    with pytest.raises(IndexError):
        swapkern.load_batch_(out, data, index, scale, shift, plan=plan)
    assert out.eq(0).all()


def test_loader_refuses_a_plan_drawn_for_another_shape_on_every_backend(any_backend):
    data, index, scale, shift = _loader_args()
    plan = FeatureSwap("APA", seed=0).plan(torch.zeros(4, 3, 8, 8))
    data = data[:, :5, :6]
    out = torch.zeros(4, 3, 5, 6)
    with pytest.raises(ValueError, match="drawn for"):
        swapkern.load_batch_(out, data.contiguous(), index, scale, shift, plan=plan, validate=False)
    assert out.eq(0).all()


def test_loader_refuses_an_expanded_out_on_every_backend(any_backend):
    data, index, scale, shift = _loader_args()
    base = torch.zeros(1, 3, 8, 8)
    with pytest.raises(ValueError, match="overlap"):
        swapkern.load_batch_(base.expand(4, 3, 8, 8), data, index, scale, shift)
    assert base.eq(0).all()


# 8. Nothing is modified before an error.
def test_inference_tensor_outside_inference_mode_is_refused_untouched(any_backend):
    with torch.inference_mode():
        x = torch.arange(6.0).view(3, 2)
    with pytest.raises(RuntimeError, match="inference"):
        swapkern.swap_rows_(x, [0], [1])
    assert x.tolist() == [[0, 1], [2, 3], [4, 5]]
    with torch.inference_mode():
        swapkern.swap_rows_(x, [0], [1])  # inside inference mode it is allowed
    assert x.tolist() == [[2, 3], [0, 1], [4, 5]]


def test_inference_tensor_inside_inference_mode_with_indices_made_outside(any_backend):
    # index tensors made outside inference mode carry the autograd keys, so the in-place kernel runs in inference
    # mode too: it must allow the update there (and leave the inference tensor's missing version counter alone)
    a, b = torch.tensor([0, 2]), torch.tensor([1, 3])
    with torch.inference_mode():
        x = torch.arange(8.0).view(4, 2)
        swapkern.swap_rows_(x, a, b)
        swapkern.swap_elements_(x, a, b)
    assert x.tolist() == [[3, 2], [1, 0], [6, 7], [4, 5]]


def test_swap_between_with_a_leaf_requiring_grad_leaves_both_untouched(any_backend):
    x = torch.zeros(3, 2)
    y = torch.ones(3, 2, requires_grad=True)
    with pytest.raises(RuntimeError, match="not differentiable"):
        swapkern.swap_between_(x, y, [0], [1], dim_x=0, dim_y=0)
    assert x.eq(0).all() and y.detach().eq(1).all()


# 9. One behaviour on valid input.
def test_more_than_eight_uncoalescable_dims_are_a_value_error_everywhere(any_backend):
    x = torch.randn(*([2] * 9)).permute(*range(8, -1, -1))
    before = x.clone()
    with pytest.raises(ValueError, match="8 dims"):
        swapkern.swap_elements_(x, [0], [1])
    assert torch.equal(x, before)


def test_swaps_above_32_are_refused_at_construction():
    with pytest.raises(ValueError, match=r"\[1, 32\]"):
        FeatureSwap("ESA", swaps=33)
    FeatureSwap("ESA", swaps=32)


@pytest.mark.parametrize("protocol", swapkern.data.PROTOCOLS)
def test_an_empty_batch_is_a_no_op_on_every_backend(any_backend, protocol):
    x = torch.zeros(0, 3, 4, 4)
    fs = FeatureSwap(protocol, seed=0)
    assert fs.swap_(x) is x
    assert int(fs.plan(x).active) == 0


@pytest.mark.parametrize("dtype", [torch.uint16, torch.uint32, torch.uint64])
def test_unsigned_wide_dtypes_swap_on_every_backend(any_backend, dtype):
    x = torch.arange(6).to(dtype).view(3, 2)
    swapkern.swap_rows_(x, [0], [2])
    assert x.to(torch.int64).tolist() == [[4, 5], [2, 3], [0, 1]]


# 10. Exception types.
@pytest.mark.parametrize(
    "call,exc",
    [
        (lambda x: swapkern.swap_elements_(x, [2**63], [0]), IndexError),
        (lambda x: swapkern.swap_(x, 0.5, [0], [1]), TypeError),
        (lambda x: swapkern.swap_(x, 0, [0], [1], sample=[0], sample_dim="0"), TypeError),
        (lambda x: swapkern.swap_between_(x, 3, [0], [1]), TypeError),
        (lambda x: swapkern.swap_between_(x, x.clone(), [0], [1], dim_x=0.0, dim_y=0), TypeError),
        (lambda x: swapkern.swap_rows_(x, np.array([0.5]), [1]), TypeError),
    ],
)
def test_exception_types(any_backend, call, exc):
    x = torch.randn(4, 4)
    before = x.clone()
    with pytest.raises(exc):
        call(x)
    assert torch.equal(x, before)


def test_load_batch_argument_types(any_backend):
    data, index, scale, shift = _loader_args()
    out = torch.zeros(4, 3, 8, 8)
    with pytest.raises(TypeError):
        swapkern.load_batch_(out, data, index, scale.tolist(), shift)
    with pytest.raises(ValueError, match="meta"):
        swapkern.load_batch_(out.to("meta"), data.to("meta"), index, scale.to("meta"), shift.to("meta"))
    assert out.eq(0).all()


def test_meta_tensors_are_refused_by_name():
    with pytest.raises(ValueError, match="meta"):
        swapkern.swap_rows_(torch.zeros(4, 4, device="meta"), [0], [1])
    model = nn.Linear(4, 4, device="meta")
    with pytest.raises(ValueError, match="meta"):
        WeightSwap(model, "rows", layers="all")


# 11. Small things.
def test_swap_collate_without_with_index_is_refused():
    ds = [(torch.zeros(3, 4, 4), 7) for _ in range(4)]
    collate = SwapCollate(FeatureSwap("ESA", seed=0))
    with pytest.raises(ValueError, match="WithIndex"):
        collate([ds[0], ds[1]])
    indexed = WithIndex(ds)
    images, labels = collate([indexed[0], indexed[1]])
    assert labels.tolist() == [7, 7] and images.shape == (2, 3, 4, 4)


@pytest.mark.parametrize(
    "make,exc",
    [
        (lambda: FeatureSwap("ESA", seed=1.5), TypeError),
        (lambda: FeatureSwap("ESA", p="0.5"), TypeError),
        (lambda: FeatureSwap("ESA", p=float("nan")), ValueError),
        (lambda: FeatureSwap("ESA", swaps=1.0), TypeError),
        (lambda: FeatureSwap("ESA").set_extra_state({**FeatureSwap("ESA").get_extra_state(), "p": 5}), ValueError),
        (lambda: FeatureSwap("ESA").set_extra_state({**FeatureSwap("ESA").get_extra_state(), "seed": "1"}), TypeError),
        (lambda: FeatureSwap("ESA").set_extra_state({**FeatureSwap("ESA").get_extra_state(), "step": -1}), ValueError),
    ],
)
def test_feature_swap_arguments(make, exc):
    with pytest.raises(exc):
        make()


def test_numpy_indices_are_taken(any_backend):
    x = torch.arange(12).view(6, 2)
    swapkern.swap_rows_(x, np.array([0, 1]), np.array([5, 4], dtype=np.int32))
    assert x[:, 0].tolist() == [10, 8, 4, 6, 2, 0]
    before = bits(x).clone()
    with pytest.raises(ValueError):
        swapkern.swap_rows_(x, np.array([[0]]), [1])
    assert torch.equal(bits(x), before)
