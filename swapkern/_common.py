"""What the backends and the layers above them share, below all of them (it imports torch and _checks only): the
bits view every swap moves through, the argument and autograd rules of a mutating op, a feature-swap plan's buffer
layout and views, and the weight-swap engine's step modes and the fingerprint a packed plan depends on."""

from __future__ import annotations

import contextlib
from dataclasses import dataclass

import torch

from ._checks import bump_versions, check_mutable
from ._codes import refuse

_INT = {1: torch.uint8, 2: torch.int16, 4: torch.int32, 8: torch.int64}


def tensor_arg(t, name, op):
    if not isinstance(t, torch.Tensor):
        raise refuse("arg.type", f"{op}: {name} must be a torch.Tensor, got {type(t).__name__}")
    return t


def bits(t):
    """An integer view of t's memory with the same shape and strides (16-byte elements: a trailing dim of two
    int64 words). Swaps move bits, never values, so every dtype is exchanged through this view."""
    if t.element_size() == 16:
        return torch.view_as_real(t).view(torch.int64)
    return t.view(_INT[t.element_size()])


@contextlib.contextmanager
def mutating(op, tensors):
    """The autograd rules of an in-place op (refuse what must not be mutated), then exactly one version bump per
    tensor, as the native backend's wrappers do (swapkern/_native.py)."""
    check_mutable(op, tensors)
    keep = [torch.autograd._unsafe_preserve_version_counter(t) for t in tensors if not t.is_inference()]
    with contextlib.ExitStack() as stack, torch.no_grad():
        for k in keep:
            stack.enter_context(k)
        yield
    bump_versions(tensors)


# The modes of a weight-swap engine step (swapkern.multi.Engine.step, every backend's multi_step_; csrc/weights.h
# takes the same bits): draw the step's pairs into the index buffer, apply the pairs in it, or both.
DRAW = 1
APPLY = 2
DRAW_AND_APPLY = DRAW | APPLY


def fingerprint(tensors) -> list:
    """What a packed weight-swap plan depends on, per tensor: storage address, dtype, shape, strides (the Python
    backends' twin of csrc/engine.cpp's check)."""
    return [(t.data_ptr(), t.dtype, tuple(t.shape), t.stride()) for t in tensors]


# -- feature-swap plans: the flat buffer a draw fills, and its views ---------------------------------------------------
def plan_layout(protocol: str, b: int, swaps: int) -> dict:
    """Offsets of a plan's flat int64 buffer: [active, image, batch key, at (G), pairs (G, swaps, 2), a (K),
    b (K), sample (K)] (csrc/draw.cpp uses the same)."""
    which, _, extent = protocol
    g = b if which == "E" else 1
    k = (1 if which == "1" else (b if which == "E" or extent == "1" else 1)) * swaps
    pairs = 3 + g
    a = pairs + 2 * swaps * g
    return {"g": g, "k": k, "at": 3, "pairs": pairs, "a": a, "b": a + k, "sample": a + 2 * k, "total": a + 3 * k}


@dataclass
class PlanViews:
    """One step's swaps for a batch of shape (B, C, H, W), as small index tensors on the batch's device.

    Compact form (what the fused loader reads): `pairs` (G, swaps, 2) positions exchanged in the swapped dim
    (channels for S, flat pixels for P), G = B for `E` protocols and 1 otherwise; `at` (G,) the fixed pixel
    (S1) or channel (P1); `image` (1,) the image of a `1` protocol; `active` (1,) 1 if this step swaps, else 0
    (then every pair is an identity). Op form (what `apply_with_` runs): a, b, sample for one swap op.
    """

    protocol: str
    shape: tuple
    pairs: torch.Tensor
    at: torch.Tensor
    image: torch.Tensor
    active: torch.Tensor
    a: torch.Tensor
    b: torch.Tensor
    sample: torch.Tensor | None

    def clone(self):
        """A copy that owns its index tensors (a drawn plan's tensors are refilled by the next draw)."""
        copy = lambda t: None if t is None else t.clone()  # noqa: E731
        return type(self)(
            self.protocol,
            self.shape,
            *(copy(t) for t in (self.pairs, self.at, self.image, self.active, self.a)),
            copy(self.b),
            copy(self.sample),
        )

    @property
    def op(self) -> str:
        return "elements" if self.protocol[2] == "1" else ("channels" if self.protocol[1] == "S" else "pixels")

    def apply_with_(self, x, swap_elements_, swap_channels_, swap_pixels_):
        """Applies the plan to x in place (x must have the shape it was drawn for) with one of the given ops: those
        of a backend, or the public ones. Returns x."""
        if tuple(x.shape) != self.shape:
            raise ValueError(f"plan for {self.protocol} on {self.shape} does not fit a batch of shape {tuple(x.shape)}")
        if self.shape[0] == 0:
            return x
        if self.op == "elements":
            return swap_elements_(x, self.a, self.b, validate=False)
        swap = swap_channels_ if self.op == "channels" else swap_pixels_
        return swap(x, self.a, self.b, sample=self.sample, validate=False)


def plan_views(protocol, shape, swaps, buf, cls=PlanViews):
    """The plan (of class cls) whose tensors are views of a drawn plan buffer."""
    lay = plan_layout(protocol, shape[0], swaps)
    g, k = lay["g"], lay["k"]
    sample = buf[lay["sample"] : lay["sample"] + k] if protocol[0] != "A" and protocol[2] == "A" else None
    return cls(
        protocol,
        tuple(shape),
        buf[lay["pairs"] : lay["a"]].view(g, swaps, 2),
        buf[lay["at"] : lay["at"] + g],
        buf[1:2],
        buf[0:1],
        buf[lay["a"] : lay["b"]],
        buf[lay["b"] : lay["sample"]],
        sample,
    )
