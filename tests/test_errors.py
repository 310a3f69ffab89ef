"""Bad input: the documented exception, raised before anything moves (tensors bit-identical afterwards)."""

import pytest
import torch
from conftest import bits, make

import swapkern


def x4():
    return make((3, 4, 5, 6), torch.float32, "contiguous")


I = torch.tensor  # noqa: E741

CASES = {
    # name: (exception, the rule that refuses it (err.rule, swapkern._codes.RULES), call on a fresh (3, 4, 5, 6)
    # tensor x)
    "index too large": (IndexError, "index.range", lambda x: swapkern.swap_(x, 1, [0, 4], [1, 2])),
    "index too negative": (IndexError, "index.range", lambda x: swapkern.swap_(x, 1, [0], [-5])),
    "b out of range": (IndexError, "index.range", lambda x: swapkern.swap_(x, 0, [0], [3])),
    "sample out of range": (IndexError, "index.range", lambda x: swapkern.swap_(x, 1, [0], [1], sample=[3])),
    "element out of range": (IndexError, "index.range", lambda x: swapkern.swap_elements_(x, [0], [360])),
    "pixel out of range": (IndexError, "index.range", lambda x: swapkern.swap_pixels_(x, [0], [30])),
    "float tensor": (TypeError, "index.dtype", lambda x: swapkern.swap_(x, 1, I([0.0]), I([1.0]))),
    "bool tensor": (TypeError, "index.dtype", lambda x: swapkern.swap_(x, 1, I([True]), I([False]))),
    "float list": (TypeError, "index.dtype", lambda x: swapkern.swap_(x, 1, [0.0], [1])),
    "bool int": (TypeError, "arg.type", lambda x: swapkern.swap_(x, 1, True, 0)),
    "string": (TypeError, "arg.type", lambda x: swapkern.swap_(x, 1, "0", [1])),
    "float sample": (TypeError, "index.dtype", lambda x: swapkern.swap_(x, 1, [0], [1], sample=I([0.5]))),
    # swapkern._backend.impl refuses a non-tensor before any backend is chosen
    "not a tensor": (TypeError, "arg.type", lambda x: swapkern.swap_(x.tolist(), 1, [0], [1])),
    "repeat in a": (ValueError, "pair.repeat", lambda x: swapkern.swap_(x, 1, [0, 0], [1, 2])),
    "repeat across a and b": (ValueError, "pair.repeat", lambda x: swapkern.swap_(x, 1, [0, 1], [1, 2])),
    "repeat via negative": (ValueError, "pair.repeat", lambda x: swapkern.swap_(x, 1, [0, 3], [-1, 2])),
    "a == b": (ValueError, "pair.self", lambda x: swapkern.swap_(x, 1, [2], [2])),
    "a == b negative": (ValueError, "pair.self", lambda x: swapkern.swap_(x, 1, [3], [-1])),
    "repeat in one sample": (ValueError, "pair.repeat", lambda x: swapkern.swap_(x, 1, [0, 1], [2, 0], sample=[2, 2])),
    "pixel repeat": (ValueError, "pair.repeat", lambda x: swapkern.swap_pixels_(x, [0, 5], [5, 7])),
    "element repeat": (ValueError, "pair.repeat", lambda x: swapkern.swap_elements_(x, [0, 9], [9, 10])),
    "lengths a b": (ValueError, "index.length", lambda x: swapkern.swap_(x, 1, [0, 1], [2])),
    "lengths sample": (ValueError, "index.length", lambda x: swapkern.swap_(x, 1, [0], [2], sample=[0, 1])),
    "2-d index": (ValueError, "index.shape", lambda x: swapkern.swap_(x, 1, I([[0]]), I([[1]]))),
    "dim too large": (ValueError, "op.dim", lambda x: swapkern.swap_(x, 4, [0], [1])),
    "dim too negative": (ValueError, "op.dim", lambda x: swapkern.swap_(x, -5, [0], [1])),
    "sample_dim out of range": (
        ValueError,
        "op.dim",
        lambda x: swapkern.swap_(x, 1, [0], [1], sample=[0], sample_dim=7),
    ),
    "sample_dim == dim": (
        ValueError,
        "op.sample_dim",
        lambda x: swapkern.swap_(x, 1, [0], [1], sample=[0], sample_dim=1),
    ),
    "index on another device": (
        ValueError,
        "index.device",
        lambda x: swapkern.swap_(x, 1, I([0], device="meta"), I([1])),
    ),
    "channels of a 3-d tensor": (ValueError, "op.shape", lambda x: swapkern.swap_channels_(x[0], [0], [1])),
    "pixels of a 3-d tensor": (ValueError, "op.shape", lambda x: swapkern.swap_pixels_(x[0], [0], [1])),
    "rows of a 1-d tensor": (ValueError, "op.shape", lambda x: swapkern.swap_rows_(x[0, 0, 0], [0], [1])),
    "cols of a 1-d tensor": (ValueError, "op.shape", lambda x: swapkern.swap_cols_(x[0, 0, 0], [0], [1])),
    "expanded": (ValueError, "tensor.overlap", lambda x: swapkern.swap_(x[:, :1].expand(3, 4, 5, 6), 1, [0], [1])),
}


