"""The "native" backend: the compiled ops (torch.ops.swapkern.*), same entry points as swapkern.reference.

Python converts the arguments only (swapkern._index); every check of the arguments is made once, in C++
(csrc/checks.cpp, csrc/pairs.cpp, csrc/plan.cpp), so a torch.compile graph that calls the ops does not break on
data-dependent checks. The ops are built on the LibTorch stable ABI, which cannot express what follows; it lives here,
once:

- the autograd rules of a mutating op (its Autograd and ADInplaceOrView kernels before): with grad mode on, a
  mutated tensor that requires grad is refused (swaps are not differentiable); an inference tensor is updated only
  inside inference mode; each mutated tensor's version counter is bumped exactly once after the call, so autograd
  notices a swapped tensor it saved for backward. Under torch.compile the wrappers call the ops directly (the
  graph's functionalization writes the results back with copy_, which bumps the counters);
- the rule keys and TypeError: a refusal's message starts with its rule's key, "[index.range] ...", and no C++
  exception becomes a TypeError across the stable ABI, so those are tagged "[TypeError] " (csrc/error.h SK_RULE,
  SK_CHECK_TYPE); the wrappers strip the tags into err.rule and the exception type (swapkern/_codes.py RULES);
- the tensors the dispatcher refuses before any kernel runs (sparse, mkldnn, quantized: NotImplementedError): the
  Python twin of the kernels' checks (swapkern/_checks.py) says which rule refuses them, as the kernels would;
- the fake (meta) kernels (torch.library.register_fake), registered when this module is imported.
"""

from __future__ import annotations

import functools
import re
import weakref

import torch

from . import _checks, _loadchecks
from ._checks import bump_versions, check_mutable
from ._codes import RULES, protocol_codes, refuse
from ._index import as_index, as_int

_OPS = torch.ops.swapkern
_increment = torch._C._increment_version
_compiling = torch.compiler.is_compiling
# csrc/error.h: the tags in front of a kernel's message, "[TypeError] " (SK_CHECK_TYPE) and "[rule.key] " (SK_RULE);
# an exception from a shim call also carries "(originally from ...)".
_TAGS = re.compile(r"(\[TypeError\] )?(?:\[([a-z_]+\.[a-z_0-9]+)\] )?(.*?)(?:\s+\(originally from .*\))?\s*$", re.S)


def _raise_tagged(e: Exception):
    """Re-raises a kernel's error: with its rule key as .rule and the exception type its tags say (the rule's type,
    TypeError where tagged so), the message without the tags; an untagged error as it is."""
    text = str(e)
    start = text.find("[")
    m = _TAGS.match(text, start) if start >= 0 else None
    if m is None or not (m.group(1) or m.group(2)):
        raise e
    rule = m.group(2)
    message = text[:start] + m.group(3)
    if rule is None:  # SK_CHECK_TYPE: no rule
        raise TypeError(message) from None
    if rule not in RULES:
        raise e
    raise refuse(rule, message) from None


def _refused_by_dispatch(e: Exception, args, twin):
    """A NotImplementedError of the dispatcher: a sparse, mkldnn or quantized tensor argument, which no kernel of
    ours was given. The Python twin of the kernels' checks raises the rule that refuses it (the same rule, in the same
    order, as the kernels); anything else is re-raised as it is."""
    odd = any(isinstance(t, torch.Tensor) and (t.layout != torch.strided or t.is_quantized) for t in args)
    if twin is not None and odd:
        twin(*args)
    raise e


_OP_ERRORS = (RuntimeError, ValueError, IndexError)  # the errors an op raises (NotImplementedError is a RuntimeError)


def _reraise(e: Exception, args, twin):
    """An op's error re-raised: the dispatcher's NotImplementedError through the op's Python twin
    (_refused_by_dispatch), a kernel's error with its rule key (_raise_tagged). Never returns."""
    if isinstance(e, NotImplementedError):
        _refused_by_dispatch(e, args, twin)
    _raise_tagged(e)


def _call(op, args, twin=None):
    """Calls op(*args), its errors re-raised with their rule keys (_reraise); twin: the op's checks in Python
    (called with the op's arguments), for the inputs the dispatcher refuses before the op's own checks run."""
    try:
        return op(*args)
    except _OP_ERRORS as e:
        _reraise(e, args, twin)


