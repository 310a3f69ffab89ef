"""Feature-swap plans as FeatureSwap keeps them: the public FeaturePlan (a drawn plan's views, applied through the
public ops), and what a FeatureSwap keeps per batch shape and device (_Slot: the plan buffer, its views, a workspace,
the bound fast calls). The buffer layout and the views themselves are swapkern._common's, shared with the backends."""

from __future__ import annotations

from collections.abc import Callable
from typing import NamedTuple

import torch

from . import _backend, draws, ops
from ._common import PlanViews, plan_layout
from ._common import plan_views as _plan_views

MAX_SWAPS = 32  # pairs per drawn image and step: the device-side draw keeps 2 * swaps values in registers
MAX_WORKERS = 256  # DataLoader workers whose call counts a FeatureSwap keeps (one int64 slot each)
MAX_EPOCH = 2**23 - 1  # the epoch, worker id and call count share one 63-bit step
SLOTS = 64  # per-shape plan buffers kept per FeatureSwap, least recently used out


class FeaturePlan(PlanViews):
    """One step's swaps for a batch of shape (B, C, H, W), as small index tensors on the batch's device.

    Compact form (what the fused loader reads): `pairs` (G, swaps, 2) positions exchanged in the swapped dim
    (channels for S, flat pixels for P), G = B for `E` protocols and 1 otherwise; `at` (G,) the fixed pixel
    (S1) or channel (P1); `image` (1,) the image of a `1` protocol; `active` (1,) 1 if this step swaps, else 0
    (then every pair is an identity). Op form (what `apply_` runs): a, b, sample for one swapkern op.
    """

    def apply_(self, x: torch.Tensor) -> torch.Tensor:
        """Applies the plan to x in place (x must have the shape it was drawn for) with one swapkern op. Returns x."""
        return self.apply_with_(x, ops.swap_elements_, ops.swap_channels_, ops.swap_pixels_)


def plan_views(protocol, shape, swaps, buf) -> FeaturePlan:
    """The FeaturePlan whose tensors are views of a drawn plan buffer."""
    return _plan_views(protocol, shape, swaps, buf, FeaturePlan)


class BoundCall(NamedTuple):
    """A backend call with every argument but the batch (and the step) bound, with what it was bound for: it serves a
    call whose FeatureSwap still has this seed and p while the selected backend is still this one."""

    seed: int
    p: float
    backend: str  # swapkern._backend.selected when it was bound (compared by identity)
    call: Callable

    def serves(self, fs) -> bool:
        """Whether it serves a call of fs (a FeatureSwap) now: fs's seed and p, and the backend selected now."""
        return self.seed == fs.seed and self.p == fs.p and self.backend is _backend.selected


class _Slot:
    """What a FeatureSwap keeps per batch shape and device: the plan buffer, its views, a workspace, and the fast
    calls: `fast` (the batch path's bound call(x)) and `stepped` (the per-image path's bound call(x, step))."""

    __slots__ = ("buf", "plan", "ws", "fast", "stepped")

    def __init__(self, protocol, shape, swaps, device):
        self.ws = draws.Workspace(device)
        self.buf = self.ws.get("plan", plan_layout(protocol, shape[0], swaps)["total"])
        self.plan = plan_views(protocol, shape, swaps, self.buf)
        self.fast: BoundCall | None = None
        self.stepped: BoundCall | None = None

    @classmethod
    def traced(cls, protocol, shape, swaps, device):
        """A slot whose buffers are made inside a traced graph (dynamic batch sizes stay symbolic)."""
        slot = cls.__new__(cls)
        slot.ws = draws.Workspace(device)
        slot.buf = torch.zeros(plan_layout(protocol, shape[0], swaps)["total"], dtype=torch.int64, device=device)
        slot.plan = plan_views(protocol, tuple(shape), swaps, slot.buf)
        slot.fast = slot.stepped = None
        return slot
