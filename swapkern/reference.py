"""Pure-PyTorch reference of every public op: the specification, written for clarity, not speed.

Same signatures and the same exceptions as the public ops in `swapkern` (the checks live in _checks.py and
are shared with the Triton backend). Each op copies the slices it moves out of one side into a temporary, then
writes both sides through views of the argument: in place as far as the caller sees (same tensor, same
data_ptr), though it allocates that temporary.
"""

from __future__ import annotations

import torch

from . import draws
from ._checks import (
    prepare_between,
    prepare_elements,
    prepare_pixels,
    prepare_swap,
)
from ._common import APPLY, DRAW, bits, fingerprint, mutating, plan_layout, plan_views, tensor_arg
from ._groups import INTER, draw_group
from ._index import as_index, as_int
from ._loadchecks import prepare_load
from ._wrappers import named_wrappers

__all__ = [
    "swap_",
    "swap_elements_",
    "swap_between_",
    "swap_channels_",
    "swap_pixels_",
    "swap_rows_",
    "swap_cols_",
    "load_batch_",
    "apply_feature_plan_",
]


def _exchange(view_a, view_b, ia, ib):
    """view_a[ia] <-> view_b[ib] (advanced indexing; ia, ib are index tuples)."""
    from_a = view_a[ia].clone()
    view_a[ia] = view_b[ib]
    view_b[ib] = from_a


def _wrapped(t, n):
    """Indices (int64 on the tensor's device), negative ones counted from the end."""
    return t % max(n, 1)


def _sample_arg(sample):
    return None if sample is None else as_index(sample, "sample")


def swap_(x, dim, a, b, *, sample=None, sample_dim=0, validate=True):
    """In place: for each k, exchange x.select(dim, a[k]) and x.select(dim, b[k]) (inside
    x.select(sample_dim, sample[k]) when `sample` is given). Returns x."""
    op = "swapkern.swap_"
    tensor_arg(x, "x", op)
    dim, sample_dim = as_int(dim, "dim", op), as_int(sample_dim, "sample_dim", op)
    a, b, sample = as_index(a, "a"), as_index(b, "b"), _sample_arg(sample)
    with mutating(op, [x]):
        plan = prepare_swap(x, dim, a, b, sample, sample_dim, validate)
        if plan.k:
            dim = plan.gx[0]
            n = x.shape[dim]
            a, b = _wrapped(plan.a, n), _wrapped(plan.b, n)
            if plan.sample is None:
                xv = bits(x).movedim(dim, 0)
                _exchange(xv, xv, (a,), (b,))
            else:
                sd = plan.sample_dim
                xv = bits(x).movedim((sd, dim), (0, 1))
                s = _wrapped(plan.sample, x.shape[sd])
                _exchange(xv, xv, (s, a), (s, b))
    return x


