"""The multi-tensor engine: every exchange of a weight-swap step, over many tensors (a model's parameters and their
optimizer state), drawn and applied at once (the counterpart of apex's multi_tensor_applier).

Groups (swapkern._groups.Group) draw k pairs per step from (seed, step); the bound jobs say which tensors each
group's pairs move. The engine owns one int64 index buffer on the tensors' device, laid out per group as
[a (k), b (k), keep (k), pick (1), scratch (2k)] (csrc/weights.h), and a draw table of one row per group. Each
backend packs the bound jobs once (`multi_pack`) and then runs steps (`multi_step_`): the native one in one op call
whose host cost does not grow with the number of tensors, the Triton one in one launch per wave and element width,
the torch one tensor by tensor. Sharded tensors (DTensors) are not a backend: swapkern._sharded, a layer above the
seam, packs and steps them (it decides what is exchanged locally and what crosses ranks, and runs the local exchanges
through the public ops). A wave is a set of jobs that touch disjoint memory (csrc kernels run a wave in one
launch); jobs that share memory go to later waves, in their order.
"""

from __future__ import annotations

import bisect
from collections.abc import Callable
from dataclasses import dataclass

import torch

from . import _backend, _sharded
from ._checks import byte_range
from ._common import APPLY, DRAW, DRAW_AND_APPLY, fingerprint  # noqa: F401  (DRAW_AND_APPLY, fingerprint: re-exported)
from ._groups import INTER, Group

FIELDS = 10  # int64 fields of a draw-table row (csrc/weights.h WeightDraw)


def group_slots(k: int) -> int:
    return 5 * k + 1


@dataclass(frozen=True)
class BoundJob:
    """One exchange of a step: slices dx of x with slices dy of y (dims None: flat elements), with the pairs of
    group `group`; `job` is its index among the group's jobs (an INTER group moves only the job it picks)."""

    x: torch.Tensor
    y: torch.Tensor
    dx: int | None
    dy: int | None
    group: int
    job: int
    view: Callable | None = None  # sharded tensors (DTensors) only: the view their local shards take
    view_dim: int | None = None


def waves(jobs: list[BoundJob]) -> list[int]:
    """The wave of each job: one after the last earlier job whose memory it touches (x or y), else 0. Exchanges in
    one wave touch disjoint memory, so one launch can run them; jobs that share memory keep their order.

    Linear in the jobs for models: the byte ranges seen so far are kept per storage, sorted by start, each with the
    latest wave that touched it; a job compares its ranges only with those of its storage that can reach them (start
    within the storage's longest range before its end), found by bisection. A job that repeats a range (a
    parameter and its own rows, say) finds it by a dictionary lookup."""
    out: list[int] = []
    storages: dict = {}  # storage address -> [starts, spans [start, end, wave], longest range, {(start, end): span}]
    for job in jobs:
        mine = []
        for t in (job.x,) if job.x is job.y else (job.x, job.y):
            if t.is_contiguous():
                a0 = t.data_ptr()
                a1 = a0 + t.nbytes
            else:
                a0, a1 = byte_range(t)
            if a1 > a0:
                mine.append((_storage_of(t), a0, a1))
        wave = 0
        for key, a0, a1 in mine:
            s = storages.get(key)
            if s is None:
                continue
            starts, spans, longest, _ = s
            lo, hi = bisect.bisect_left(starts, a0 - longest + 1), bisect.bisect_left(starts, a1)
            WAVE_COMPARISONS[0] += hi - lo
            for i in range(lo, hi):
                _, b1, w = spans[i]
                if b1 > a0 and w >= wave:
                    wave = w + 1
        out.append(wave)
        for key, a0, a1 in mine:
            s = storages.get(key)
            if s is None:
                s = storages[key] = [[], [], 0, {}]
            span = s[3].get((a0, a1))
            if span is not None:
                span[2] = wave  # waves only grow: this job is the latest to touch the range
                continue
            span = s[3][(a0, a1)] = [a0, a1, wave]
            i = bisect.bisect_right(s[0], a0)
            s[0].insert(i, a0)
            s[1].insert(i, span)
            s[2] = max(s[2], a1 - a0)
    return out


WAVE_COMPARISONS = [0]  # ranges compared by waves() so far (tests count them: the work must grow linearly)


