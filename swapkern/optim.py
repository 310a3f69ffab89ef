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
Sharded parameters: DTensors on a 1-D mesh with Shard(0), Shard(1) or Replicate() placements (FSDP2's
fully_shard, tensor parallelism), their optimizer state too (swapkern._sharded); FSDP1 flat parameters, 2-D meshes
and other placements are refused by name.
"""

from __future__ import annotations

import math
import weakref

import torch
from torch import nn

from . import _sharded, plans
from ._weightplan import INTER, WEIGHT_PROTOCOLS, build, select
from .multi import BoundJob, Engine

ACCEPT = ("always", "metropolis")


class WeightSwap:
    """Swaps weights of `model_or_params` (an nn.Module, or parameters / (name, parameter) pairs) by `protocol`.

    swaps: exchanges per chosen layer and step; every: apply after every `every`-th optimizer step (attach);
    layers: None (every layer but the output layer, found on the traced graph or as the classifier by name: see
    `left_out`), "all", names or glob patterns of parameters / modules, or a predicate(name, param); state: move the
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
        if self.model is not None:
            _sharded.check_model(self.model)
        for name, t in named:
            _sharded.check(name, t)
        chosen = select(named, None if isinstance(layers, str) and layers == "all" else layers)
        output = {}
        if layers is None and self.model is not None and protocol != "neuron":  # the study's default: no output layer
            from ._layers import output_layer

            names, why = output_layer(self.model)
            output = {n: f"{why}; layers='all' takes it" for n in names if any(n == c for c, _ in chosen)}
            chosen = [(n, t) for n, t in chosen if n not in output]
            if not chosen:
                raise ValueError(f"nothing to swap: {', '.join(output)} is {why}; layers='all' takes it")
        if not chosen and protocol != "neuron":
            raise ValueError("no parameter of 2 or more dims is chosen")
        self.protocol, self.swaps, self.every, self.state = protocol, swaps, every, state
        self.accept, self.temperature, self.p, self.max_gap = accept, temperature, float(p), max_gap
        explicit = layers is not None and not callable(layers) and not (isinstance(layers, str) and layers == "all")
        try:
            self.groups, self.layers, self.left_out = build(protocol, named, chosen, swaps, self.model, explicit)
        except ValueError as e:
            if not output or "nothing to swap" not in str(e):
                raise
            raise ValueError(f"{e}; {', '.join(output)} is {next(iter(output.values()))}") from None
        self.left_out = {**output, **self.left_out}
        self._sharded = any(_sharded.is_sharded(t) for g in self.groups for j in g.jobs for t in (j.x, j.y))
        if self._sharded and max_gap is not None:
            raise ValueError("max_gap is not supported with sharded (DTensor) parameters")
        devices = {j.x.device for g in self.groups for j in g.jobs} | {j.y.device for g in self.groups for j in g.jobs}
        if len(devices) != 1:
            raise ValueError(f"the chosen tensors live on several devices: {sorted(map(str, devices))}")
        self.device = devices.pop()
        if self.device.type not in ("cpu", "cuda"):
            raise ValueError(
                f"the chosen tensors are on {self.device}: weight swaps run on CPU and CUDA tensors"
                + (
                    " (meta parameters hold no data: materialise them first, e.g. model.to_empty())"
                    if self.device.type == "meta"
                    else ""
                )
            )
        self.seed, self.draws, self.calls = plans.resolve_seed(seed, generator), 0, 0
        if self._sharded:  # every rank must draw the same exchanges: rank 0's seed
            mesh = next(t for g in self.groups for j in g.jobs for t in (j.x,) if _sharded.is_sharded(t)).device_mesh
            box = [self.seed]
            torch.distributed.broadcast_object_list(box, group=mesh.get_group(), group_src=0)
            self.seed = box[0]
        self.stats = {"proposals": 0, "accepted": 0, "mean_delta": 0.0, "closure_calls": 0}
        self._optimizer, self._closure = None, None
        self._engine = Engine(self.groups, self.device, self._bind)
        self._bound_opt, self._complete, self._hooked = None, True, weakref.WeakSet()
        self._drawn = None

    def __repr__(self):
        left = f", left out {len(self.left_out)}" if self.left_out else ""
        return (
            f"WeightSwap({self.protocol!r}, swaps={self.swaps}, every={self.every}, state={self.state}, "
            f"accept={self.accept!r}, layers={len(self.layers)}{left}, groups={len(self.groups)}, seed={self.seed}, "
            f"draws={self.draws})"
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
        self._use(self._optimizer_for(optimizer, "step(optimizer=...)"))
        step = self._next_step()
        if step is None:
            return None
        engine = self._engine
        if self._sharded:
            self._reshard()
        if self.accept == "always":
            if self.max_gap is None:
                engine.step(self.seed, step, 3)  # one op call: draw and apply
            else:
                engine.step(self.seed, step, 1)
                self._apply_gap()
                engine.step(self.seed, step, 2)
            self.stats["proposals"] += 1
            self.stats["accepted"] += 1
            return True
        with torch.no_grad():
            before = float(closure())
        engine.step(self.seed, step, 1)
        if self.max_gap is not None:
            self._apply_gap()
        engine.step(self.seed, step, 2)
        with torch.no_grad():
            after = float(closure())
        self.stats["closure_calls"] += 2
        delta = after - before
        u = plans.word(0, plans.base_key(self.seed, step, "accept"), 0) / 2**32
        kept = delta <= 0 or u < math.exp(-delta / self.temperature)
        if not kept:
            engine.step(self.seed, step, 2)  # a set of disjoint exchanges is its own inverse
        n = self.stats["proposals"] = self.stats["proposals"] + 1
        self.stats["accepted"] += int(kept)
        self.stats["mean_delta"] += (delta - self.stats["mean_delta"]) / n
        return kept

    # -- the two halves of a step, for CUDA graphs ---------------------------------------------------------------
    def draw(self, *, optimizer=None):
        """Draws the next step's exchanges into the (reused) index buffer, on the tensors' device: outside any CUDA
        graph. Returns the token apply() needs, or None when the p-coin skips this step (then skip the replay too).
        Metropolis needs the loss around the swap: use step(closure)."""
        if self.accept == "metropolis":
            raise ValueError("metropolis acceptance decides inside step(closure); draw()/apply() always keep")
        self._use(self._optimizer_for(optimizer, "draw(optimizer=...)"))
        step = self._next_step()
        if step is None:
            return None
        self._engine.step(self.seed, step, 1)  # (sharded parameters are resharded before apply())
        if self.max_gap is not None:
            self._apply_gap()
        self._drawn = _Drawn(step)
        return self._drawn

    def apply(self, drawn, *, optimizer=None):
        """Applies the exchanges of the last draw(): kernel launches only (no allocation once the engine is packed,
        no host sync), so it can be captured in a CUDA graph and replayed after each draw(). Applying the same draw
        twice undoes it; None (a skipped step) does nothing. A CUDA graph that captured apply() must be destroyed before
        this WeightSwap (its engine cannot wait for replays it does not see)."""
        self._use(self._optimizer_for(optimizer, "apply(..., optimizer=...)"))
        if drawn is None:
            return
        if drawn is not self._drawn:
            raise ValueError("apply() takes the token of the last draw(): the index buffer holds only that draw")
        if self._sharded:
            self._reshard()
        self._engine.step(self.seed, drawn.step, 2)

    def _reshard(self):
        """FSDP2 keeps parameters sharded after an optimizer step unless told otherwise: make sure they are, so the
        exchanges write the shards the next forward all-gathers."""
        for m in self.model.modules() if self.model is not None else ():
            reshard = getattr(m, "reshard", None)
            if callable(reshard) and type(m).__name__.startswith("FSDP"):
                reshard()

    def _optimizer_for(self, optimizer, call):
        opt = optimizer or self._optimizer
        if self.state and opt is None:
            raise ValueError(f"state=True needs the optimizer: attach(optimizer) or {call}")
        return opt

    def _next_step(self):
        """Advances the draw counter; returns this draw's step, or None when the p-coin skips it."""
        step, self.draws = self.draws, self.draws + 1
        if self.p < 1.0 and plans.word(0, plans.base_key(self.seed, step, "coin"), 0) >= int(self.p * 2**32):
            return None
        return step

    # -- binding the engine to tensors ---------------------------------------------------------------------------
    def _use(self, opt):
        """Packs the engine again when the optimizer whose state moves changes, or its state was not all there
        (it appears with the optimizer's first step) or was replaced (load_state_dict)."""
        if not self.state:
            return
        if opt is not self._bound_opt or not self._complete:
            self._bound_opt = opt
            self._engine.invalidate()
            if opt not in self._hooked:
                self._hooked.add(opt)
                engine = weakref.ref(self._engine)
                opt.register_load_state_dict_post_hook(lambda o, e=engine: e() and e().invalidate())

    def _bind(self):
        """The engine's jobs: every job's tensors (views as the protocol needs them) and, with state=True, those of
        the optimizer state tensors shaped like each parameter; and the tensors to watch for changes."""
        opt = self._bound_opt if self.state else None
        jobs, watched, seen = [], [], set()
        self._complete = True

        def watch(*ts):
            for t in ts:
                if id(t) not in seen:
                    seen.add(id(t))
                    watched.append(t)

        for gi, g in enumerate(self.groups):
            for ji, job in enumerate(g.jobs):
                pairs = [(job.x, job.y)]
                if opt is not None and job.stateful:
                    if job.x not in opt.state or job.y not in opt.state:
                        self._complete = False
                    sx, sy = opt.state.get(job.x, {}), opt.state.get(job.y, {})
                    for name, tx in sx.items():
                        ty = sy.get(name)
                        if (
                            isinstance(tx, torch.Tensor)
                            and isinstance(ty, torch.Tensor)
                            and tx.shape == job.x.shape
                            and ty.shape == job.y.shape
                        ):
                            pairs.append((tx, ty))
                for tx, ty in pairs:
                    watch(tx, ty)
                    if _sharded.is_sharded(tx):  # the view applies to the local shard (swapkern._sharded)
                        jobs.append(BoundJob(tx, ty, job.dx, job.dy, gi, ji, job.view, job.view_dim))
                        continue
                    vx = job.view(tx)
                    vy = vx if tx is ty else job.view(ty)
                    jobs.append(BoundJob(vx, vy, job.dx, job.dy, gi, ji))
        return jobs, watched

    def _apply_gap(self):
        """max_gap: pairs whose values differ by max_gap or more (elements: |x - y| in float32, as the values
        compare; slices: the RMS of their difference, in float32) are marked not to move (keep = 0)."""
        engine = self._engine
        with torch.no_grad():
            for gi, g in enumerate(self.groups):
                pick = int(engine.pick_slot(gi)) if g.kind == INTER else 0
                job = g.jobs[pick]
                a, b, keep = engine.slices(gi)
                x, y = job.view(job.x), job.view(job.y)
                if job.dx is None:
                    xa, yb = x.reshape(-1)[a], y.reshape(-1)[b]
                    keep.copy_((xa.float() - yb.float()).abs() < self.max_gap)
                else:
                    xa, yb = x.index_select(job.dx, a).movedim(job.dx, 0), y.index_select(job.dy, b).movedim(job.dy, 0)
                    rms = (xa.float() - yb.float()).pow(2).flatten(1).mean(1).sqrt()
                    keep.copy_(rms < self.max_gap)


class _Drawn:
    """The token of one draw() (apply() checks it is the latest)."""

    __slots__ = ("step",)

    def __init__(self, step):
        self.step = step
