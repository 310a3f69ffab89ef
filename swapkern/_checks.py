"""The Python twin of csrc/checks.cpp, csrc/pairs.cpp and csrc/plan.cpp (csrc/loader.cpp's twin:
swapkern/_loadchecks.py): the one validator of the Triton and torch backends (and of the native ones where the
dispatcher refuses a tensor before the kernel: swapkern/_native.py).

Every function here mirrors the C++ function of the same name (check_tensors, check_swappable, prepare_index,
check_range, check_pairs, plan_geometry, fill_side, coalesce_slice, make_plan, wrap_dim; prepare_load), with the
same rules in the same order and the same limits. Every refusal is raised by swapkern._codes.refuse: the exception
type of its rule, with the rule's key as .rule, as the compiled ops' errors carry it (csrc/codes.h);
tests/test_fuzz.py and tests/test_rules.py hold both to the same rule for every input, before any element moves.

The order of checks, one for every backend (the first failing check decides the exception; nothing moves before):
  1. arguments, in Python (swapkern._index, ops.py): tensors are tensors, validate is a bool, dims are ints,
     indices are ints / lists / NumPy integer arrays / tensors (TypeError; IndexError: an int beyond int64);
  2. the autograd rules (check_mutable, RuntimeError): a tensor that requires grad in grad mode, an inference tensor
     outside inference mode;
  3. the op's own shape rules: dims in range, sample_dim != dim, a 4-d batch, both dims or neither (ValueError);
  4. the tensors (check_tensors): a swappable dtype (TypeError); one dtype, one device, strided, not meta,
     provably free of self-overlap, x and y apart (ValueError);
  5. each index a, b, sample in turn (prepare_index): integers (TypeError), strided, at most 1-d, on the CPU or
     x's device (ValueError); then one length for all (ValueError);
  6. the geometry (plan_geometry): slice shapes equal and coalescing (ValueError), an index into a dim of size 0
     (IndexError);
  7. validate=True (check_pairs): ranges of a, b, sample (IndexError), the positions' count, then pair by pair
     a[k] != b[k] (one tensor) and no index twice in a scope (ValueError): the first failing pair's.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from ._codes import refuse

MAX_DIMS = 8  # csrc/swapkern.h kMaxDims: geometry after coalescing
MAX_POSITIONS = 2**47  # csrc/checks.h kMaxPositions: samples x positions check_pairs can tell apart
# The dtypes an index may have (csrc/tensor.h is_integral); bool too where the argument is a flag.
INDEX_DTYPES = frozenset(
    (torch.uint8, torch.int8, torch.int16, torch.int32, torch.int64, torch.uint16, torch.uint32, torch.uint64)
)
FLAG_DTYPES = INDEX_DTYPES | {torch.bool}
# csrc/plan.cpp check_tensors: torch::headeronly::isQIntType
QUANTIZED_DTYPES = frozenset((torch.qint8, torch.quint8, torch.qint32, torch.quint4x2, torch.quint2x4))


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
    """Byte ranges of two tensors' elements intersect (false when either is empty, not strided, on the meta device,
    or when they are on different devices)."""
    if a.numel() == 0 or b.numel() == 0 or a.layout != torch.strided or b.layout != torch.strided:
        return False
    if a.device != b.device or a.device.type == "meta":
        return False
    (a0, a1), (b0, b1) = byte_range(a), byte_range(b)
    return a0 < b1 and b0 < a1


def check_swappable(op: str, t: torch.Tensor, name: str) -> None:
    if t.layout != torch.strided:
        raise refuse("tensor.layout", f"{op}: {name} must be a strided tensor, got layout {t.layout}")
    if t.device.type == "meta":
        raise refuse("tensor.meta", f"{op}: {name} is on the meta device, which holds no data to swap")
    if not provably_disjoint(t.shape, t.stride()):
        raise refuse(
            "tensor.overlap",
            f"{op}: {name} (shape {tuple(t.shape)}, strides {t.stride()}) has elements that overlap in memory, or "
            "cannot be shown not to (expand, unfold, as_strided); swap a .contiguous() copy",
        )


def check_mutable(op: str, tensors) -> None:
    """What a mutating op refuses before anything moves, in this order (every backend; the native one calls it from
    swapkern/_native.py): with grad mode on, a tensor that requires grad; outside inference mode, an inference
    tensor (inside it, updating one is allowed)."""
    if torch.is_grad_enabled():
        for t in tensors:
            if t.requires_grad:
                raise refuse(
                    "mutable.grad",
                    f"{op}: swaps are not differentiable; call it under torch.no_grad() on a tensor that requires grad",
                )
    if not torch.is_inference_mode_enabled():
        for t in tensors:
            if t.is_inference():
                raise refuse(
                    "mutable.inference",
                    f"{op}: Inplace update to inference tensor outside InferenceMode is not allowed; swap a clone, "
                    "or call it inside torch.inference_mode()",
                )


def bump_versions(tensors) -> None:
    """Once per mutated tensor, after the call, as PyTorch's own in-place ops do (inference tensors have no version
    counter and are left alone)."""
    torch._C._increment_version([t for t in tensors if not t.is_inference()])


# -- indices --------------------------------------------------------------------------------------------------------
def prepare_index(op, t, name, x, y, kind="vector"):
    """The one index converter (csrc prepare_index): dtype (index.dtype), layout (index.layout), shape (index.shape)
    and device (index.device), in that order; then the index as contiguous int64 on x's device, a copy when it
    shares memory with x or y (indices are read once, before anything moves). kind: "vector", integers of at most
    one dim; "any", integers of any shape; "flags", integers or bools of any shape. uint64 keeps its bits: values
    >= 2**63 read as negative and check_range refuses them. Returns (tensor, from_unsigned64)."""
    if t.dtype not in (FLAG_DTYPES if kind == "flags" else INDEX_DTYPES):
        raise refuse("index.dtype", f"{op}: {name} must hold integers, got a tensor of dtype {t.dtype}")
    if t.layout != torch.strided:
        raise refuse("index.layout", f"{op}: {name} must be a strided tensor, got layout {t.layout}")
    if kind == "vector" and t.dim() > 1:
        raise refuse("index.shape", f"{op}: {name} must have shape [K], got {tuple(t.shape)}")
    if t.device.type != "cpu" and t.device != x.device:
        raise refuse(
            "index.device",
            f"{op}: {name} is on {t.device} but the tensor is on {x.device}; indices must be on the CPU or on the "
            "tensor's device",
        )
    unsigned = t.dtype == torch.uint64
    v = t.reshape(-1) if kind == "vector" else t  # a 0-d index serves as [1]
    v = v.view(torch.int64) if unsigned else v
    v = v.to(device=x.device, dtype=torch.int64).contiguous()
    if memory_intersects(v, x) or (y is not x and memory_intersects(v, y)):
        v = v.clone()
    return v, unsigned


def check_range(op, v, n, unsigned, name, what, wrap=True):
    """The one range check (index.range): every value in [-n, n) (wrap: negative indices count from the end) or in
    [0, n); unsigned: v holds uint64 bits, so a negative value is one of 2**63 or more (refused, reported as such).
    The first value out of range is the one reported."""
    lo = -n if wrap and not unsigned else 0
    bad = (v < lo) | (v >= n)
    if bool(bad.any()):
        value = int(v.reshape(-1)[bad.reshape(-1)][0])
        value = value + 2**64 if unsigned and value < 0 else value
        raise refuse("index.range", f"{op}: {name} holds index {value}, out of range for {what} of size {n}")


def check_pairs(op, a, b, sample, nx, ny, ns, same, unsigned, what):
    """Range of a, b, sample (index.range), the positions' count (size.keyspace), then pair by pair, k = 0, 1, ...
    (csrc check_pairs' order): a[k] != b[k] when x is y (pair.self), then a[k], then b[k] not seen before in its
    scope (pair.repeat): the first failing pair's, and within a pair in that order."""
    a, b = a.cpu(), b.cpu()
    check_range(op, a, nx, unsigned[0], "a", what)
    check_range(op, b, ny, unsigned[1], "b", what)
    s = sample.cpu() if sample is not None else torch.zeros_like(a)
    if sample is not None:
        check_range(op, s, ns, unsigned[2], "sample", "the sample dim")
    n = max(nx, ny)
    if n and ns > (MAX_POSITIONS - 1) // n:
        raise refuse("size.keyspace", f"{op}: too many samples times indices to check (2^47 or more positions)")
    n = max(n, 1)
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
    # pair k's self check comes before its two insertions (keys 2k, 2k + 1)
    if first_self < k_count and first_self <= first_repeat // 2:
        k = first_self
        raise refuse("pair.self", f"{op}: pair {k} exchanges index {int(a[k])} with itself; a[k] must differ from b[k]")
    if first_repeat < 2 * k_count:
        k, side = divmod(first_repeat, 2)
        i = int((a if side == 0 else b)[k])
        where = ("one sample" if sample is not None else "the tensor") if same else ("x" if side == 0 else "y")
        scope = f" (sample {int(s[k])})" if sample is not None else ""
        raise refuse(
            "pair.repeat",
            f"{op}: index {i} appears more than once in {where}{scope}; the exchanges of one call must be disjoint",
        )


# -- the plan -------------------------------------------------------------------------------------------------------
def wrap_dim(op, dim, ndim, name="dim"):
    if not -ndim <= dim < ndim:
        raise refuse("op.dim", f"{op}: {name}={dim} is out of range for a tensor with {ndim} dims")
    return dim % ndim


def fill_side(op, t, begin, end):
    """Index group [begin, end) of t flattened row-major: (numel, coalesced sizes, strides)."""
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
        raise refuse(
            "geometry.dims",
            f"{op}: the indexed dims of a tensor of shape {tuple(t.shape)} do not coalesce into {MAX_DIMS} dims or "
            "fewer; make it contiguous first",
        )
    return numel, sizes, strides


def coalesce_slice(dims):
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


def check_tensors(op, x, y) -> None:
    """A swappable dtype (tensor.dtype: the kernels move elements of 1, 2, 4, 8 or 16 bytes, csrc/elem.h; a quantized
    tensor's bits mean nothing without its scales), one dtype and one device, each tensor swappable, x and y apart."""
    elem = x.element_size()
    if elem > 16 or elem & (elem - 1) or x.dtype in QUANTIZED_DTYPES:
        raise refuse("tensor.dtype", f"{op}: unsupported dtype {x.dtype}")
    if x.dtype != y.dtype:
        raise refuse("tensors.dtype", f"{op}: x has dtype {x.dtype} but y has {y.dtype}")
    if x.device != y.device:
        raise refuse("tensors.device", f"{op}: x is on {x.device} but y is on {y.device}")
    check_swappable(op, x, "x")
    if y is not x:
        check_swappable(op, y, "y")
        if memory_intersects(x, y):
            raise refuse(
                "tensors.overlap",
                f"{op}: x and y overlap in memory; to swap within one tensor use swap_ or swap_elements_",
            )


def plan_geometry(op, x, y, gx, gy, has_sample, sample_dim, k):
    """The slice (every dim outside the index groups and the sample dim: equal shapes, coalescing), each side's
    index group, and no pairs into an empty dim. Returns (group_x, group_y, slice)."""
    same = x is y
    skip = {sample_dim} if has_sample else set()
    keep_x = [d for d in range(x.dim()) if not gx[0] <= d < gx[1] and d not in skip]
    keep_y = [d for d in range(y.dim()) if not gy[0] <= d < gy[1] and not (same and d in skip)]
    sx, sy = [x.shape[d] for d in keep_x], [y.shape[d] for d in keep_y]
    if sx != sy:
        raise refuse(
            "geometry.slice", f"{op}: the slices of x have shape {tuple(sx)} but those of y have shape {tuple(sy)}"
        )
    sl = coalesce_slice([(x.shape[dx], x.stride(dx), y.stride(dy)) for dx, dy in zip(keep_x, keep_y, strict=True)])
    if len(sl) > MAX_DIMS:
        raise refuse(
            "geometry.dims",
            f"{op}: slices of a tensor of shape {tuple(x.shape)} do not coalesce into {MAX_DIMS} dims or fewer; "
            "make it contiguous first",
        )
    group_x, group_y = fill_side(op, x, *gx), fill_side(op, y, *gy)
    if k and (group_x[0] == 0 or group_y[0] == 0):
        raise refuse("geometry.empty", f"{op}: cannot index into a dim of size 0")
    if has_sample and k and x.shape[sample_dim] == 0:
        raise refuse("geometry.empty", f"{op}: cannot index into a sample dim of size 0")
    return group_x, group_y, sl


def make_plan(op, x, y, gx, gy, a, b, sample, sample_dim, validate) -> Plan:
    """Validates every argument (in csrc make_plan's order) and builds the plan."""
    check_tensors(op, x, y)
    a, ua = prepare_index(op, a, "a", x, y)
    b, ub = prepare_index(op, b, "b", x, y)
    us = False
    if sample is not None:
        sample, us = prepare_index(op, sample, "sample", x, y)
    k = a.numel()
    if b.numel() != k:
        raise refuse("index.length", f"{op}: a has {k} indices but b has {b.numel()}")
    if sample is not None and sample.numel() != k:
        raise refuse("index.length", f"{op}: a has {k} indices but sample has {sample.numel()}")
    group_x, group_y, sl = plan_geometry(op, x, y, gx, gy, sample is not None, sample_dim, k)
    if validate and k:
        what = "dim" if gx[1] - gx[0] == 1 else ("the tensor" if gx == (0, x.dim()) else "dims")
        ns = x.shape[sample_dim] if sample is not None else 1
        check_pairs(op, a, b, sample, group_x[0], group_y[0], ns, x is y, (ua, ub, us), what)
    return Plan(x, y, a, b, sample, sample_dim if sample is not None else None, group_x, group_y, sl, gx, gy)


# -- each op's argument handling, as csrc/ops.h -----------------------------------------------------------------------
def prepare_swap(x, dim, a, b, sample, sample_dim, validate) -> Plan:
    op = "swapkern.swap_"
    dim = wrap_dim(op, dim, x.dim())
    if sample is not None:
        sample_dim = wrap_dim(op, sample_dim, x.dim(), "sample_dim")
        if sample_dim == dim:
            raise refuse("op.sample_dim", f"{op}: sample_dim and dim are both {dim}")
    return make_plan(op, x, x, (dim, dim + 1), (dim, dim + 1), a, b, sample, sample_dim, validate)


def prepare_pixels(x, p, q, sample, validate) -> Plan:
    op = "swapkern.swap_pixels_"
    if x.dim() != 4:
        raise refuse("op.shape", f"{op}: expected an (N, C, H, W) batch, got shape {tuple(x.shape)}")
    return make_plan(op, x, x, (2, 4), (2, 4), p, q, sample, 0, validate)


def prepare_elements(x, i, j, validate) -> Plan:
    return make_plan("swapkern.swap_elements_", x, x, (0, x.dim()), (0, x.dim()), i, j, None, 0, validate)


def prepare_between(x, y, i, j, dim_x, dim_y, validate) -> Plan:
    op = "swapkern.swap_between_"
    if (dim_x is None) != (dim_y is None):
        raise refuse("op.dims", f"{op}: give both dim_x and dim_y (slices) or neither (elements)")
    gx, gy = (0, x.dim()), (0, y.dim())
    if dim_x is not None:
        dx, dy = wrap_dim(op, dim_x, x.dim(), "dim_x"), wrap_dim(op, dim_y, y.dim(), "dim_y")
        if x is y and dx != dy:
            raise refuse("op.dims", f"{op}: x is y, so dim_x and dim_y must be equal")
        gx, gy = (dx, dx + 1), (dy, dy + 1)
    return make_plan(op, x, y, gx, gy, i, j, None, 0, validate)
