"""Differential fuzz test: random calls of every swap op on every backend here, held to an independent model of
the README (tests/oracle.py).

Each case is a view (sizes, strides, storage offset) into a base storage of random bits in one of 15 dtypes,
in any layout (contiguous, permuted, sliced, stride 0, overlapping, offset), with indices passed in any of the
documented ways (ints, lists, tuples, NumPy arrays, integer tensors of every width, 0-d tensors, and tensors
that alias the swapped storage) or in ways that are refused (floats, bools, 2-d, and the index tensors the
dispatcher refuses before a compiled op runs: on the meta device, sparse, quantized), mostly valid and sometimes
not. Every backend must give, for the whole base
storage, the model's result bit for bit, or raise one of the model's exception types with every storage
bit-identical; and all backends must refuse by the same rule: the same exception type and the same rule key
(err.rule, one of swapkern._codes.RULES, of that type), so a drift between the C++ validator and its Python twin
in which rule fires first (an order, a limit, a dtype rule) fails here even where the types agree. The
crash-prone classes (indices aliasing the data, overlapping layouts) run in a subprocess, so a crash fails the test
instead of the test run.

Profiles: the default suite runs a fast one; HYPOTHESIS_PROFILE=thorough runs 10x more examples.
"""

from __future__ import annotations

import os
import subprocess
import sys

import numpy as np
import pytest
import torch
from conftest import ROOT, usable_backends
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from oracle import Call, Index, View, expect

import swapkern
from swapkern._codes import RULES

DTYPES = [
    torch.bool,
    torch.uint8,
    torch.int8,
    torch.int16,
    torch.int32,
    torch.int64,
    torch.uint16,
    torch.uint32,
    torch.uint64,
    torch.float16,
    torch.bfloat16,
    torch.float32,
    torch.float64,
    torch.complex64,
    torch.complex128,
]
INDEX_DTYPES = {
    "uint8": (torch.uint8, np.uint8, 0, 255),
    "int8": (torch.int8, np.int8, -128, 127),
    "int16": (torch.int16, np.int16, -(2**15), 2**15 - 1),
    "int32": (torch.int32, np.int32, -(2**31), 2**31 - 1),
    "int64": (torch.int64, np.int64, -(2**63), 2**63 - 1),
    "uint16": (torch.uint16, np.uint16, 0, 2**16 - 1),
    "uint32": (torch.uint32, np.uint32, 0, 2**32 - 1),
    "uint64": (torch.uint64, np.uint64, 0, 2**64 - 1),
}
ALIAS_DTYPE = {1: "uint8", 2: "int16", 4: "int32", 8: "int64"}  # an index view of the data's own storage
OPS = ["swap_", "swap_channels_", "swap_rows_", "swap_cols_", "swap_pixels_", "swap_elements_", "swap_between_"]
CRASH_PRONE = os.environ.get("SWAPKERN_FUZZ_CRASH_PRONE") == "1"
SLACK = 24  # storage beyond the views: writes outside a view show up here


# -- strategies ---------------------------------------------------------------------------------------------------
@st.composite
def layouts(draw, sizes, crash_prone):
    """Strides and offset for logical `sizes`: a memory order, steps, an offset; or stride 0 / free strides."""
    n = len(sizes)
    kinds = ["dense", "dense", "dense"] + (["stride0", "overlap"] if crash_prone else [])
    kind = draw(st.sampled_from(kinds))
    order = draw(st.permutations(range(n))) if n else []
    steps = [draw(st.sampled_from([1, 1, 2])) for _ in range(n)]
    strides = [0] * n
    acc = 1
    for d in reversed(order):  # the last dim of `order` is innermost
        strides[d] = acc * steps[d]
        acc *= max(sizes[d], 1) * steps[d]
    if kind == "stride0" and n:
        strides[draw(st.integers(0, n - 1))] = 0
    elif kind == "overlap" and n:
        strides = [draw(st.integers(0, 3)) for _ in range(n)]
    offset = draw(st.sampled_from([0, 0, 1, 3]))
    return tuple(strides), offset, kind


