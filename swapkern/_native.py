"""The "native" backend: the compiled ops (torch.ops.swapkern.*), same entry points as swapkern.reference.

Python converts the arguments only (swapkern._index); every check is made once, in C++ (csrc/checks.cpp,
csrc/plan.cpp), so a torch.compile graph that calls the ops does not break on data-dependent checks."""

from __future__ import annotations

import weakref

import torch

from ._codes import protocol_codes
from ._index import as_index, as_int


def _tensor(t, name, op):
    if not isinstance(t, torch.Tensor):
        raise TypeError(f"{op}: {name} must be a torch.Tensor, got {type(t).__name__}")
    return t


def swap_(x, dim, a, b, *, sample=None, sample_dim=0, validate=True):
    op = "swapkern.swap_"
    s = None if sample is None else as_index(sample, "sample")
    torch.ops.swapkern.swap_(
        x,
        as_int(dim, "dim", op),
        as_index(a, "a"),
        as_index(b, "b"),
        s,
        as_int(sample_dim, "sample_dim", op),
        validate,
    )
    return x


def swap_pixels_(x, p, q, *, sample=None, validate=True):
    s = None if sample is None else as_index(sample, "sample")
    torch.ops.swapkern.swap_pixels_(x, as_index(p, "p"), as_index(q, "q"), s, validate)
    return x


def swap_elements_(x, i, j, *, validate=True):
    torch.ops.swapkern.swap_elements_(x, as_index(i, "i"), as_index(j, "j"), validate)
    return x


def swap_between_(x, y, i, j, *, dim_x=None, dim_y=None, validate=True):
    op = "swapkern.swap_between_"
    _tensor(y, "y", op)
    dx = None if dim_x is None else as_int(dim_x, "dim_x", op)
    dy = None if dim_y is None else as_int(dim_y, "dim_y", op)
    torch.ops.swapkern.swap_between_(x, y, as_index(i, "i"), as_index(j, "j"), dx, dy, validate)
    return x, y


def load_batch_(out, data, index, scale, shift, *, plan=None, flip=None, nhwc=True, validate=True):
    from ._checks import check_plan_fits

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
    torch.ops.swapkern.load_batch_(
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
    torch.ops.swapkern.draw_feature_plan_(
        buf, indices, b, c, h * w, *protocol_codes(protocol), swaps, seed, step, threshold, counter
    )
    return buf


def feature_swap_(x, buf, indices, protocol, swaps, seed, step, threshold, ws=None, counter=None):
    which, what, extent_all = protocol_codes(protocol)
    torch.ops.swapkern.feature_swap_.default(
        x, buf, indices, which, what, extent_all, swaps, seed, step, threshold, counter
    )
    return x


def bound_feature_swap(buf, indices, protocol, swaps, seed, step, threshold, ws=None, counter=None):
    """feature_swap_ with every argument but the batch bound: the fast path of FeatureSwap.__call__."""
    args = (buf, indices, *protocol_codes(protocol), swaps, seed, step, threshold, counter)
    op = torch.ops.swapkern.feature_swap_.default
    return lambda x: op(x, *args)


# -- the multi-tensor engine (swapkern.multi) ---------------------------------------------------------------------
class _Handle:
    """An engine registered in C++ (csrc/engine.cpp), freed when this object goes."""

    def __init__(self, handle: int):
        self.handle = handle
        weakref.finalize(self, torch.ops.swapkern.engine_free, handle)


def _int64(v: int) -> int:
    v &= 2**64 - 1
    return v - 2**64 if v >= 2**63 else v  # the same 64 bits as a signed int


def multi_pack(engine):
    jobs = engine.jobs
    dim = lambda d: -1 if d is None else d  # noqa: E731
    handle = torch.ops.swapkern.engine_new(
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
    return _Handle(handle)


def multi_step_(engine, packed, seed, step, mode):
    """One op call: draw (mode 1) and/or apply (mode 2); False when a watched tensor changed (nothing done)."""
    return torch.ops.swapkern.engine_step_(engine.index, packed.handle, _int64(seed), step, mode) == 0
