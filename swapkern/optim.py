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

Draws come from the counter-based generator of swapkern.draws, keyed by (seed, step, layer): a seeded run
repeats exactly on any device, resumes from state_dict(), and gives the same exchanges on every DDP rank.
Sharded parameters: DTensors on a 1-D mesh with Shard(0), Shard(1) or Replicate() placements (FSDP2's
fully_shard, tensor parallelism), their optimizer state too (swapkern._sharded); FSDP1 flat parameters, 2-D meshes
and other placements are refused by name.
"""

from __future__ import annotations

import torch
from torch import nn

from . import _gap, _metropolis, _sharded, draws
from ._binding import Binding
from ._common import APPLY, DRAW, DRAW_AND_APPLY
from ._groups import INTER  # noqa: F401 (swapkern.optim.INTER)
from ._layers import output_layer
from ._weightprotocols import WEIGHT_PROTOCOLS, build, select
from .multi import BoundJob, Engine  # noqa: F401 (BoundJob: swapkern.optim.BoundJob)

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
        _check_arguments(protocol, swaps, every, accept, temperature, p, max_gap)
        self.model = model_or_params if isinstance(model_or_params, nn.Module) else None
        named = _named(self.model, model_or_params)
        self.protocol, self.swaps, self.every = protocol, swaps, every
        self.accept, self.temperature, self.p, self.max_gap = accept, temperature, float(p), max_gap
        self.groups, self.layers, self.left_out = _groups(protocol, named, layers, swaps, self.model)
        self._sharded = any(_sharded.is_sharded(t) for g in self.groups for j in g.jobs for t in (j.x, j.y))
        if self._sharded and max_gap is not None:
            raise ValueError("max_gap is not supported with sharded (DTensor) parameters")
        self.device = _device(self.groups)
        self.seed, self.draws, self.calls = draws.resolve_seed(seed, generator), 0, 0
        if self._sharded:  # every rank must draw the same exchanges: rank 0's seed
            self.seed = _rank0_seed(self.groups, self.seed)
        self.stats = {"proposals": 0, "accepted": 0, "mean_delta": 0.0, "closure_calls": 0, "failed": 0}
        self._optimizer, self._closure = None, None
        # The engine binds to the tensors the model and optimizer hold now, and packs again when they change.
        self._binding = Binding(self.groups, named, self.model, self.device, state, self._sharded)
        self._engine = self._binding.engine = Engine(self.groups, self.device, self._binding.bind)
        self._drawn = None

    @property
    def state(self):
        """Whether the optimizer's state tensors shaped like a parameter move with it (may be changed between steps)."""
        return self._binding.state

    @state.setter
    def state(self, value):
        self._binding.state = value

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
        self._binding.use(self._optimizer_for(optimizer, "step(optimizer=...)"))
        step = self._next_step()
        if step is None:
            return None
        engine = self._engine
        if self._sharded:
            self._reshard()
        if self.accept == "always":
            if self.max_gap is None:
                engine.step(self.seed, step, DRAW_AND_APPLY)  # one op call: draw and apply
            else:
                engine.step(self.seed, step, DRAW)
                self._keep_close()
                engine.step(self.seed, step, APPLY)
            self.stats["proposals"] += 1
            self.stats["accepted"] += 1
            return True
        gap = self._keep_close if self.max_gap is not None else None
        try:  # transactional (swapkern._metropolis): a failed proposal leaves the draw counter where it was too
            return _metropolis.propose(engine, self.seed, step, closure, self.temperature, self.stats, gap)
        except BaseException:
            self.draws = step
            raise

    # -- the two halves of a step, for CUDA graphs ---------------------------------------------------------------
    def draw(self, *, optimizer=None):
        """Draws the next step's exchanges into the (reused) index buffer, on the tensors' device: outside any CUDA
        graph. Returns the token apply() needs, or None when the p-coin skips this step (then skip the replay too).
        Metropolis needs the loss around the swap: use step(closure)."""
        if self.accept == "metropolis":
            raise ValueError("metropolis acceptance decides inside step(closure); draw()/apply() always keep")
        self._binding.use(self._optimizer_for(optimizer, "draw(optimizer=...)"))
        step = self._next_step()
        if step is None:
            return None
        self._engine.step(self.seed, step, DRAW)  # (sharded parameters are resharded before apply())
        if self.max_gap is not None:
            self._keep_close()
        self._drawn = _Drawn(step)
        return self._drawn

    def apply(self, drawn, *, optimizer=None):
        """Applies the exchanges of the last draw(): kernel launches only (no allocation once the engine is packed,
        no host sync), so it can be captured in a CUDA graph and replayed after each draw(). Applying the same draw
        twice undoes it; None (a skipped step) does nothing. A CUDA graph that captured apply() must be destroyed before
        this WeightSwap (its engine cannot wait for replays it does not see)."""
        self._binding.use(self._optimizer_for(optimizer, "apply(..., optimizer=...)"))
        if drawn is None:
            return
        if drawn is not self._drawn:
            raise ValueError("apply() takes the token of the last draw(): the index buffer holds only that draw")
        if self._sharded:
            self._reshard()
        self._engine.step(self.seed, drawn.step, APPLY)

    def _keep_close(self):
        """max_gap: the last draw's pairs that differ by max_gap or more stay (swapkern._gap)."""
        _gap.keep_close(self._engine, self.groups, self.max_gap)

    def _reshard(self):
        """FSDP2 keeps parameters sharded after an optimizer step unless told otherwise: make sure they are, so the
        exchanges write the shards the next forward all-gathers."""
        for m in self.model.modules() if self.model is not None else ():
            reshard = getattr(m, "reshard", None)
            if callable(reshard) and type(m).__name__.startswith("FSDP"):
                reshard()

    def _optimizer_for(self, optimizer, call):
        opt = optimizer or self._optimizer
        if self._binding.state and opt is None:
            raise ValueError(f"state=True needs the optimizer: attach(optimizer) or {call}")
        return opt

    def _next_step(self):
        """Advances the draw counter; returns this draw's step, or None when the p-coin skips it."""
        step, self.draws = self.draws, self.draws + 1
        if self.p < 1.0 and draws.word(0, draws.base_key(self.seed, step, "coin"), 0) >= int(self.p * 2**32):
            return None
        return step


