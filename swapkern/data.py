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

from . import _backend, ops, plans
from ._nvtx import nvtx_range

PROTOCOLS = tuple(w + s + e for w in "1AE" for s in "SP" for e in "1A")


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

    @property
    def op(self) -> str:
        return "elements" if self.protocol[2] == "1" else ("channels" if self.protocol[1] == "S" else "pixels")


def plan_layout(protocol: str, b: int, swaps: int) -> dict:
    """Offsets of a plan's flat int64 buffer: [active, image, batch key, at (G), pairs (G, swaps, 2), a (K),
    b (K), sample (K)] (csrc/draw.cpp uses the same)."""
    which, _, extent = protocol
    g = b if which == "E" else 1
    k = (1 if which == "1" else (b if which == "E" or extent == "1" else 1)) * swaps
    pairs = 3 + g
    a = pairs + 2 * swaps * g
    return {"g": g, "k": k, "at": 3, "pairs": pairs, "a": a, "b": a + k, "sample": a + 2 * k, "total": a + 3 * k}


def _plan_views(protocol, shape, swaps, buf, lay) -> FeaturePlan:
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


def draw_plan_torch_(buf, lay, protocol, shape, s, seed, step, threshold, indices, ws):
    """Draws a plan into buf with in-place torch ops: the specification of csrc/draw.h (and the path of the
    "torch" backend). No host sync; allocation-free after the first draw of a shape."""
    b, c, h, w = shape
    which, what, extent = protocol
    g, k = lay["g"], lay["k"]
    tmp = ws.get("tmp", b)
    keys = plans.image_keys_(ws.get("keys", b), indices, tmp)
    bkey = buf[2:3]
    if indices is not None:
        plans.batch_key_(bkey, keys)
    else:  # batch-level draws depend on (seed, step) only
        bkey.fill_(plans.BATCH)
    base = lambda stream: plans.base_key(seed, step, stream)  # noqa: E731
    active = plans.words_(buf[0:1], bkey, base("coin"), 0, ws.get("tmp1", 1)).lt_(threshold)
    image = buf[1:2].zero_()
    if which == "1":  # the image with the largest score: independent of batch order
        scores = plans.words_(ws.get("scores", b), keys, base("image"), 0, tmp)
        torch.argmax(scores, dim=0, keepdim=True, out=image)
    gkeys = keys if which == "E" else bkey
    n = c if what == "S" else h * w
    pairs = buf[lay["pairs"] : lay["a"]].view(g, s, 2)
    plans.distinct_(pairs.view(g, 2 * s), gkeys, n, base("pairs"), ws, f"pairs{g}")
    first = pairs[..., 0]
    d = ws.get("delta", g, s)
    d.copy_(pairs[..., 1]).sub_(first).mul_(active)  # identity pairs when the coin says no
    pairs[..., 1].copy_(first).add_(d)
    at = buf[lay["at"] : lay["at"] + g].zero_()
    if extent == "1":
        plans.below_(plans.words_(at, gkeys, base("extent"), 0, ws.get("tmpg", g)), h * w if what == "S" else c)
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
        return
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


