"""Aligning one model to another by permuting its hidden units (git re-basin, Ainsworth et al. 2023), in place.

`align_(model_b, model_a)` finds one permutation per group of `permutation_groups(model_b)` that brings model_b's
weights close to model_a's, and applies it to model_b (its function does not change):

- method="weights": weight matching. Maximises sum over every member tensor of <W_a, P(W_b)> (equivalently,
  minimises the L2 distance between the two models' permuted tensors) by coordinate descent: the groups in a random
  order, each solved exactly as a linear assignment (scipy.optimize.linear_sum_assignment) with the others fixed,
  until a whole pass improves no group.
- method="activations": activation matching. Runs both models on `batches` (eval mode, no gradients) and matches
  each group's units by the correlation of the outputs of the layers that produce them, one assignment per group.
"""

from __future__ import annotations

import random
from dataclasses import dataclass

import torch
from torch import nn
from torch.nn import functional as F

from .permutation import PermutationSpec, apply_permutation_, permutation_groups, resolve

METHODS = ("weights", "activations")


@dataclass
class Alignment:
    """What align_ did: perms (one int64 tensor per spec group, as apply_permutation_ takes them), the per-group
    objective before and after (weights: sum of <W_a, P(W_b)> over the tensors the group moves; activations: the
    sum of the matched units' correlations), the spec, and the passes over the groups (weights)."""

    perms: list
    before: list
    after: list
    spec: PermutationSpec
    iterations: int = 1


def align_(
    model_b: nn.Module,
    model_a: nn.Module,
    method: str = "weights",
    *,
    batches=None,
    spec: PermutationSpec | None = None,
    optimizer=None,
    max_iter: int = 100,
    seed: int = 0,
) -> Alignment:
    """Permutes model_b in place (its optimizer state too, with `optimizer`) so that its units line up with
    model_a's; returns an Alignment. Both models must share the spec's state_dict keys and shapes (two instances
    of one architecture). batches: for method="activations", an iterable of inputs (a tensor, or a tuple of
    positional inputs) run through both models."""
    if method not in METHODS:
        raise ValueError(f"method must be one of {METHODS}, got {method!r}")
    if not isinstance(model_a, nn.Module) or not isinstance(model_b, nn.Module):
        raise TypeError("align_ takes two nn.Modules (model_b, model_a)")
    if isinstance(max_iter, bool) or not isinstance(max_iter, int) or max_iter < 1:
        raise ValueError(f"max_iter must be a positive int, got {max_iter!r}")
    spec = permutation_groups(model_b) if spec is None else spec
    mb, ma = resolve(model_b, spec), resolve(model_a, spec)
    for gb, ga in zip(mb, ma, strict=True):
        for (tb, *_), (ta, *_) in zip(gb, ga, strict=True):
            if tb.shape != ta.shape:
                raise ValueError(f"model_a and model_b differ in shape: {tuple(ta.shape)} against {tuple(tb.shape)}")
    if method == "weights":
        perms, before, after, iters = _weight_matching(spec, ma, mb, max_iter, seed)
    else:
        if batches is None:
            raise ValueError('method="activations" needs batches=: inputs to run both models on')
        perms, before, after = _activation_matching(spec, model_a, model_b, batches)
        iters = 1
    apply_permutation_(model_b, perms, optimizer, spec=spec)
    return Alignment(perms, before, after, spec, iters)


