"""One set of rules, checked as one: the compiled validator (csrc/checks.cpp, pairs.cpp, plan.cpp, loader.cpp) and its
Python twin (swapkern/_checks.py) refuse every input with the same rule (err.rule, a key of swapkern._codes.RULES), the
same exception type and, where the text has no dtype or shape in it, the same message; and their tables of rules agree.
Each test here is a drift the two once had."""

import os
import re

import pytest
import torch
from conftest import ROOT, bits, usable_backends

import swapkern
from swapkern._checks import MAX_POSITIONS
from swapkern._codes import RULES

CSRC = os.path.join(ROOT, "csrc")
PYTHON_ONLY = {"arg.type", "index.int64", "mutable.grad", "mutable.inference"}
_EXC = {"Value": ValueError, "Index": IndexError, "Type": TypeError}


def _read(*parts):
    with open(os.path.join(ROOT, *parts)) as f:
        return f.read()


def outcomes(call, *, same_message=False):
    """{backend: None or (exception type, rule, message)} of call() on every backend usable on CPU tensors, each on
    fresh tensors (call builds them); asserts that every refusal names a rule of its exception type, that refused
    calls left their tensors as they were, and that all backends agree (type and rule; message when asked)."""
    got = {}
    for backend in usable_backends("cpu"):
        tensors = call()
        before = [bits(t).clone() for t in tensors if t.layout == torch.strided and not t.is_quantized]
        with swapkern.use_backend(backend):
            try:
                call.run(*tensors)
                got[backend] = None
            except (TypeError, ValueError, IndexError, RuntimeError) as e:
                rule = getattr(e, "rule", None)
                assert rule in RULES and type(e) is RULES[rule], f"{backend}: {type(e).__name__} {rule}: {e}"
                got[backend] = (type(e), rule, str(e))
                after = [bits(t) for t in tensors if t.layout == torch.strided and not t.is_quantized]
                assert all(torch.equal(a, b) for a, b in zip(before, after, strict=True)), f"{backend} moved data"
    first = next(iter(got.values()))
    key = (lambda r: r) if same_message else (lambda r: r and r[:2])
    assert all(key(r) == key(first) for r in got.values()), f"backends disagree: {got}"
    return first


class Call:
    """make() -> the tensors of the call; run(*tensors) makes it."""

    def __init__(self, make, run):
        self.make, self.run = make, run

    def __call__(self):
        return self.make()


def _x(shape=(4, 3), dtype=torch.float32):
    return lambda: [torch.arange(torch.Size(shape).numel(), dtype=torch.float64).reshape(shape).to(dtype)]


# -- the tables --------------------------------------------------------------------------------------------------------
def test_the_cpp_and_python_rule_tables_are_one():
    cpp = {
        key: _EXC[kind]
        for key, kind in re.findall(r'Rule k\w+\{"([a-z_.0-9]+)", Refusal::(\w+)\}', _read("csrc", "codes.h"))
    }
    assert len(cpp) >= 25
    assert {k: v for k, v in RULES.items() if k not in PYTHON_ONLY} == cpp


def test_every_rule_raised_is_in_the_table():
    used = set()
    for root, _, files in os.walk(os.path.join(ROOT, "swapkern")):
        for f in files:
            if f.endswith(".py"):
                used |= set(re.findall(r'refuse\(\s*"([^"]+)"', _read(root, f)))
    assert used and used <= set(RULES), used - set(RULES)
    defined = set(re.findall(r"Rule (k\w+)\{", _read("csrc", "codes.h")))
    for name in ("checks.cpp", "pairs.cpp", "plan.cpp", "loader.cpp", "ops.h"):
        text = _read("csrc", name)
        assert set(re.findall(r"rules::(k\w+)", text)) <= defined
        if name != "ops.h":  # the validator's files: every refusal names its rule
            assert "SK_CHECK" not in text, f"csrc/{name} refuses without a rule"


def test_the_macro_header_is_named_for_what_it_holds():
    assert not os.path.exists(os.path.join(CSRC, "check.h"))
    assert "SK_RULE" in _read("csrc", "error.h") and "ops_impl.h" not in _read("swapkern", "_checks.py")


# -- the drifts --------------------------------------------------------------------------------------------------------
def test_uint64_indices_of_2_pow_63_and_more_are_out_of_range_even_when_they_wrap_to_a_valid_negative():
    # 2**64 - 1 reads as -1 in int64 bits; the Python twin took it as "the last row"
    u64 = torch.tensor([1, 2**64 - 1], dtype=torch.uint64)
    r = outcomes(Call(_x(), lambda x: swapkern.swap_(x, 0, u64, [0, 2])), same_message=True)
    assert r[:2] == (IndexError, "index.range") and "18446744073709551615" in r[2]


