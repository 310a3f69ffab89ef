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
import operator
import weakref
from itertools import chain

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
        self.stats = {"proposals": 0, "accepted": 0, "mean_delta": 0.0, "closure_calls": 0, "failed": 0}
        self._optimizer, self._closure = None, None
        self._engine = Engine(self.groups, self.device, self._bind)
        self._bound_opt, self._hooked = None, weakref.WeakSet()
        self._drawn = None
        # What the engine binds to: each job tensor's construction-time shape (the groups' geometry is drawn for
        # it), and where the model keeps it (module._parameters / _buffers slots), so that a tensor the model
        # replaced (Module._apply, load_state_dict(assign=True), assignment) is noticed before a step.
        self._shapes = [[(j.x.shape, j.y.shape) for j in g.jobs] for g in self.groups]
        self._names = {t: n for n, t in named}
        self._slots = _slots(self.model, self.groups) if self.model is not None and not self._sharded else {}
        self._slot_dicts, self._slot_keys, self._slot_tensors = _flat_slots(self._slots)
        self._state_params, self._state_live = [], []
        self._state_values, self._state_bound, self._state_of, self._state_all = [], [], None, []

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
        # Transactional: a closure that raises, or returns no finite scalar, leaves the weights and state as before
        # the proposal (undone if applied), the draw counter where it was, and is re-raised; stats["failed"] counts it.
        applied = False
        try:
            before = self._loss(closure)
            engine.step(self.seed, step, 1)
            if self.max_gap is not None:
                self._apply_gap()
            engine.step(self.seed, step, 2)
            applied = True
            after = self._loss(closure)
        except BaseException:
            if applied:
                engine.step(self.seed, step, 2)  # a set of disjoint exchanges is its own inverse
            self.draws = step
            self.stats["failed"] = self.stats.get("failed", 0) + 1
            raise
        delta = after - before
        u = plans.word(0, plans.base_key(self.seed, step, "accept"), 0) / 2**32
        kept = delta <= 0 or u < math.exp(-delta / self.temperature)
        if not kept:
            engine.step(self.seed, step, 2)
        n = self.stats["proposals"] = self.stats["proposals"] + 1
        self.stats["accepted"] += int(kept)
        self.stats["mean_delta"] += (delta - self.stats["mean_delta"]) / n
        return kept

    def _loss(self, closure) -> float:
        """The closure's loss as a float: a number or a one-element tensor, finite (TypeError, ValueError)."""
        with torch.no_grad():
            self.stats["closure_calls"] += 1
            loss = closure()
        if isinstance(loss, torch.Tensor):
            if loss.numel() != 1:
                raise ValueError(
                    f"the Metropolis closure must return a scalar loss, got a tensor of shape {tuple(loss.shape)}"
                )
            if loss.is_complex():
                raise TypeError(f"the Metropolis closure must return a real loss, got dtype {loss.dtype}")
            value = float(loss)
        elif _is_real_number(loss):
            value = float(loss)
        else:
            raise TypeError(
                "the Metropolis closure must return the loss (a number or a one-element tensor), got "
                f"{type(loss).__name__}"
            )
        if not math.isfinite(value):
            raise ValueError(f"the Metropolis closure returned a non-finite loss ({value})")
        return value

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
        """Before a step: packs the engine again when the optimizer whose state moves changes, when the model
        holds another tensor where a bound one was (Module._apply, load_state_dict(assign=True), assignment), or
        when the optimizer's state of a bound parameter appeared, was replaced or gained an entry shaped like it.
        O(bound tensors) identity checks; a tensor changed in place (.data =, a new layout) the backends' own
        fingerprint check catches."""
        engine = self._engine
        if self.state and opt is not self._bound_opt:
            self._bound_opt = opt
            engine.invalidate()
            if opt not in self._hooked:
                self._hooked.add(opt)
                ref = weakref.ref(engine)
                opt.register_load_state_dict_post_hook(lambda o, e=ref: e() and e().invalidate())
        elif engine.packed and self._moved():
            engine.invalidate()

    def _moved(self) -> bool:
        """Whether what _bind bound has changed: a model slot or the optimizer's state of a bound parameter."""
        if self._slot_dicts and not all(
            map(operator.is_, map(dict.get, self._slot_dicts, self._slot_keys), self._slot_tensors)
        ):
            return True
        if not self._state_params:
            return False
        state = self._bound_opt.state  # {parameter: its state dict}; compared without hashing parameters (slow)
        if (
            state is not self._state_of
            or len(state) != len(self._state_all)
            or not all(map(operator.is_, state.values(), self._state_all))
        ):
            return True
        values = list(chain.from_iterable(map(dict.values, self._state_live)))
        if len(values) == len(self._state_values) and all(map(operator.is_, values, self._state_values)):
            return False
        # an entry was added or replaced (LBFGS replaces its own every step): moved only if what binds changed
        self._state_values = values
        return not _same_entries(_state_entries(self._state_params, state), self._state_bound)

    def _rebind(self):
        """Follows the model's slots to the tensors it holds now (refusing one of another shape or device, a tie
        broken, a tensor removed), and checks every job tensor still has the shape the groups were drawn for."""
        moved = {}
        for t, (name, slots) in self._slots.items():
            now = [d.get(k) for d, k in slots]
            new = now[0]
            if all(n is t for n in now):
                continue
            if new is None:
                raise ValueError(f"WeightSwap: {name} was removed from the model after the WeightSwap was built")
            if any(n is not new for n in now):
                raise ValueError(
                    f"WeightSwap: {name} was one tensor in {len(now)} places and is now several (a tie was broken "
                    "after the WeightSwap was built); build a new WeightSwap"
                )
            moved[t] = (name, new)
        if moved:
            for g in self.groups:
                for job in g.jobs:
                    job.x = moved[job.x][1] if job.x in moved else job.x
                    job.y = moved[job.y][1] if job.y in moved else job.y
            self._slots = {moved[t][1] if t in moved else t: v for t, v in self._slots.items()}
            self._slot_dicts, self._slot_keys, self._slot_tensors = _flat_slots(self._slots)
        for g, shapes in zip(self.groups, self._shapes, strict=True):
            for job, (sx, sy) in zip(g.jobs, shapes, strict=True):
                for t, shape in ((job.x, sx), (job.y, sy)):
                    if t.shape != shape:
                        raise ValueError(
                            f"WeightSwap: {self._name_of(t)} has shape {tuple(t.shape)} but the WeightSwap was built "
                            f"for {tuple(shape)} (its exchanges are drawn for that shape); build a new WeightSwap"
                        )
                    if t.device != self.device:
                        raise ValueError(
                            f"WeightSwap: {self._name_of(t)} is on {t.device} but the WeightSwap was built for "
                            f"{self.device}; build it after moving the model"
                        )

    def _name_of(self, t):
        return self._slots[t][0] if t in self._slots else self._names.get(t, "a swapped tensor")

    def _bind(self):
        """The engine's jobs: every job's tensors (views as the protocol needs them) and, with state=True, those of
        the optimizer state tensors shaped like each parameter; and the tensors to watch for changes."""
        self._rebind()
        opt = self._bound_opt if self.state else None
        jobs, watched, seen, sharded = [], [], set(), self._sharded

        def watch(*ts):
            for t in ts:
                if id(t) not in seen:
                    seen.add(id(t))
                    watched.append(t)

        if opt is not None:
            params = list({t: None for g in self.groups for j in g.jobs if j.stateful for t in (j.x, j.y)})
            self._state_params = params
            self._state_of, self._state_all = opt.state, list(opt.state.values())
            self._state_live = [d for d in map(opt.state.get, params) if isinstance(d, dict)]
            self._state_values = [v for d in self._state_live for v in d.values()]
            self._state_bound = _state_entries(params, opt.state)
        else:
            self._state_params = []
        for gi, g in enumerate(self.groups):
            for ji, job in enumerate(g.jobs):
                pairs = [(job.x, job.y)]
                if opt is not None and job.stateful:
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
                    if sharded and _sharded.is_sharded(tx):  # the view applies to the local shard (swapkern._sharded)
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