def _span(sizes, strides, offset):
    if any(s == 0 for s in sizes):
        return offset
    return offset + 1 + sum((s - 1) * st for s, st in zip(sizes, strides, strict=True))


@st.composite
def plan_values(draw, n, n_sample, same, n_b=None, max_k=4):
    """(a, b, sample or None): K disjoint pairs (a indexes n positions, b n_b), some indices negative."""
    n_b = n if n_b is None else n_b
    if same:
        k = draw(st.integers(0, min(max_k, n // 2)))
        perm = draw(st.permutations(range(n)))[: 2 * k] if n else []
        a, b = perm[:k], perm[k:]
    else:
        k = draw(st.integers(0, min(max_k, n, n_b)))
        a = draw(st.permutations(range(n)))[:k] if n else []
        b = draw(st.permutations(range(n_b)))[:k] if n_b else []
    a = [v - n if draw(st.booleans()) else v for v in a]
    b = [v - n_b if draw(st.booleans()) else v for v in b]
    sample = None
    if n_sample is not None and draw(st.booleans()):
        s = draw(st.integers(0, max(n_sample - 1, 0)))
        sample = [s] * k  # one scope: the pairs are disjoint inside it
    return a, b, sample


FAULTS = ["none"] * 6 + ["range", "negative-range", "self", "repeat", "length", "huge", "sample-range"]


def inject(draw, fault, a, b, sample, n, n_sample):
    a, b = list(a), list(b)
    sample = None if sample is None else list(sample)
    if fault == "range":
        (a if draw(st.booleans()) or not b else b).append(n + draw(st.integers(0, 3)))
        (b if len(b) < len(a) else a).append(0 if len(b) < len(a) else 1)
    elif fault == "negative-range" and a:
        a[0] = -n - 1 - draw(st.integers(0, 3))
    elif fault == "self" and a:
        b[0] = a[0]
    elif fault == "repeat" and len(a) >= 2:
        a[1] = a[0]
    elif fault == "length":
        a.append(0)
    elif fault == "huge" and a:
        a[0] = draw(st.sampled_from([2**63, -(2**63) - 1, 2**64 + 5]))
    elif fault == "sample-range" and sample:
        sample[0] = n_sample + 1
    if sample is not None and len(sample) != len(a) and fault != "length":
        sample = (sample + [sample[0] if sample else 0] * len(a))[: len(a)]
    return a, b, sample


@st.composite
def index_kind(draw, values, crash_prone, data_dtype, validate):
    """How an index list is passed. Returns an Index."""
    if values is None:
        return None
    kinds = ["list", "tuple", "tensor", "tensor", "numpy"]
    if len(values) == 1:
        kinds += ["int", "scalar-tensor"]
    if crash_prone and data_dtype is not None:
        kinds += ["alias"] * 4
    bad = ["bad-float", "bad-bool", "bad-2d", "bad-meta", "bad-sparse", "bad-quantized"]
    kinds += bad if draw(st.integers(0, 9)) == 0 else []
    kind = draw(st.sampled_from(kinds))
    if kind in ("tensor", "numpy", "scalar-tensor"):
        fits = [
            name
            for name, (_, _, lo, hi) in INDEX_DTYPES.items()
            if all(lo <= v <= hi for v in values) and (validate or hi < 2**64 - 1 or all(v < 2**63 for v in values))
        ]
        if not fits:
            return Index("list", values)
        return Index(kind, values, draw(st.sampled_from(fits)))
    if kind == "alias":
        name = ALIAS_DTYPE.get(torch.empty((), dtype=data_dtype).element_size())
        _, _, lo, hi = INDEX_DTYPES.get(name, (None, None, 0, -1))
        if name is None or not all(lo <= v <= hi for v in values) or not values:
            return Index("list", values)
        return Index("alias", values, name)
    return Index(kind, values)


@st.composite
def calls(draw, crash_prone=False, ops=tuple(OPS)):
    op = draw(st.sampled_from(ops))
    dtype = draw(st.sampled_from(DTYPES))
    validate = draw(st.booleans())
    if op in ("swap_channels_", "swap_pixels_"):
        ndim = draw(st.sampled_from([4, 4, 4, 3]))
    elif op in ("swap_rows_", "swap_cols_"):
        ndim = draw(st.sampled_from([2, 2, 3, 4, 1]))
    else:
        ndim = draw(st.integers(0, 5))
    sizes = tuple(draw(st.sampled_from([0, 1, 2, 3, 4, 5, 2, 3])) for _ in range(ndim))
    strides, offset, kind = draw(layouts(sizes, crash_prone))
    x = View("X", sizes, strides, offset)
    call = Call(op, x, None, None, validate=validate)
    notes = [f"layout={kind}"]
    n_sample = None
    same = True
    n = 1
    n_b = None
    if op in ("swap_", "swap_channels_", "swap_rows_", "swap_cols_"):
        if op == "swap_":
            call.dim = draw(st.integers(-ndim - 1, ndim)) if ndim else draw(st.integers(-1, 1))
            if draw(st.integers(0, 19)) == 0:
                call.dim = draw(st.sampled_from([1.0, "0", None, True]))
        dim = {"swap_channels_": 1, "swap_rows_": 0, "swap_cols_": 1}.get(op, call.dim)
        if isinstance(dim, int) and not isinstance(dim, bool) and -ndim <= dim < ndim:
            n = sizes[dim]
            if op in ("swap_", "swap_channels_") and ndim >= 2 and draw(st.booleans()):
                sd = 0 if op == "swap_channels_" else draw(st.integers(-ndim, ndim - 1))
                call.sample_dim = sd
                n_sample = sizes[sd]
    elif op == "swap_pixels_":
        n = sizes[2] * sizes[3] if ndim == 4 else 4
        n_sample = sizes[0] if ndim == 4 else 2
    elif op == "swap_elements_":
        n = x.numel
    else:  # swap_between_
        mode = draw(st.sampled_from(["other", "other", "same-base", "self", "other-dtype"]))
        if draw(st.booleans()) and ndim:
            dx = draw(st.integers(0, ndim - 1))
            dy = dx if mode == "self" else draw(st.integers(0, ndim - 1))
            call.dim_x, call.dim_y = dx, dy
            if draw(st.integers(0, 14)) == 0:
                call.dim_y = None
            ysizes = list(sizes)
            del ysizes[dx]
            ny_ = draw(st.integers(0, 5))
            ysizes.insert(dy, ny_)
            if draw(st.integers(0, 9)) == 0 and ysizes:
                ysizes[draw(st.integers(0, len(ysizes) - 1))] += 1
            n, n_b = sizes[dx], ny_
        else:
            ysizes = list(draw(st.lists(st.integers(0, 4), min_size=0, max_size=3)))
            n, n_b = x.numel, 1
            for s in ysizes:
                n_b *= s
        ystr, yoff, _ = draw(layouts(tuple(ysizes), crash_prone))
        if mode == "self":
            call.same_xy = True
            call.y = x
        elif mode == "same-base":
            start = draw(st.integers(0, _span(sizes, strides, offset) + 4))
            call.y = View("X", tuple(ysizes), ystr, start)
        else:
            call.y = View("Y", tuple(ysizes), ystr, yoff)
            call.dtype_y_differs = mode == "other-dtype"
        same = mode == "self"
        if same:
            n_b = None
    a, b, sample = draw(plan_values(n, n_sample, same, n_b))
    fault = draw(st.sampled_from(FAULTS)) if validate else "none"
    a, b, sample = inject(draw, fault, a, b, sample, n, n_sample or 1)
    alias_dtype = dtype if crash_prone else None
    call.a = draw(index_kind(a, crash_prone, alias_dtype, validate))
    call.b = draw(index_kind(b, crash_prone, alias_dtype, validate))
    call.sample = draw(index_kind(sample, crash_prone, alias_dtype, validate)) if sample is not None else None
    if op == "swap_between_" and call.sample is not None:
        call.sample = None
    notes.append(f"fault={fault}")
    call.notes = notes
    call.x_dtype = dtype
    return call


# -- building the call --------------------------------------------------------------------------------------------
def _random_bits(n, dtype, gen):
    if dtype == torch.bool:
        return torch.randint(0, 2, (n,), generator=gen).bool()
    nbytes = n * torch.empty((), dtype=dtype).element_size()
    return torch.randint(0, 256, (nbytes,), dtype=torch.uint8, generator=gen).view(dtype)


def build(call: Call, seed: int):
    """Real tensors for a Call: base storages of random bits, the views, the index arguments. Returns
    (args, kwargs, bases, alias_values) where bases maps base name -> base tensor."""
    gen = torch.Generator().manual_seed(seed)
    dtype = call.x_dtype
    views = {"X": [call.x]}
    if call.y is not None and not call.same_xy:
        views.setdefault(call.y.base, []).append(call.y)
    bases = {}
    for name, vs in views.items():
        n = max(_span(v.sizes, v.strides, v.offset) for v in vs) + SLACK
        dt = dtype if not (name == "Y" and call.dtype_y_differs) else _other_dtype(dtype)
        bases[name] = _random_bits(n, dt, gen)
    x = bases["X"].as_strided(call.x.sizes, call.x.strides, call.x.offset)
    y = None
    if call.y is not None:
        y = x if call.same_xy else bases[call.y.base].as_strided(call.y.sizes, call.y.strides, call.y.offset)
    alias_at = [0]

    def arg(ix: Index):
        if ix is None:
            return None
        v = ix.values
        if ix.kind == "int":
            return v[0]
        if ix.kind == "list":
            return list(v)
        if ix.kind == "tuple":
            return tuple(v)
        if ix.kind == "bad-float":
            return [float(e) for e in v] if v else [0.5]
        if ix.kind == "bad-bool":
            return torch.tensor([bool(e % 2) for e in v] or [True])
        if ix.kind in ("bad-2d", "bad-meta", "bad-sparse", "bad-quantized"):
            v = [min(max(e, -(2**63)), 2**63 - 1) for e in v]  # "huge" fault values clamped: the kind is the fault
            if ix.kind == "bad-2d":
                return torch.tensor(v, dtype=torch.int64).view(-1, 1) if v else torch.zeros(1, 1, dtype=torch.int64)
            if ix.kind == "bad-meta":
                return torch.tensor(v, dtype=torch.int64, device="meta")
            if ix.kind == "bad-sparse":
                return torch.tensor(v or [0], dtype=torch.int64).to_sparse()
            return torch.quantize_per_tensor(torch.tensor([float(e) for e in v] or [0.0]), 1.0, 0, torch.qint32)
        tdt, ndt, _, _ = INDEX_DTYPES[ix.dtype]
        if ix.kind == "numpy":
            return np.array([e % 2**64 if ix.dtype == "uint64" else e for e in v], dtype=ndt)
        if ix.kind in ("tensor", "scalar-tensor"):
            t = torch.tensor(np.array([e % 2**64 if ix.dtype == "uint64" else e for e in v], dtype=ndt)).to(tdt)
            return t.reshape(()) if ix.kind == "scalar-tensor" else t
        if ix.kind == "alias":  # a view of X's own storage holding the index values
            iv = bases["X"].view(tdt)
            start = alias_at[0] % max(iv.numel() - len(v), 1)
            alias_at[0] += len(v) + 1
            iv[start : start + len(v)] = torch.tensor(v, dtype=torch.int64).to(tdt)
            return iv[start : start + len(v)]
        raise AssertionError(ix.kind)

    a, b = arg(call.a), arg(call.b)
    sample = arg(call.sample)
    op = call.op
    kw = {"validate": call.validate}
    if op == "swap_":
        args = (x, call.dim, a, b)
        if sample is not None:
            kw.update(sample=sample, sample_dim=call.sample_dim)
    elif op in ("swap_channels_", "swap_pixels_"):
        args = (x, a, b)
        if sample is not None:
            kw["sample"] = sample
    elif op in ("swap_rows_", "swap_cols_", "swap_elements_"):
        args = (x, a, b)
    else:
        args = (x, y, a, b)
        kw.update(dim_x=call.dim_x, dim_y=call.dim_y)
    return args, kw, bases


def _other_dtype(dtype):
    return torch.float64 if dtype != torch.float64 else torch.float32


def _raw(t):
    return t.view(torch.uint8).clone() if t.dtype != torch.bool else t.view(torch.uint8).clone()


def _element_bytes(base):
    return base.view(torch.uint8).view(base.numel(), -1) if base.numel() else base.view(torch.uint8).view(0, 1)


def check_call(call: Call, seed: int = 0):
    """Runs the call on every backend usable here and holds each to the model."""
    results = {}
    for backend in usable_backends("cpu"):
        args, kw, bases = build(call, seed)
        before = {k: _raw(v) for k, v in bases.items()}
        ids = {k: [(k, i) for i in range(v.numel())] for k, v in bases.items()}  # an element: (its base, where)
        elem = {k: v.element_size() for k, v in bases.items()}
        # The model sees the storage after the alias indices were written: build() did that already.
        kind, want = expect(call, ids, elem)
        with swapkern.use_backend(backend):
            try:
                getattr(swapkern, call.op)(*args, **kw)
                got = None
            except (TypeError, ValueError, IndexError) as e:
                got = e
        where = f"{backend}: {call}"
        if got is not None:
            rule = getattr(got, "rule", None)
            assert rule in RULES and RULES[rule] is type(got), f"{where}\n{type(got).__name__} with rule {rule}: {got}"
            results[backend] = (type(got), rule)
            allowed = want if kind == "raise" else (want[1] if kind == "ok-or" else set())
            assert type(got) in allowed, f"{where}\nraised {type(got).__name__}: {got}\nexpected {kind} {want}"
            for k, v in bases.items():
                assert torch.equal(_raw(v), before[k]), f"{where}\n{k} changed before raising {got!r}"
            continue
        results[backend] = None
        assert kind != "raise", f"{where}\nexpected one of {want}, nothing was raised"
        perm = want if kind == "ok" else want[0]
        for k, v in bases.items():
            expected = torch.stack([_element_bytes(before[b].view(bases[b].dtype))[i] for b, i in perm[k]])
            got_bytes = _element_bytes(v)
            assert torch.equal(got_bytes, expected), f"{where}\nstorage {k} differs from the model"
    assert len(set(results.values())) == 1, f"backends disagree (exception type, rule) on {call}: {results}"


_fuzz = settings(suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much], deadline=None)


@_fuzz
@given(call=calls(ops=tuple(o for o in OPS if o != "swap_between_")), seed=st.integers(0, 2**16))
def test_fuzz_one_tensor_ops(call, seed):
    check_call(call, seed)


@_fuzz
@given(call=calls(ops=("swap_between_",)), seed=st.integers(0, 2**16))
def test_fuzz_swap_between(call, seed):
    check_call(call, seed)


@pytest.mark.skipif(not CRASH_PRONE, reason="runs in the subprocess of test_fuzz_crash_prone_classes")
@_fuzz
@given(call=calls(crash_prone=True), seed=st.integers(0, 2**16))
def test_fuzz_crash_prone_inprocess(call, seed):
    check_call(call, seed)


def test_fuzz_crash_prone_classes():
    """Indices aliasing the swapped storage, stride-0 and overlapping layouts, in a subprocess: a segfault or a
    write outside the tensor fails this test with the subprocess's output."""
    env = dict(os.environ, SWAPKERN_FUZZ_CRASH_PRONE="1")
    cmd = [sys.executable, "-m", "pytest", "-q", "-x", "-p", "no:cacheprovider", __file__, "-k", "inprocess"]
    r = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=900)
    assert r.returncode == 0, f"exit {r.returncode}\n{r.stdout[-6000:]}\n{r.stderr[-3000:]}"
    assert " passed" in r.stdout


# -- neuron: random models from the patterns the analysis must get right (issue 23) -------------------------------
# A chain of blocks on (N, C) or (N, L, C) values: Linears, activations, a per-entry module on dim 1 (BatchNorm1d,
# PReLU; per feature on rank 2, per position on rank 3, so L == C is the ambiguous case), LayerNorm, a Linear
# called again, residuals, MaxPool1d over the features, softmax over either dim. In float64 and eval mode, five
# neuron steps keep every output to 1e-12 on every backend (or the model is refused), and the backends agree bit
# for bit on the weights.
_NEURON_BLOCKS = ("linear", "act", "dim1", "prelu1", "ln", "reuse", "residual", "pool", "softmax")


class _NeuronNet(torch.nn.Module):
    def __init__(self, plan, c, L, rank):
        super().__init__()
        self.mods, self.steps = torch.nn.ModuleList(), []
        reusable = {}
        for kind, arg in plan:
            if kind == "linear" or (kind == "reuse" and c not in reusable):
                m, c0, c = torch.nn.Linear(c, arg if kind == "linear" else c), c, arg if kind == "linear" else c
                if c0 == c:
                    reusable[c] = len(self.mods)
            elif kind == "reuse":
                self.steps.append(("call", reusable[c]))
                continue
            elif kind == "act":
                m = (torch.nn.ReLU(), torch.nn.Tanh(), torch.nn.GELU())[arg % 3]
            elif kind == "dim1":
                size = c if rank == 2 else L
                m = torch.nn.BatchNorm1d(size) if arg % 2 else torch.nn.PReLU(size)
            elif kind == "prelu1":
                m = torch.nn.PReLU()
            elif kind == "ln":
                m = torch.nn.LayerNorm(c)
            elif kind == "residual":
                m = torch.nn.Linear(c, c)
                self.mods.append(m)
                self.steps.append(("residual", len(self.mods) - 1))
                continue
            elif kind == "pool":
                if c % 2:
                    continue
                m, c = torch.nn.MaxPool1d(2), c // 2
            else:
                self.steps.append(("softmax", -1 - arg % (rank - 1)))
                continue
            self.mods.append(m)
            self.steps.append(("call", len(self.mods) - 1))
        self.mods.append(torch.nn.Linear(c, 2))
        self.steps.append(("call", len(self.mods) - 1))

    def forward(self, x):
        for kind, i in self.steps:
            if kind == "call":
                x = self.mods[i](x)
            elif kind == "residual":
                x = x + torch.tanh(self.mods[i](x))
            else:
                x = torch.softmax(x, dim=i)
        return x


@st.composite
def neuron_nets(draw):
    rank = draw(st.sampled_from([2, 3]))
    L = draw(st.integers(2, 5))
    c = draw(st.integers(2, 5))
    n = draw(st.integers(1, 6))
    plan = [(draw(st.sampled_from(_NEURON_BLOCKS)), draw(st.integers(2, 5))) for _ in range(n)]
    plan.insert(draw(st.integers(0, n)), ("linear", draw(st.integers(2, 5))))  # mostly something to swap
    return plan, c, L, rank


@_fuzz
@given(net=neuron_nets(), seed=st.integers(0, 2**16))
def test_fuzz_neuron_keeps_the_function_or_refuses(net, seed):
    import copy

    plan, c, L, rank = net
    torch.manual_seed(seed)
    base = _NeuronNet(plan, c, L, rank).double().eval()
    with torch.no_grad():
        for m in base.modules():
            if isinstance(m, torch.nn.BatchNorm1d):
                m.running_mean.normal_()
                m.running_var.uniform_(0.5, 2.0)
            if isinstance(m, torch.nn.BatchNorm1d | torch.nn.LayerNorm):
                m.weight.uniform_(0.5, 1.5)
                m.bias.normal_()
            if isinstance(m, torch.nn.PReLU):
                m.weight.uniform_(-1.0, 1.0)
    x = torch.randn(3, c, dtype=torch.float64) if rank == 2 else torch.randn(3, L, c, dtype=torch.float64)
    with torch.no_grad():
        want = base(x)
    try:
        swapkern.WeightSwap(copy.deepcopy(base), "neuron")
    except ValueError as e:
        assert "no unit space can be permuted" in str(e), e
        return
    finals = {}
    for backend in usable_backends("cpu"):
        model = copy.deepcopy(base)
        with swapkern.use_backend(backend):
            ws = swapkern.WeightSwap(model, "neuron", swaps=2, seed=seed)
            for _ in range(5):
                ws.step()
        with torch.no_grad():
            got = model(x)
        assert float((got - want).abs().max()) <= 1e-12, f"{backend}: {plan} c={c} L={L} rank={rank}"
        finals[backend] = model.state_dict()
    ref = finals["torch"]
    for backend, sd in finals.items():
        assert all(torch.equal(sd[k], ref[k]) for k in ref), f"{backend} differs from torch on {plan}"


# -- the weight-swap engine under tensor replacement (issue 23) -------------------------------------------------------
# Random sequences of weight-swap steps and of the ways a model's tensors get replaced between them. Every backend
# must give the same outcome per event (done, or the same exception type) and the same bits in the end; each step
# must equal the specification applied to the tensors the model holds at that moment (rows, cols, mixed: the drawn
# exchanges of draw_group, with their optimizer state when state=True), and neuron must keep the function.
REPLACEMENTS = (
    "step",
    "step",
    "step",
    "roundtrip",  # model.float(); model.double(): new buffers, parameters' .data replaced
    "assign buffer",  # bn.running_mean = a new tensor
    "load assign",  # load_state_dict(assign=True): new parameter objects
    "new data",  # .data = a copy, same shape
    "shrink",  # .data = a smaller tensor: every later step is a ValueError
    "new state",  # the optimizer's momentum buffer replaced
    "optimizer step",
)


def _fuzz_model():
    torch.manual_seed(0)
    m = torch.nn.Sequential(
        torch.nn.Linear(3, 6), torch.nn.BatchNorm1d(6), torch.nn.ReLU(), torch.nn.Linear(6, 4), torch.nn.Tanh(),
        torch.nn.Linear(4, 2),
    ).double()
    with torch.no_grad():
        m[1].running_mean.normal_()
        m[1].running_var.uniform_(0.5, 2.0)
    return m.eval()


def _replace(event, m, opt, x):
    if event == "roundtrip":
        m.float()
        m.double()
    elif event == "assign buffer":
        m[1].running_mean = m[1].running_mean.clone()
    elif event == "load assign":
        m.load_state_dict({k: v.clone() for k, v in m.state_dict().items()}, assign=True)
    elif event == "new data":
        m[3].weight.data = m[3].weight.data.clone()
    elif event == "shrink":
        m[3].weight.data = m[3].weight.data[:-1].clone()
    elif event == "new state":
        for s in list(opt.state.values()):
            if "momentum_buffer" in s:
                s["momentum_buffer"] = s["momentum_buffer"].clone()
    elif event == "optimizer step":
        m.train()
        m(x).sum().backward()
        opt.step()
        opt.zero_grad()
        m.eval()


def _specified_step(ws, m, opt, step):
    """The model's tensors (and with state=True their momentum buffers) after one step, by the specification."""
    from swapkern import reference as ref
    from swapkern._groups import draw_group

    want = {}
    for gi, name in enumerate(ws.layers):
        p = m.get_parameter(name)
        g = ws.groups[gi]
        a, b, _ = draw_group(g, ws.seed, step)
        tensors = [p.detach()]
        s = opt.state.get(p, {}) if ws.state else {}
        tensors += [v for v in s.values() if isinstance(v, torch.Tensor) and v.shape == p.shape]
        for t in tensors:
            t = t.clone()
            if ws.protocol == "mixed":
                ref.swap_elements_(t, a, b)
            else:
                ref.swap_(t, 0 if ws.protocol == "rows" else 1, a, b)
            want.setdefault(name, []).append(t)
    return want


def _run_replacements(backend, events, protocol, state):
    m = _fuzz_model()
    opt = torch.optim.SGD(m.parameters(), lr=0.1, momentum=0.9)
    x = torch.randn(5, 3, dtype=torch.float64, generator=torch.Generator().manual_seed(1))
    _replace("optimizer step", m, opt, x)
    outcomes, shrunk = [], False
    with swapkern.use_backend(backend):
        ws = swapkern.WeightSwap(m, protocol, swaps=2, state=state, seed=5)
        for event in events:
            if event != "step":
                shrunk = shrunk or event == "shrink"
                if not (shrunk and event == "optimizer step"):  # a shrunk model no longer runs
                    _replace(event, m, opt, x)
                continue
            want = _specified_step(ws, m, opt, ws.draws) if protocol != "neuron" and not shrunk else {}
            before = m(x) if protocol == "neuron" and not shrunk else None
            try:
                ws.step(optimizer=opt)
            except (ValueError, TypeError, IndexError, RuntimeError) as e:
                outcomes.append(type(e).__name__)
                continue
            outcomes.append("done")
            if before is not None:
                assert (m(x) - before).abs().max() < 1e-9, f"{backend}: neuron changed the function after {events}"
            for name, ts in want.items():
                p = m.get_parameter(name)
                got = [p.detach()] + [
                    v for v in (opt.state.get(p, {}) if state else {}).values()
                    if isinstance(v, torch.Tensor) and v.shape == p.shape
                ]
                assert len(got) == len(ts) and all(torch.equal(g, t) for g, t in zip(got, ts, strict=True)), (
                    f"{backend}: {name} is not the specified step after {events}"
                )
    final = [t.detach().clone() for t in m.state_dict().values()] + [
        v.clone() for s in opt.state.values() for v in s.values() if isinstance(v, torch.Tensor)
    ]
    return outcomes, final


@settings(max_examples=12, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    events=st.lists(st.sampled_from(REPLACEMENTS), min_size=2, max_size=7),
    protocol=st.sampled_from(["rows", "cols", "mixed", "neuron"]),
    state=st.booleans(),
)
def test_fuzz_weight_swaps_follow_replaced_tensors(events, protocol, state):
    results = {b: _run_replacements(b, events, protocol, state) for b in usable_backends("cpu")}
    (first, (outcomes, final)), *rest = results.items()
    for name, (o, f) in rest:
        assert o == outcomes, f"{name} and {first} disagree on {events}: {o} vs {outcomes}"
        assert all(torch.equal(a, b) for a, b in zip(f, final, strict=True)), f"{name} and {first} differ: {events}"
    if "shrink" in events:  # every step after the shrink is refused
        after = events[events.index("shrink") :].count("step")
        assert outcomes[len(outcomes) - after :] == ["ValueError"] * after