def _index_of(dtype):
    """[0, 1] as an index tensor of dtype, or None where torch cannot make one."""
    try:
        if dtype.is_floating_point or dtype.is_complex:
            return torch.tensor([0.0, 1.0]).to(dtype)
        if dtype in (torch.qint8, torch.quint8, torch.qint32, torch.quint4x2, torch.quint2x4):
            return torch.quantize_per_tensor(torch.tensor([0.0, 1.0]), 1.0, 0, dtype)
        if dtype in (torch.bits8, torch.bits16):
            return torch.tensor([0, 1], dtype=torch.uint8 if dtype == torch.bits8 else torch.int16).view(dtype)
        return torch.tensor([0, 1]).to(dtype)
    except (RuntimeError, TypeError):
        return None


ALL_DTYPES = [v for v in vars(torch).values() if isinstance(v, torch.dtype)]


@pytest.mark.parametrize("dtype", sorted(set(ALL_DTYPES), key=str), ids=str)
def test_index_dtypes_integers_only_on_every_backend(dtype):
    index = _index_of(dtype)
    if index is None:
        pytest.skip(f"torch makes no tensor of {dtype}")
    r = outcomes(Call(_x(), lambda x: swapkern.swap_(x, 0, index, [2, 3])))
    integral = dtype in swapkern._checks.INDEX_DTYPES
    assert r is None if integral else r[:2] == (TypeError, "index.dtype"), r


@pytest.mark.parametrize("dtype", sorted(set(ALL_DTYPES), key=str), ids=str)
def test_element_dtypes_of_1_2_4_8_16_bytes_and_not_quantized(dtype):
    x = _index_of(dtype)  # a 2-element tensor of that dtype
    if x is None:
        pytest.skip(f"torch makes no tensor of {dtype}")
    r = outcomes(Call(lambda: [_index_of(dtype)], lambda x: swapkern.swap_(x, 0, [0], [1])))
    elem = x.element_size()
    ok = elem in (1, 2, 4, 8, 16) and not x.is_quantized
    assert r is None if ok else r[:2] == (TypeError, "tensor.dtype"), r


def test_what_the_dispatcher_refuses_is_refused_by_the_rules_the_kernels_check():
    r = outcomes(Call(lambda: [torch.zeros(4, 2).to_sparse()], lambda x: swapkern.swap_(x, 0, [0], [1])))
    assert r[:2] == (ValueError, "tensor.layout")
    sparse = torch.tensor([0, 1]).to_sparse()
    r = outcomes(Call(_x(), lambda x: swapkern.swap_(x, 0, sparse, [2, 3])))
    assert r[:2] == (ValueError, "index.layout")
    # the order holds through the twin: a dim out of range comes before the index's layout
    r = outcomes(Call(_x(), lambda x: swapkern.swap_(x, 5, sparse, [2, 3])))
    assert r[:2] == (ValueError, "op.dim")

    # so does a tensor on the meta device, which the dispatcher sends to the fake kernel
    meta = torch.tensor([0, 1], device="meta")
    assert outcomes(Call(_x(), lambda x: swapkern.swap_(x, 0, meta, [2, 3])))[:2] == (ValueError, "index.device")
    assert outcomes(Call(_x(), lambda x: swapkern.swap_(x, 5, meta, [2, 3])))[:2] == (ValueError, "op.dim")
    r = outcomes(Call(_x(), lambda x: swapkern.swap_between_(x, x.to("meta"), [0], [1])))
    assert r[:2] == (ValueError, "tensors.device")


PAIRS = [
    # (a, b, the rule): pair by pair; in a pair, a[k] == b[k] first, then a[k], then b[k] seen before
    ([0, 0, 3], [1, 2, 3], "pair.repeat"),  # pair 1 repeats 0 before pair 2 swaps 3 with itself
    ([0, 1], [2, 1], "pair.self"),  # pair 1 is a self-pair although 1 is new
    ([0, 1], [1, 2], "pair.repeat"),
    ([2], [-2], "pair.self"),  # 2 and -2 are one row of 4
    ([3, 0], [1, -1], "pair.repeat"),
    ([0, 1, 1], [1, 0, 1], "pair.repeat"),
]


@pytest.mark.parametrize("a, b, rule", PAIRS)
def test_one_order_of_pair_checks_and_one_message(a, b, rule):
    r = outcomes(Call(_x(), lambda x: swapkern.swap_(x, 0, a, b)), same_message=True)
    assert r[:2] == (ValueError, rule), r


