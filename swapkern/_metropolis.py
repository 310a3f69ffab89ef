"""Metropolis acceptance of a weight swap: the loss around a proposal, and whether to keep it.

A proposal is kept with probability min(1, exp(-(L_after - L_before) / T)); the coin is the counter-based
generator's "accept" stream at (seed, step), so a seeded run repeats exactly. A set of disjoint exchanges is its
own inverse: undoing a proposal applies it again.
"""

from __future__ import annotations

import math
import numbers

import torch

from . import draws
from ._common import APPLY, DRAW


def propose(engine, seed, step, closure, temperature, stats, gap=None) -> bool:
    """Draws step's exchanges, applies them between two calls of closure (gap: marks pairs not to move, after the
    draw), and keeps or undoes them. Transactional: a closure that raises, or returns no finite scalar, leaves the
    weights and state as before the proposal (undone if applied) and is re-raised; stats["failed"] counts it."""
    applied = False
    try:
        before = loss(closure, stats)
        engine.step(seed, step, DRAW)
        if gap is not None:
            gap()
        engine.step(seed, step, APPLY)
        applied = True
        after = loss(closure, stats)
    except BaseException:
        if applied:
            engine.step(seed, step, APPLY)  # a set of disjoint exchanges is its own inverse
        stats["failed"] = stats.get("failed", 0) + 1
        raise
    delta = after - before
    u = draws.word(0, draws.base_key(seed, step, "accept"), 0) / 2**32
    kept = delta <= 0 or u < math.exp(-delta / temperature)
    if not kept:
        engine.step(seed, step, APPLY)
    n = stats["proposals"] = stats["proposals"] + 1
    stats["accepted"] += int(kept)
    stats["mean_delta"] += (delta - stats["mean_delta"]) / n
    return kept


def loss(closure, stats) -> float:
    """The closure's loss as a float: a number or a one-element tensor, finite (TypeError, ValueError)."""
    with torch.no_grad():
        stats["closure_calls"] += 1
        value = closure()
    if isinstance(value, torch.Tensor):
        if value.numel() != 1:
            raise ValueError(
                f"the Metropolis closure must return a scalar loss, got a tensor of shape {tuple(value.shape)}"
            )
        if value.is_complex():
            raise TypeError(f"the Metropolis closure must return a real loss, got dtype {value.dtype}")
        out = float(value)
    elif _is_real_number(value):
        out = float(value)
    else:
        raise TypeError(
            "the Metropolis closure must return the loss (a number or a one-element tensor), got "
            f"{type(value).__name__}"
        )
    if not math.isfinite(out):
        raise ValueError(f"the Metropolis closure returned a non-finite loss ({out})")
    return out


def _is_real_number(v) -> bool:
    """A real number that is not a Python bool (NumPy scalars, say)."""
    return isinstance(v, numbers.Real) and not isinstance(v, bool)
