"""The static structure of weight-swap protocols: which tensors move together (jobs), how many pairs each draw
makes (groups), and how a step's pairs are drawn (host-side, from the counter-based generator)."""

from __future__ import annotations

import fnmatch
from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import nn

from . import plans

WEIGHT_PROTOCOLS = ("rows", "cols", "in-row", "in-col", "mixed", "inter-layer", "bias", "neuron")

_ELEMENTWISE = (
    nn.ReLU,
    nn.ReLU6,
    nn.LeakyReLU,
    nn.GELU,
    nn.SiLU,
    nn.Tanh,
    nn.Sigmoid,
    nn.ELU,
    nn.Hardtanh,
    nn.Hardswish,
    nn.Mish,
    nn.Softplus,
    nn.Identity,
    nn.Dropout,
    nn.Dropout2d,
)
_POOLS = (nn.MaxPool2d, nn.AvgPool2d, nn.AdaptiveAvgPool2d, nn.AdaptiveMaxPool2d)


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


def draw_group(g: Group, seed: int, step: int) -> tuple[list[int], list[int], int]:
    """One step's pairs of group g: (a, b, pick). The specification of csrc/weights.h's draw_weight_group."""
    base = lambda stream: plans.base_key(seed, step, stream)  # noqa: E731
    pairs, extent = base("pairs"), base("extent")
    if g.kind == PAIRS:
        return (*_pairs(plans.distinct(g.key, pairs, g.n, 2 * g.k)), 0)
    if g.kind == IN_ROW:
        r = plans.below(plans.word(g.key, extent, 0), g.n)
        return (*_pairs([r * g.L + v for v in plans.distinct(g.key, pairs, g.L, 2 * g.k)]), 0)
    if g.kind == IN_COL:
        c = plans.below(plans.word(g.key, extent, 0), g.C)
        flat = [(v // g.R) * g.C * g.R + c * g.R + v % g.R for v in plans.distinct(g.key, pairs, g.n, 2 * g.k)]
        return (*_pairs(flat), 0)
    if g.kind == BIAS:
        units = plans.distinct(g.key, pairs, g.n, g.k)
        cols = [plans.below(plans.word(g.key, extent, j), g.L) for j in range(g.k)]
        return [u * g.L + c for u, c in zip(units, cols, strict=True)], units, 0
    pick = plans.below(plans.word(0, extent, 0), len(g.candidates))
    la, lb, na, nb = g.candidates[pick]
    return plans.distinct(la, pairs, na, g.k), plans.distinct(lb, pairs, nb, g.k, first_draw=g.k), pick


def select(named, layers, min_dims=2):
    """(name, parameter) pairs chosen by `layers`: None (all with >= min_dims dims), names / glob patterns of
    parameters or of their modules, or a predicate(name, parameter) -> bool."""
    named = [(n, p) for n, p in named if p.dim() >= min_dims]
    if layers is None:
        return named
    if callable(layers):
        return [(n, p) for n, p in named if layers(n, p)]
    pats = [layers] if isinstance(layers, str) else list(layers)
    hit = lambda n: any(n == q or n.startswith(q + ".") or fnmatch.fnmatchcase(n, q) for q in pats)  # noqa: E731
    return [(n, p) for n, p in named if hit(n)]


def _pairs(u):
    return u[0::2], u[1::2]


def build(protocol, named, chosen, swaps, model):
    """The groups of a protocol over the chosen (name, weight) pairs. ValueError for what cannot run."""
    s = swaps
    groups: list[Group] = []
    if protocol == "neuron":
        return _neuron_groups(model, chosen, s)
    if protocol == "inter-layer":
        return [_inter_layer_group(chosen, s)]
    params = dict(named)
    for li, (name, w) in enumerate(chosen):
        rows, cols, numel = w.shape[0], w.shape[1], w.numel()
        row_len, rest = numel // max(rows, 1), numel // max(rows * cols, 1)

        def pairs_in(n, what, name=name):
            """Pairs a layer gets: `swaps`, capped at the n // 2 disjoint pairs it holds; none is an error."""
            if n < 2:
                raise ValueError(f"{protocol}: {name} has {n} {what}; at least 2 are needed")
            return min(s, n // 2)

        key = li
        if protocol in ("rows", "cols"):
            n = rows if protocol == "rows" else cols
            k = pairs_in(n, protocol)
            d = 0 if protocol == "rows" else 1
            groups.append(Group(k, [Job(w, w, d, d)], PAIRS, key, n))
        elif protocol == "in-row":
            k = pairs_in(row_len, "elements per row")
            groups.append(Group(k, [Job(w, w, None, None)], IN_ROW, key, rows, L=row_len))
        elif protocol == "in-col":
            k = pairs_in(rows * rest, "elements per column")
            groups.append(Group(k, [Job(w, w, None, None)], IN_COL, key, rows * rest, C=cols, R=rest))
        elif protocol == "mixed":
            k = pairs_in(numel, "elements")
            groups.append(Group(k, [Job(w, w, None, None)], PAIRS, key, numel))
        elif protocol == "bias":
            bias = params.get(name[: -len("weight")] + "bias") if name.endswith("weight") else None
            if bias is None or bias.dim() != 1 or bias.shape[0] != rows:
                continue  # a layer without a bias has nothing to mix
            k = min(s, rows)
            groups.append(Group(k, [Job(w, bias, None, None)], BIAS, key, rows, L=row_len))
    if not groups:
        raise ValueError(
            f"{protocol}: no layer to swap (the chosen layers have no biases)"
            if protocol == "bias"
            else f"{protocol}: no parameter of 2 or more dims chosen"
        )
    return groups


def _inter_layer_group(chosen, s):
    """One pair of layers per step: rows of equal shape where layers share a row shape, else elements."""
    if len(chosen) < 2:
        raise ValueError("inter-layer needs at least two layers")
    by_shape: dict = {}
    for li, (_, w) in enumerate(chosen):
        by_shape.setdefault((tuple(w.shape[1:]), w.dtype, w.device), []).append(li)
    candidates = [(a, b) for ls in by_shape.values() for a in ls for b in ls if a != b]
    rows = bool(candidates)
    if not rows:
        candidates = [
            (a, b)
            for a in range(len(chosen))
            for b in range(len(chosen))
            if a != b and chosen[a][1].dtype == chosen[b][1].dtype and chosen[a][1].device == chosen[b][1].device
        ]
    if not candidates:
        raise ValueError("inter-layer: no two layers share a dtype and device")
    sizes = [w.shape[0] if rows else w.numel() for _, w in chosen]
    k = min(s, *(min(sizes[a], sizes[b]) for a, b in candidates))  # capped at what the smallest layer holds
    # One job per candidate pair; a step draws one candidate and pairs for it, the other jobs get no pairs.
    # To keep one static buffer, every candidate is a job of its own group; unchosen groups draw K = 0 swaps.
    jobs = [Job(chosen[a][1], chosen[b][1], 0 if rows else None, 0 if rows else None) for a, b in candidates]
    cands = tuple((a, b, sizes[a], sizes[b]) for a, b in candidates)
    return Group(k, jobs, INTER, 0, max(sizes), candidates=cands)


def _flat_modules(model):
    """Modules of a chain in order: nn.Sequential expanded recursively; anything else is a leaf."""
    out = []
    for m in model.children() if isinstance(model, nn.Sequential) else [model]:
        out.extend(_flat_modules(m) if isinstance(m, nn.Sequential) else [m])
    return out


def _neuron_groups(model, chosen, s):
    if not isinstance(model, nn.Module):
        raise ValueError("neuron needs the model (to know which layer feeds which), not a list of parameters")
    if not isinstance(model, nn.Sequential):
        raise ValueError(f"neuron supports chains of layers as in nn.Sequential, not {type(model).__name__}")
    names = {m: n for n, m in model.named_modules()}
    mods = _flat_modules(model)
    weight_idx = [i for i, m in enumerate(mods) if isinstance(m, nn.Linear | nn.Conv2d)]
    if len(weight_idx) < 2:
        raise ValueError("neuron needs at least two Linear/Conv2d layers in a chain")
    chosen_w = {id(w) for _, w in chosen}
    groups = []
    for li, (i, j) in enumerate(zip(weight_idx, weight_idx[1:], strict=False)):
        layer, nxt = mods[i], mods[j]
        if id(layer.weight) not in chosen_w:
            continue
        name = names.get(layer, f"layer {i}")
        if isinstance(layer, nn.Conv2d) and layer.groups != 1 or isinstance(nxt, nn.Conv2d) and nxt.groups != 1:
            raise ValueError(f"neuron: {name} is a grouped convolution, which it cannot pair")
        n = layer.weight.shape[0]
        jobs = [Job(layer.weight, layer.weight, 0, 0)]
        if layer.bias is not None:
            jobs.append(Job(layer.bias, layer.bias, 0, 0))
        flatten = False
        for m in mods[i + 1 : j]:
            if isinstance(m, nn.BatchNorm1d | nn.BatchNorm2d) and m.num_features == n:
                jobs += [Job(t, t, 0, 0) for t in (m.weight, m.bias) if t is not None]
                jobs += [Job(t, t, 0, 0, stateful=False) for t in (m.running_mean, m.running_var) if t is not None]
            elif isinstance(m, nn.Flatten) and isinstance(layer, nn.Conv2d) and isinstance(nxt, nn.Linear):
                flatten = True
            elif not isinstance(m, _ELEMENTWISE + _POOLS):
                raise ValueError(
                    f"neuron: cannot pair {name} with {names.get(nxt, 'the next layer')}: "
                    f"{type(m).__name__} stands between them"
                )
        w2 = nxt.weight
        if flatten:
            if w2.shape[1] % n:
                raise ValueError(f"neuron: {names.get(nxt)} has {w2.shape[1]} inputs, not a multiple of {n} channels")
            block = w2.shape[1] // n  # each channel owns a block of the Linear's columns
            jobs.append(Job(w2, w2, 1, 1, view=lambda t, n=n, block=block: t.view(t.shape[0], n, block)))
        else:
            if w2.shape[1] != n:
                raise ValueError(f"neuron: {names.get(nxt)} takes {w2.shape[1]} inputs but {name} gives {n}")
            jobs.append(Job(w2, w2, 1, 1))
        if n < 2:
            raise ValueError(f"neuron: {name} has {n} unit; at least 2 are needed")
        k = min(s, n // 2)
        groups.append(Group(k, jobs, PAIRS, li, n))
    if not groups:
        raise ValueError("neuron: no chosen layer feeds another (the last layer's outputs are never permuted)")
    return groups
