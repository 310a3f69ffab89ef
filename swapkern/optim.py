"""Weight swaps in the optimizer step: the poster's weight protocols, optimizer state, Metropolis acceptance.

Protocols (per chosen layer: a parameter of 2 or more dims, and its bias where the protocol uses it):
  rows         two output units exchanged across all columns (conv: two output channels with their kernels)
  cols         two input columns exchanged across all rows
  in-row       two elements of one row;  in-col: two elements of one column
  mixed        any two elements of the layer
  inter-layer  a row of one layer with a row of another of equal row shape (else elements between layers)
  bias         a bias entry with a weight entry of the same unit
  neuron       the function-preserving permutation: rows i, j of a layer with its bias and BatchNorm entries,
               and columns i, j of the next layer (a null model: the outputs do not change)

Draws come from the counter-based generator of swapkern.plans, keyed by (seed, step, layer): a seeded run
repeats exactly on any device, resumes from state_dict(), and gives the same exchanges on every DDP rank.
FSDP / sharded parameters: the exchanges address whole parameters, so swap the full (unsharded) parameters,
e.g. inside FSDP's summon_full_params, or shard-aware indices are needed; a local shard is not supported.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from . import _backend, ops, plans
from ._nvtx import nvtx_range
from ._weightplan import WEIGHT_PROTOCOLS, build, select

ACCEPT = ("always", "metropolis")


class WeightSwap:
    """Swaps weights of `model_or_params` (an nn.Module, or parameters / (name, parameter) pairs) by `protocol`.

    swaps: exchanges per chosen layer and step; every: apply after every `every`-th optimizer step (attach);
    layers: names or glob patterns of parameters / modules, or a predicate(name, param); state: move the
    optimizer's state tensors shaped like a parameter (momentum, Adam moments) with it; accept: "always" or
    "metropolis" (with temperature T > 0 and a closure returning the loss); p: probability that a step proposes
    at all; max_gap: only exchange elements (or slices, by RMS) whose values differ by less than max_gap.
    Seeding: seed, else one drawn from `generator`, else torch.initial_seed() (read, not consumed).
    """

    def __init__(
        self,
        model_or_params,
        protocol,
        *,
        swaps=1,
        every=1,
        layers=None,
        state=False,
        accept="always",
        temperature=None,
        generator=None,
        seed=None,
        p=1.0,
        max_gap=None,
    ):
        if protocol not in WEIGHT_PROTOCOLS:
            raise ValueError(f"unknown weight-swap protocol {protocol!r}; choose one of {', '.join(WEIGHT_PROTOCOLS)}")
        plans.check_count("swaps", swaps)
        plans.check_count("every", every)
        if accept not in ACCEPT:
            raise ValueError(f"accept must be one of {ACCEPT}, got {accept!r}")
        if accept == "metropolis" and (temperature is None or not temperature > 0):
            raise ValueError(f"metropolis needs a temperature T > 0, got {temperature!r}")
        plans.check_probability("p", p)
        if max_gap is not None and not max_gap > 0:
            raise ValueError(f"max_gap must be > 0, got {max_gap!r}")
        self.model = model_or_params if isinstance(model_or_params, nn.Module) else None
        if self.model is not None:
            named = list(self.model.named_parameters())
        else:
            named = [it if isinstance(it, tuple) else (f"param{i}", it) for i, it in enumerate(model_or_params)]
        chosen = select(named, layers)
        if not chosen and protocol != "neuron":
            raise ValueError("no parameter of 2 or more dims is chosen")
        self.protocol, self.swaps, self.every, self.state = protocol, swaps, every, state
        self.accept, self.temperature, self.p, self.max_gap = accept, temperature, float(p), max_gap
        self.groups = build(protocol, named, chosen, swaps, self.model)
        devices = {j.x.device for g in self.groups for j in g.jobs} | {j.y.device for g in self.groups for j in g.jobs}
        if len(devices) != 1:
            raise ValueError(f"the chosen tensors live on several devices: {sorted(map(str, devices))}")
        self.device = devices.pop()
        self.seed, self.draws, self.calls = plans.resolve_seed(seed, generator), 0, 0
        self.stats = {"proposals": 0, "accepted": 0, "mean_delta": 0.0, "closure_calls": 0}
        self._optimizer, self._closure = None, None
        # One int64 index buffer for all groups: [a (k), b (k)] per group, refilled every step.
        self._offsets, total = [], 0
        for g in self.groups:
            self._offsets.append(total)
            total += 2 * g.k
        self._host = torch.zeros(total, dtype=torch.int64, pin_memory=self.device.type == "cuda")
        self._index = (
            self._host if self.device.type == "cpu" else torch.zeros(total, dtype=torch.int64, device=self.device)
        )
        self._copied = None
        self._packed: dict = {}

    def __repr__(self):
        return (
            f"WeightSwap({self.protocol!r}, swaps={self.swaps}, every={self.every}, state={self.state}, "
            f"accept={self.accept!r}, groups={len(self.groups)}, seed={self.seed}, draws={self.draws})"
        )

    # -- state -------------------------------------------------------------------------------------------------
    def state_dict(self) -> dict:
        return {
            "protocol": self.protocol,
            "swaps": self.swaps,
            "seed": self.seed,
            "draws": self.draws,
            "calls": self.calls,
            "stats": dict(self.stats),
        }

    def load_state_dict(self, state: dict) -> None:
        if state["protocol"] != self.protocol or state["swaps"] != self.swaps:
            raise ValueError(f"state is for {state['protocol']} x{state['swaps']}, not {self.protocol} x{self.swaps}")
        self.seed, self.draws, self.calls = state["seed"], state["draws"], state["calls"]
        self.stats = dict(state["stats"])

    # -- hooking into an optimizer -------------------------------------------------------------------------------
    def attach(self, optimizer, closure=None):
        """Applies the swaps after every `every`-th step of optimizer (a step post-hook). Returns a handle whose
        remove() detaches. Metropolis needs `closure` (returns the loss on the current batch)."""
        if self.accept == "metropolis" and closure is None:
            raise ValueError("metropolis acceptance needs a closure that returns the loss")
        self._optimizer, self._closure = optimizer, closure

        def hook(opt, args, kwargs):
            self.calls += 1
            if self.calls % self.every == 0:
                self.step(self._closure, optimizer=opt)

        return optimizer.register_step_post_hook(hook)

    # -- one application -----------------------------------------------------------------------------------------
    def step(self, closure=None, *, optimizer=None):
        """Proposes one set of exchanges and applies it (Metropolis: keeps it with probability
        min(1, exp(-(L_after - L_before) / T)), else undoes it). Returns True/False (kept or not), or None when
        the p-coin skipped the step."""
        if self.accept == "metropolis" and closure is None:
            raise ValueError("metropolis acceptance needs a closure that returns the loss")
        opt = self._optimizer_for(optimizer, "step(optimizer=...)")
        base = self._next_base()
        if base is None:
            return None
        with nvtx_range(f"swapkern/weight_swap.{self.protocol}"), torch.no_grad():
            picks = self._fill(base)
            if self.accept == "metropolis":
                before = float(closure())
            jobs = self._jobs(picks, opt)
            self._run(jobs, picks)
            if self.accept == "always":
                self.stats["proposals"] += 1
                self.stats["accepted"] += 1
                return True
            after = float(closure())
            self.stats["closure_calls"] += 2
            delta = after - before
            u = plans.word(0, base("accept"), 0) / 2**32
            kept = delta <= 0 or u < math.exp(-delta / self.temperature)
            if not kept:
                self._run(jobs, picks)  # a set of disjoint exchanges is its own inverse
            n = self.stats["proposals"] = self.stats["proposals"] + 1
            self.stats["accepted"] += int(kept)
            self.stats["mean_delta"] += (delta - self.stats["mean_delta"]) / n
            return kept

    # -- the two halves of a step, for CUDA graphs ---------------------------------------------------------------
    def draw(self):
        """Draws the next step's exchanges into the (reused) index buffer: host work and one host-to-device copy,
        outside any CUDA graph. Returns what apply() needs, or None when the p-coin skips this step (then skip the
        replay too). Metropolis needs the loss around the swap: use step(closure)."""
        if self.accept == "metropolis":
            raise ValueError("metropolis acceptance decides inside step(closure); draw()/apply() always keep")
        base = self._next_base()
        if base is None:
            return None
        with torch.no_grad():
            return self._fill(base)

    def apply(self, drawn, *, optimizer=None):
        """Applies drawn exchanges: the kernel launches only (no allocation once the packed geometry of these
        tensors exists, no host sync), so it can be captured in a CUDA graph and replayed after each draw().
        Applying the same draw twice undoes it; None (a skipped step) does nothing. Protocols whose set of moved
        tensors changes from step to step (inter-layer) cannot be replayed from one capture."""
        opt = self._optimizer_for(optimizer, "apply(..., optimizer=...)")
        if drawn is None:
            return
        with torch.no_grad():
            self._run(self._jobs(drawn, opt), drawn)

    def _optimizer_for(self, optimizer, call):
        opt = optimizer or self._optimizer
        if self.state and opt is None:
            raise ValueError(f"state=True needs the optimizer: attach(optimizer) or {call}")
        return opt

    def _next_base(self):
        """Advances the draw counter; returns the key maker of this draw, or None when the p-coin skips it."""
        step, self.draws = self.draws, self.draws + 1
        base = lambda stream: plans.base_key(self.seed, step, stream)  # noqa: E731
        if self.p < 1.0 and plans.word(0, base("coin"), 0) >= int(self.p * 2**32):
            return None
        return base

    def _fill(self, base):
        """Draws every group's pairs on the host into the index buffer (one copy to the device)."""
        if self._copied is not None:
            self._copied.synchronize()  # the previous copy has left the pinned buffer (long since, normally)
        host = self._host.numpy()
        picks = []
        for g, off in zip(self.groups, self._offsets, strict=True):
            res = g.draw(base)
            a, b, pick = res if len(res) == 3 else (*res, None)
            host[off : off + g.k] = a
            host[off + g.k : off + 2 * g.k] = b
            picks.append(pick)
        if self._index is not self._host:
            self._index.copy_(self._host, non_blocking=True)
            self._copied = torch.cuda.Event()
            self._copied.record()
        if self.max_gap is not None:
            self._apply_gap(picks)
        return picks

    def _apply_gap(self, picks):
        """max_gap: pairs whose values differ by max_gap or more become identities (a, a) on the device."""
        for g, off, pick in zip(self.groups, self._offsets, picks, strict=True):
            job = g.jobs[pick if pick is not None else 0]
            a, b = self._index[off : off + g.k], self._index[off + g.k : off + 2 * g.k]
            x, y = job.view(job.x), job.view(job.y)
            if job.dx is None:
                xa, yb = x.reshape(-1)[a], y.reshape(-1)[b]
                diff = (xa.float() - yb.float()).abs()
            else:
                xa, yb = x.index_select(job.dx, a).movedim(job.dx, 0), y.index_select(job.dy, b).movedim(job.dy, 0)
                diff = (xa.float() - yb.float()).pow(2).flatten(1).mean(1).sqrt()
            b.copy_(torch.where(diff < self.max_gap, b, a))

    def _jobs(self, picks, opt):
        """(x view, y view, dx, dy, group index) for every tensor that moves this step, optimizer state included."""
        out = []
        for gi, (g, pick) in enumerate(zip(self.groups, picks, strict=True)):
            for ji, job in enumerate(g.jobs):
                if pick is not None and ji != pick:
                    continue
                out.append((job.view(job.x), job.view(job.y), job.dx, job.dy, gi, job.x is job.y))
                if self.state and job.stateful:
                    sx, sy = opt.state.get(job.x, {}), opt.state.get(job.y, {})
                    for name, tx in sx.items():
                        ty = sy.get(name)
                        if (
                            isinstance(tx, torch.Tensor)
                            and isinstance(ty, torch.Tensor)
                            and tx.shape == job.x.shape
                            and ty.shape == job.y.shape
                        ):
                            out.append((job.view(tx), job.view(ty), job.dx, job.dy, gi, job.x is job.y))
        return out

    def _run(self, jobs, picks):
        """All exchanges of the step: one packed launch (native: C++/CUDA; triton: one per element width), else
        (the torch backend) one reference call per tensor."""
        backend = _backend.resolve(self._index)
        if backend in ("native", "triton") and (backend == "triton" or hasattr(torch.ops.swapkern, "swap_packed_")):
            for wave in _waves(jobs):
                if backend == "native":
                    self._run_packed(wave)
                else:
                    self._run_triton_packed(wave)
            return
        for x, y, dx, dy, gi, same in jobs:
            a, b = self._slices(gi)
            if same and dx is None:
                ops.swap_elements_(x, a, b, validate=False)
            elif same:
                ops.swap_(x, dx, a, b, validate=False)
            else:
                ops.swap_between_(x, y, a, b, dim_x=dx, dim_y=dy, validate=False)

    def _slices(self, gi):
        g, off = self.groups[gi], self._offsets[gi]
        return self._index[off : off + g.k], self._index[off + g.k : off + 2 * g.k]

    def _run_triton_packed(self, jobs):
        from .triton import packed

        launches = self._cached(
            "triton",
            jobs,
            lambda: packed.pack([(x, x if same else y, dx, dy, *self._slices(gi)) for x, y, dx, dy, gi, same in jobs]),
        )
        packed.run(launches)

    def _cached(self, kind, jobs, build):
        """The packed geometry of a set of tensors: built once, reused while their storage stays put (at most 64
        sets kept: a model whose parameters move gets rebuilt, not an unbounded cache)."""
        key = (kind,) + tuple((x.data_ptr(), y.data_ptr(), dx, dy, gi) for x, y, dx, dy, gi, _ in jobs)
        hit = self._packed.get(key)
        if hit is None:
            if len(self._packed) > 64:
                self._packed.clear()
            hit = self._packed[key] = build()
        return hit

    def _run_packed(self, jobs):
        """One multi-tensor launch (torch.ops.swapkern.swap_packed_). The packed geometry is built once per set of
        tensors and reused while their storage stays put."""

        def build():
            xs, ys, a, b, dxs, dys = [], [], [], [], [], []
            for x, y, dx, dy, gi, same in jobs:
                xs.append(x)
                ys.append(x if same else y)
                ia, ib = self._slices(gi)
                a.append(ia)
                b.append(ib)
                dxs.append(-1 if dx is None else dx)
                dys.append(-1 if dy is None else dy)
            meta = torch.ops.swapkern.pack_plans(xs, ys, a, b, dxs, dys)
            return meta, meta.to(self.device)

        meta_cpu, meta_dev = self._cached("native", jobs, build)
        tensors = [t for x, y, _, _, _, same in jobs for t in (x, x if same else y)]
        torch.ops.swapkern.swap_packed_(tensors, meta_dev, meta_cpu)


def _waves(jobs):
    """Splits jobs into launches in which no storage is touched by two groups' exchanges (neuron moves a weight's
    columns for one layer and its rows for the next: run at once, those exchanges would race on the elements they
    share). Every other protocol touches each tensor once per step: one wave, one launch."""
    waves: list[tuple[list, dict]] = []
    for job in jobs:
        x, y, gi = job[0], job[1], job[4]
        stores = {x.untyped_storage().data_ptr(), y.untyped_storage().data_ptr()}
        for members, owner in waves:
            if all(owner.get(s, gi) == gi for s in stores):
                members.append(job)
                owner.update(dict.fromkeys(stores, gi))
                break
        else:
            waves.append(([job], dict.fromkeys(stores, gi)))
    return [members for members, _ in waves]
