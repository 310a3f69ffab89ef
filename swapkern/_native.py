"""The "native" backend: the compiled ops (torch.ops.swapkern.*), same entry points as swapkern.reference.

Python converts the arguments only (swapkern._index); every check of the arguments is made once, in C++
(csrc/checks.cpp, csrc/plan.cpp), so a torch.compile graph that calls the ops does not break on data-dependent
checks. The ops are built on the LibTorch stable ABI, which cannot express what follows; it lives here, once:

- the autograd rules of a mutating op (its Autograd and ADInplaceOrView kernels before): with grad mode on, a
  mutated tensor that requires grad is refused (swaps are not differentiable); an inference tensor is updated only
  inside inference mode; each mutated tensor's version counter is bumped exactly once after the call, so autograd
  notices a swapped tensor it saved for backward. Under torch.compile the wrappers call the ops directly (the
  graph's functionalization writes the results back with copy_, which bumps the counters);
- TypeError: no C++ exception becomes one across the stable ABI, so the kernels tag the message (csrc/check.h,
  SK_CHECK_TYPE) and the wrappers turn it back into a TypeError (ValueError and IndexError cross as they are);
- the fake (meta) kernels (torch.library.register_fake), registered when this module is imported.
"""

from __future__ import annotations

import re
import weakref

import torch

from ._checks import bump_versions, check_mutable, check_plan_fits, prepare_between
from ._codes import protocol_codes
from ._index import as_index, as_int

_OPS = torch.ops.swapkern
_increment = torch._C._increment_version
# csrc/check.h: the tag of SK_CHECK_TYPE; an exception from a shim call also carries "(originally from ...)".
_TYPE_ERROR = re.compile(r"\[TypeError\] (.*?)(?:\s+\(originally from .*\))?\s*$", re.S)


def _raise_tagged(e: RuntimeError):
    """Re-raises a kernel's error: as the TypeError its message is tagged with, if it is tagged."""
    m = _TYPE_ERROR.search(str(e))
    if m is None:
        raise e
    raise TypeError(m.group(1)) from None


def _call(op, *args):
    """Calls an op, raising a TypeError where the kernel raised a tagged one."""
    try:
        return op(*args)
    except RuntimeError as e:
        _raise_tagged(e)


def _mutate(name, mutated, op, *args):
    """Calls a mutating op between the autograd rules and the version bumps of its mutated tensors."""
    if torch.compiler.is_compiling():
        return op(*args)
    check_mutable(name, mutated)
    out = _call(op, *args)
    bump_versions(mutated)
    return out


def _tensor(t, name, op):
    if not isinstance(t, torch.Tensor):
        raise TypeError(f"{op}: {name} must be a torch.Tensor, got {type(t).__name__}")
    return t


def swap_(x, dim, a, b, *, sample=None, sample_dim=0, validate=True):
    op = "swapkern.swap_"
    s = None if sample is None else as_index(sample, "sample")
    dim, sample_dim = as_int(dim, "dim", op), as_int(sample_dim, "sample_dim", op)
    _mutate(op, [x], _OPS.swap_.default, x, dim, as_index(a, "a"), as_index(b, "b"), s, sample_dim, validate)
    return x


def swap_pixels_(x, p, q, *, sample=None, validate=True):
    s = None if sample is None else as_index(sample, "sample")
    _mutate("swapkern.swap_pixels_", [x], _OPS.swap_pixels_.default, x, as_index(p, "p"), as_index(q, "q"), s, validate)
    return x


def swap_elements_(x, i, j, *, validate=True):
    _mutate(
        "swapkern.swap_elements_", [x], _OPS.swap_elements_.default, x, as_index(i, "i"), as_index(j, "j"), validate
    )
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
            # has no tensor identity), so the overlap it would refuse is refused here, after the autograd rules.
            check_mutable(op, mutated)
            raise ValueError(f"{op}: x and y overlap in memory; to swap within one tensor use swap_ or swap_elements_")
        if x is y and x.numel() == 0:
            # One empty tensor passed twice: the kernel cannot tell it from two (empty tensors share no address),
            # so its rules for one tensor (a[k] != b[k], one scope) are checked here by the Python twin. Nothing moves.
            check_mutable(op, mutated)
            prepare_between(x, x, i, j, dx, dy, validate)
            bump_versions(mutated)
            return x, y
    _mutate(op, mutated, _OPS.swap_between_.default, x, y, i, j, dx, dy, validate)
    return x, y


def load_batch_(out, data, index, scale, shift, *, plan=None, flip=None, nhwc=True, validate=True):
    op = "swapkern.load_batch_"
    for t, name in ((data, "data"), (scale, "scale"), (shift, "shift")):
        _tensor(t, name, op)
    check_plan_fits(op, plan, out)
    if plan is None:
        pairs = at = image = active = None
        which, what, extent_all = 1, 0, True
    else:
        pairs, at, image, active = plan.pairs, plan.at, plan.image, plan.active
        which, what, extent_all = protocol_codes(plan.protocol)
    f = None if flip is None else as_index(flip, "flip")
    _mutate(
        op,
        [out],
        _OPS.load_batch_.default,
        out,
        data,
        as_index(index, "index"),
        scale,
        shift,
        pairs,
        at,
        image,
        active,
        f,
        which,
        what,
        extent_all,
        nhwc,
        validate,
    )
    return out


