"""The groups each weight-swap protocol makes over the chosen layers (swapkern._groups holds what a group is and how
its pairs are drawn). `neuron` takes its groups from the unit spaces of swapkern._neuron's analysis."""

from __future__ import annotations

import fnmatch

from torch import nn

from ._groups import BIAS, IN_COL, IN_ROW, INTER, PAIRS, Group, Job
from ._neuron import analyse

WEIGHT_PROTOCOLS = ("rows", "cols", "in-row", "in-col", "mixed", "inter-layer", "bias", "neuron")


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


def build(protocol, named, chosen, swaps, model, explicit=False):
    """The groups of a protocol over the chosen (name, weight) pairs: (groups, kept layer names, {left-out layer:
    why}). A layer that cannot take the protocol (too few rows, columns or elements; no bias) is left out, unless
    `explicit` (the user named the layers): then it is a ValueError, as it is when nothing is left to swap."""
    s = swaps
    if protocol == "neuron":
        return neuron_groups(model, chosen, s)
    empty = {n: "has no elements" for n, w in chosen if w.numel() == 0}
    if empty and explicit:
        raise ValueError(f"{protocol}: {next(iter(empty))} has no elements")
    chosen = [(n, w) for n, w in chosen if n not in empty]
    if protocol == "inter-layer":
        group = _inter_layer_group(chosen, s)
        used = sorted({i for c in group.candidates for i in c[:2]})
        return (
            [group],
            [chosen[i][0] for i in used],
            empty | {n: "no other layer of its shape" for i, (n, _) in enumerate(chosen) if i not in used},
        )
    params = dict(named)
    groups, kept, left_out = [], [], dict(empty)
    for li, (name, w) in enumerate(chosen):
        rows, cols, numel = w.shape[0], w.shape[1], w.numel()
        row_len, rest = numel // max(rows, 1), numel // max(rows * cols, 1)
        need = {
            "rows": (rows, "rows"),
            "cols": (cols, "cols"),
            "in-row": (row_len, "elements per row"),
            "in-col": (rows * rest, "elements per column"),
            "mixed": (numel, "elements"),
            "bias": (2, ""),
        }[protocol]
        bias = params.get(name[: -len("weight")] + "bias") if name.endswith("weight") else None
        has_bias = bias is not None and bias.dim() == 1 and bias.shape[0] == rows
        why = None
        if need[0] < 2:
            why = f"has {need[0]} {need[1]}; at least 2 are needed"
        elif protocol == "bias" and not has_bias:
            why = "has no bias of one entry per row"
        if why is not None:
            if explicit:
                raise ValueError(f"{protocol}: {name} {why}")
            left_out[name] = why
            continue
        k, key = min(s, need[0] // 2), li
        if protocol in ("rows", "cols"):
            d = 0 if protocol == "rows" else 1
            groups.append(Group(k, [Job(w, w, d, d)], PAIRS, key, need[0]))
        elif protocol == "in-row":
            groups.append(Group(k, [Job(w, w, None, None)], IN_ROW, key, rows, L=row_len))
        elif protocol == "in-col":
            groups.append(Group(k, [Job(w, w, None, None)], IN_COL, key, rows * rest, C=cols, R=rest))
        elif protocol == "mixed":
            groups.append(Group(k, [Job(w, w, None, None)], PAIRS, key, numel))
        else:  # bias
            groups.append(Group(min(s, rows), [Job(w, bias, None, None)], BIAS, key, rows, L=row_len))
        kept.append(name)
    if not groups:
        detail = "; ".join(f"{n} {w}" for n, w in left_out.items()) or "no parameter of 2 or more dims is chosen"
        raise ValueError(f"{protocol}: nothing to swap ({detail})")
    return groups, kept, left_out


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


def neuron_groups(model: nn.Module, chosen, swaps: int):
    """(groups, kept, left_out): a Group per movable unit space whose producing layers are all chosen; kept
    names those layers; left_out says, per layer, why its outputs stay where they are."""
    result = analyse(model)
    chosen_ids = {id(p) for _, p in chosen}
    tensors = dict(model.named_parameters(remove_duplicate=False))
    tensors.update(model.named_buffers(remove_duplicate=False))
    modules = dict(model.named_modules())
    groups, kept, left_out = [], [], dict(result.left_out)
    for sp in result.spaces:
        if sp.why is not None:
            continue
        weights = [tensors[n] if n in tensors else modules[n].weight for n in sp.layers]
        if not all(id(w) in chosen_ids for w in weights):
            for n in sp.layers:
                left_out[n] = "not chosen by layers="
            continue
        unit = sp.scope
        k = min(swaps, unit // 2)
        jobs = [
            _job(tensors[m.name], m.dim, m.offset, m.n, "block" if m.block > 1 else "plain", m.block, not m.buffer)
            for m in sp.members
        ]
        kind, extra = (PAIRS, {}) if unit == sp.n else (IN_ROW, {"L": unit})
        groups.append(Group(k, jobs, kind, sp.key, sp.n if kind == PAIRS else sp.n // unit, **extra))
        kept += sp.layers
    if not groups:
        detail = "; ".join(f"{n}: {w}" for n, w in left_out.items()) or "no conv, linear or embedding layer"
        raise ValueError(f"neuron: no unit space can be permuted without changing the model's function ({detail})")
    return groups, kept, left_out


def _job(t, dim, off, n, kind, block, stateful):
    """A Job moving channels [off, off + n) of t's dim `dim` (or blocks of `block` consecutive entries), as its
    view."""

    def view(u, dim=dim, off=off, n=n, kind=kind, block=block):
        v = u if (off == 0 and n == u.shape[dim] and kind == "plain") else u.narrow(dim, off, n * block)
        if kind == "block":
            v = v.unflatten(dim, (n, block))
        return v

    identity = off == 0 and n == t.shape[dim] and kind == "plain"
    if identity:
        return Job(t, t, dim, dim, stateful=stateful)
    return Job(t, t, dim, dim, view=view, stateful=stateful, view_dim=dim)