# -- weight matching --------------------------------------------------------------------------------------------------
class _Tensors:
    """The member tensors of both models, once each (a tensor in several groups or dims is one entry), as float64
    copies, with the (group, dim, offset, block) of each of its members."""

    def __init__(self, spec, ma, mb):
        self.sizes = [g["size"] for g in spec.groups]
        self.entries: dict = {}
        self.of_group: list[list[int]] = [[] for _ in spec.groups]
        order = []
        for gi, (ga, gb) in enumerate(zip(ma, mb, strict=True)):
            for (ta, dim, off, block), (tb, *_) in zip(ga, gb, strict=True):
                key = id(tb)
                if key not in self.entries:
                    dt = torch.float64 if tb.device.type == "cpu" else torch.float32
                    a, b = ta.detach().to(tb.device, dt), tb.detach().to(dt)
                    self.entries[key] = {"a": a, "b": b, "members": []}
                    order.append(key)
                e = self.entries[key]
                e["members"].append((gi, dim, off, block))
                if key not in self.of_group[gi]:
                    self.of_group[gi].append(key)

    def permuted_b(self, key, perms, skip=None):
        """model_b's tensor with every member's dim permuted by its group's perm, except group `skip`'s."""
        e = self.entries[key]
        b = e["b"]
        idx: dict = {}
        for gi, dim, off, block in e["members"]:
            if gi == skip:
                continue
            n = self.sizes[gi]
            full = idx.setdefault(dim, torch.arange(b.shape[dim], device=b.device))
            units = perms[gi].to(b.device)
            cols = (off + units[:, None] * block + torch.arange(block, device=b.device)).reshape(-1)
            full[off : off + n * block] = cols
        for dim, full in idx.items():
            b = b.index_select(dim, full)
        return b

    def objective(self, gi, perms):
        return sum(float((self.entries[k]["a"] * self.permuted_b(k, perms)).sum()) for k in self.of_group[gi])

    def cost(self, gi, perms):
        """C[i, j] = the part of the objective that unit j of model_b would add in place of unit i of model_a."""
        n = self.sizes[gi]
        c = None
        for key in self.of_group[gi]:
            e = self.entries[key]
            b = self.permuted_b(key, perms, skip=gi)
            for g, dim, off, block in e["members"]:
                if g != gi:
                    continue
                ua = _units(e["a"], dim, off, n, block)
                ub = _units(b, dim, off, n, block)
                c = ua @ ub.T if c is None else c + ua @ ub.T
        return c


def _units(t, dim, off, n, block):
    v = t.narrow(dim, off, n * block)
    v = v.unflatten(dim, (n, block)) if block > 1 else v
    return v.movedim(dim, 0).reshape(n, -1)


def _assign(c: torch.Tensor, within: int) -> torch.Tensor:
    """The permutation p maximising sum_i c[i, p[i]], inside aligned blocks of `within` units."""
    from scipy.optimize import linear_sum_assignment

    n = c.shape[0]
    cost = c.detach().double().cpu().numpy()
    p = torch.empty(n, dtype=torch.int64)
    for s in range(0, n, within):
        rows, cols = linear_sum_assignment(cost[s : s + within, s : s + within], maximize=True)
        p[s + torch.as_tensor(rows)] = s + torch.as_tensor(cols, dtype=torch.int64)
    return p


def _gain(c, p):
    return float(c.gather(1, p.to(c.device)[:, None]).sum())


def _weight_matching(spec, ma, mb, max_iter, seed):
    ts = _Tensors(spec, ma, mb)
    ident = [torch.arange(g["size"]) for g in spec.groups]
    perms = list(ident)
    before = [ts.objective(gi, perms) for gi in range(len(perms))]
    rng = random.Random(seed)
    iters = 0
    for _ in range(max_iter):
        iters += 1
        order = list(range(len(perms)))
        rng.shuffle(order)
        progress = False
        for gi in order:
            c = ts.cost(gi, perms)
            p = _assign(c, spec.groups[gi].get("within", spec.groups[gi]["size"]))
            old, new = _gain(c, perms[gi]), _gain(c, p)
            if new > old + 1e-12 * max(1.0, abs(old)):
                perms[gi], progress = p, True
        if not progress:
            break
    after = [ts.objective(gi, perms) for gi in range(len(perms))]
    return perms, before, after, iters


