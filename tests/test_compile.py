"""torch.library.opcheck for every op, and torch.compile(fullgraph=True) graphs that call the ops."""

import pytest
import torch
from conftest import assert_bits_equal, make

import swapkern
from swapkern import reference as ref

pytestmark = pytest.mark.skipif("native" not in swapkern.backends(), reason="compiled ops not built")

I = torch.tensor  # noqa: E741


def _opcheck_cases():
    x = make((4, 3, 5, 6), torch.float32, "channels_last")
    return {
        "swap_": (torch.ops.swapkern.swap_.default, (x, 1, I([0]), I([2]), None, 0, True)),
        "swap_ sampled": (torch.ops.swapkern.swap_.default, (x, 2, I([0, 1]), I([4, 3]), I([1, 1]), 0, True)),
        "swap_pixels_": (torch.ops.swapkern.swap_pixels_.default, (x, I([0, 7]), I([29, 8]), None, True)),
        "swap_elements_": (torch.ops.swapkern.swap_elements_.default, (x, I([0, 5]), I([-1, 9]), True)),
        "swap_between_": (
            torch.ops.swapkern.swap_between_.default,
            (
                make((3, 7), torch.bfloat16, "sliced"),
                make((5, 7), torch.bfloat16, "contiguous"),
                I([0]),
                I([4]),
                0,
                0,
                False,
            ),
        ),
        "swap_between_ elements": (
            torch.ops.swapkern.swap_between_.default,
            (torch.randn(3, 7), torch.randn(11), I([0, 20]), I([4, 10]), None, None, True),
        ),
    }


@pytest.mark.parametrize("name", sorted(_opcheck_cases()))
def test_opcheck(name):
    op, args = _opcheck_cases()[name]
    torch.library.opcheck(op, args)


def test_compile_fullgraph_matches_reference():
    torch._dynamo.reset()

    @torch.compile(fullgraph=True)
    def step(x, w, y, a, b, p, q, s):
        swapkern.swap_channels_(x, a, b, sample=s)
        swapkern.swap_pixels_(x, p, q)
        swapkern.swap_rows_(w, a, b + 2)
        swapkern.swap_between_(w, y, [0], [1], dim_x=0, dim_y=0)
        swapkern.swap_elements_(y, [0, 3], [5, 6])
        return x.float().mean() + w.sum()

    x = torch.randn(4, 3, 5, 5).contiguous(memory_format=torch.channels_last)
    w, y = torch.randn(6, 4), torch.randn(3, 4)
    a, b, p, q, s = I([0, 1]), I([2, 0]), I([0, 3]), I([24, 12]), I([1, 3])
    wx, ww, wy = x.clone(), w.clone(), y.clone()
    out = step(x, w, y, a, b, p, q, s)
    ref.swap_channels_(wx, a, b, sample=s)
    ref.swap_pixels_(wx, p, q)
    ref.swap_rows_(ww, a, b + 2)
    ref.swap_between_(ww, wy, [0], [1], dim_x=0, dim_y=0)
    ref.swap_elements_(wy, [0, 3], [5, 6])
    for got, want in [(x, wx), (w, ww), (y, wy)]:
        assert_bits_equal(got, want)
    torch.testing.assert_close(out, wx.float().mean() + ww.sum())


def test_weight_swap_step_inside_a_compiled_function_bumps_the_swapped_parameters():
    """WeightSwap.step() called from a torch.compile'd function (after an eager step packed its engine): the engine
    call leaves the graph and runs eagerly, so every swapped parameter's version counter moves (autograd would
    notice a saved weight that changed), and the weights are those of the same steps in eager mode."""
    torch._dynamo.reset()
    models = [torch.nn.Sequential(torch.nn.Linear(6, 8), torch.nn.Linear(8, 4)) for _ in range(2)]
    models[1].load_state_dict(models[0].state_dict())
    compiled_ws, eager_ws = (swapkern.WeightSwap(m, "rows", seed=3, layers="all") for m in models)
    step = torch.compile(lambda: compiled_ws.step())
    with torch.no_grad():
        compiled_ws.step()
        eager_ws.step()
        before = [p._version for p in models[0].parameters()]
        snapshot = [p.clone() for p in models[0].parameters()]
        step()
        eager_ws.step()
    after = [p._version for p in models[0].parameters()]
    assert any(not torch.equal(p, q) for p, q in zip(models[0].parameters(), snapshot, strict=True))
    for (name, p), q in zip(models[0].named_parameters(), models[1].parameters(), strict=True):
        assert torch.equal(p, q), name
    weights = [p.dim() == 2 for p in models[0].parameters()]  # "rows" swaps the weights, not the biases
    assert all(a > b for a, b, w in zip(after, before, weights, strict=True) if w), (before, after)


@pytest.mark.parametrize(
    "backend", ["native", pytest.param("cuda-emulated", marks=pytest.mark.emulation)]
)
def test_compiled_graph_keeps_the_exception_types_and_rule_keys(backend):
    # A compiled graph calls the ops' checked twins (swapkern._native.register_checked): a TypeError stays a
    # TypeError (the stable ABI alone would make it a RuntimeError) and every refusal keeps its rule key, as eager.
    if backend not in swapkern.backends("cpu"):
        pytest.skip(f"backend {backend} unavailable here")
    cases = [
        (I([0]).float(), I([1]), TypeError, "index.dtype"),
        (I([0, 1]), I([1, 2]), ValueError, "pair.repeat"),
        (I([0]), I([5]), IndexError, "index.range"),
        (I([2]), I([2]), ValueError, "pair.self"),
    ]
    with swapkern.use_backend(backend):
        torch._dynamo.reset()

        @torch.compile(fullgraph=True)
        def f(x, a, b):
            swapkern.swap_(x, 0, a, b)
            return x + 1

        x = torch.randn(5, 3)
        before = x.clone()
        for a, b, kind, rule in cases:
            with pytest.raises(kind) as compiled:
                f(x, a, b)
            assert torch.equal(x, before)
            with pytest.raises(kind) as eager:
                swapkern.swap_(x, 0, a, b)
            assert compiled.value.rule == eager.value.rule == rule
            assert str(compiled.value) == str(eager.value)
        want = before.clone()
        want[[0, 3]] = want[[3, 0]]
        assert torch.equal(f(x, I([0]), I([3])), want + 1) and torch.equal(x, want)
    torch._dynamo.reset()