def _pair_cases():
    def y_like(x, shape, dtype=torch.float32):
        return torch.zeros(shape, dtype=dtype)

    return {
        "between slice shapes": (
            ValueError,
            "geometry.slice",
            lambda x, y: swapkern.swap_between_(x, y, [0], [1], dim_x=1, dim_y=0),
        ),
        "between dtypes": (ValueError, "tensors.dtype", lambda x, y: swapkern.swap_between_(x, y.double(), [0], [1])),
        "between one dim": (ValueError, "op.dims", lambda x, y: swapkern.swap_between_(x, y, [0], [1], dim_x=1)),
        "between overlap": (
            ValueError,
            "tensors.overlap",
            lambda x, y: swapkern.swap_between_(x[0], x[0, 1:], [0], [1]),
        ),
        "between out of range": (
            IndexError,
            "index.range",
            lambda x, y: swapkern.swap_between_(x, y, [0], [7 * 4 * 5 * 6]),
        ),
        "between repeat in x": (ValueError, "pair.repeat", lambda x, y: swapkern.swap_between_(x, y, [0, 0], [1, 2])),
        "between repeat in y": (ValueError, "pair.repeat", lambda x, y: swapkern.swap_between_(x, y, [0, 1], [2, 2])),
        "between dim out of range": (
            ValueError,
            "op.dim",
            lambda x, y: swapkern.swap_between_(x, y, [0], [1], dim_x=4, dim_y=0),
        ),
        "between lengths": (
            ValueError,
            "index.length",
            lambda x, y: swapkern.swap_between_(x, y, [0, 1], [1], dim_x=0, dim_y=0),
        ),
    }, y_like


@pytest.mark.parametrize("name", sorted(CASES))
@pytest.mark.parametrize("validate", [True, False])
def test_bad_input(any_backend, name, validate):
    exc, rule, call = CASES[name]
    data_dependent = exc is IndexError or "repeat" in name or "a == b" in name
    if not validate and data_dependent:
        pytest.skip("validate=False skips the data-dependent checks by design")
    x = x4()
    before = bits(x).clone()
    if validate:
        with pytest.raises(exc) as e:
            call(x)
    else:
        with pytest.raises(exc) as e:
            _with_validate_false(call, x)
    assert type(e.value) is exc and getattr(e.value, "rule", None) == rule, (e.value, getattr(e.value, "rule", None))
    assert torch.equal(bits(x), before)


def _with_validate_false(call, x):
    """Runs call with validate=False injected into the swapkern op it makes."""
    originals = {}
    for name in (
        "swap_",
        "swap_pixels_",
        "swap_elements_",
        "swap_between_",
        "swap_channels_",
        "swap_rows_",
        "swap_cols_",
    ):
        f = getattr(swapkern, name)
        originals[name] = f
        setattr(swapkern, name, lambda *a, _f=f, **k: _f(*a, **{**k, "validate": False}))
    try:
        call(x)
    finally:
        for name, f in originals.items():
            setattr(swapkern, name, f)


@pytest.mark.parametrize("name", sorted(_pair_cases()[0]))
def test_bad_pair(any_backend, name):
    cases, _ = _pair_cases()
    exc, rule, call = cases[name]
    x, y = x4(), make((7, 4, 5, 6), torch.float32, "contiguous")
    bx, by = bits(x).clone(), bits(y).clone()
    with pytest.raises(exc) as e:
        call(x, y)
    assert type(e.value) is exc and getattr(e.value, "rule", None) == rule, (e.value, getattr(e.value, "rule", None))
    assert torch.equal(bits(x), bx) and torch.equal(bits(y), by)