# -- building a WeightSwap -------------------------------------------------------------------------------------------
def _check_arguments(protocol, swaps, every, accept, temperature, p, max_gap):
    if protocol not in WEIGHT_PROTOCOLS:
        raise ValueError(f"unknown weight-swap protocol {protocol!r}; choose one of {', '.join(WEIGHT_PROTOCOLS)}")
    draws.check_count("swaps", swaps)
    draws.check_count("every", every)
    if accept not in ACCEPT:
        raise ValueError(f"accept must be one of {ACCEPT}, got {accept!r}")
    if accept == "metropolis" and (temperature is None or not temperature > 0):
        raise ValueError(f"metropolis needs a temperature T > 0, got {temperature!r}")
    draws.check_probability("p", p)
    if max_gap is not None and not max_gap > 0:
        raise ValueError(f"max_gap must be > 0, got {max_gap!r}")


def _named(model, model_or_params):
    """(name, tensor) pairs of the model's parameters, or of the parameters given, checked for sharding."""
    if model is not None:
        named = list(model.named_parameters())
        _sharded.check_model(model)
    else:
        named = [it if isinstance(it, tuple) else (f"param{i}", it) for i, it in enumerate(model_or_params)]
    for name, t in named:
        _sharded.check(name, t)
    return named


def _groups(protocol, named, layers, swaps, model):
    """(groups, layer names, {left-out layer: why}) of the protocol over the layers `layers` chooses; by default
    (layers=None, a model) without the output layer."""
    chosen = select(named, None if isinstance(layers, str) and layers == "all" else layers)
    output = {}
    if layers is None and model is not None and protocol != "neuron":  # the study's default: no output layer
        names, why = output_layer(model)
        output = {n: f"{why}; layers='all' takes it" for n in names if any(n == c for c, _ in chosen)}
        chosen = [(n, t) for n, t in chosen if n not in output]
        if not chosen:
            raise ValueError(f"nothing to swap: {', '.join(output)} is {why}; layers='all' takes it")
    if not chosen and protocol != "neuron":
        raise ValueError("no parameter of 2 or more dims is chosen")
    explicit = layers is not None and not callable(layers) and not (isinstance(layers, str) and layers == "all")
    try:
        groups, kept, left_out = build(protocol, named, chosen, swaps, model, explicit)
    except ValueError as e:
        if not output or "nothing to swap" not in str(e):
            raise
        raise ValueError(f"{e}; {', '.join(output)} is {next(iter(output.values()))}") from None
    return groups, kept, {**output, **left_out}


def _device(groups):
    """The one device (CPU or CUDA) of every job tensor."""
    devices = {j.x.device for g in groups for j in g.jobs} | {j.y.device for g in groups for j in g.jobs}
    if len(devices) != 1:
        raise ValueError(f"the chosen tensors live on several devices: {sorted(map(str, devices))}")
    device = devices.pop()
    if device.type not in ("cpu", "cuda"):
        raise ValueError(
            f"the chosen tensors are on {device}: weight swaps run on CPU and CUDA tensors"
            + (
                " (meta parameters hold no data: materialise them first, e.g. model.to_empty())"
                if device.type == "meta"
                else ""
            )
        )
    return device


def _rank0_seed(groups, seed):
    """Rank 0's seed, broadcast over the mesh of the sharded parameters."""
    mesh = next(t for g in groups for j in g.jobs for t in (j.x,) if _sharded.is_sharded(t)).device_mesh
    box = [seed]
    torch.distributed.broadcast_object_list(box, group=mesh.get_group(), group_src=0)
    return box[0]


class _Drawn:
    """The token of one draw() (apply() checks it is the latest)."""

    __slots__ = ("step",)

    def __init__(self, step):
        self.step = step