def swap_pixels_(x, p, q, *, sample=None, validate=True):
    """In place: exchange pixels p[k] and q[k] (flat indices into H*W) of an (N, C, H, W) batch x, all
    channels, in every image or only in image sample[k]. Returns x."""
    op = "swapkern.swap_pixels_"
    tensor_arg(x, "x", op)
    p, q, sample = as_index(p, "p"), as_index(q, "q"), _sample_arg(sample)
    with mutating(op, [x]):
        plan = prepare_pixels(x, p, q, sample, validate)
        if plan.k:
            n, _, h, w = x.shape
            p, q = _wrapped(plan.a, h * w), _wrapped(plan.b, h * w)
            xv = bits(x).movedim(1, 3)  # (N, H, W, C): a pixel is a row of channels
            s = slice(None) if plan.sample is None else _wrapped(plan.sample, n)
            _exchange(xv, xv, (s, p // w, p % w), (s, q // w, q % w))
    return x


def _coords(flat, shape):
    return torch.unravel_index(flat, shape) if len(shape) else ()


def swap_elements_(x, i, j, *, validate=True):
    """In place: exchange the elements of x at row-major flat indices i[k] and j[k]. Returns x."""
    op = "swapkern.swap_elements_"
    tensor_arg(x, "x", op)
    i, j = as_index(i, "i"), as_index(j, "j")
    with mutating(op, [x]):
        plan = prepare_elements(x, i, j, validate)
        if plan.k:
            i, j = _wrapped(plan.a, x.numel()), _wrapped(plan.b, x.numel())
            xb = bits(x)
            _exchange(xb, xb, _coords(i, x.shape), _coords(j, x.shape))
    return x


def swap_between_(x, y, i, j, *, dim_x=None, dim_y=None, validate=True):
    """In place: exchange x.select(dim_x, i[k]) with y.select(dim_y, j[k]) (equal slice shapes), or, with
    both dims None, the elements at flat indices i[k] of x and j[k] of y. Returns (x, y)."""
    op = "swapkern.swap_between_"
    tensor_arg(x, "x", op)
    tensor_arg(y, "y", op)
    dim_x = None if dim_x is None else as_int(dim_x, "dim_x", op)
    dim_y = None if dim_y is None else as_int(dim_y, "dim_y", op)
    i, j = as_index(i, "i"), as_index(j, "j")
    with mutating(op, [x] if x is y else [x, y]):
        plan = prepare_between(x, y, i, j, dim_x, dim_y, validate)
        if plan.k:
            xb, yb = bits(x), bits(y) if y is not x else None
            yb = xb if yb is None else yb
            if dim_x is None:
                i, j = _wrapped(plan.a, x.numel()), _wrapped(plan.b, y.numel())
                _exchange(xb, yb, _coords(i, x.shape), _coords(j, y.shape))
            else:
                dx, dy = plan.gx[0], plan.gy[0]
                i, j = _wrapped(plan.a, x.shape[dx]), _wrapped(plan.b, y.shape[dy])
                _exchange(xb.movedim(dx, 0), yb.movedim(dy, 0), (i,), (j,))
    return x, y


swap_channels_, swap_rows_, swap_cols_ = named_wrappers(swap_)


def apply_feature_plan_(x, plan):
    """In place: applies a FeaturePlan (swapkern.data) to x image by image and pair by pair, from its compact
    form, with the reference ops above. The specification the FeatureSwap kernels are held to. Returns x."""
    b, c, h, w = x.shape
    which, what, extent = plan.protocol
    if not int(plan.active[0]):
        return x
    images = [int(plan.image[0])] if which == "1" else range(b)
    for n in images:
        g = n if which == "E" else 0
        for u, v in plan.pairs[g].tolist():
            if extent == "A":
                swap = swap_channels_ if what == "S" else swap_pixels_
                swap(x, [u], [v], sample=[n])
            else:
                fixed = int(plan.at[g])
                if what == "S":  # channels u, v at pixel `fixed`
                    i, j = (n * c + u) * h * w + fixed, (n * c + v) * h * w + fixed
                else:  # pixels u, v in channel `fixed`
                    i, j = (n * c + fixed) * h * w + u, (n * c + fixed) * h * w + v
                swap_elements_(x, [i], [j])
    return x


def load_batch_(out, data, index, scale, shift, *, plan=None, flip=None, nhwc=True, validate=True):
    """The fused loader's specification. In place on out (B, C, H, W): gather images data[index] (uint8, stored
    (N, H, W, C) if nhwc else (N, C, H, W)), normalise v * scale[c] + shift[c] in float32, apply the FeaturePlan,
    flip horizontally the images whose flip flag is set, then round once to out's dtype. Returns out."""
    op = "swapkern.load_batch_"
    for t, name in ((out, "out"), (data, "data"), (scale, "scale"), (shift, "shift")):
        tensor_arg(t, name, op)
    index = as_index(index, "index")
    flip = None if flip is None else as_index(flip, "flip")
    with mutating(op, [out]):
        index, scale, shift, *_, flip = prepare_load(out, data, index, scale, shift, plan, flip, nhwc, validate)
        images = data[index]
        if nhwc:
            images = images.permute(0, 3, 1, 2)
        v = images.float() * scale.view(1, -1, 1, 1) + shift.view(1, -1, 1, 1)
        if plan is not None:
            apply_feature_plan_(v, plan)
        if flip is not None:
            v = torch.where(flip.view(-1, 1, 1, 1) != 0, v.flip(3), v)
        out.copy_(v)
    return out


# -- feature swaps: the plan draw, and draw + apply in one call ------------------------------------------------------
def draw_feature_plan_(buf, indices, shape, protocol, s, seed, step, threshold, ws, counter=None):
    """Draws a FeaturePlan for a (B, C, H, W) batch into buf (swapkern._common.plan_layout) with in-place torch ops:
    the specification of csrc/draw.h. indices: [B] int64 dataset indices on buf's device, or None (batch
    positions). No host sync (except reading `counter`, which, when given, holds the step and is incremented);
    allocation-free after the first draw of a shape (ws: a draws.Workspace)."""
    if counter is not None:
        step = int(counter.item())
        counter.add_(1)
    b, c, h, w = shape
    lay = plan_layout(protocol, b, s)
    if b == 0:  # an empty batch: an inactive plan
        buf.zero_()
        return buf
    which, what, extent = protocol
    g, k = lay["g"], lay["k"]
    tmp = ws.get("tmp", b)
    keys = draws.image_keys_(ws.get("keys", b), indices, tmp)
    bkey = buf[2:3]
    if indices is not None:
        draws.batch_key_(bkey, keys)
    else:  # batch-level draws depend on (seed, step) only
        bkey.fill_(draws.BATCH)
    base = lambda stream: draws.base_key(seed, step, stream)  # noqa: E731
    active = draws.words_(buf[0:1], bkey, base("coin"), 0, ws.get("tmp1", 1)).lt_(threshold)
    image = buf[1:2].zero_()
    if which == "1":  # the image with the largest score: independent of batch order
        scores = draws.words_(ws.get("scores", b), keys, base("image"), 0, tmp)
        torch.argmax(scores, dim=0, keepdim=True, out=image)
    gkeys = keys if which == "E" else bkey
    n = c if what == "S" else h * w
    pairs = buf[lay["pairs"] : lay["a"]].view(g, s, 2)
    draws.distinct_(pairs.view(g, 2 * s), gkeys, n, base("pairs"), ws, f"pairs{g}")
    first = pairs[..., 0]
    d = ws.get("delta", g, s)
    d.copy_(pairs[..., 1]).sub_(first).mul_(active)  # identity pairs when the coin says no
    pairs[..., 1].copy_(first).add_(d)
    at = buf[lay["at"] : lay["at"] + g].zero_()
    if extent == "1":
        draws.below_(draws.words_(at, gkeys, base("extent"), 0, ws.get("tmpg", g)), h * w if what == "S" else c)
    a, bb = buf[lay["a"] : lay["b"]], buf[lay["b"] : lay["sample"]]
    if extent == "A":
        a.view(g, s).copy_(pairs[..., 0])
        bb.view(g, s).copy_(pairs[..., 1])
        sample = buf[lay["sample"] : lay["total"]].view(g, s)
        if which == "E":
            sample.copy_(torch.arange(b, out=ws.get("arange", b)).view(b, 1))
        elif which == "1":
            sample.copy_(image.view(1, 1))
        else:
            sample.zero_()
        return buf
    # Extent 1: flat row-major indices n*C*H*W + channel*H*W + pixel, for each image a group covers.
    images = k // s
    if which == "1":
        offs = ws.get("ebase", 1, 1).copy_(image.view(1, 1))
    else:
        offs = ws.get("ebase", images, 1).copy_(torch.arange(images, out=ws.get("arange", images)).view(images, 1))
    offs.mul_(c * h * w)
    fixed = ws.get("fixed", images, 1).copy_(at.view(g, 1).expand(images, 1))
    for out, col in ((a.view(images, s), 0), (bb.view(images, s), 1)):
        moving = pairs[..., col].expand(images, s)
        if what == "S":  # channels move at a fixed pixel
            out.copy_(moving).mul_(h * w).add_(fixed)
        else:  # pixels move in a fixed channel
            out.copy_(fixed.expand(images, s)).mul_(h * w).add_(moving)
        out.add_(offs)
    return buf


def feature_swap_(x, buf, indices, protocol, swaps, seed, step, threshold, ws, counter=None):
    """Draws a plan into buf and applies it to the batch x in place (one protocol step) with the ops above. Returns
    x."""
    draw_feature_plan_(buf, indices, tuple(x.shape), protocol, swaps, seed, step, threshold, ws, counter)
    plan = plan_views(protocol, tuple(x.shape), swaps, buf)
    return plan.apply_with_(x, swap_elements_, swap_channels_, swap_pixels_)


# -- the multi-tensor engine (swapkern.multi): tensor by tensor ------------------------------------------------------
def draw_weights_(engine, seed, step):
    """Draws every group's pairs of a step into engine.index (a, b, keep = 1, pick): the specification of
    csrc/weights.h, run on the host and copied to the device."""
    host = torch.zeros(engine.index.numel(), dtype=torch.int64)
    for off, g in zip(engine.offsets, engine.groups, strict=True):
        a, b, pick = draw_group(g, seed, step)
        k = g.k
        host[off : off + k] = torch.tensor(a)
        host[off + k : off + 2 * k] = torch.tensor(b)
        host[off + 2 * k : off + 3 * k] = 1
        host[off + 3 * k] = pick
    engine.index.copy_(host)


def active_jobs(engine):
    """The bound jobs that move this step: all, except the candidates an INTER group did not pick."""
    picks = {gi: int(engine.pick_slot(gi)) for gi, g in enumerate(engine.groups) if g.kind == INTER}
    return [j for j in engine.jobs if j.group not in picks or picks[j.group] == j.job]


def multi_pack(engine):
    return fingerprint(engine.watched)


def multi_step_(engine, packed, seed, step, mode):
    if fingerprint(engine.watched) != packed:
        return False
    if mode & DRAW:
        draw_weights_(engine, seed, step)
    if mode & APPLY:
        with torch.no_grad():
            for job in active_jobs(engine):
                a, b, keep = engine.slices(job.group)
                moving = keep != 0
                a, b = a[moving], b[moving]
                if job.x is job.y and job.dx is None:
                    swap_elements_(job.x, a, b, validate=False)
                elif job.x is job.y:
                    swap_(job.x, job.dx, a, b, validate=False)
                else:
                    swap_between_(job.x, job.y, a, b, dim_x=job.dx, dim_y=job.dy, validate=False)
    return True
