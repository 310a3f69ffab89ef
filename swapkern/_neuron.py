"""The function-preserving `neuron` weight swap on any model torch.fx can trace: which tensors' channels must be
permuted together, derived from the graph.

A unit space is a set of channels that one permutation acts on: the output channels of a conv / linear layer (its
weight's rows and its bias), everything per-channel that follows them (BatchNorm / LayerNorm / GroupNorm affine
and BatchNorm's running statistics), through elementwise ops, activations, pooling and dropout, to the input
channels of every consumer (its weight's columns; after a flatten, the block of consecutive features a channel
becomes). A residual add ties the spaces of its operands into one (union-find); a cat places its inputs' spaces side
by side; a depthwise convolution carries its input's space through (its rows join it); a GroupNorm confines the
exchanges of a space to one of its groups at a time. A space whose channels are observable is never permuted: the
model's outputs, anything an op the analysis does not know touches (grouped convolutions, unknown modules and
functions, reshapes other than a flatten). A parameter reached from two places (a module called twice, tied
weights) ties the spaces it sits in, so the function stays the same.
"""

from __future__ import annotations

import math
import operator
from dataclasses import dataclass, field

import torch
import torch.fx
from torch import nn
from torch.nn import functional as F

from ._weightplan import IN_ROW, PAIRS, Group, Job

_ELEMENTWISE_MODULES = (
    nn.ReLU, nn.ReLU6, nn.LeakyReLU, nn.GELU, nn.SiLU, nn.Tanh, nn.Sigmoid, nn.ELU, nn.Hardtanh, nn.Hardswish,
    nn.Hardsigmoid, nn.Mish, nn.Softplus, nn.PReLU, nn.Identity, nn.Dropout, nn.Dropout2d, nn.Dropout1d,
    nn.AlphaDropout, nn.MaxPool1d, nn.MaxPool2d, nn.AvgPool1d, nn.AvgPool2d, nn.AdaptiveAvgPool1d,
    nn.AdaptiveAvgPool2d, nn.AdaptiveMaxPool1d, nn.AdaptiveMaxPool2d,
)  # fmt: skip
_KNOWN_LEAVES = _ELEMENTWISE_MODULES + (
    nn.Conv1d, nn.Conv2d, nn.Conv3d, nn.Linear, nn.BatchNorm1d, nn.BatchNorm2d, nn.BatchNorm3d, nn.LayerNorm,
    nn.GroupNorm, nn.Flatten,
)  # fmt: skip
_ELEMENTWISE_FUNCTIONS = {
    F.relu, F.relu6, F.leaky_relu, F.gelu, F.silu, F.elu, F.hardtanh, F.hardswish, F.hardsigmoid, F.mish, F.softplus,
    F.dropout, F.dropout1d, F.dropout2d, F.max_pool1d, F.max_pool2d, F.avg_pool1d, F.avg_pool2d,
    F.adaptive_avg_pool1d, F.adaptive_avg_pool2d, F.adaptive_max_pool1d, F.adaptive_max_pool2d, torch.relu,
    torch.sigmoid, torch.tanh, torch.nn.functional.sigmoid, torch.nn.functional.tanh, torch.clamp, torch.abs,
    torch.neg, operator.neg,
}  # fmt: skip
_ELEMENTWISE_METHODS = {"relu", "relu_", "sigmoid", "tanh", "clamp", "clamp_", "abs", "neg", "contiguous"}
_BINARY = {operator.add, operator.iadd, torch.add, operator.mul, operator.imul, torch.mul, operator.sub, torch.sub}
_BINARY_METHODS = {"add", "add_", "mul", "mul_", "sub", "sub_"}


@dataclass
class _Seg:
    """Channels [offset, offset + n) of a value belong to unit space `space`; after a flatten each unit owns `block`
    consecutive features (None: not yet known, resolved by the consuming linear layer)."""

    space: int
    n: int
    block: int | None = 1