def _storage_of(t: torch.Tensor) -> int:
    try:
        return t.untyped_storage().data_ptr()
    except (RuntimeError, NotImplementedError):  # no storage to ask (a tensor subclass): its own address
        return t.data_ptr()


class Engine:
    """The exchanges of one WeightSwap, bound to tensors by `bind()` -> (jobs, watched tensors): called whenever the
    engine packs (first step, or when a backend reports that a watched tensor changed)."""

    def __init__(self, groups: list[Group], device: torch.device, bind: Callable):
        self.groups, self.device, self.bind = groups, device, bind
        self.offsets, rows, cands, total = [], [], [], 0
        for g in groups:
            self.offsets.append(total)
            cand_at = 0
            if g.kind == INTER:
                cand_at = FIELDS * len(groups) + 4 * len(cands)
                cands += list(g.candidates)
            rows.append([g.kind, g.key, g.n, g.k, g.L, g.C, g.R, total, cand_at, len(g.candidates)])
            total += group_slots(g.k)
        table = [v for r in rows for v in r] + [v for c in cands for v in c]
        self.table = torch.tensor(table, dtype=torch.int64)
        self.index = torch.zeros(max(total, 1), dtype=torch.int64, device=device)
        self.jobs: list[BoundJob] = []
        self.watched: list[torch.Tensor] = []
        self.wave: list[int] = []
        self._packed, self._runner, self._sharded, self._inference = None, None, False, False

    # -- the index buffer ---------------------------------------------------------------------------------------
    def slices(self, gi: int):
        """(a, b, keep) of group gi: views into the index buffer."""
        off, k = self.offsets[gi], self.groups[gi].k
        return self.index[off : off + k], self.index[off + k : off + 2 * k], self.index[off + 2 * k : off + 3 * k]

    def pick_slot(self, gi: int):
        off, k = self.offsets[gi], self.groups[gi].k
        return self.index[off + 3 * k : off + 3 * k + 1]

    # -- running ------------------------------------------------------------------------------------------------
    def _steps_with(self):
        """What runs the steps: for sharded tensors (DTensors) the layer that exchanges across ranks and hands the
        local exchanges to the seam (swapkern._sharded); else the backend the seam picks for the index buffer."""
        return _sharded if self._sharded else _backend.impl(self.index)

    def pack(self):
        self.jobs, self.watched = self.bind()
        self._inference = any(t.is_inference() for t in self.watched)
        # the jobs' tensors are watched tensors or views of them
        self._sharded = any(map(_sharded.is_sharded, self.watched))
        self.wave = [0] * len(self.jobs) if self._sharded else waves(self.jobs)
        self._runner = self._steps_with()
        self._packed = self._runner.multi_pack(self)

    @property
    def packed(self) -> bool:
        return self._packed is not None

    @property
    def sharded(self) -> bool:
        return self._sharded

    def step(self, seed: int, step: int, mode: int) -> None:
        """mode DRAW: draw the step's pairs into the index buffer; APPLY: apply the pairs in it; DRAW_AND_APPLY:
        both (the bits 1, 2 and 3)."""
        mod = self._steps_with()
        if self._packed is None or mod is not self._runner:
            self.pack()
            mod = self._runner
        self._check_mutable(mode)
        if not mod.multi_step_(self, self._packed, seed, step, mode):
            self.pack()  # a watched tensor moved or changed shape: pack the current tensors again
            self._check_mutable(mode)
            if not mod.multi_step_(self, self._packed, seed, step, mode):
                raise RuntimeError("swapkern: the weight-swap tensors changed while packing them")

    def _check_mutable(self, mode: int) -> None:
        """The ops' rule for inference tensors, on every backend: updated only inside inference mode (checked
        before anything moves; the draw alone writes only the engine's own buffer)."""
        if mode & APPLY and self._inference and not torch.is_inference_mode_enabled():
            raise RuntimeError(
                "swapkern.WeightSwap: Inplace update to inference tensor outside InferenceMode is not allowed; swap "
                "inside torch.inference_mode(), or build the model outside it"
            )

    def invalidate(self) -> None:
        """Pack again before the next step (the optimizer's state was replaced, say)."""
        self._packed = None
