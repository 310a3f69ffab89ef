"""The Python twin of csrc/checks.cpp and csrc/plan.cpp: the one validator of the Triton and torch backends.

The compiled ops check in C++ only; tests/test_errors.py and tests/test_fuzz.py hold both to the same exceptions,
raised in the same order, before any element moves. Every function mirrors the C++ function of the same name.

The order of checks, one for every backend (the first failing check decides the exception; nothing moves before):
  1. arguments, in Python (swapkern._index, ops.py): tensors are tensors, validate is a bool, dims are ints,
     indices are ints / lists / NumPy integer arrays / tensors (TypeError; IndexError: an int beyond int64);
  2. the autograd rules (check_mutable, RuntimeError): a tensor that requires grad in grad mode, an inference tensor
     outside inference mode;
  3. the op's own shape rules: dims in range, sample_dim != dim, a 4-d batch, both dims or neither (ValueError);
  4. the tensors (make_plan / csrc check_tensors): a swappable dtype (TypeError); one dtype, one device, strided,
     not meta, provably free of self-overlap, x and y apart (ValueError);
  5. each index a, b, sample in turn: integers (TypeError), at most 1-d, on the CPU or x's device (ValueError);
     then one length for all (ValueError);
  6. the geometry: slice shapes equal and coalescing (ValueError), an index into a dim of size 0 (IndexError);
  7. validate=True: ranges of a, b, sample (IndexError), the positions' count, then pair by pair a[k] != b[k] (one
     tensor) and no index twice in a scope (ValueError): the first failing pair's.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

MAX_DIMS = 8  # csrc/swapkern.h kMaxDims: geometry after coalescing
INT64_MAX = 2**63 - 1


# -- tensors --------------------------------------------------------------------------------------------------------
def provably_disjoint(sizes, strides) -> bool:
    """No two positions of the layout share an element: with dims of size > 1 ordered by stride, each stride
    exceeds the span of all smaller-stride dims (sufficient, not necessary; the rest is refused)."""
    if any(s == 0 for s in sizes):
        return True
    span = 0
    for stride, size in sorted((st, s) for s, st in zip(sizes, strides, strict=True) if s > 1):
        if stride <= span:
            return False
        span += (size - 1) * stride
    return True


def byte_range(t) -> tuple[int, int]:
    """[lo, hi): the bytes t's elements can touch (empty for no elements)."""
    if t.numel() == 0:
        return (0, 0)
    span = 1 + sum((s - 1) * st for s, st in zip(t.shape, t.stride(), strict=True))
    return t.data_ptr(), t.data_ptr() + span * t.element_size()


def memory_intersects(a: torch.Tensor, b: torch.Tensor) -> bool:
    if a.numel() == 0 or b.numel() == 0 or a.device != b.device or a.device.type == "meta":
        return False
    (a0, a1), (b0, b1) = byte_range(a), byte_range(b)
    return a0 < b1 and b0 < a1


def check_swappable(op: str, t: torch.Tensor, name: str) -> None:
    if t.layout != torch.strided:
        raise ValueError(f"{op}: {name} must be a strided tensor, got layout {t.layout}")
    if t.device.type == "meta":
        raise ValueError(f"{op}: {name} is on the meta device, which holds no data to swap")
    if not provably_disjoint(t.shape, t.stride()):
        raise ValueError(
            f"{op}: {name} (shape {tuple(t.shape)}, strides {t.stride()}) has elements that overlap in memory, or "
            "cannot be shown not to (expand, unfold, as_strided); swap a .contiguous() copy"
        )


def check_mutable(op: str, tensors) -> None:
    """What a mutating op refuses before anything moves, in this order (every backend; the native one calls it from
    swapkern/_native.py): with grad mode on, a tensor that requires grad; outside inference mode, an inference
    tensor (inside it, updating one is allowed)."""
    if torch.is_grad_enabled():
        for t in tensors:
            if t.requires_grad:
                raise RuntimeError(
                    f"{op}: swaps are not differentiable; call it under torch.no_grad() on a tensor that requires grad"
                )
    if not torch.is_inference_mode_enabled():
        for t in tensors:
            if t.is_inference():
                raise RuntimeError(
                    f"{op}: Inplace update to inference tensor outside InferenceMode is not allowed; swap a clone, "
                    "or call it inside torch.inference_mode()"
                )


