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

from . import ops, plans
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
        if isinstance(swaps, bool) or not isinstance(swaps, int) or swaps < 1:
            raise ValueError(f"swaps must be an int >= 1, got {swaps!r}")
        if not 0.0 <= float(p) <= 1.0:
            raise ValueError(f"p must be in [0, 1], got {p!r}")
        self.protocol, self.swaps, self.p = protocol.upper(), swaps, float(p)
        if seed is None:
            seed = (
                int(torch.randint(0, 2**62, (1,), generator=generator).item())
                if generator is not None
                else torch.initial_seed()
            )
        self.seed, self.step, self.epoch = int(seed), 0, 0
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
        key = (shape, str(device))
        ws = self._ws.get(key)
        if ws is None:
            ws = self._ws[key] = plans.Workspace(device)
        if indices is not None:
            indices = indices.reshape(-1)
            if indices.numel() != b:
                raise ValueError(f"indices has {indices.numel()} entries for a batch of {b}")
        tmp = ws.get("tmp", b)
        keys = plans.image_keys_(ws.get("keys", b), None if indices is None else indices.to(device), tmp)
        if indices is not None:
            bkey = plans.batch_key_(ws.get("bkey", 1), keys)
        else:  # batch-level draws depend on (seed, step) only
            bkey = ws.get("bkey", 1).fill_(plans.BATCH)
        t1 = ws.get("tmp1", 1)
        base = lambda stream: plans.base_key(self.seed, step, stream)  # noqa: E731

        # The coin: does this step swap at all (probability p)?
        active = plans.words_(ws.get("active", 1), bkey, base("coin"), 0, t1)
        active.lt_(min(int(self.p * 2**32), 2**32))
        # Which images draw: every image (E), or one draw shared by the batch (1, A).
        gkeys = keys if which == "E" else bkey
        g = gkeys.numel()
        n = c if what == "S" else h * w
        flat = plans.distinct_(ws.get("flat", g, 2 * s), gkeys, n, base("pairs"), ws, f"pairs{g}")
        pairs = ws.get("pairs", g, s, 2)
        pairs.view(g, 2 * s).copy_(flat)
        at = ws.get("at", g)
        if extent == "1":
            plans.below_(plans.words_(at, gkeys, base("extent"), 0, ws.get("tmpg", g)), h * w if what == "S" else c)
        image = ws.get("image", 1)
        if which == "1":  # the image with the largest score: independent of batch order
            scores = plans.words_(ws.get("scores", b), keys, base("image"), 0, tmp)
            torch.argmax(scores, dim=0, keepdim=True, out=image)
        # Identity pairs when the coin says no: a pair (u, u) moves nothing.
        first = pairs[..., 0]
        d = ws.get("delta", g, s)
        d.copy_(pairs[..., 1]).sub_(first).mul_(active)
        pairs[..., 1].copy_(first).add_(d)
        a, bb, sample = self._op_form(ws, shape, pairs, at, image)
        return FeaturePlan(self.protocol, shape, pairs, at, image, active, a, bb, sample)

    def _op_form(self, ws, shape, pairs, at, image):
        """The K-pair form of a plan for swap_channels_ / swap_pixels_ (extent A) or swap_elements_ (extent 1)."""
        b, c, h, w = shape
        which, what, extent = self.protocol
        s = self.swaps
        g = pairs.shape[0]
        if extent == "A":  # contiguous copies, so the op reads them as they are
            a = ws.get("opa", g * s).view(g, s).copy_(pairs[..., 0]).view(-1)
            bb = ws.get("opb", g * s).view(g, s).copy_(pairs[..., 1]).view(-1)
            if which == "A":
                return a, bb, None
            sample = ws.get("sample", g * s)
            if which == "1":
                sample.copy_(image.expand(s))
            else:
                torch.arange(b, out=ws.get("arange", b))
                sample.view(b, s).copy_(ws.get("arange", b).unsqueeze(1))
            return a, bb, sample
        # Extent 1: single elements, flat row-major indices n*C*H*W + channel*H*W + pixel.
        images = b if which == "A" else g
        fa, fb = ws.get("fa", images, s), ws.get("fb", images, s)
        base = ws.get("ebase", images, 1)
        if which == "1":
            base.copy_(image.view(1, 1)).mul_(c * h * w)
        else:
            torch.arange(images, out=ws.get("arange", images))
            base.copy_(ws.get("arange", images).view(images, 1)).mul_(c * h * w)
        fixed = ws.get("fixed", images, 1)
        fixed.copy_(at.view(g, 1).expand(images, 1))
        for out, col in ((fa, 0), (fb, 1)):
            moving = pairs[..., col].expand(images, s)
            if what == "S":  # channels move at a fixed pixel
                out.copy_(moving).mul_(h * w).add_(fixed)
            else:  # pixels move in a fixed channel
                out.copy_(fixed.expand(images, s)).mul_(h * w).add_(moving)
            out.add_(base)
        return fa.view(-1), fb.view(-1), None

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