# -- activation matching ----------------------------------------------------------------------------------------------
def _activation_matching(spec, model_a, model_b, batches):
    """Per group, the sum over features f of the correlation of unit i's feature f in model_a with unit j's in
    model_b, matched by one assignment. A group's units: the output channels of its producing layers (one feature
    each); the heads of an attention layer (features: the head's q, k and v projections of the layer's input,
    whose dims stay in place)."""
    stats: dict = {}  # group -> [samples, sum a, sum b, sum a^2, sum b^2, sum a_f b_f^T, shifts], per feature
    captured: dict = {}
    hooks = []

    def channels(m, out):
        if not isinstance(out, torch.Tensor):
            return None
        x = out.detach()
        x = x.movedim(-1, 0) if isinstance(m, nn.Linear) else x.movedim(1, 0)
        return x.reshape(1, x.shape[0], -1).double()  # (features 1, units, samples)

    def heads(m, args, kwargs):
        """(3 * head_dim, heads, tokens): q, k, v of each head (q alone when key and value have other lengths)."""
        got = dict(zip(("query", "key", "value"), args, strict=False)) | kwargs
        e, w, b = m.embed_dim, m.in_proj_weight, m.in_proj_bias
        parts = []
        for i, n in enumerate(("query", "key", "value")):
            bi = None if b is None else b[i * e : (i + 1) * e]
            parts.append(F.linear(got[n].detach(), w[i * e : (i + 1) * e], bi).reshape(-1, m.num_heads, m.head_dim))
        if len({p.shape[0] for p in parts}) > 1:
            parts = parts[:1]
        x = torch.stack(parts, 1)  # (tokens, parts, heads, head_dim)
        return x.permute(1, 3, 2, 0).reshape(len(parts) * m.head_dim, m.num_heads, -1).double()

    def hook(gi, side, is_heads):
        if is_heads:
            return lambda m, args, kwargs: captured.setdefault((gi, side), []).append(heads(m, args, kwargs))

        def fn(m, args, out):
            x = channels(m, out)
            if x is not None:
                captured.setdefault((gi, side), []).append(x)

        return fn

    for gi, g in enumerate(spec.groups):
        for side, model in (("a", model_a), ("b", model_b)):
            mods = dict(model.named_modules())
            for name in g.get("layers", []):
                m = mods.get(name)
                if m is None:
                    raise ValueError(f"activations: the spec's layer {name!r} is not a module of the model")
                if g.get("heads"):
                    hooks.append(m.register_forward_pre_hook(hook(gi, side, True), with_kwargs=True))
                else:
                    hooks.append(m.register_forward_hook(hook(gi, side, False)))
    modes = [(m, m.training) for model in (model_a, model_b) for m in model.modules()]
    try:
        model_a.eval()
        model_b.eval()
        with torch.no_grad():
            seen = 0
            for batch in batches:
                inputs = batch if isinstance(batch, tuple | list) else (batch,)
                captured.clear()
                model_a(*inputs)
                model_b(*inputs)
                for gi, g in enumerate(spec.groups):
                    xs = [captured.get((gi, s), []) for s in "ab"]
                    xs = [torch.cat(x, dim=2) if x else torch.zeros(1, g["size"], 0) for x in xs]
                    if any(x.shape[1] != g["size"] for x in xs) or xs[0].shape != xs[1].shape:
                        raise ValueError(f"activations: the layers of group {gi} gave {[tuple(x.shape) for x in xs]}")
                    if gi not in stats:  # sums of x - (the first batch's mean): no cancellation in the variance
                        shift = [x.mean(2, keepdim=True) if x.shape[2] else 0.0 for x in xs]
                        stats[gi] = [0, 0.0, 0.0, 0.0, 0.0, 0.0, shift]
                    st = stats[gi]
                    xa, xb = xs[0] - st[6][0], xs[1] - st[6][1]
                    st[0] += xa.shape[2]
                    st[1] = st[1] + xa.sum(2)
                    st[2] = st[2] + xb.sum(2)
                    st[3] = st[3] + (xa * xa).sum(2)
                    st[4] = st[4] + (xb * xb).sum(2)
                    st[5] = st[5] + torch.bmm(xa, xb.transpose(1, 2))
                seen += 1
            if not seen:
                raise ValueError("activations: batches gave no batch")
    finally:
        for h in hooks:
            h.remove()
        for m, mode in modes:
            m.train(mode)
    perms, before, after = [], [], []
    for gi, g in enumerate(spec.groups):
        count, sa, sb, qa, qb, cross, _ = stats[gi]
        if count < 2:
            raise ValueError(f"activations: the layers of group {gi} ({g.get('layers')}) gave fewer than 2 samples")
        ma, mb = sa / count, sb / count  # (features, units)
        sda = (qa / count - ma * ma).clamp_min(0).sqrt() + 1e-12
        sdb = (qb / count - mb * mb).clamp_min(0).sqrt() + 1e-12
        corr = ((cross / count - ma[:, :, None] * mb[:, None, :]) / (sda[:, :, None] * sdb[:, None, :])).sum(0)
        p = _assign(corr, g.get("within", g["size"]))
        perms.append(p)
        before.append(float(corr.diagonal().sum()))
        after.append(_gain(corr, p))
    return perms, before, after