def bump_versions(tensors) -> None:
    """Once per mutated tensor, after the call, as PyTorch's own in-place ops do (inference tensors have no version
    counter and are left alone)."""
    torch._C._increment_version([t for t in tensors if not t.is_inference()])


# -- indices --------------------------------------------------------------------------------------------------------
def prepare_index(op, t, name, x, y):
    """An index tensor as contiguous int64 on x's device, a copy when it shares memory with x or y (indices are
    read once, before anything moves). uint64 keeps its bits: values >= 2**63 read as negative and fail the range
    check. Returns (tensor, from_unsigned64)."""
    if t.dtype == torch.bool or t.is_floating_point() or t.is_complex():
        raise TypeError(f"{op}: {name} must hold integers, got a tensor of dtype {t.dtype}")
    if t.dim() > 1:
        raise ValueError(f"{op}: {name} must have shape [K], got {tuple(t.shape)}")
    if t.device.type != "cpu" and t.device != x.device:
        raise ValueError(
            f"{op}: {name} is on {t.device} but the tensor is on {x.device}; indices must be on the CPU or on the "
            "tensor's device"
        )
    unsigned = t.dtype == torch.uint64
    v = t.reshape(-1)
    v = v.view(torch.int64) if unsigned else v
    v = v.to(device=x.device, dtype=torch.int64).contiguous()
    if memory_intersects(v, x) or (y is not x and memory_intersects(v, y)):
        v = v.clone()
    return v, unsigned


def check_range(op, v, n, unsigned, name, what):
    bad = (v < -n) | (v >= n)
    if bool(bad.any()):
        value = int(v[bad][0])
        value = value + 2**64 if unsigned and value < 0 else value
        raise IndexError(f"{op}: {name} index {value} is out of range for {what} of size {n}")


def check_pairs(op, a, b, sample, nx, ny, ns, same, unsigned, what):
    """Range of a, b, sample (IndexError), the positions' count, then pair by pair (csrc check_pairs' order): a[k]
    != b[k] (x is y), then a[k] and b[k] not seen before in their scope (ValueError): the first failing pair's."""
    a, b = a.cpu(), b.cpu()
    check_range(op, a, nx, unsigned[0], "a", what)
    check_range(op, b, ny, unsigned[1], "b", what)
    s = sample.cpu() if sample is not None else torch.zeros_like(a)
    if sample is not None:
        check_range(op, s, ns, unsigned[2], "sample", "the sample dim")
    n = max(nx, ny, 1)
    if ns > INT64_MAX // 4 // n or ns * n * 2 >= 2**48 - 1:
        raise ValueError(f"{op}: too many samples times indices to check (2^47 or more positions)")
    a, b, s = a % max(nx, 1), b % max(ny, 1), s % max(ns, 1)
    k_count = a.numel()
    # keys in csrc's insertion order: pair 0 side 0, pair 0 side 1, pair 1 side 0, ...
    keys = torch.stack([(s * n + a) * 2, (s * n + b) * 2 + (0 if same else 1)], 1).reshape(-1)
    order = torch.sort(keys, stable=True).indices
    sorted_keys = keys[order]
    repeat = torch.zeros_like(keys, dtype=torch.bool)
    repeat[order[1:]] = sorted_keys[1:] == sorted_keys[:-1]  # not the first occurrence of its key
    first_repeat = int(repeat.nonzero()[0]) if bool(repeat.any()) else 2 * k_count
    first_self = k_count
    if same:
        self_pair = a == b
        if bool(self_pair.any()):
            first_self = int(self_pair.nonzero()[0])
    if first_self < k_count and first_self <= first_repeat // 2:
        k = first_self
        raise ValueError(f"{op}: pair {k} exchanges index {int(a[k])} with itself; a[k] must differ from b[k]")
    if first_repeat < 2 * k_count:
        k, side = divmod(first_repeat, 2)
        i = int((a if side == 0 else b)[k])
        where = ("one sample" if sample is not None else "the tensor") if same else ("x" if side == 0 else "y")
        scope = f" (sample {int(s[k])})" if sample is not None else ""
        raise ValueError(
            f"{op}: index {i} appears more than once in {where}{scope}; the exchanges of one call must be disjoint"
        )