@dataclass
class _Space:
    n: int
    scope: int  # exchanges stay inside aligned blocks of `scope` channels (GroupNorm); n when free
    jobs: list = field(default_factory=list)  # (tensor, dim, offset, view kind, block, stateful)
    producers: list = field(default_factory=list)  # (order, layer name)
    observable: str | None = None  # why this space may not move


class _Tracer(torch.fx.Tracer):
    """fx's tracer, with extra leaf modules (the model's own modules that cannot be traced)."""

    def __init__(self, leaves):
        super().__init__()
        self.leaves = leaves
        self.stack: list = []
        self.failed: str | None = None

    def is_leaf_module(self, m, qualname):
        # The layers the analysis knows stay leaves even when a wrapper subclassed them (FSDP2's FSDPLinear).
        return qualname in self.leaves or isinstance(m, _KNOWN_LEAVES) or super().is_leaf_module(m, qualname)

    def call_module(self, m, forward, args, kwargs):
        qualname = self.path_of_module(m)
        self.stack.append(qualname)
        try:  # the module's own forward, without its hooks (FSDP's would all-gather during tracing)
            return super().call_module(m, type(m).forward.__get__(m), args, kwargs)
        except Exception:
            if self.failed is None:
                self.failed = qualname
            raise
        finally:
            self.stack.pop()


def trace(model: nn.Module) -> torch.fx.GraphModule:
    """The model's graph; a submodule whose forward fx cannot trace is kept as a leaf (an op the analysis does not
    know). ValueError when the model's own forward cannot be traced."""
    leaves: set = set()
    for _ in range(64):
        tracer = _Tracer(leaves)
        try:
            graph = tracer.trace(model)
            return torch.fx.GraphModule(model, graph)
        except Exception as e:  # fx raises many types
            if not tracer.failed:
                raise ValueError(
                    f"neuron: torch.fx cannot trace {type(model).__name__}.forward ({type(e).__name__}: {e}); "
                    "name the layers to swap with layers=..., use an nn.Sequential, or another protocol"
                ) from e
            leaves.add(tracer.failed)
    raise ValueError("neuron: torch.fx cannot trace the model")