def test_one_order_of_pair_checks_between_two_tensors():
    call = Call(lambda: [torch.zeros(4), torch.zeros(4)], lambda x, y: swapkern.swap_between_(x, y, [0, 1], [2, 2]))
    assert outcomes(call, same_message=True)[:2] == (ValueError, "pair.repeat")


@pytest.mark.parametrize("positions", [MAX_POSITIONS - 1, MAX_POSITIONS])
def test_one_key_space_limit(positions):
    # no elements (a dim of size 0 elsewhere), so the sizes cost nothing: only the count of positions matters
    ns = 2**24
    n = positions // ns
    sample = Call(lambda: [torch.zeros(ns, n, 0)], lambda x: swapkern.swap_(x, 1, [0], [1], sample=[0], sample_dim=0))
    between = Call(
        lambda: [torch.zeros(positions, 0), torch.zeros(positions, 0)],
        lambda x, y: swapkern.swap_between_(x, y, [0], [1], dim_x=0, dim_y=0),
    )
    for call, count in ((sample, ns * n), (between, positions)):
        r = outcomes(call, same_message=True)
        assert (r is None) == (count < MAX_POSITIONS), r
        assert r is None or r[:2] == (ValueError, "size.keyspace")


# -- the loader: one converter, one range check ------------------------------------------------------------------------
def _loader(**kw):
    def make():
        return [torch.zeros(2, 1, 2, 2), torch.zeros(3, 2, 2, 1, dtype=torch.uint8)]

    def run(out, data):
        args = {"index": torch.tensor([0, 1]), "flip": None, **kw}
        d = args.pop("data", data)
        swapkern.load_batch_(out, d, args.pop("index"), torch.ones(1), torch.zeros(1), **args)

    return Call(make, run)


def test_loader_index_rules_are_the_swap_rules():
    assert outcomes(_loader(index=torch.tensor([True, False])))[:2] == (TypeError, "index.dtype")
    assert outcomes(_loader(flip=torch.tensor([True, False]))) is None  # a flag may be a bool
    assert outcomes(_loader(flip=torch.tensor([0.0, 1.0])))[:2] == (TypeError, "index.dtype")
    r = outcomes(_loader(index=torch.tensor([0, 2**64 - 1], dtype=torch.uint64)), same_message=True)
    assert r[:2] == (IndexError, "index.range") and "18446744073709551615" in r[2]
    r = outcomes(_loader(index=torch.tensor([0, 3])), same_message=True)
    assert r[:2] == (IndexError, "index.range") and "index 3" in r[2]
    assert outcomes(_loader(index=torch.tensor([0, -1])))[:2] == (IndexError, "index.range")  # no wrapping here
    r = outcomes(_loader(index=torch.tensor([0, 1], device="meta")), same_message=False)
    assert r[:2] == (ValueError, "index.device")
    sparse_data = torch.zeros(3, 2, 2, 1, dtype=torch.uint8).to_sparse()
    assert outcomes(_loader(data=sparse_data))[:2] == (ValueError, "tensor.layout")


def test_loader_plan_of_another_shape_comes_after_the_autograd_rules():
    plan = swapkern.FeatureSwap("ESA", seed=0).plan(torch.zeros(2, 3, 2, 2))  # out is (2, 1, 2, 2)
    r = outcomes(_loader(plan=plan))
    assert r[:2] == (ValueError, "load.plan")

    def make():
        return [torch.zeros(2, 1, 2, 2, requires_grad=True), torch.zeros(3, 2, 2, 1, dtype=torch.uint8)]

    def run(out, data):
        swapkern.load_batch_(out, data, torch.tensor([0, 1]), torch.ones(1), torch.zeros(1), plan=plan)

    assert outcomes(Call(make, run))[:2] == (RuntimeError, "mutable.grad")


@pytest.mark.parametrize(
    "run",
    [
        lambda x: swapkern.swap_rows_([[1.0, 2.0]], [0], [1]),
        lambda x: swapkern.swap_channels_(None, [0], [1]),
        lambda x: swapkern.swap_(x.tolist(), 0, [0], [1]),
        lambda x: swapkern.swap_rows_(x, [0], [1], validate=1),
    ],
    ids=["list-to-swap_rows_", "None-to-swap_channels_", "list-to-swap_", "int-validate"],
)
def test_arguments_of_the_wrong_python_type_carry_a_rule(run):
    # the shared argument checks above the backends (the wrappers, the seam, validate) name their rule too
    r = outcomes(Call(_x(), run))
    assert r is not None and r[:2] == (TypeError, "arg.type"), r