# -- the plan -------------------------------------------------------------------------------------------------------
def wrap_dim(op, dim, ndim, name="dim"):
    if not -ndim <= dim < ndim:
        raise ValueError(f"{op}: {name}={dim} is out of range for a tensor with {ndim} dims")
    return dim % ndim


def _group(op, t, begin, end):
    """Index group [begin, end) of t flattened row-major: (numel, coalesced sizes, strides); csrc fill_side."""
    numel, sizes, strides = 1, [], []
    for d in range(begin, end):
        size, stride = t.shape[d], t.stride(d)
        numel *= size
        if size == 1:
            continue
        if sizes and strides[-1] == stride * size:
            sizes[-1] *= size
            strides[-1] = stride
        else:
            sizes.append(size)
            strides.append(stride)
    if len(sizes) > MAX_DIMS:
        raise ValueError(
            f"{op}: the indexed dims of a tensor of shape {tuple(t.shape)} do not coalesce into {MAX_DIMS} dims or "
            "fewer; make it contiguous first"
        )
    return numel, sizes, strides


def _coalesce(dims):
    """[(size, stride_x, stride_y)] without size-1 dims, ordered by x's strides, merged where contiguous in both."""
    out = []
    for size, sx, sy in sorted((d for d in dims if d[0] != 1), key=lambda d: -d[1]):
        if out and out[-1][1] == sx * size and out[-1][2] == sy * size:
            out[-1] = (out[-1][0] * size, sx, sy)
        else:
            out.append((size, sx, sy))
    return out


@dataclass
class Plan:
    """What csrc/plan.cpp's make_plan builds: indices (int64 on x's device, unwrapped), the geometry of both sides
    and of the slice (coalesced), and the sample dim."""

    x: torch.Tensor
    y: torch.Tensor
    a: torch.Tensor
    b: torch.Tensor
    sample: torch.Tensor | None
    sample_dim: int | None
    group_x: tuple  # (numel, sizes, strides)
    group_y: tuple
    slice: list  # [(size, stride_x, stride_y)]
    gx: tuple
    gy: tuple

    @property
    def k(self):
        return self.a.numel()