# -- compiled graphs: the checked twins ---------------------------------------------------------------------------
# An error of an op that a compiled graph calls reaches the caller as it crosses the stable ABI: a TypeError as
# RuntimeError("[TypeError] ..."), and no error with its rule key. So under torch.compile the wrappers put a checked
# twin of each mutating op in the graph instead: the same schema in the namespace <ns>_checked, whose kernel (Python)
# calls the compiled op through _call, so its errors are re-raised with their types and rule keys as in eager mode.
# It costs a Python frame per call of the compiled graph. The functionalized graph treats the twin as it treated
# the op (the same alias annotations).
_CHECKED: dict = {}  # compiled op (OpOverload) -> its checked twin; the emulated instance shares this dict
_LIBRARIES: list = []


def _checked_kernel(op, *args):
    _call(op, args)


def register_checked(ops, names):
    """Defines the checked twins of the ops `names` of namespace `ops` (swapkern._backend calls it once the library
    is loaded, then registers their fakes); returns the twins' namespace."""
    ns = f"{ops.name}_checked"
    lib = torch.library.Library(ns, "FRAGMENT")
    _LIBRARIES.append(lib)
    for name in names:
        native = getattr(ops, name).default
        lib.define(str(native._schema).split("::", 1)[1])
        lib.impl(name, functools.partial(_checked_kernel, native), "CompositeExplicitAutograd")
        _CHECKED[native] = getattr(getattr(torch.ops, ns), name).default
    return getattr(torch.ops, ns)


def _mutate(name, mutated, op, args, twin=None, before=None):
    """Calls a mutating op, op(*args), between the autograd rules and the version bumps of its mutated tensors.
    before: the op's checks that only Python can make, run after the autograd rules (as on the Python backends).
    Traced (torch.compile, torch.export): the op's checked twin, nothing else."""
    if _compiling():
        return _CHECKED.get(op, op)(*args)
    plain = True  # no tensor that requires grad, no inference tensor: the rules have nothing to say
    for t in mutated:
        if t.requires_grad or t.is_inference():
            plain = False
            break
    if not plain:
        check_mutable(name, mutated)
    if before is not None:
        before()
    try:  # _call without its frame (a frame less on every small call); the same errors through _reraise
        out = op(*args)
    except _OP_ERRORS as e:
        _reraise(e, args, twin)
    if plain:
        _increment(mutated)
    else:
        bump_versions(mutated)
    return out


def _tensor(t, name, op):
    if not isinstance(t, torch.Tensor):
        raise refuse("arg.type", f"{op}: {name} must be a torch.Tensor, got {type(t).__name__}")
    return t


_PIXELS = "swapkern.swap_pixels_"


# The arguments in the Python backends' order (swapkern/reference.py): tensors, dims, indices a, b, sample.
def swap_(x, dim, a, b, *, sample=None, sample_dim=0, validate=True):
    op = "swapkern.swap_"
    _tensor(x, "x", op)
    dim, sample_dim = as_int(dim, "dim", op), as_int(sample_dim, "sample_dim", op)
    a, b, s = as_index(a, "a"), as_index(b, "b"), None if sample is None else as_index(sample, "sample")
    _mutate(op, [x], _OPS.swap_.default, (x, dim, a, b, s, sample_dim, validate), _checks.prepare_swap)
    return x


def swap_pixels_(x, p, q, *, sample=None, validate=True):
    if not isinstance(x, torch.Tensor):
        _tensor(x, "x", _PIXELS)
    p, q, s = as_index(p, "p"), as_index(q, "q"), None if sample is None else as_index(sample, "sample")
    _mutate(_PIXELS, [x], _OPS.swap_pixels_.default, (x, p, q, s, validate), _checks.prepare_pixels)
    return x


def swap_elements_(x, i, j, *, validate=True):
    op = "swapkern.swap_elements_"
    _tensor(x, "x", op)
    i, j = as_index(i, "i"), as_index(j, "j")
    _mutate(op, [x], _OPS.swap_elements_.default, (x, i, j, validate), _checks.prepare_elements)
    return x


def _same_view(x, y) -> bool:
    return (  # empty tensors hold no memory to overlap (both may have a null data pointer)
        x.numel() > 0
        and x.data_ptr() == y.data_ptr()
        and x.dtype == y.dtype
        and x.device == y.device
        and x.shape == y.shape
        and x.stride() == y.stride()
    )


