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
import os
import warnings
import weakref
from collections import OrderedDict

import numpy as np
import torch
from torch.utils.data import get_worker_info

from . import _backend, draws
from ._codes import PROTOCOLS, protocol_codes  # noqa: F401  (swapkern.data.PROTOCOLS, protocol_codes)
from ._common import plan_layout  # noqa: F401  (swapkern.data.plan_layout)
from ._featureplan import (
    MAX_EPOCH,
    MAX_SWAPS,
    MAX_WORKERS,
    SLOTS,
    BoundCall,
    FeaturePlan,
    _Slot,
    plan_views,  # noqa: F401  (swapkern.data.plan_views)
)
from ._images import ImagePath, _Base, _is_array, _is_pil, _is_plain_tensor, _tv_tensors
from ._index import as_index

_compiling = torch.compiler.is_compiling

# FeatureSwaps alive in this process: before a fork (DataLoader workers), their shared counters are moved to shared
# memory, so that set_epoch reaches persistent workers and the workers' call counts reach this process.
_LIVE: weakref.WeakSet = weakref.WeakSet()


def _share_live():
    for fs in list(_LIVE):
        fs._share()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(before=_share_live)


class FeatureSwap(ImagePath, _Base):
    """Feature-swap protocol `protocol` (e.g. "1SA") with `swaps` disjoint pairs per drawn image and step, applied
    with probability `p` per step. An nn.Module, and a torchvision transforms.v2 transform where torchvision is
    installed.

    Seeding: `seed`, else a 64-bit seed drawn from `generator` (a torch.Generator), else torch.initial_seed() (read,
    not consumed: the global random stream is not disturbed).

    Two ways to call it:
    - fs(x) never modifies x: it returns a swapped copy of one image (C, H, W), a video or clip (..., C, H, W), a
      tv_tensors.Image / Video (type kept), a PIL image (returned as a PIL image of the same mode), a NumPy array
      (H, W, C) or (..., H, W, C) as PIL, OpenCV and albumentations hold images (returned as an array of the same
      dtype and shape), or a whole sample (image with labels, boxes...: only the image is swapped), as
      torchvision's transforms do. The draw rule: a draw is keyed by (seed, epoch, DataLoader worker id, the
      number of calls that worker has made since the last set_epoch), where the epoch and the call counts live
      in shared memory, so set_epoch reaches persistent workers, every worker's count carries over to the next
      epoch without set_epoch (no two epochs repeat), and state_dict() holds them all (a resume repeats).
    - fs.swap_(batch) swaps an (N, C, H, W) batch in place (one call into the backend, allocation-free after the
      first call) and returns it. Its step counter (`step`) lives in a tensor on the batch's device, so a
      torch.compile'd graph or a captured CUDA graph draws a new step on every call; image keys are batch
      positions, or dataset indices given as `indices=`.
    fs(batch) on a plain 4-D tensor outside a DataLoader worker is a swapped copy drawn as swap_ draws (it swapped
    in place before 0.2: it warns once, naming swap_).
    """

    if _tv_tensors is not None:  # images and videos; a plain tensor is an image when no tv_tensor image is there
        _transformed_types = (_tv_tensors.Image, _tv_tensors.Video, _is_plain_tensor, _is_pil, _is_array)

    _mru = None  # the last fast call's (shape, on the CPU, device, slot, call), kept in the instance's dict

    def __init__(self, protocol: str, *, swaps: int = 1, p: float = 1.0, generator=None, seed: int | None = None):
        super().__init__()
        if not isinstance(protocol, str) or protocol.upper() not in PROTOCOLS:
            raise ValueError(f"unknown feature-swap protocol {protocol!r}; choose one of {', '.join(PROTOCOLS)}")
        swaps = draws.check_count("swaps", swaps, MAX_SWAPS)
        p = draws.check_probability("p", p)
        self.protocol, self.swaps, self.p = protocol.upper(), swaps, p
        self.seed = draws.resolve_seed(seed, generator)
        self.register_buffer("_counter", torch.zeros(1, dtype=torch.int64), persistent=False)
        # [epoch, calls of worker 0, calls of worker 1, ...]: moved to shared memory before workers start
        self._sync = torch.zeros(1 + MAX_WORKERS, dtype=torch.int64)
        self._sync_np = self._sync.numpy()
        self._slots: OrderedDict = OrderedDict()
        self._warned = False
        _LIVE.add(self)

    def __repr__(self):
        return f"FeatureSwap({self.protocol!r}, swaps={self.swaps}, p={self.p}, seed={self.seed}, step={self.step})"

    def _apply(self, fn, *args, **kwargs):
        """Module.to, .cuda(), .share_memory() and the like go through here and may move or replace the step counter,
        which the bound calls hold: they are dropped, and each shape binds again on its next call."""
        out = super()._apply(fn, *args, **kwargs)
        for slot in self._slots.values():
            slot.fast = slot.stepped = None
        self.__dict__["_mru"] = None
        return out

    # -- pickling, copies, workers ---------------------------------------------------------------------------------
    def _share(self):
        """Moves the epoch and call counts to shared memory (once), so worker processes share them."""
        if not self._sync.is_shared():
            self._sync.share_memory_()
            self._sync_np = self._sync.numpy()

    def __getstate__(self):
        """The state a pickle, torch.save, deepcopy or a spawned worker gets: without the per-shape buffers and
        bound calls (rebuilt on first use). A copy owns its counters; a spawned worker shares this one's."""
        self._share()  # for a DataLoader worker: sent as shared memory (a plain pickle copies the values)
        state = self.__dict__.copy()
        state["_slots"] = OrderedDict()
        state["_mru"] = None
        state.pop("_sync_np", None)
        return state

    def __setstate__(self, state):
        super().__setstate__(state)
        self._sync_np = self._sync.numpy()
        _LIVE.add(self)

    @property
    def step(self) -> int:
        """The next batch step of swap_ (reads the device counter: a sync on a GPU)."""
        return int(self._counter.item())

    @step.setter
    def step(self, value: int) -> None:
        self._counter.fill_(draws.check_counter("step", value))

    @property
    def epoch(self) -> int:
        """The epoch of the DataLoader paths (set_epoch sets it)."""
        return int(self._sync_np[0])

    @property
    def counts(self) -> list[int]:
        """Calls made since the last set_epoch, per DataLoader worker id (worker 0 is this process without workers),
        trailing zeros left out."""
        c = self._sync_np[1:]
        nz = np.flatnonzero(c)
        return c[: nz[-1] + 1 if nz.size else 0].tolist()

    # -- state -------------------------------------------------------------------------------------------------
    def get_extra_state(self) -> dict:
        """What state_dict() saves: the protocol, seed, step, epoch and the workers' call counts (a checkpoint
        resumes the same draws)."""
        return {
            "protocol": self.protocol,
            "swaps": self.swaps,
            "p": self.p,
            "seed": self.seed,
            "step": self.step,
            "epoch": self.epoch,
            "counts": self.counts,
        }

    def set_extra_state(self, state: dict) -> None:
        if state["protocol"] != self.protocol or state["swaps"] != self.swaps:
            raise ValueError(f"state is for {state['protocol']} x{state['swaps']}, not {self.protocol} x{self.swaps}")
        p, seed = draws.check_probability("p", state["p"]), draws.check_seed(state["seed"])
        step, epoch = (draws.check_counter(name, state[name]) for name in ("step", "epoch"))
        counts = state.get("counts", [state.get("calls", 0)])  # "calls": a state saved before 0.2
        counts = [draws.check_counter("counts", c) for c in counts]
        if len(counts) > MAX_WORKERS or epoch > MAX_EPOCH:
            raise ValueError(f"state has {len(counts)} worker counts or epoch {epoch}: out of range")
        self.p, self.seed, self.step = p, seed, step
        self._sync_np[0] = epoch
        self._sync_np[1:] = 0
        self._sync_np[1 : 1 + len(counts)] = counts

    def set_epoch(self, epoch: int) -> None:
        """The epoch, like DistributedSampler.set_epoch: keys the DataLoader paths (the transform, SwapCollate) and
        restarts every worker's call count; running workers, persistent ones included, see it."""
        epoch = draws.check_counter("epoch", epoch)
        if epoch > MAX_EPOCH:
            raise ValueError(f"epoch must be <= {MAX_EPOCH}, got {epoch}")
        self._sync_np[1:] = 0
        self._sync_np[0] = epoch

    def _next_step(self) -> int:
        """The step of one DataLoader-path draw, (epoch, worker id, that worker's call count), and counts it."""
        info = get_worker_info()
        w = 0 if info is None else info.id
        if w >= MAX_WORKERS:
            raise ValueError(f"FeatureSwap keys draws of up to {MAX_WORKERS} DataLoader workers, this is worker {w}")
        sync = self._sync_np
        calls = int(sync[1 + w])
        sync[1 + w] = calls + 1
        return (int(sync[0]) << 40) | (w << 32) | (calls & 0xFFFFFFFF)

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
        if torch.compiler.is_compiling():  # traced (torch.compile, torch.export): buffers of the graph, no cache
            return self._traced_slot(x)
        self.__dict__["_mru"] = None  # another slot, or the same one anew: the next fast call looks it up
        key = (x.shape, x.device)
        slot = self._slots.get(key)
        if slot is None:
            if not isinstance(x, torch.Tensor):
                raise TypeError(f"feature swaps take a tensor, got {type(x).__name__}")
            self.check(x.shape)
            if x.device.type == "meta":  # before the counter follows it there (and loses its value)
                raise ValueError("swapkern: tensors on the meta device hold no data to swap")
            slot = self._slots[key] = _Slot(self.protocol, tuple(x.shape), self.swaps, x.device)
            if len(self._slots) > SLOTS:  # a bounded cache: the least recently used shape goes
                self._slots.popitem(last=False)
            if self._counter.device != x.device:  # the step counter follows the batches
                self._counter = self._counter.to(x.device)
                for other in self._slots.values():  # their fast calls hold the old counter
                    other.fast = None
        else:
            self._slots.move_to_end(key)
        return slot

    def _traced_slot(self, x):
        """A slot whose buffers are made inside the traced graph (dynamic batch sizes stay symbolic)."""
        if not isinstance(x, torch.Tensor):
            raise TypeError(f"feature swaps take a tensor, got {type(x).__name__}")
        self.check(x.shape)
        slot = _Slot.traced(self.protocol, tuple(x.shape), self.swaps, x.device)
        if self._counter.device != x.device:
            self._counter = self._counter.to(x.device)
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
            step = draws.check_counter("step", step)
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
            if bound is not None:
                fn = bound(*args, shape=tuple(x.shape))
            else:
                fn = lambda x, f=impl.feature_swap_, a=args: f(x, *a)  # noqa: E731
            slot.fast = BoundCall(self.seed, self.p, _backend.selected, fn)
        return x

    def swap_(self, x: torch.Tensor, *, indices=None) -> torch.Tensor:
        """Draws a step and applies it to the (N, C, H, W) batch x in place, with one call into the backend, at the
        step counter's step (which advances); returns x. Allocation-free after the first call of a shape."""
        # the last fast call (shape, on the CPU, device, slot, call); None after any other (never traced)
        mru = None if _compiling() else self._mru
        if mru is not None and type(x) is torch.Tensor and indices is None:
            shape, cpu, device, slot, fast = mru
            if (
                x.shape == shape
                and x.is_cpu is cpu
                and (cpu or x.device == device)  # the CPU is one device; others are compared in full
                and slot.fast is fast
                and fast.serves(self)
            ):
                fast.call(x)  # as below; the slot is still the most recently used one
                return x
        if type(x) is torch.Tensor and indices is None and not _compiling():
            key = (x.shape, x.device)
            slot = self._slots.get(key)
            fast = slot.fast if slot is not None else None
            if fast is not None and fast.serves(self):
                fast.call(x)  # the same protocol, seed, p, backend, shape and device as the call that bound it
                self._slots.move_to_end(key)
                self.__dict__["_mru"] = (x.shape, x.is_cpu, x.device, slot, fast)  # not Module.__setattr__
                return x
        if not isinstance(x, torch.Tensor):
            raise TypeError(f"swap_ takes an (N, C, H, W) tensor, got {type(x).__name__}")
        if isinstance(x, _tv_tensors.TVTensor if _tv_tensors is not None else ()):
            x = x.as_subclass(torch.Tensor)
        return self._swap_(x, indices, None)

    def __call__(self, *inputs, indices=None):
        """fs(x): a swapped copy of x (x is left as it was); fs.swap_(batch) swaps a batch in place."""
        if len(inputs) == 1:
            x = inputs[0]
            kind = type(x)
            if kind is torch.Tensor or (isinstance(x, torch.Tensor) and _is_plain_tensor(x)):  # fake ones too
                if x.dim() == 3 and indices is None and not torch.compiler.is_compiling():
                    return self._image(x)
                compiling = torch.compiler.is_compiling()
                if x.dim() == 4 and (indices is not None or compiling or get_worker_info() is None):
                    if not self._warned and not compiling:
                        self._warned = True
                        warnings.warn(
                            "FeatureSwap: fs(batch) returns a swapped copy and leaves the batch as it was (before "
                            "swapkern 0.2 it swapped in place); use fs.swap_(batch) to swap in place, as before",
                            FutureWarning,
                            stacklevel=2,
                        )
                    return self.swap_(x.clone(), indices=indices)
            elif kind is np.ndarray:
                if indices is None:
                    return self._array(x)
            elif _is_pil(x) and indices is None:
                return self._pil(x)
        if indices is not None:
            raise ValueError("indices= goes with one (N, C, H, W) batch tensor")
        return super().__call__(*inputs)

    def forward(self, *inputs):
        if len(inputs) == 1 and _is_plain_tensor(inputs[0]) and inputs[0].dim() == 4:
            return self.swap_(inputs[0].clone())
        if _tv_tensors is None:  # without torchvision: one image at a time
            if len(inputs) != 1:
                raise TypeError("without torchvision, FeatureSwap takes one image")
            return self.transform(inputs[0], {})
        return _Base.forward(self, *inputs)

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
