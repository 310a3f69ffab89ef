"""The groups and jobs a WeightSwap steps: the static structure of each weight-swap protocol, which tensors move
together (jobs), how many pairs each draw makes (groups), and how a step's pairs are drawn (host-side, from the
counter-based generator). Which groups a protocol makes over a model: swapkern._weightprotocols."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch

from . import draws


def _same(t):
    return t


@dataclass
class Job:
    """Exchange slices dx of view(x) with slices dy of view(y) (dims None: flat elements), for a group's pairs."""

    x: torch.Tensor
    y: torch.Tensor
    dx: int | None
    dy: int | None
    view: Callable = _same  # applied to x, y and their optimizer states alike
    stateful: bool = True  # x and y are parameters whose optimizer state moves with them when state=True
    view_dim: int | None = None  # the dim `view` narrows or reshapes (None: view is the identity)


# Draw kinds, as csrc/weights.h's WeightKind.
PAIRS, IN_ROW, IN_COL, BIAS, INTER = range(5)


@dataclass
class Group:
    """k pairs per step, drawn from (seed, step) as `kind` says (csrc/weights.h; draw_group is its Python twin), and
    applied to every job; an INTER group applies them to one job per step, the candidate it draws."""

    k: int
    jobs: list[Job]
    kind: int
    key: int  # the layer's key in the generator
    n: int  # positions drawn from
    L: int = 1  # row length (IN_ROW, BIAS)
    C: int = 1  # columns (IN_COL)
    R: int = 1  # elements per column entry (IN_COL)
    candidates: tuple = ()  # INTER: (layer a, layer b, rows of a, rows of b), one per job


def _pairs(u):
    return u[0::2], u[1::2]


def draw_group(g: Group, seed: int, step: int) -> tuple[list[int], list[int], int]:
    """One step's pairs of group g: (a, b, pick). The specification of csrc/weights.h's draw_weight_group."""
    base = lambda stream: draws.base_key(seed, step, stream)  # noqa: E731
    pairs, extent = base("pairs"), base("extent")
    if g.kind == PAIRS:
        return (*_pairs(draws.distinct(g.key, pairs, g.n, 2 * g.k)), 0)
    if g.kind == IN_ROW:
        r = draws.below(draws.word(g.key, extent, 0), g.n)
        return (*_pairs([r * g.L + v for v in draws.distinct(g.key, pairs, g.L, 2 * g.k)]), 0)
    if g.kind == IN_COL:
        c = draws.below(draws.word(g.key, extent, 0), g.C)
        flat = [(v // g.R) * g.C * g.R + c * g.R + v % g.R for v in draws.distinct(g.key, pairs, g.n, 2 * g.k)]
        return (*_pairs(flat), 0)
    if g.kind == BIAS:
        units = draws.distinct(g.key, pairs, g.n, g.k)
        cols = [draws.below(draws.word(g.key, extent, j), g.L) for j in range(g.k)]
        return [u * g.L + c for u, c in zip(units, cols, strict=True)], units, 0
    pick = draws.below(draws.word(0, extent, 0), len(g.candidates))
    la, lb, na, nb = g.candidates[pick]
    return draws.distinct(la, pairs, na, g.k), draws.distinct(lb, pairs, nb, g.k, first_draw=g.k), pick