def make_plan(op, x, y, gx, gy, a, b, sample, sample_dim, validate) -> Plan:
    """Validates every argument (in csrc make_plan's order) and builds the plan."""
    same = x is y
    if x.element_size() > 16 or x.is_quantized:
        raise TypeError(f"{op}: unsupported dtype {x.dtype}")
    if x.dtype != y.dtype:
        raise ValueError(f"{op}: x has dtype {x.dtype} but y has {y.dtype}")
    if x.device != y.device:
        raise ValueError(f"{op}: x is on {x.device} but y is on {y.device}")
    check_swappable(op, x, "x")
    if not same:
        check_swappable(op, y, "y")
        if memory_intersects(x, y):
            raise ValueError(f"{op}: x and y overlap in memory; to swap within one tensor use swap_ or swap_elements_")
    a, ua = prepare_index(op, a, "a", x, y)
    b, ub = prepare_index(op, b, "b", x, y)
    us = False
    if sample is not None:
        sample, us = prepare_index(op, sample, "sample", x, y)
    k = a.numel()
    if b.numel() != k:
        raise ValueError(f"{op}: a has {k} indices but b has {b.numel()}")
    if sample is not None and sample.numel() != k:
        raise ValueError(f"{op}: a has {k} indices but sample has {sample.numel()}")
    skip = {sample_dim} if sample is not None else set()
    keep_x = [d for d in range(x.dim()) if not gx[0] <= d < gx[1] and d not in skip]
    keep_y = [d for d in range(y.dim()) if not gy[0] <= d < gy[1] and not (same and d in skip)]
    sx, sy = [x.shape[d] for d in keep_x], [y.shape[d] for d in keep_y]
    if sx != sy:
        raise ValueError(f"{op}: the slices of x have shape {tuple(sx)} but those of y have shape {tuple(sy)}")
    sl = _coalesce([(x.shape[dx], x.stride(dx), y.stride(dy)) for dx, dy in zip(keep_x, keep_y, strict=True)])
    if len(sl) > MAX_DIMS:
        raise ValueError(
            f"{op}: slices of a tensor of shape {tuple(x.shape)} do not coalesce into {MAX_DIMS} dims or fewer; "
            "make it contiguous first"
        )
    group_x, group_y = _group(op, x, *gx), _group(op, y, *gy)
    if k and (group_x[0] == 0 or group_y[0] == 0):
        raise IndexError(f"{op}: cannot index into a dim of size 0")
    if sample is not None and k and x.shape[sample_dim] == 0:
        raise IndexError(f"{op}: cannot index into a sample dim of size 0")
    if validate and k:
        what = "dim" if gx[1] - gx[0] == 1 else ("the tensor" if gx == (0, x.dim()) else "dims")
        ns = x.shape[sample_dim] if sample is not None else 1
        check_pairs(op, a, b, sample, group_x[0], group_y[0], ns, same, (ua, ub, us), what)
    return Plan(x, y, a, b, sample, sample_dim if sample is not None else None, group_x, group_y, sl, gx, gy)


# -- each op's argument handling, as csrc/ops_impl.h ------------------------------------------------------------------
def prepare_swap(x, dim, a, b, sample, sample_dim, validate) -> Plan:
    op = "swapkern.swap_"
    dim = wrap_dim(op, dim, x.dim())
    if sample is not None:
        sample_dim = wrap_dim(op, sample_dim, x.dim(), "sample_dim")
        if sample_dim == dim:
            raise ValueError(f"{op}: sample_dim and dim are both {dim}")
    return make_plan(op, x, x, (dim, dim + 1), (dim, dim + 1), a, b, sample, sample_dim, validate)


def prepare_pixels(x, p, q, sample, validate) -> Plan:
    op = "swapkern.swap_pixels_"
    if x.dim() != 4:
        raise ValueError(f"{op}: expected an (N, C, H, W) batch, got shape {tuple(x.shape)}")
    return make_plan(op, x, x, (2, 4), (2, 4), p, q, sample, 0, validate)


def prepare_elements(x, i, j, validate) -> Plan:
    return make_plan("swapkern.swap_elements_", x, x, (0, x.dim()), (0, x.dim()), i, j, None, 0, validate)


def prepare_between(x, y, i, j, dim_x, dim_y, validate) -> Plan:
    op = "swapkern.swap_between_"
    if (dim_x is None) != (dim_y is None):
        raise ValueError(f"{op}: give both dim_x and dim_y (slices) or neither (elements)")
    gx, gy = (0, x.dim()), (0, y.dim())
    if dim_x is not None:
        dx, dy = wrap_dim(op, dim_x, x.dim(), "dim_x"), wrap_dim(op, dim_y, y.dim(), "dim_y")
        if x is y and dx != dy:
            raise ValueError(f"{op}: x is y, so dim_x and dim_y must be equal")
        gx, gy = (dx, dx + 1), (dy, dy + 1)
    return make_plan(op, x, y, gx, gy, i, j, None, 0, validate)


# -- the fused loader, as csrc/loader.cpp -----------------------------------------------------------------------------
def _int64_on(op, t, out, name):
    if t.is_floating_point() or t.is_complex():
        raise TypeError(f"{op}: {name} must hold integers, got {t.dtype}")
    if t.device.type != "cpu" and t.device != out.device:
        raise ValueError(f"{op}: {name} is on {t.device} but out is on {out.device}")
    v = t.to(device=out.device, dtype=torch.int64).contiguous()
    return v.clone() if memory_intersects(v, out) else v


