"""Feature swaps in the data loader: the poster's protocols as seeded, device-side plans.

A protocol is three characters, as the poster's `1SA`:
  1. which images: `1` one random image of the batch; `A` all images, one shared draw; `E` every image, its own;
  2. what is exchanged: `S` two channels; `P` two pixels;
  3. the extent: for `S`, at `1` one random pixel or `A` all pixels; for `P`, in `1` one random channel or `A`
     all channels.
`swaps` disjoint pairs are exchanged per drawn image and step; `p` is the probability that a step swaps at all.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass

import torch
from torch import nn

from . import _backend, ops, plans
from ._codes import PROTOCOLS
from ._index import as_index

try:  # FeatureSwap is a torchvision transforms.v2 transform where torchvision is installed
    from torchvision import tv_tensors as _tv_tensors
    from torchvision.transforms import v2 as _v2

    _Base = _v2.Transform
except ImportError:  # torchvision is optional
    _tv_tensors, _Base = None, nn.Module

MAX_SWAPS = 32  # pairs per drawn image and step: the device-side draw keeps 2 * swaps values in registers


@dataclass
class FeaturePlan:
    """One step's swaps for a batch of shape (B, C, H, W), as small index tensors on the batch's device.

    Compact form (what the fused loader reads): `pairs` (G, swaps, 2) positions exchanged in the swapped dim
    (channels for S, flat pixels for P), G = B for `E` protocols and 1 otherwise; `at` (G,) the fixed pixel
    (S1) or channel (P1); `image` (1,) the image of a `1` protocol; `active` (1,) 1 if this step swaps, else 0
    (then every pair is an identity). Op form (what `apply_` runs): a, b, sample for one swapkern op.
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

    def clone(self) -> FeaturePlan:
        """A copy that owns its index tensors (a drawn plan's tensors are refilled by the next draw)."""
        copy = lambda t: None if t is None else t.clone()  # noqa: E731
        return FeaturePlan(
            self.protocol,
            self.shape,
            *(copy(t) for t in (self.pairs, self.at, self.image, self.active, self.a)),
            copy(self.b),
            copy(self.sample),
        )

    @property
    def op(self) -> str:
        return "elements" if self.protocol[2] == "1" else ("channels" if self.protocol[1] == "S" else "pixels")

    def apply_(self, x: torch.Tensor) -> torch.Tensor:
        """Applies the plan to x in place (x must have the shape it was drawn for) with one swapkern op. Returns x."""
        if tuple(x.shape) != self.shape:
            raise ValueError(f"plan for {self.protocol} on {self.shape} does not fit a batch of shape {tuple(x.shape)}")
        if self.shape[0] == 0:
            return x
        if self.op == "elements":
            return ops.swap_elements_(x, self.a, self.b, validate=False)
        swap = ops.swap_channels_ if self.op == "channels" else ops.swap_pixels_
        return swap(x, self.a, self.b, sample=self.sample, validate=False)


def plan_layout(protocol: str, b: int, swaps: int) -> dict:
    """Offsets of a plan's flat int64 buffer: [active, image, batch key, at (G), pairs (G, swaps, 2), a (K),
    b (K), sample (K)] (csrc/draw.cpp uses the same)."""
    which, _, extent = protocol
    g = b if which == "E" else 1
    k = (1 if which == "1" else (b if which == "E" or extent == "1" else 1)) * swaps
    pairs = 3 + g
    a = pairs + 2 * swaps * g
    return {"g": g, "k": k, "at": 3, "pairs": pairs, "a": a, "b": a + k, "sample": a + 2 * k, "total": a + 3 * k}