def test_same_index_in_different_samples_is_fine(any_backend):
    x = x4()
    want = x.clone()
    swapkern.swap_(x, 1, [0, 0], [1, 1], sample=[0, 2])
    swapkern.reference.swap_(want, 1, [0, 0], [1, 1], sample=[0, 2])
    assert torch.equal(bits(x), bits(want))


def test_error_messages_name_the_problem():
    x = x4()
    with pytest.raises(IndexError, match="out of range"):
        swapkern.swap_(x, 1, [0], [9])
    with pytest.raises(ValueError, match="more than once"):
        swapkern.swap_(x, 1, [0, 1], [2, 0])
    with pytest.raises(ValueError, match="with itself"):
        swapkern.swap_(x, 1, [1], [1])


def test_unknown_backend():
    with pytest.raises(ValueError, match="unknown backend"):
        swapkern.use_backend("cuda-fast")


# -- one exception type on every backend, whatever the order of the bad arguments (issue 23) --------------------------
def _between_bool_on_overlap(_):
    x = torch.zeros(5)
    swapkern.swap_between_(x, x.view(5), True, [0])  # argument types come before the tensors' overlap


def _between_self_pair_in_an_empty_tensor(_):
    x = torch.zeros(2, 0, 7)  # no elements, but dim -1 has 7 positions: 0 and -7 are one
    swapkern.swap_between_(x, x, [0], [-7], dim_x=-1, dim_y=-1)


def _weight_swap_on_an_empty_layer(_):
    from torch import nn

    swapkern.WeightSwap(nn.Linear(0, 4), "bias")  # refused when built, not at the first step


def _plan_step_beyond_int64(_):
    swapkern.FeatureSwap("ES1", seed=0).plan(torch.zeros(2, 3, 4, 4), step=2**63)


def _plan_float_indices(_):
    swapkern.FeatureSwap("ES1", seed=0).plan(torch.zeros(2, 3, 4, 4), indices=torch.tensor([0.0, 1.0]))


def _plan_bool_indices(_):
    swapkern.FeatureSwap("ES1", seed=0).plan(torch.zeros(2, 3, 4, 4), indices=torch.tensor([True, False]))


def _empty_image(shape):
    def call(_):
        swapkern.FeatureSwap("EPA", seed=0)(torch.zeros(shape))

    return call


def _loader_mean_of_another_length(_):
    images = torch.zeros(8, 4, 4, 3, dtype=torch.uint8)
    swapkern.DeviceLoader(images, torch.zeros(8), batch_size=4, mean=[0.5, 0.5], std=[0.2, 0.2, 0.2])


SAME_ON_EVERY_BACKEND = {
    "swap_between_ bool index on overlapping views": (TypeError, _between_bool_on_overlap),
    "swap_between_ self-pair in one empty tensor": (ValueError, _between_self_pair_in_an_empty_tensor),
    "swap_rows_ validate='no'": (TypeError, lambda x: swapkern.swap_rows_(x, [0], [1], validate="no")),
    "swap_ validate=1": (TypeError, lambda x: swapkern.swap_(x, 0, [0], [1], validate=1)),
    "swap_pixels_ validate=None": (TypeError, lambda x: swapkern.swap_pixels_(x, [0], [1], validate=None)),
    "swap_elements_ validate='yes'": (TypeError, lambda x: swapkern.swap_elements_(x, [0], [1], validate="yes")),
    "swap_between_ validate=0": (TypeError, lambda x: swapkern.swap_between_(x, x.clone(), [0], [1], validate=0)),
    "WeightSwap on a layer with no elements": (ValueError, _weight_swap_on_an_empty_layer),
    "FeatureSwap.plan step=2**63": (ValueError, _plan_step_beyond_int64),
    "FeatureSwap.plan float indices": (TypeError, _plan_float_indices),
    "FeatureSwap.plan bool indices": (TypeError, _plan_bool_indices),
    "FeatureSwap on a (0, 8, 8) image": (ValueError, _empty_image((0, 8, 8))),
    "FeatureSwap on a (3, 0, 8) image": (ValueError, _empty_image((3, 0, 8))),
    "DeviceLoader mean of another length": (ValueError, _loader_mean_of_another_length),
}


@pytest.mark.parametrize("case", list(SAME_ON_EVERY_BACKEND))
def test_one_exception_type_on_every_backend(any_backend, case):
    exc, call = SAME_ON_EVERY_BACKEND[case]
    x = x4()
    before = bits(x)
    with pytest.raises(exc):
        call(x)
    assert torch.equal(bits(x), before)