def swap_between_(x, y, i, j, *, dim_x=None, dim_y=None, validate=True):
    op = "swapkern.swap_between_"
    _tensor(x, "x", op)
    _tensor(y, "y", op)
    dx = None if dim_x is None else as_int(dim_x, "dim_x", op)
    dy = None if dim_y is None else as_int(dim_y, "dim_y", op)
    i, j = as_index(i, "i"), as_index(j, "j")  # argument types first, as on every backend
    mutated = [x] if x is y else [x, y]
    if not torch.compiler.is_compiling():
        if x is not y and _same_view(x, y):
            # Two views with one geometry: the kernel cannot tell them from one tensor passed twice (the stable ABI
            # has no tensor identity), so the Python twin refuses them, after the autograd rules, with the rule the
            # kernel would meet first (tensors.overlap, unless an earlier one refuses them).
            check_mutable(op, mutated)
            _checks.prepare_between(x, y, i, j, dx, dy, validate)
            raise refuse(
                "tensors.overlap",
                f"{op}: x and y overlap in memory; to swap within one tensor use swap_ or swap_elements_",
            )
        if x is y and x.numel() == 0:
            # One empty tensor passed twice: the kernel cannot tell it from two (empty tensors share no address),
            # so its rules for one tensor (a[k] != b[k], one scope) are checked here by the Python twin. Nothing moves.
            check_mutable(op, mutated)
            _checks.prepare_between(x, x, i, j, dx, dy, validate)
            bump_versions(mutated)
            return x, y
    _mutate(op, mutated, _OPS.swap_between_.default, (x, y, i, j, dx, dy, validate), _checks.prepare_between)
    return x, y


def load_batch_(out, data, index, scale, shift, *, plan=None, flip=None, nhwc=True, validate=True):
    op = "swapkern.load_batch_"
    for t, name in ((out, "out"), (data, "data"), (scale, "scale"), (shift, "shift")):
        _tensor(t, name, op)
    index = as_index(index, "index")
    f = None if flip is None else as_index(flip, "flip")
    if plan is None:
        pairs = at = image = active = None
        which, what, extent_all = 1, 0, True
    else:
        pairs, at, image, active = plan.pairs, plan.at, plan.image, plan.active
        which, what, extent_all = protocol_codes(plan.protocol)
    _mutate(
        op,
        [out],
        _OPS.load_batch_.default,
        (out, data, index, scale, shift, pairs, at, image, active, f, which, what, extent_all, nhwc, validate),
        before=lambda: _loadchecks.check_plan_fits(op, plan, out),  # the kernel sees the plan's tensors only
        twin=lambda *_: _loadchecks.prepare_load(out, data, index, scale, shift, plan, f, nhwc, validate),
    )
    return out


# -- feature swaps ---------------------------------------------------------------------------------------------------
def draw_feature_plan_(buf, indices, shape, protocol, swaps, seed, step, threshold, ws=None, counter=None):
    b, c, h, w = shape
    mutated = [buf] if counter is None else [buf, counter]
    args = (buf, indices, b, c, h * w, *protocol_codes(protocol), swaps, seed, step, threshold, counter)
    _mutate("swapkern.draw_feature_plan_", mutated, _OPS.draw_feature_plan_.default, args)
    return buf


_FEATURE_SWAP = "swapkern.feature_swap_"


def feature_swap_(x, buf, indices, protocol, swaps, seed, step, threshold, ws=None, counter=None):
    which, what, extent_all = protocol_codes(protocol)
    mutated = [x, buf] if counter is None else [x, buf, counter]
    args = (x, buf, indices, which, what, extent_all, swaps, seed, step, threshold, counter)
    _mutate(_FEATURE_SWAP, mutated, _OPS.feature_swap_.default, args)
    return x


def bound_feature_swap(buf, indices, protocol, swaps, seed, step, threshold, ws=None, counter=None, shape=None):
    """feature_swap_ with every argument but the batch bound: the fast path of FeatureSwap.swap_, in eager mode
    only (the caller leaves it under torch.compile). The rules of _mutate, inlined, with what is fixed for the bound
    tensors decided here, once: buf and counter are int64 (never requiring grad), inference tensors or not for good.
    With a step counter and the batch shape, the call goes through a binding (csrc/feature.h: feature_bind once,
    then feature_step_(x, handle), two arguments, x's layout checked once); else through feature_swap_.
    The common batch (no grad, not an inference tensor) costs two attribute reads, the op and one version bump."""
    codes = protocol_codes(protocol)
    args = (buf, indices, *codes, swaps, seed, step, threshold, counter)
    op = _OPS.feature_swap_.default
    own = [buf] if counter is None else [buf, counter]
    if any(t.is_inference() for t in own):  # made in inference mode: the general path, checked every call
        return lambda x: _mutate(_FEATURE_SWAP, [x, *own], op, (x, *args))
    binding = None
    if indices is None and counter is not None and shape is not None and min(shape) > 0:
        b, c, h, w = shape
        handle = _call(_OPS.feature_bind.default, (buf, counter, b, c, h, w, *codes, swaps, seed, threshold))
        binding = _Handle(handle, _OPS.feature_free.default)
        op, args = _OPS.feature_step_.default, (handle,)
    increment = _increment
    mutated = [buf] if counter is None else [buf, counter]

    def call(x):
        special = x.requires_grad or x.is_inference()
        if special:  # the rules in full: refuses, or lets it through (grad mode off, inside inference mode)
            check_mutable(_FEATURE_SWAP, [x, *own])
        try:
            op(x, *args)
        except (RuntimeError, ValueError, IndexError) as e:
            _raise_tagged(e)
        if special and x.is_inference():
            increment(mutated)  # an inference tensor has no version counter
        else:
            increment([x, *mutated])

    call.binding = binding  # held as long as the call: freed with it
    return call


