"""Permutation groups of a model, as a public, serialisable spec, and their application in place.

`permutation_groups(model)` exports what the `neuron` analysis (swapkern._neuron) derives from the model's torch.fx
graph: every unit space whose channels can be permuted without changing the model's function, as a group of
(state_dict key, dim) members that one permutation moves together (weights' rows and columns, biases,
BatchNorm / GroupNorm / LayerNorm affine and BatchNorm's running statistics, per-channel activation parameters),
and every space it leaves out, with why. `apply_permutation_(model, perms)` applies one permutation per group in
place, through the multi-tensor engine (swapkern.multi), optimizer state included.

Convention: applying `perm` to a group sets, for every member, slice i of its dim to what slice perm[i] held
(`t.index_select(dim, perm)`), so unit i of the permuted model is unit perm[i] of the original.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field

import torch
from torch import nn

from ._common import APPLY
from ._groups import PAIRS, Group
from ._neuron import analyse, trace
from ._sharded import is_sharded
from .multi import BoundJob, Engine

SPEC_VERSION = 1


@dataclass
class PermutationSpec:
    """The permutation groups of a model.

    groups: a list of {"size": n, "members": [[key, dim], ...], "layers": [...]} (and "within": w when only
    permutations that keep each aligned block of w units in place are free, as a GroupNorm's groups require). A
    member [key, dim] moves slices of state_dict()[key] along dim; a member [key, dim, offset, block] moves the
    n units that start at index `offset` of that dim, each `block` consecutive indices wide (a slice of a cat, or
    the features a channel became after a flatten). "layers" names the modules that produce the group's units.
    left_out: a list of {"size": n, "layers": [...], "why": str}: the unit spaces that stay where they are.
    """

    groups: list = field(default_factory=list)
    left_out: list = field(default_factory=list)

    def to_json(self, **kwargs) -> str:
        return json.dumps({"version": SPEC_VERSION, "groups": self.groups, "left_out": self.left_out}, **kwargs)

    @classmethod
    def from_json(cls, text: str) -> PermutationSpec:
        obj = json.loads(text)
        if not isinstance(obj, dict) or obj.get("version") != SPEC_VERSION:
            raise ValueError(f"not a swapkern permutation spec of version {SPEC_VERSION}")
        groups, left_out = obj.get("groups"), obj.get("left_out", [])
        if not isinstance(groups, list) or not isinstance(left_out, list):
            raise ValueError("a permutation spec needs lists 'groups' and 'left_out'")
        for g in groups:
            _check_group(g)
        return cls(groups, left_out)

    def __eq__(self, other):
        return isinstance(other, PermutationSpec) and (self.groups, self.left_out) == (other.groups, other.left_out)

    def __repr__(self):
        return f"PermutationSpec(groups={[g['size'] for g in self.groups]}, left_out={len(self.left_out)})"


def _check_group(g):
    if not isinstance(g, dict) or not isinstance(g.get("size"), int) or not isinstance(g.get("members"), list):
        raise ValueError(f"a spec group is {{'size': int, 'members': [...]}}, got {g!r}")
    for m in g["members"]:
        ok = isinstance(m, list) and len(m) in (2, 4) and isinstance(m[0], str)
        if not (ok and all(isinstance(v, int) and v >= 0 for v in m[1:])):
            raise ValueError(f"a spec member is [key, dim] or [key, dim, offset, block], got {m!r}")


def member(m) -> tuple[str, int, int, int]:
    """(key, dim, offset, block) of a spec member."""
    return (m[0], m[1], 0, 1) if len(m) == 2 else (m[0], m[1], m[2], m[3])


# -- the analysis, as a spec ------------------------------------------------------------------------------------------
def permutation_groups(model: nn.Module, example_inputs=None) -> PermutationSpec:
    """The function-preserving permutation groups of `model` (any model torch.fx can trace), as a PermutationSpec
    named by state_dict keys: the unit spaces of the `neuron` analysis (swapkern._neuron.analyse, the one
    WeightSwap(model, "neuron") draws from), free ones as groups, the others in left_out with why. With
    `example_inputs` (a tensor or a tuple of the model's positional inputs), every group is also checked
    numerically: a float64 copy of the model with that group permuted at random must give the same outputs (a group
    that fails moves to left_out; the analysis is exact where it claims, so this guards what it does not know)."""
    if not isinstance(model, nn.Module):
        raise TypeError(f"permutation groups need an nn.Module, got {type(model).__name__}")
    sd = model.state_dict(keep_vars=True)
    spec = PermutationSpec()
    analysis = analyse(model)
    for sp in analysis.spaces:
        why = sp.why
        members = []
        for m in sp.members:
            t = sd.get(m.name)
            if why is None and not isinstance(t, torch.Tensor):
                why = f"{m.name} is not in the model's state_dict"
            if why is not None:
                break
            plain = m.offset == 0 and m.block == 1 and m.n == t.shape[m.dim]
            members.append([m.name, m.dim] if plain else [m.name, m.dim, m.offset, m.block])
        if why is not None:
            spec.left_out.append({"size": sp.n, "layers": list(sp.layers), "why": why})
            continue
        g = {"size": sp.n, "members": members, "layers": list(sp.layers)}
        if sp.scope < sp.n:
            g["within"] = sp.scope
        spec.groups.append(g)
    _attention_heads(model, spec, analysis)
    if example_inputs is not None:
        _check_numerically(model, spec, example_inputs)
    return spec


_MHA_ARGS = ("query", "key", "value", "key_padding_mask", "need_weights", "attn_mask", "average_attn_weights")


def _attention_heads(model, spec, analysis):
    """The heads of every nn.MultiheadAttention (packed q/k/v projection, no bias_k / bias_v) whose parameters
    nothing else reads: a group of num_heads units, each the head's rows of q, k and v (with their bias) and its
    columns of the output projection. Heads attend independently and their outputs are concatenated before the
    output projection, so moving whole heads keeps the function; the dims inside a head stay (left_out). Refused
    where a call could see the heads apart: an attn_mask (a 3-D one is per head), per-head attention weights
    (average_attn_weights=False with need_weights), or a parameter used elsewhere in the graph."""
    mhas = [(n, m) for n, m in model.named_modules() if isinstance(m, nn.MultiheadAttention)]
    if not mhas:
        return
    gm = trace(model)
    names: dict = {}
    for n, t in model.named_parameters(remove_duplicate=False):
        names.setdefault(id(t), []).append(n)
    claimed = {m[0] for g in spec.groups for m in g["members"]}
    claimed |= {m.name for sp in analysis.spaces if sp.why is not None for m in sp.members}
    sd = model.state_dict(keep_vars=True)
    for q, m in mhas:
        calls = [nd for nd in gm.graph.nodes if nd.op == "call_module" and nd.target == q]
        if not calls:
            continue
        h, e = m.num_heads, m.embed_dim
        d = e // h
        why = None
        params = [m.in_proj_weight, m.in_proj_bias, m.out_proj.weight, m.out_proj.bias]
        if not m._qkv_same_embed_dim or m.in_proj_weight is None or m.bias_k is not None or m.bias_v is not None:
            why = f"{q}: separate q/k/v projections or bias_k/bias_v (not handled)"
        elif h < 2:
            why = f"{q}: one head"
        elif any(t is not None and len(names.get(id(t), [])) != 1 for t in params):
            why = f"{q}: a parameter shared with another module"
        elif any(nd.op == "get_attr" and str(nd.target).startswith(q + ".") for nd in gm.graph.nodes) or any(
            nd.op == "call_module" and str(nd.target).startswith(q + ".") for nd in gm.graph.nodes
        ):
            why = f"{q}: its parameters or submodules are used outside the attention"
        elif any(names[id(t)][0] in claimed or names[id(t)][0] not in sd for t in params if t is not None):
            why = f"{q}: its parameters belong to another group or are not in state_dict"
        else:
            for nd in calls:
                got = dict(zip(_MHA_ARGS, nd.args, strict=False)) | dict(nd.kwargs)
                if got.get("attn_mask") is not None:
                    why = f"{q}: called with an attn_mask (a 3-D one differs per head)"
                elif got.get("need_weights", True) is not False and got.get("average_attn_weights", True) is not True:
                    why = f"{q}: returns per-head attention weights"
                if why:
                    break
        if why is not None:
            spec.left_out.append({"size": h, "layers": [q], "why": why})
            continue
        w, b, ow = (names[id(t)][0] if t is not None else None for t in params[:3])
        members = [[w, 0, i * e, d] for i in range(3)] + ([[b, 0, i * e, d] for i in range(3)] if b else [])
        spec.groups.append({"size": h, "members": members + [[ow, 1, 0, d]], "layers": [q], "heads": True})
        spec.left_out.append({"size": d, "layers": [q], "why": "the dims inside each head stay (whole heads move)"})


def _check_numerically(model, spec, example_inputs):
    import copy

    inputs = example_inputs if isinstance(example_inputs, tuple) else (example_inputs,)
    inputs = tuple(x.double() if isinstance(x, torch.Tensor) and x.is_floating_point() else x for x in inputs)
    ref = copy.deepcopy(model).double().eval()
    gen = torch.Generator().manual_seed(0)
    with torch.no_grad():
        want = _flat_out(ref(*inputs))
        bad = []
        for gi, g in enumerate(spec.groups):
            m = copy.deepcopy(ref)
            perms = [torch.arange(h["size"]) for h in spec.groups]
            perms[gi] = random_permutation(g, gen)
            _gather_apply(m, spec, perms)
            got = _flat_out(m(*inputs))
            if any((a - b).abs().max() > 1e-9 * max(1.0, float(b.abs().max())) for a, b in zip(got, want, strict=True)):
                bad.append(gi)
    for gi in reversed(bad):
        g = spec.groups.pop(gi)
        spec.left_out.append({"size": g["size"], "layers": g["layers"], "why": "changed the outputs on example_inputs"})


def _flat_out(out):
    if isinstance(out, torch.Tensor):
        return [out]
    if isinstance(out, dict):
        return [t for v in out.values() for t in _flat_out(v)]
    if isinstance(out, list | tuple):
        return [t for v in out for t in _flat_out(v)]
    return []


def random_permutation(group: dict, generator=None) -> torch.Tensor:
    """A uniformly random permutation that the group allows (inside each block of "within" units)."""
    n, w = group["size"], group.get("within", group["size"])
    perm = torch.empty(n, dtype=torch.int64)
    for s in range(0, n, w):
        perm[s : s + w] = s + torch.randperm(w, generator=generator)
    return perm


# -- resolving and checking -------------------------------------------------------------------------------------------
def resolve(model: nn.Module, spec: PermutationSpec):
    """Per group, its members as (tensor, dim, offset, block) of `model`; ValueError when a key is missing or a
    tensor's shape cannot hold its member."""
    sd = model.state_dict(keep_vars=True)
    out = []
    for g in spec.groups:
        n, ms = g["size"], []
        for m in g["members"]:
            key, dim, off, block = member(m)
            t = sd.get(key)
            if not isinstance(t, torch.Tensor):
                raise ValueError(f"the spec names {key!r}, which the model's state_dict does not hold")
            if dim >= t.dim() or off + n * block > t.shape[dim]:
                raise ValueError(
                    f"{key} of shape {tuple(t.shape)} cannot hold {n} units of {block} at offset {off} of dim {dim}"
                )
            ms.append((t, dim, off, block))
        out.append(ms)
    return out


def check_perms(spec: PermutationSpec, perms) -> list[torch.Tensor]:
    """The permutations as int64 CPU tensors, one per group of the spec, after checking every one of them:
    TypeError (not integer), ValueError (count, length, not a permutation, outside a group's "within" blocks),
    IndexError (an entry out of range)."""
    if isinstance(perms, torch.Tensor) or not isinstance(perms, list | tuple):
        raise TypeError(f"perms must be a list of index tensors, one per group, got {type(perms).__name__}")
    if len(perms) != len(spec.groups):
        raise ValueError(f"perms has {len(perms)} entries; the spec has {len(spec.groups)} groups")
    out = []
    for gi, (p, g) in enumerate(zip(perms, spec.groups, strict=True)):
        if not isinstance(p, torch.Tensor):
            try:
                p = torch.as_tensor(p)
            except (TypeError, ValueError, RuntimeError) as e:
                raise TypeError(f"perms[{gi}] is not a sequence of integers: {e}") from e
        if p.dtype == torch.bool or p.is_floating_point() or p.is_complex():
            raise TypeError(f"perms[{gi}] must hold integers, got {p.dtype}")
        n = g["size"]
        if p.dim() != 1 or p.numel() != n:
            raise ValueError(f"perms[{gi}] must be a 1-D tensor of {n} entries, got shape {tuple(p.shape)}")
        p = p.detach().to("cpu", torch.int64)
        if n and (int(p.min()) < 0 or int(p.max()) >= n):
            raise IndexError(f"perms[{gi}] holds entries outside [0, {n})")
        if not torch.equal(torch.sort(p).values, torch.arange(n)):
            raise ValueError(f"perms[{gi}] is not a permutation of range({n}) (an entry repeats)")
        w = g.get("within", n)
        if w < n and not torch.equal(p // w, torch.arange(n) // w):
            raise ValueError(f"perms[{gi}] moves units between blocks of {w} (the group allows exchanges only inside)")
        out.append(p)
    return out


# -- applying ---------------------------------------------------------------------------------------------------------
def two_rounds(perm: torch.Tensor) -> tuple[list[tuple[int, int]], list[tuple[int, int]]]:
    """perm as two rounds of disjoint exchanges: exchanging the pairs of the first round, then those of the second,
    turns x into x[perm]. Each cycle c_0 -> c_1 -> ... (perm[c_j] = c_{j+1}) is the product of two reflections:
    first j <-> 1 - j, then j <-> -j (indices mod the cycle's length)."""
    p = perm.tolist()
    seen = [False] * len(p)
    first, second = [], []
    for start in range(len(p)):
        if seen[start]:
            continue
        cyc, i = [], start
        while not seen[i]:
            seen[i] = True
            cyc.append(i)
            i = p[i]
        m = len(cyc)
        for j in range(m):
            r1, r2 = (1 - j) % m, (-j) % m
            if j < r1:
                first.append((cyc[j], cyc[r1]))
            if j < r2:
                second.append((cyc[j], cyc[r2]))
    return first, second


def _view(dim, off, n, block):
    def view(u):
        v = u.narrow(dim, off, n * block)
        return v.unflatten(dim, (n, block)) if block > 1 else v

    return view


def apply_permutation_(model: nn.Module, perms, optimizer=None, *, spec: PermutationSpec | None = None):
    """Permutes the groups of `spec` (default: permutation_groups(model)) of `model` in place: perms[i] (an integer
    tensor of spec.groups[i]["size"] entries, a permutation) sets slice j of every member of group i to what slice
    perms[i][j] held. Buffers (BatchNorm statistics) move, and with `optimizer` its state tensors shaped like a
    parameter (momentum, Adam's moments). Every permutation is checked before anything moves. Through the
    multi-tensor engine: each permutation is applied as two rounds of disjoint exchanges. Returns the model."""
    spec = permutation_groups(model) if spec is None else spec
    perms = check_perms(spec, perms)
    members = resolve(model, spec)
    rounds = [two_rounds(p) for p in perms]
    if not any(r for pair in rounds for r in pair):
        return model
    if any(is_sharded(t) for ms in members for t, *_ in ms):
        raise ValueError("apply_permutation_ does not handle sharded (DTensor) parameters; gather them first")
    devices = {t.device for ms in members for t, *_ in ms}
    if len(devices) != 1:
        raise ValueError(f"the spec's tensors live on several devices: {sorted(map(str, devices))}")
    device = devices.pop()
    if device.type not in ("cpu", "cuda"):
        raise ValueError(f"the spec's tensors are on {device}: permutations run on CPU and CUDA tensors")
    groups = []
    for gi, (g, (r1, r2)) in enumerate(zip(spec.groups, rounds, strict=True)):
        k = max(1, len(r1), len(r2))
        groups.append(Group(k, [], PAIRS, gi, g["size"]))

    def bind():
        jobs, watched, seen = [], [], set()
        for gi, ms in enumerate(members):
            n = spec.groups[gi]["size"]
            for ji, (t, dim, off, block) in enumerate(ms):
                ts = [t]
                if optimizer is not None and isinstance(t, nn.Parameter):
                    for s in optimizer.state.get(t, {}).values():
                        if isinstance(s, torch.Tensor) and s.shape == t.shape and s is not t:
                            ts.append(s)
                view = _view(dim, off, n, block)
                for u in ts:
                    if id(u) not in seen:
                        seen.add(id(u))
                        watched.append(u)
                    v = view(u)
                    jobs.append(BoundJob(v, v, dim, dim, gi, ji))
        return jobs, watched

    engine = Engine(groups, device, bind)
    with torch.no_grad():
        for r in (0, 1):
            host = torch.zeros(engine.index.numel(), dtype=torch.int64)
            for gi, g in enumerate(groups):
                pairs = rounds[gi][r]
                off, k = engine.offsets[gi], g.k
                if pairs:
                    host[off : off + len(pairs)] = torch.tensor([a for a, _ in pairs])
                    host[off + k : off + k + len(pairs)] = torch.tensor([b for _, b in pairs])
                    host[off + 2 * k : off + 2 * k + len(pairs)] = 1
                host[off + len(pairs) : off + k] = 0  # unused slots: the pair (0, 1), kept in place
                host[off + k + len(pairs) : off + 2 * k] = 1
            engine.index.copy_(host)
            engine.step(0, 0, APPLY)
    return model


def _gather_apply(model, spec, perms):
    """apply_permutation_'s plain-PyTorch twin (index_select, no optimizer): the tests' and the checks' reference."""
    with torch.no_grad():
        for g, ms, p in zip(spec.groups, resolve(model, spec), perms, strict=True):
            n = g["size"]
            for t, dim, off, block in ms:
                v = _view(dim, off, n, block)(t)
                v.copy_(v.index_select(dim, p.to(t.device)))