class _Analysis:
    def __init__(self, model, gm):
        self.model, self.gm = model, gm
        self.modules = dict(gm.named_modules())
        self.spaces: list[_Space] = []
        self.parent: list[int] = []
        self.param_space: dict = {}  # (id(param), dim) -> space: a parameter in two places ties them
        self.layer_order: dict = {}
        self.values: dict = {}  # node name -> list of _Seg along its channel dim, or None (no movable channels)
        self.flat: set = set()  # nodes whose channel dim is their last (linear outputs, flattened values)
        self.used_outside: set = set()  # parameters read by get_attr: used beside their module

    # -- union-find over spaces ----------------------------------------------------------------------------------
    def find(self, s):
        while self.parent[s] != s:
            self.parent[s] = self.parent[self.parent[s]]
            s = self.parent[s]
        return s

    def new_space(self, n):
        self.spaces.append(_Space(n, n))
        self.parent.append(len(self.parent))
        return len(self.spaces) - 1

    def union(self, a, b):
        a, b = self.find(a), self.find(b)
        if a == b:
            return a
        sa, sb = self.spaces[a], self.spaces[b]
        if sa.n != sb.n:
            self.observe(a, "tied to a space of another size")
            self.observe(b, "tied to a space of another size")
            return a
        self.parent[b] = a
        sa.scope = math.gcd(sa.scope, sb.scope)
        sa.jobs += sb.jobs
        sa.producers += sb.producers
        sa.observable = sa.observable or sb.observable
        return a

    def observe(self, s, why):
        s = self.find(s)
        self.spaces[s].observable = self.spaces[s].observable or why

    def observe_value(self, v, why):
        for seg in v or ():
            self.observe(seg.space, why)

    def job(self, s, tensor, dim, offset, n, kind="plain", block=1, stateful=True):
        """Channels [offset, offset + n) of tensor's dim `dim` move with space s."""
        if tensor is None:
            return
        key = (id(tensor), dim, offset)
        if key in self.param_space:  # reached before: the two places are one space
            s = self.union(self.param_space[key], s)
        else:
            self.param_space[key] = s
            self.spaces[self.find(s)].jobs.append((tensor, dim, offset, n, kind, block, stateful))

    # -- values ---------------------------------------------------------------------------------------------------
    def arg_value(self, a):
        return self.values.get(a.name) if isinstance(a, torch.fx.Node) else None

    def node_inputs(self, node):
        return [x for x in node.all_input_nodes]

    def unknown(self, node, why):
        for x in self.node_inputs(node):
            self.observe_value(self.values.get(x.name), why)
        return None

    def run(self):
        for node in self.gm.graph.nodes:
            if node.op == "placeholder" or node.op == "get_attr":
                v = None
                if node.op == "get_attr":  # a parameter used outside its module: whatever it touches is unknown
                    self.used_outside.add(node.target)
            elif node.op == "call_module":
                v = self.module(node, self.modules[node.target])
            elif node.op in ("call_function", "call_method"):
                v = self.function(node)
            else:  # output: what the model returns is observable
                for x in node.all_input_nodes:
                    self.observe_value(self.values.get(x.name), "the model returns it")
                v = None
            self.values[node.name] = v

    def module(self, node, m):
        x = self.arg_value(node.args[0]) if node.args else None
        name = node.target
        if isinstance(m, nn.Conv1d | nn.Conv2d | nn.Conv3d | nn.Linear):
            return self.layer(node, m, name, x)
        if isinstance(m, nn.BatchNorm1d | nn.BatchNorm2d | nn.BatchNorm3d):
            return self.per_channel(x, m, (m.weight, m.bias), (m.running_mean, m.running_var), node)
        if isinstance(m, nn.LayerNorm):
            if len(m.normalized_shape) == 1 and self.is_flat(node.args[0]):
                return self.per_channel(x, m, (m.weight, m.bias), (), node)
            return self.unknown(node, f"{name}: LayerNorm over more than the channels")
        if isinstance(m, nn.GroupNorm):
            return self.group_norm(node, m, x)
        if isinstance(m, nn.Flatten):
            return self.flatten(node, x, m.start_dim)
        if isinstance(m, _ELEMENTWISE_MODULES):
            return self.passing(node, x)
        return self.unknown(node, f"{name}: {type(m).__name__} is not known to keep channels apart")

    def is_flat(self, a):
        return isinstance(a, torch.fx.Node) and a.name in self.flat

    def passing(self, node, x):
        """An op that keeps every channel where it is (elementwise, per-channel, pooling)."""
        if node.args and self.is_flat(node.args[0]):
            self.flat.add(node.name)
        return x

    def layer(self, node, m, name, x):
        w, b = m.weight, m.bias
        order = self.layer_order.setdefault(name, len(self.layer_order))
        groups = getattr(m, "groups", 1)
        depthwise = isinstance(m, nn.Conv1d | nn.Conv2d | nn.Conv3d) and groups > 1
        if depthwise and not (groups == m.in_channels == m.out_channels):
            return self.unknown(node, f"{name}: grouped convolution")
        if depthwise:  # channel c feeds only output c: the input's space carries through, with the rows
            if x is None:
                return None
            off = 0
            for seg in x:
                self.job(seg.space, w, 0, off, seg.n)
                self.job(seg.space, b, 0, off, seg.n)
                off += seg.n
            return x
        # Input channels: the weight's columns (after a flatten, blocks of consecutive columns). A linear layer acts
        # on the last dim, a convolution on dim 1: the channels must be there.
        if x is not None and isinstance(m, nn.Linear) != self.is_flat(node.args[0]):
            self.observe_value(x, f"{name}: its input's channels are not on the dim it reads")
        elif x is not None:
            total = sum(seg.n for seg in x)
            fan_in = w.shape[1]
            block = fan_in // total if total and fan_in % total == 0 else None
            if block is None or any(seg.block not in (None, 1, block) for seg in x):
                self.observe_value(x, f"{name}: its inputs do not match the channels feeding it")
            else:
                off = 0
                for seg in x:
                    self.job(seg.space, w, 1, off * block, seg.n, kind="block" if block > 1 else "plain", block=block)
                    off += seg.n
        # Output channels: a new space, or the one this module's rows already belong to (a module called twice).
        s = self.new_space(w.shape[0])
        self.spaces[s].producers.append((order, name))
        self.job(s, w, 0, 0, w.shape[0])
        self.job(s, b, 0, 0, w.shape[0])
        if isinstance(m, nn.Linear):
            self.flat.add(node.name)
        return [_Seg(self.find(s), w.shape[0])]

    def per_channel(self, x, m, affine, stats, node):
        if x is None:
            return None
        off = 0
        for seg in x:
            for t in affine:
                self.job(seg.space, t, 0, off, seg.n)
            for t in stats:
                self.job(seg.space, t, 0, off, seg.n, stateful=False)
            off += seg.n
        return self.passing(node, x)

    def group_norm(self, node, m, x):
        if x is None:
            return None
        size = m.num_channels // m.num_groups
        off = 0
        for seg in x:
            if off % size or seg.n % size:
                return self.unknown(node, f"{node.target}: a GroupNorm group spans two spaces")
            space = self.spaces[self.find(seg.space)]
            space.scope = math.gcd(space.scope, size)
            off += seg.n
        return self.per_channel(x, m, (m.weight, m.bias) if m.affine else (), (), node)

    def flatten(self, node, x, start_dim):
        if x is None:
            return None
        if start_dim != 1:
            return self.unknown(node, "a flatten that mixes the channels")
        self.flat.add(node.name)
        return [_Seg(seg.space, seg.n, None) for seg in x]

    def function(self, node):
        t = node.target
        args = node.args
        x = self.arg_value(args[0]) if args else None
        if node.op == "call_method" and t in ("size", "dim", "numel"):
            return None
        if t is getattr and len(args) > 1 and args[1] in ("shape", "dtype", "device", "ndim"):
            return None
        if t in _ELEMENTWISE_FUNCTIONS or (node.op == "call_method" and t in _ELEMENTWISE_METHODS):
            return self.passing(node, x)
        if t in _BINARY or (node.op == "call_method" and t in _BINARY_METHODS):
            return self.binary(node)
        if t is torch.flatten or (node.op == "call_method" and t == "flatten"):
            start = args[1] if len(args) > 1 else node.kwargs.get("start_dim", 0)
            return self.flatten(node, x, start)
        if node.op == "call_method" and t in ("view", "reshape") and self.is_batch_flatten(args):
            return self.flatten(node, x, 1)
        if t is torch.cat or t is torch.concat:
            return self.cat(node)
        if t is torch.mean or (node.op == "call_method" and t == "mean"):
            dims = args[1] if len(args) > 1 else node.kwargs.get("dim")
            dims = (dims,) if isinstance(dims, int) else tuple(dims or ())
            keepdim = args[2] if len(args) > 2 else node.kwargs.get("keepdim", False)
            if set(dims) in ({2, 3}, {-1, -2}) and not self.is_flat(args[0]):  # global average pooling
                if not keepdim:
                    self.flat.add(node.name)
                return x
        return self.unknown(node, f"{getattr(t, '__name__', t)} is not known to keep channels apart")

    def is_batch_flatten(self, args):
        """x.view(x.size(0), -1) or x.reshape(n, -1): the common flatten."""
        return len(args) == 3 and args[2] == -1

    def binary(self, node):
        a, b = node.args[0], node.args[1] if len(node.args) > 1 else node.kwargs.get("other")
        va, vb = self.arg_value(a), self.arg_value(b)
        a_tensor = isinstance(a, torch.fx.Node) and a.name in self.values
        b_tensor = isinstance(b, torch.fx.Node) and b.name in self.values
        if not (a_tensor and b_tensor):  # with a constant: elementwise
            if self.is_flat(a) or self.is_flat(b):
                self.flat.add(node.name)
            return va if a_tensor else vb
        if va is None or vb is None:
            self.observe_value(va, "combined with a value whose channels cannot move")
            self.observe_value(vb, "combined with a value whose channels cannot move")
            return None
        if [(s.n, s.block) for s in va] != [(s.n, s.block) for s in vb] or self.is_flat(a) != self.is_flat(b):
            return self.unknown(node, "combined with differently arranged channels")
        if self.is_flat(a):
            self.flat.add(node.name)
        return [_Seg(self.union(p.space, q.space), p.n, p.block) for p, q in zip(va, vb, strict=True)]

    def cat(self, node):
        parts = node.args[0]
        dim = node.args[1] if len(node.args) > 1 else node.kwargs.get("dim", 0)
        vals = [self.arg_value(p) for p in parts]
        flat = {self.is_flat(p) for p in parts}
        if not ((flat == {True} and dim == -1) or (flat == {False} and dim == 1)):
            return self.unknown(node, "a cat the analysis cannot place")
        if any(v is None for v in vals):
            return self.unknown(node, "a cat with channels that cannot move")
        if flat == {True}:
            self.flat.add(node.name)
        return [seg for v in vals for seg in v]


