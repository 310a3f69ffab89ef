"""What a WeightSwap's engine binds to, and the per-step check that it is still what the model and optimizer hold.

Binding: every job's tensors (views as the protocol needs them) and, with state=True, the optimizer's state tensors
shaped like each parameter (momentum, Adam moments), which move with it. Watching: each job tensor's
construction-time shape (the groups' geometry is drawn for it), and where the model keeps it (module._parameters /
_buffers slots), so that a tensor the model replaced (Module._apply, load_state_dict(assign=True), assignment) or
optimizer state that appeared or was replaced is noticed before a step, and the engine packed again.
"""

from __future__ import annotations

import operator
import weakref
from itertools import chain

import torch

from . import _sharded
from .multi import BoundJob


class Binding:
    """The tensors the engine of one WeightSwap binds to (`bind`, its callback) and the check that they have not
    moved (`use`, once per step). `engine` is set by the owner once the engine exists."""

    def __init__(self, groups, named, model, device, state, sharded):
        self.groups, self.device, self.state, self.sharded = groups, device, state, sharded
        self.engine = None
        self.bound_opt, self._hooked = None, weakref.WeakSet()
        self._shapes = [[(j.x.shape, j.y.shape) for j in g.jobs] for g in groups]
        self._names = {t: n for n, t in named}
        self._slots = _slots(model, groups) if model is not None and not sharded else {}
        self._slot_dicts, self._slot_keys, self._slot_tensors = _flat_slots(self._slots)
        self._state_params, self._state_live = [], []
        self._state_values, self._state_bound, self._state_of, self._state_all = [], [], None, []

    def use(self, opt):
        """Before a step: packs the engine again when the optimizer whose state moves changes, when the model
        holds another tensor where a bound one was (Module._apply, load_state_dict(assign=True), assignment), or
        when the optimizer's state of a bound parameter appeared, was replaced or gained an entry shaped like it.
        O(bound tensors) identity checks; a tensor changed in place (.data =, a new layout) the backends' own
        fingerprint check catches."""
        engine = self.engine
        if self.state and opt is not self.bound_opt:
            self.bound_opt = opt
            engine.invalidate()
            if opt not in self._hooked:
                self._hooked.add(opt)
                ref = weakref.ref(engine)
                opt.register_load_state_dict_post_hook(lambda o, e=ref: e() and e().invalidate())
        elif engine.packed and self.moved():
            engine.invalidate()

    def moved(self) -> bool:
        """Whether what bind() bound has changed: a model slot or the optimizer's state of a bound parameter."""
        if self._slot_dicts and not all(
            map(operator.is_, map(dict.get, self._slot_dicts, self._slot_keys), self._slot_tensors)
        ):
            return True
        if not self._state_params:
            return False
        state = self.bound_opt.state  # {parameter: its state dict}; compared without hashing parameters (slow)
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

    def rebind(self):
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
                            f"WeightSwap: {self.name_of(t)} has shape {tuple(t.shape)} but the WeightSwap was built "
                            f"for {tuple(shape)} (its exchanges are drawn for that shape); build a new WeightSwap"
                        )
                    if t.device != self.device:
                        raise ValueError(
                            f"WeightSwap: {self.name_of(t)} is on {t.device} but the WeightSwap was built for "
                            f"{self.device}; build it after moving the model"
                        )

    def name_of(self, t):
        return self._slots[t][0] if t in self._slots else self._names.get(t, "a swapped tensor")

    def bind(self):
        """The engine's jobs: every job's tensors (views as the protocol needs them) and, with state=True, those of
        the optimizer state tensors shaped like each parameter; and the tensors to watch for changes."""
        self.rebind()
        opt = self.bound_opt if self.state else None
        jobs, watched, seen, sharded = [], [], set(), self.sharded

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
                    pairs += _state_pairs(opt.state.get(job.x, {}), opt.state.get(job.y, {}), job)
                for tx, ty in pairs:
                    watch(tx, ty)
                    if sharded and _sharded.is_sharded(tx):  # the view applies to the local shard (swapkern._sharded)
                        jobs.append(BoundJob(tx, ty, job.dx, job.dy, gi, ji, job.view, job.view_dim))
                        continue
                    vx = job.view(tx)
                    vy = vx if tx is ty else job.view(ty)
                    jobs.append(BoundJob(vx, vy, job.dx, job.dy, gi, ji))
        return jobs, watched


def _state_pairs(sx, sy, job):
    """The optimizer-state entries of job.x and job.y (their state dicts sx, sy) that move with them: tensors of the
    same name shaped like each."""
    out = []
    for name, tx in sx.items():
        ty = sy.get(name)
        if isinstance(tx, torch.Tensor) and isinstance(ty, torch.Tensor):
            if tx.shape == job.x.shape and ty.shape == job.y.shape:
                out.append((tx, ty))
    return out


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