def plan_views(protocol, shape, swaps, buf) -> FeaturePlan:
    """The FeaturePlan whose tensors are views of a drawn plan buffer."""
    lay = plan_layout(protocol, shape[0], swaps)
    g, k = lay["g"], lay["k"]
    sample = buf[lay["sample"] : lay["sample"] + k] if protocol[0] != "A" and protocol[2] == "A" else None
    return FeaturePlan(
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


def _is_plain_tensor(x) -> bool:
    return isinstance(x, torch.Tensor) and not (_tv_tensors is not None and isinstance(x, _tv_tensors.TVTensor))


class _Slot:
    """What a FeatureSwap keeps per batch shape and device: the plan buffer, its views, a workspace, and the fast
    call (the backend's feature_swap_ with every argument but the batch bound) with what it was bound for."""

    __slots__ = ("buf", "plan", "ws", "fast")

    def __init__(self, protocol, shape, swaps, device):
        self.ws = plans.Workspace(device)
        self.buf = self.ws.get("plan", plan_layout(protocol, shape[0], swaps)["total"])
        self.plan = plan_views(protocol, shape, swaps, self.buf)
        self.fast = None


class FeatureSwap(_Base):
    """Feature-swap protocol `protocol` (e.g. "1SA") with `swaps` disjoint pairs per drawn image and step, applied
    with probability `p` per step. An nn.Module, and a torchvision transforms.v2 transform where torchvision is
    installed.

    Seeding: `seed`, else a 64-bit seed drawn from `generator` (a torch.Generator), else torch.initial_seed() (read,
    not consumed: the global random stream is not disturbed). Draws are keyed by (seed, step, image key).

    Two ways to call it:
    - fs(batch) on an (N, C, H, W) tensor swaps it in place (one call into the backend) and returns it. The step
      counter (`step`) lives in a tensor on the batch's device, so a torch.compile'd graph or a captured CUDA graph
      draws a new step on every call; image keys are batch positions, or dataset indices given as `indices=`.
    - as a transform, on one image (C, H, W), a video (..., C, H, W), a tv_tensors.Image / Video, or a whole
      sample (image with labels, boxes...: only the image is swapped), it returns a swapped copy, as torchvision's
      transforms do. Each DataLoader worker draws independently: the step is (epoch, the worker's call count) and
      the image key its worker id, so a rerun with the same seed and num_workers repeats exactly and set_epoch(e)
      changes the draws (with workers that are started afresh each epoch, DataLoader's default).
    """

    if _tv_tensors is not None:  # images and videos; a plain tensor is an image when no tv_tensor image is there
        _transformed_types = (_tv_tensors.Image, _tv_tensors.Video, _is_plain_tensor)

    def __init__(self, protocol: str, *, swaps: int = 1, p: float = 1.0, generator=None, seed: int | None = None):
        super().__init__()
        if not isinstance(protocol, str) or protocol.upper() not in PROTOCOLS:
            raise ValueError(f"unknown feature-swap protocol {protocol!r}; choose one of {', '.join(PROTOCOLS)}")
        swaps = plans.check_count("swaps", swaps, MAX_SWAPS)
        p = plans.check_probability("p", p)
        self.protocol, self.swaps, self.p = protocol.upper(), swaps, p
        self.seed, self.epoch = plans.resolve_seed(seed, generator), 0
        self.register_buffer("_counter", torch.zeros(1, dtype=torch.int64), persistent=False)
        self._slots: dict = {}
        self._calls = 0  # transform calls made in this process

    def __repr__(self):
        return f"FeatureSwap({self.protocol!r}, swaps={self.swaps}, p={self.p}, seed={self.seed}, step={self.step})"

    @property
    def step(self) -> int:
        """The next batch step (reads the device counter: a sync on a GPU)."""
        return int(self._counter.item())

    @step.setter
    def step(self, value: int) -> None:
        self._counter.fill_(plans.check_counter("step", value))

    # -- state -------------------------------------------------------------------------------------------------
    def get_extra_state(self) -> dict:
        """What state_dict() saves: the protocol, seed, step and epoch (a checkpoint resumes the same draws)."""
        return {
            "protocol": self.protocol,
            "swaps": self.swaps,
            "p": self.p,
            "seed": self.seed,
            "step": self.step,
            "epoch": self.epoch,
            "calls": self._calls,
        }

    def set_extra_state(self, state: dict) -> None:
        if state["protocol"] != self.protocol or state["swaps"] != self.swaps:
            raise ValueError(f"state is for {state['protocol']} x{state['swaps']}, not {self.protocol} x{self.swaps}")
        p, seed = plans.check_probability("p", state["p"]), plans.check_seed(state["seed"])
        step, epoch = (plans.check_counter(name, state[name]) for name in ("step", "epoch"))
        self.p, self.seed, self.step, self.epoch = p, seed, step, epoch
        self._calls = plans.check_counter("calls", state.get("calls", 0))

    def set_epoch(self, epoch: int) -> None:
        """The epoch, like DistributedSampler.set_epoch: keys the DataLoader paths (SwapCollate, the transform)."""
        self.epoch = plans.check_counter("epoch", epoch)

    # -- drawing -----------------------------------------------------------------------------------------------
    def check(self, shape) -> None:
        """ValueError if this protocol cannot run on a batch of this (B, C, H, W) shape."""
        if len(shape) != 4:
            raise ValueError(f"feature swaps need an (N, C, H, W) batch, got shape {tuple(shape)}")
        _, c, h, w = shape
        if c == 0 or h == 0 or w == 0:
            raise ValueError(f"feature swaps need images with channels and pixels, got shape {tuple(shape)}")
        n = c if self.protocol[1] == "S" else h * w
        what = "channels" if self.protocol[1] == "S" else "pixels"
        if 2 * self.swaps > n:
            raise ValueError(
                f"protocol {self.protocol} with swaps={self.swaps} needs {2 * self.swaps} {what} per image, "
                f"the batch has {n}"
            )

    def _slot(self, x: torch.Tensor) -> _Slot:
        key = (x.shape, x.device)
        slot = self._slots.get(key)
        if slot is None:
            if not isinstance(x, torch.Tensor):
                raise TypeError(f"feature swaps take a tensor, got {type(x).__name__}")
            self.check(x.shape)
            slot = self._slots[key] = _Slot(self.protocol, tuple(x.shape), self.swaps, x.device)
            if self._counter.device != x.device:  # the step counter follows the batches
                self._counter = self._counter.to(x.device)
                for other in self._slots.values():  # their fast calls hold the old counter
                    other.fast = None
        return slot

    def _indices(self, slot, b, indices):
        """Dataset indices as the draw reads them: int64 on the batch's device, [B]."""
        if indices is None:
            return None
        indices = as_index(indices, "indices")
        if indices.dtype == torch.bool or indices.is_floating_point() or indices.is_complex():
            raise TypeError(f"indices must hold integers, got a tensor of dtype {indices.dtype}")
        if indices.numel() != b:
            raise ValueError(f"indices has {indices.numel()} entries for a batch of {b}")
        return slot.ws.get("indices", b).copy_(indices.reshape(-1))

    def _args(self):
        seed = self.seed & (2**64 - 1)
        seed = seed - 2**64 if seed >= 2**63 else seed  # the same 64 bits as a signed int
        return self.protocol, self.swaps, seed

    def _threshold(self):
        return min(int(self.p * 2**32), 2**32)

    def plan(self, x: torch.Tensor, *, indices=None, step: int | None = None) -> FeaturePlan:
        """Draws a plan for batch x (on x's device, no host sync). Advances the step counter unless `step` is
        given. The plan's buffers belong to this FeatureSwap and are refilled by the next draw of the same shape:
        plan.clone() keeps one."""
        if step is not None:
            step = plans.check_counter("step", step)
        slot = self._slot(x)
        idx = self._indices(slot, x.shape[0], indices)
        counter = self._counter if step is None else None
        impl = _backend.impl(slot.buf)
        impl.draw_feature_plan_(
            slot.buf, idx, tuple(x.shape), *self._args(), step or 0, self._threshold(), slot.ws, counter
        )
        return slot.plan

    # -- applying ----------------------------------------------------------------------------------------------
    def apply_(self, x: torch.Tensor, plan: FeaturePlan) -> torch.Tensor:
        """Applies plan to x in place (x must have the shape the plan was drawn for). Returns x."""
        if plan.protocol != self.protocol:
            raise ValueError(f"plan for {plan.protocol} does not fit {self.protocol}")
        return plan.apply_(x)

    def _swap_(self, x, indices, step):
        """Draws and applies a plan to the batch x in place, one call into the backend: with step None, at the
        counter's step (and the counter advances)."""
        slot = self._slot(x)
        idx = None if indices is None else self._indices(slot, x.shape[0], indices)
        counter = self._counter if step is None else None
        impl = _backend.impl(x)
        args = (slot.buf, idx, *self._args(), step or 0, self._threshold(), slot.ws, counter)
        impl.feature_swap_(x, *args)
        if idx is None and step is None and not torch.compiler.is_compiling():  # the next call can skip the above
            bound = getattr(impl, "bound_feature_swap", None)
            fn = bound(*args) if bound is not None else (lambda x, f=impl.feature_swap_, a=args: f(x, *a))
            slot.fast = (self.seed, self.p, _backend.current_backend(), fn)
        return x

    def __call__(self, *inputs, indices=None):
        """fs(batch) swaps an (N, C, H, W) tensor in place and returns it; anything else goes through the
        transform path (a swapped copy)."""
        if len(inputs) == 1 and type(inputs[0]) is torch.Tensor and inputs[0].dim() == 4:
            x = inputs[0]
            slot = self._slots.get((x.shape, x.device))
            fast = slot.fast if slot is not None and indices is None else None
            if (
                fast is not None
                and fast[0] == self.seed
                and fast[1] == self.p
                and fast[2] is _backend._current
                and not torch.compiler.is_compiling()
            ):
                fast[3](x)  # the same protocol, seed, p, backend, shape and device as the call that bound it
                return x
            return self._swap_(x, indices, None)
        if indices is not None:
            raise ValueError("indices= goes with one (N, C, H, W) batch tensor")
        return super().__call__(*inputs)

    def forward(self, *inputs):
        if len(inputs) == 1 and type(inputs[0]) is torch.Tensor and inputs[0].dim() == 4:
            return self._swap_(inputs[0], None, None)
        if _tv_tensors is None:  # without torchvision: one tensor at a time
            if len(inputs) != 1 or not isinstance(inputs[0], torch.Tensor):
                raise TypeError("without torchvision, FeatureSwap takes one tensor")
            return self.transform(inputs[0], {})
        return _Base.forward(self, *inputs)

    def transform(self, inpt, params):
        """The transform path (torchvision's v2 hook): a swapped copy of an image (C, H, W), a batch or a video
        (..., C, H, W), keeping a tv_tensor's type."""
        x = inpt.as_subclass(torch.Tensor) if type(inpt) is not torch.Tensor else inpt
        if x.dim() < 3:
            raise ValueError(f"feature swaps need an image (C, H, W) or a batch of them, got shape {tuple(x.shape)}")
        self.check((1, *x.shape[-3:]))
        batch = x.reshape(-1, *x.shape[-3:]).clone(memory_format=torch.contiguous_format)
        info = torch.utils.data.get_worker_info()
        worker, workers = (info.id, info.num_workers) if info is not None else (0, 1)
        step = (self.epoch << 32) + self._calls
        self._calls += 1
        keys = torch.arange(batch.shape[0], dtype=torch.int64).mul_(workers).add_(worker)
        self._swap_(batch, keys, step)
        out = batch.view(x.shape)
        if _tv_tensors is not None and isinstance(inpt, _tv_tensors.TVTensor):
            return _tv_tensors.wrap(out, like=inpt)
        return out

    @contextlib.contextmanager
    def swapped(self, x: torch.Tensor, *, indices=None):
        """Applies a fresh plan to x for the block and restores x bit for bit on exit (a plan is its own
        inverse): the way to swap data that must not stay corrupted, such as a dataset held on the GPU. The block
        owns its plan: draws made inside it do not change what is undone."""
        plan = self.plan(x, indices=indices).clone()
        plan.apply_(x)
        try:
            yield x
        finally:
            plan.apply_(x)