def neuron_groups(model: nn.Module, chosen, swaps: int):
    """(groups, kept, left_out): a Group per movable unit space whose producing layers are all chosen; kept
    names those layers; left_out says, per layer, why its outputs stay where they are."""
    if not isinstance(model, nn.Module):
        raise ValueError("neuron needs the model (to know which layer feeds which), not a list of parameters")
    gm = trace(model)
    an = _Analysis(model, gm)
    an.run()
    chosen_ids = {id(p) for _, p in chosen}
    modules = dict(model.named_modules())
    groups, kept, left_out = [], [], {}
    roots = sorted({an.find(s) for s in range(len(an.spaces))}, key=lambda s: min(an.spaces[s].producers or [(1e9,)]))
    for s in roots:
        sp = an.spaces[s]
        if not sp.producers:
            continue
        names = list(dict.fromkeys(n for _, n in sorted(sp.producers)))
        why = sp.observable
        if why is None and not all(id(modules[n].weight) in chosen_ids for n in names):
            why = "not chosen by layers="
        if why is None and an.used_outside:
            used = {id(_attr(gm, t)) for t in an.used_outside}
            if any(id(t) in used for t, *_ in sp.jobs):
                why = "a parameter used outside its module"
        unit = sp.scope
        if why is None and unit < 2:
            why = f"{sp.n} channels in groups of {unit}: nothing to exchange"
        if why is not None:
            for n in names:
                left_out[n] = why
            continue
        k = min(swaps, unit // 2)
        jobs = [_job(t, dim, off, n, kind, block, stateful, sp.n) for t, dim, off, n, kind, block, stateful in sp.jobs]
        key = min(o for o, _ in sp.producers)
        kind, extra = (PAIRS, {}) if unit == sp.n else (IN_ROW, {"L": unit})
        groups.append(Group(k, jobs, kind, key, sp.n if kind == PAIRS else sp.n // unit, **extra))
        kept += names
    if not groups:
        detail = "; ".join(f"{n}: {w}" for n, w in left_out.items()) or "no conv or linear layer"
        raise ValueError(f"neuron: no unit space can be permuted without changing the model's function ({detail})")
    return groups, kept, left_out


def _attr(gm, target):
    obj = gm
    for part in target.split("."):
        obj = getattr(obj, part, None)
    return obj


def _job(t, dim, off, n, kind, block, stateful, space_n):
    """A Job moving channels [off, off + n) of t's dim `dim` (rows for dim 0; columns, or blocks of `block`
    consecutive columns, for dim 1), as its view."""

    def view(u, dim=dim, off=off, n=n, kind=kind, block=block):
        v = u if (off == 0 and n == u.shape[dim] and kind == "plain") else u.narrow(dim, off, n * block)
        if kind == "block":
            v = v.view(v.shape[0], n, block, *v.shape[2:])
        return v

    identity = off == 0 and n == t.shape[dim] and kind == "plain"
    if identity:
        return Job(t, t, dim, dim, stateful=stateful)
    return Job(t, t, dim, dim, view=view, stateful=stateful, view_dim=dim)