class FeatureSwap:
    """Feature-swap protocol `protocol` (e.g. "1SA") with `swaps` disjoint pairs per drawn image and step, applied
    with probability `p` per step.

    Seeding: `seed`, else a 64-bit seed drawn from `generator` (a torch.Generator), else torch.initial_seed() (read,
    not consumed: the global random stream is not disturbed). Draws are keyed by (seed, step, image key), where
    the image key is the dataset index when given (`indices=`) and the batch position otherwise.
    """

    def __init__(self, protocol: str, *, swaps: int = 1, p: float = 1.0, generator=None, seed: int | None = None):
        if not isinstance(protocol, str) or protocol.upper() not in PROTOCOLS:
            raise ValueError(f"unknown feature-swap protocol {protocol!r}; choose one of {', '.join(PROTOCOLS)}")
        plans.check_count("swaps", swaps)
        plans.check_probability("p", p)
        self.protocol, self.swaps, self.p = protocol.upper(), swaps, float(p)
        self.seed, self.step, self.epoch = plans.resolve_seed(seed, generator), 0, 0
        self._ws: dict = {}

    def __repr__(self):
        return f"FeatureSwap({self.protocol!r}, swaps={self.swaps}, p={self.p}, seed={self.seed}, step={self.step})"

    # -- state -------------------------------------------------------------------------------------------------
    def state_dict(self) -> dict:
        return {
            "protocol": self.protocol,
            "swaps": self.swaps,
            "p": self.p,
            "seed": self.seed,
            "step": self.step,
            "epoch": self.epoch,
        }

    def load_state_dict(self, state: dict) -> None:
        if state["protocol"] != self.protocol or state["swaps"] != self.swaps:
            raise ValueError(f"state is for {state['protocol']} x{state['swaps']}, not {self.protocol} x{self.swaps}")
        self.p, self.seed, self.step, self.epoch = state["p"], state["seed"], state["step"], state["epoch"]

    def set_epoch(self, epoch: int) -> None:
        """The step used by the DataLoader collate path (`SwapCollate`), like DistributedSampler.set_epoch."""
        self.epoch = int(epoch)

    # -- drawing -----------------------------------------------------------------------------------------------
    def check(self, shape) -> None:
        """ValueError if this protocol cannot run on a batch of this (B, C, H, W) shape."""
        if len(shape) != 4:
            raise ValueError(f"feature swaps need an (N, C, H, W) batch, got shape {tuple(shape)}")
        _, c, h, w = shape
        n = c if self.protocol[1] == "S" else h * w
        what = "channels" if self.protocol[1] == "S" else "pixels"
        if 2 * self.swaps > n:
            raise ValueError(
                f"protocol {self.protocol} with swaps={self.swaps} needs {2 * self.swaps} {what} per image, "
                f"the batch has {n}"
            )

    def plan(self, x: torch.Tensor, *, indices: torch.Tensor | None = None, step: int | None = None) -> FeaturePlan:
        """Draws a plan for batch x (on x's device, no host sync). Advances the step counter unless `step` is
        given. The plan's buffers belong to this FeatureSwap and are refilled by the next draw of the same shape."""
        self.check(x.shape)
        if step is None:
            step, self.step = self.step, self.step + 1
        with nvtx_range("swapkern/feature_swap.plan"):
            return self._draw(tuple(x.shape), x.device, indices, step)

    def _draw(self, shape, device, indices, step) -> FeaturePlan:
        b, c, h, w = shape
        which, what, extent = self.protocol
        s = self.swaps
        ws = self._ws.get((shape, str(device)))
        if ws is None:
            ws = self._ws[(shape, str(device))] = plans.Workspace(device)
        if indices is not None:
            if indices.numel() != b:
                raise ValueError(f"indices has {indices.numel()} entries for a batch of {b}")
            indices = ws.get("indices", b).copy_(indices.reshape(-1))
        lay = plan_layout(self.protocol, b, s)
        buf = ws.get("plan", lay["total"])
        threshold = min(int(self.p * 2**32), 2**32)
        if _backend.resolve(buf) != "torch" and _backend.native_available(buf.device.type):
            seed = self.seed & (2**64 - 1)
            seed = seed - 2**64 if seed >= 2**63 else seed  # the same 64 bits as a signed int
            torch.ops.swapkern.draw_feature_plan_(
                buf, indices, b, c, h * w, "1AE".index(which), "SP".index(what), extent == "A", s, seed, step, threshold
            )
        else:
            draw_plan_torch_(buf, lay, self.protocol, shape, s, self.seed, step, threshold, indices, ws)
        return _plan_views(self.protocol, shape, s, buf, lay)

    # -- applying ----------------------------------------------------------------------------------------------
    def apply_(self, x: torch.Tensor, plan: FeaturePlan) -> torch.Tensor:
        """Applies plan to x in place (x must have the shape the plan was drawn for). Returns x."""
        if tuple(x.shape) != plan.shape or plan.protocol != self.protocol:
            raise ValueError(
                f"plan for {plan.protocol} on {plan.shape} does not fit {self.protocol} on {tuple(x.shape)}"
            )
        with nvtx_range(f"swapkern/feature_swap.{self.protocol}"):
            if plan.op == "elements":
                ops.swap_elements_(x, plan.a, plan.b, validate=False)
            elif plan.op == "channels":
                ops.swap_channels_(x, plan.a, plan.b, sample=plan.sample, validate=False)
            else:
                ops.swap_pixels_(x, plan.a, plan.b, sample=plan.sample, validate=False)
        return x

    def __call__(self, x: torch.Tensor, *, indices: torch.Tensor | None = None) -> torch.Tensor:
        """Draws a plan for x and applies it in place. Returns x."""
        return self.apply_(x, self.plan(x, indices=indices))

    @contextlib.contextmanager
    def swapped(self, x: torch.Tensor, *, indices: torch.Tensor | None = None):
        """Applies a fresh plan to x for the block and restores x bit for bit on exit (a plan is its own
        inverse): the way to swap data that must not stay corrupted, such as a dataset held on the GPU."""
        plan = self.plan(x, indices=indices)
        self.apply_(x, plan)
        try:
            yield x
        finally:
            self.apply_(x, plan)