def _is_real_number(v) -> bool:
    """A real number that is not a Python bool (NumPy scalars, say)."""
    import numbers

    return isinstance(v, numbers.Real) and not isinstance(v, bool)


def _slots(model, groups):
    """{job tensor: (its name, [(module._parameters or _buffers, key), ...])}: every place the model holds it (a
    tied parameter has several)."""
    wanted = {t: None for g in groups for j in g.jobs for t in (j.x, j.y)}
    out: dict = {}
    for prefix, m in model.named_modules(remove_duplicate=False):
        for d in (m._parameters, m._buffers):
            for k, v in d.items():
                if v is not None and v in wanted:
                    name, slots = out.setdefault(v, (f"{prefix}.{k}" if prefix else k, []))
                    slots.append((d, k))
    return out


def _flat_slots(slots):
    dicts, keys, tensors = [], [], []
    for t, (_, where) in slots.items():
        for d, k in where:
            dicts.append(d)
            keys.append(k)
            tensors.append(t)
    return dicts, keys, tensors


def _state_entries(params, state):
    """Per parameter, the optimizer-state entries that bind with it (tensors of its shape), as (name, tensor)."""
    out = []
    for p in params:
        d = state.get(p)
        ok = isinstance(d, dict)
        out.append([(k, v) for k, v in d.items() if isinstance(v, torch.Tensor) and v.shape == p.shape] if ok else [])
    return out


def _same_entries(a, b):
    return len(a) == len(b) and all(
        len(x) == len(y) and all(kx == ky and vx is vy for (kx, vx), (ky, vy) in zip(x, y, strict=True))
        for x, y in zip(a, b, strict=True)
    )


class _Drawn:
    """The token of one draw() (apply() checks it is the latest)."""

    __slots__ = ("step",)

    def __init__(self, step):
        self.step = step