def _check_values(op, t, lo, hi, name):
    if t.numel():
        mn, mx = int(t.min()), int(t.max())
        if mn < lo or mx >= hi:
            raise IndexError(f"{op}: {name} holds values in [{mn}, {mx}], outside [{lo}, {hi})")


def check_plan_fits(op, plan, out):
    """A FeaturePlan applies to a batch of the shape it was drawn for (the kernels see only its tensors)."""
    if plan is not None and tuple(plan.shape) != tuple(out.shape):
        raise ValueError(f"{op}: the plan was drawn for {tuple(plan.shape)}, out is {tuple(out.shape)}")


def prepare_load(out, data, index, scale, shift, plan, flip, nhwc, validate):
    """-> (index, scale, shift, pairs, at, image, active, flip) on out's device, checked as make_load checks."""
    op = "swapkern.load_batch_"
    if out.dim() != 4:
        raise ValueError(f"{op}: out must be (B, C, H, W), got {tuple(out.shape)}")
    if out.dtype not in (torch.float32, torch.float16, torch.bfloat16):
        raise TypeError(f"{op}: out must be float32, float16 or bfloat16, got {out.dtype}")
    if data.dtype != torch.uint8:
        raise TypeError(f"{op}: data must be uint8, got {data.dtype}")
    if data.dim() != 4 or data.device != out.device:
        raise ValueError(
            f"{op}: data must be a 4-d uint8 tensor on out's device, got {tuple(data.shape)} on {data.device}"
        )
    check_swappable(op, out, "out")
    if memory_intersects(out, data):
        raise ValueError(f"{op}: out and data overlap in memory")
    check_plan_fits(op, plan, out)
    b, c, h, w = out.shape
    dc, dh, dw = (data.shape[3], data.shape[1], data.shape[2]) if nhwc else tuple(data.shape[1:])
    if (dc, dh, dw) != (c, h, w):
        raise ValueError(f"{op}: data images are (C, H, W) = {(dc, dh, dw)} but out is {(c, h, w)}")
    if index.dim() != 1 or index.numel() != b:
        raise ValueError(f"{op}: index must have shape [{b}]")
    for t in (scale, shift):
        if t.dim() != 1 or t.numel() != c or t.dtype != torch.float32:
            raise ValueError(f"{op}: scale and shift must be float32 of shape [{c}]")
    index = _int64_on(op, index, out, "index")
    scale, shift = (t.to(out.device).contiguous() for t in (scale, shift))
    scale, shift = (t.clone() if memory_intersects(t, out) else t for t in (scale, shift))
    pairs = at = image = active = None
    if plan is not None:
        which, what, extent = plan.protocol
        g = b if which == "E" else 1
        if plan.pairs.dim() != 3 or plan.pairs.shape[0] != g or plan.pairs.shape[2] != 2:
            raise ValueError(f"{op}: pairs must be ({g}, swaps, 2), got {tuple(plan.pairs.shape)}")
        if plan.at.numel() != g or plan.image.numel() != 1 or plan.active.numel() != 1:
            raise ValueError(f"{op}: at must have {g} entries, image and active one each")
        pairs, at, image, active = (
            _int64_on(op, t, out, name)
            for t, name in ((plan.pairs, "pairs"), (plan.at, "at"), (plan.image, "image"), (plan.active, "active"))
        )
    if flip is not None:
        if flip.numel() != b:
            raise ValueError(f"{op}: flip must have {b} entries")
        flip = _int64_on(op, flip, out, "flip")
    if validate:
        _check_values(op, index, 0, data.shape[0], "index")
        if plan is not None:
            _check_values(op, pairs, 0, c if plan.protocol[1] == "S" else h * w, "pairs")
            if plan.protocol[2] == "1":
                _check_values(op, at, 0, h * w if plan.protocol[1] == "S" else c, "at")
            _check_values(op, image, 0, max(b, 1), "image")
    return index, scale, shift, pairs, at, image, active, flip