# -- feature swaps ---------------------------------------------------------------------------------------------------
def draw_feature_plan_(buf, indices, shape, protocol, swaps, seed, step, threshold, ws=None, counter=None):
    b, c, h, w = shape
    mutated = [buf] if counter is None else [buf, counter]
    args = (buf, indices, b, c, h * w, *protocol_codes(protocol), swaps, seed, step, threshold, counter)
    _mutate("swapkern.draw_feature_plan_", mutated, _OPS.draw_feature_plan_.default, *args)
    return buf


_FEATURE_SWAP = "swapkern.feature_swap_"


def feature_swap_(x, buf, indices, protocol, swaps, seed, step, threshold, ws=None, counter=None):
    which, what, extent_all = protocol_codes(protocol)
    mutated = [x, buf] if counter is None else [x, buf, counter]
    args = (x, buf, indices, which, what, extent_all, swaps, seed, step, threshold, counter)
    _mutate(_FEATURE_SWAP, mutated, _OPS.feature_swap_.default, *args)
    return x


def bound_feature_swap(buf, indices, protocol, swaps, seed, step, threshold, ws=None, counter=None):
    """feature_swap_ with every argument but the batch bound: the fast path of FeatureSwap.__call__, in eager mode
    only (the caller leaves it under torch.compile). The rules of _mutate, inlined, with what is fixed for the bound
    tensors decided here, once: buf and counter are int64 (never requiring grad), inference tensors or not for good.
    The common batch (no grad, not an inference tensor) costs two attribute reads, the op and one version bump."""
    args = (buf, indices, *protocol_codes(protocol), swaps, seed, step, threshold, counter)
    op = _OPS.feature_swap_.default
    own = [buf] if counter is None else [buf, counter]
    if any(t.is_inference() for t in own):  # made in inference mode: the general path, checked every call
        return lambda x: _mutate(_FEATURE_SWAP, [x, *own], op, x, *args)
    increment = _increment

    def call(x):
        special = x.requires_grad or x.is_inference()
        if special:  # the rules in full: refuses, or lets it through (grad mode off, inside inference mode)
            check_mutable(_FEATURE_SWAP, [x, *own])
        try:
            op(x, *args)
        except RuntimeError as e:
            _raise_tagged(e)
        if special and x.is_inference():
            increment(own)  # an inference tensor has no version counter
        else:
            increment([x, buf] if counter is None else [x, buf, counter])

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
    """An engine registered in C++ (csrc/engine.cpp), freed when this object goes (on CUDA, the engine first waits
    for its kernels: csrc/engine.h)."""

    def __init__(self, handle: int, watched=()):
        self.handle = handle
        # the tensors an apply bumps, fixed at packing (whether a tensor is an inference tensor never changes)
        self.bump = [t for t in watched if not t.is_inference()]
        weakref.finalize(self, _OPS.engine_free.default, handle)


def _int64(v: int) -> int:
    v &= 2**64 - 1
    return v - 2**64 if v >= 2**63 else v  # the same 64 bits as a signed int


def multi_pack(engine):
    jobs = engine.jobs
    dim = lambda d: -1 if d is None else d  # noqa: E731
    handle = _call(
        _OPS.engine_new.default,
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
    )
    return _Handle(handle, engine.watched)


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
    done = _mutate("swapkern.engine_step_", [engine.index], op, engine.index, packed.handle, _int64(seed), step, mode)
    if done == 0 and mode & 2:
        _increment(packed.bump)
    return done == 0


_multi_step_eager = torch.compiler.disable(_multi_step)


# -- fake (meta) kernels ------------------------------------------------------------------------------------------
_MUTATING = (
    "swap_",
    "swap_pixels_",
    "swap_elements_",
    "swap_between_",
    "load_batch_",
    "draw_feature_plan_",
    "feature_swap_",
)


def _fake_mutating(qualname: str, names: list[str]):
    """A mutating op on fake or meta tensors: nothing to compute (it returns nothing). A real tensor with an
    argument on the meta device (indices, say) is refused like any index on another device, as the kernels do."""

    def fake(*args, **kwargs):
        x = args[0]
        if x.device.type != "meta":
            for name, v in (*zip(names[1:], args[1:], strict=False), *kwargs.items()):
                if isinstance(v, torch.Tensor) and v.device.type == "meta":
                    raise ValueError(
                        f"{qualname}: {name} is on meta but the tensor is on {x.device}; indices must be on the CPU "
                        "or on the tensor's device"
                    )

    return fake


def _fake_engine_step(index, handle, seed, step, mode):
    # 0 or 1, known only when it runs (the engine checks its tensors then): an unbacked value under FakeTensorMode.
    return torch.library.get_ctx().new_dynamic_size(min=0, max=1)


def register_fakes(ops=None) -> None:
    """Registers the fake kernels of the ops (swapkern._backend calls it once the library is loaded; ops: the
    namespace, torch.ops.swapkern by default). engine_new and engine_free stay without: they manage engines in a
    C++ registry, which no trace can stand for."""
    ops = _OPS if ops is None else ops
    for name in _MUTATING:
        qualname = f"{ops.name}::{name}"
        names = [a.name for a in getattr(ops, name).default._schema.arguments]
        torch.library.register_fake(qualname, _fake_mutating(qualname, names))
    torch.library.register_fake(f"{ops.name}::engine_step_", _fake_engine_step)


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
        sys.modules[name] = mod
        _emulated = mod
    return _emulated