def bound_stepped_feature_swap(buf, protocol, swaps, seed, threshold):
    """feature_swap_ with every argument but the batch and the step bound, for a batch that is a fresh copy (no
    grad, not an inference tensor: the caller checks): the op and one version bump. FeatureSwap's per-image path."""
    op = _OPS.feature_swap_.default
    which, what, extent_all = protocol_codes(protocol)
    increment = _increment

    def call(x, step):
        try:
            op(x, buf, None, which, what, extent_all, swaps, seed, step, threshold, None)
        except RuntimeError as e:
            _raise_tagged(e)
        increment([x, buf])

    return call


# -- the multi-tensor engine (swapkern.multi) ---------------------------------------------------------------------
class _Handle:
    """A host object registered in C++ (csrc/registry.h: an engine, a FeatureSwap's bound call), freed by free(handle)
    when this object goes (on CUDA, an engine first waits for its kernels: csrc/engine.h)."""

    def __init__(self, handle: int, free, watched=()):
        self.handle = handle
        # the tensors an apply bumps, fixed at packing (whether a tensor is an inference tensor never changes)
        self.bump = [t for t in watched if not t.is_inference()]
        weakref.finalize(self, free, handle)


def _int64(v: int) -> int:
    v &= 2**64 - 1
    return v - 2**64 if v >= 2**63 else v  # the same 64 bits as a signed int


def multi_pack(engine):
    jobs = engine.jobs
    dim = lambda d: -1 if d is None else d  # noqa: E731
    handle = _call(
        _OPS.engine_new.default,
        (
            engine.index,
            [j.x for j in jobs],
            [j.y for j in jobs],
            [dim(j.dx) for j in jobs],
            [dim(j.dy) for j in jobs],
            [j.group for j in jobs],
            [j.job for j in jobs],
            engine.wave,
            engine.table,
            len(engine.groups),
            engine.watched,
        ),
    )
    return _Handle(handle, _OPS.engine_free.default, engine.watched)


def multi_step_(engine, packed, seed, step, mode):
    """One op call: draw (mode 1) and/or apply (mode 2); False when a watched tensor changed (nothing done). The
    tensors an apply moved (engine.watched) are bumped here, as the op marks only its index buffer mutated; inside
    a compiled step the call leaves the graph so that they still are (torch.compiler.disable costs microseconds a
    call, so only there)."""
    if torch.compiler.is_compiling():
        return _multi_step_eager(engine, packed, seed, step, mode)
    return _multi_step(engine, packed, seed, step, mode)


def _multi_step(engine, packed, seed, step, mode):
    op = _OPS.engine_step_.default
    done = _mutate("swapkern.engine_step_", [engine.index], op, (engine.index, packed.handle, _int64(seed), step, mode))
    if done == 0 and mode & 2:
        _increment(packed.bump)
    return done == 0


_multi_step_eager = torch.compiler.disable(_multi_step)


_emulated = None


def emulated():
    """The "cuda-emulated" backend: this module's entry points over torch.ops.swapkern_emu, the CUDA launchers and
    kernels compiled for CPU tensors (csrc/cuda/emulation.h). The same wrappers (autograd rules, TypeError tags,
    version bumps) in a second instance of this module, whose _OPS is that namespace."""
    global _emulated
    if _emulated is None:
        import importlib.util
        import sys

        name = f"{__package__}._native_emulated"
        spec = importlib.util.spec_from_file_location(name, __file__)
        mod = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(mod)
        mod._OPS = torch.ops.swapkern_emu
        mod._CHECKED = _CHECKED  # one map of checked twins (register_checked fills it for both namespaces)
        sys.modules[name] = mod
        _emulated = mod
    return _emulated
