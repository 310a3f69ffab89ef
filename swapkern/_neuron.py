"""The function-preserving `neuron` weight swap on any model torch.fx can trace: which tensors' channels must be
permuted together, derived from the graph.

A unit space is a set of channels that one permutation acts on: the output channels of a conv / linear layer or an
embedding's features (its weight's rows, or columns, and its bias), everything per-channel that follows them
(BatchNorm / InstanceNorm / LayerNorm / GroupNorm affine and running statistics, per-channel PReLU slopes, a
parameter broadcast over them), through elementwise ops, activations, pooling over other dims and dropout, to the
input channels of every consumer (its weight's columns; after a flatten, the block of consecutive features a
channel becomes). A residual add ties the spaces of its operands into one (union-find); a cat along the channels
places its inputs' spaces side by side, along another dim ties them; a depthwise convolution carries its input's
space through (its rows join it); a grouped convolution or a GroupNorm confines the exchanges of a space to one of
its groups at a time.

A space moves only when every consumer of it is known to commute with the permutation: the model's outputs, and
anything an op the analysis does not know touches (unknown modules and functions, reshapes that mix the channels
with another dim, pooling or softmax over the channels) keep it where it is. Each value carries where its channel
dim is (counted from the back) and, where known, how many dims it has: an op whose meaning depends on that
(BatchNorm1d, GroupNorm, PReLU(C), flatten, view) acts on the channels only where the graph proves it does; where
it may or may not (a Linear on the model's input, whose rank fx does not give), the space stays. A convolution's
input is taken as batched (N, C, ...). Every use of a parameter or buffer (a module called twice, tied weights, a
parameter read in `forward`) says, for each of its dims, which space moves it; a dim one use moves and another
relies on (or moves another way) keeps its spaces where they are, so the function never changes.
"""

from __future__ import annotations

import math
import operator
from dataclasses import dataclass, field

import torch
import torch.fx
from torch import nn
from torch.nn import functional as F

_ELEMENTWISE_MODULES = (
    nn.ReLU, nn.ReLU6, nn.LeakyReLU, nn.GELU, nn.SiLU, nn.Tanh, nn.Sigmoid, nn.ELU, nn.Hardtanh, nn.Hardswish,
    nn.Hardsigmoid, nn.Mish, nn.Softplus, nn.SELU, nn.CELU, nn.Softsign, nn.Tanhshrink, nn.LogSigmoid,
    nn.Hardshrink, nn.Softshrink, nn.Threshold, nn.Identity, nn.Dropout, nn.Dropout1d, nn.Dropout2d, nn.Dropout3d,
    nn.AlphaDropout,
)  # fmt: skip
_POOL_MODULES = {  # pooling over the last k dims
    nn.MaxPool1d: 1, nn.AvgPool1d: 1, nn.AdaptiveAvgPool1d: 1, nn.AdaptiveMaxPool1d: 1, nn.LPPool1d: 1,
    nn.MaxPool2d: 2, nn.AvgPool2d: 2, nn.AdaptiveAvgPool2d: 2, nn.AdaptiveMaxPool2d: 2, nn.LPPool2d: 2,
    nn.MaxPool3d: 3, nn.AvgPool3d: 3, nn.AdaptiveAvgPool3d: 3, nn.AdaptiveMaxPool3d: 3,
}  # fmt: skip
_CONVS = {nn.Conv1d: 1, nn.Conv2d: 2, nn.Conv3d: 3}
_BATCHNORMS = {nn.BatchNorm1d: (2, 3), nn.BatchNorm2d: (4,), nn.BatchNorm3d: (5,)}  # the ranks each accepts
_INSTANCENORMS = {nn.InstanceNorm1d: 1, nn.InstanceNorm2d: 2, nn.InstanceNorm3d: 3}
_KNOWN_LEAVES = (
    _ELEMENTWISE_MODULES + tuple(_POOL_MODULES) + tuple(_CONVS) + tuple(_BATCHNORMS) + tuple(_INSTANCENORMS)
    + (nn.Linear, nn.LayerNorm, nn.GroupNorm, nn.Flatten, nn.PReLU, nn.Embedding, nn.Softmax, nn.LogSoftmax)
    + (nn.Upsample,)
)  # fmt: skip
_ELEMENTWISE_FUNCTIONS = {
    F.relu, F.relu6, F.leaky_relu, F.gelu, F.silu, F.elu, F.selu, F.celu, F.hardtanh, F.hardswish, F.hardsigmoid,
    F.mish, F.softplus, F.softsign, F.logsigmoid, F.tanhshrink, F.hardshrink, F.softshrink, F.threshold, F.dropout,
    F.dropout1d, F.dropout2d, F.dropout3d, F.alpha_dropout, torch.relu, torch.sigmoid, torch.tanh, F.sigmoid,
    F.tanh, torch.clamp, torch.clip, torch.abs, torch.neg, operator.neg, torch.exp, torch.log, torch.sqrt,
    torch.rsqrt, torch.square, torch.erf, torch.sin, torch.cos, torch.sign,
}  # fmt: skip
_POOL_FUNCTIONS = {
    F.max_pool1d: 1, F.avg_pool1d: 1, F.adaptive_avg_pool1d: 1, F.adaptive_max_pool1d: 1, F.lp_pool1d: 1,
    F.max_pool2d: 2, F.avg_pool2d: 2, F.adaptive_avg_pool2d: 2, F.adaptive_max_pool2d: 2, F.lp_pool2d: 2,
    F.max_pool3d: 3, F.avg_pool3d: 3, F.adaptive_avg_pool3d: 3, F.adaptive_max_pool3d: 3,
}  # fmt: skip
_ELEMENTWISE_METHODS = {
    "relu", "relu_", "sigmoid", "sigmoid_", "tanh", "tanh_", "clamp", "clamp_", "clip", "clip_", "abs", "abs_",
    "neg", "neg_", "exp", "log", "sqrt", "rsqrt", "square", "sign", "erf", "contiguous", "clone", "detach",
    "float", "double", "half", "bfloat16", "to",
}  # fmt: skip
_BINARY = {
    operator.add, operator.iadd, torch.add, operator.mul, operator.imul, torch.mul, operator.sub, operator.isub,
    torch.sub, operator.truediv, operator.itruediv, torch.div, operator.pow, torch.pow, torch.maximum, torch.minimum,
}  # fmt: skip
_BINARY_METHODS = {"add", "add_", "mul", "mul_", "sub", "sub_", "div", "div_", "pow", "pow_", "maximum", "minimum"}
_REDUCTIONS = {torch.mean: "mean", torch.sum: "sum", torch.amax: "amax", torch.amin: "amin"}  # symmetric in the dims
_SCALAR_OPS = {operator.add, operator.sub, operator.mul, operator.floordiv, operator.truediv, operator.mod,
               operator.pow, operator.neg, operator.getitem}  # fmt: skip


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
    scope: int  # exchanges stay inside aligned blocks of `scope` channels (GroupNorm, grouped conv); n when free
    producers: list = field(default_factory=list)  # (order, layer name, weight)
    observable: str | None = None  # why this space may not move


@dataclass(frozen=True)
class Member:
    """Entries [offset, offset + n * block) of dim `dim` of the parameter or buffer `name` move with a unit space:
    channel i of the space owns entries offset + i * block ... offset + (i + 1) * block - 1."""

    name: str
    dim: int
    offset: int
    n: int
    block: int = 1
    buffer: bool = False  # a buffer (BatchNorm statistics): no optimizer state moves with it


@dataclass
class UnitSpace:
    """n channels that one permutation may act on (inside aligned blocks of `scope` channels), the layers that
    produce them, the tensors' dims that move with them, and why they may not move (None: they may)."""

    n: int
    scope: int
    layers: tuple
    members: tuple
    why: str | None = None
    key: int = 0  # the first producing layer's place in the graph (the group's key in the generator)


@dataclass
class NeuronAnalysis:
    """Every unit space the graph has (free or not), in graph order, and per layer why its outputs stay."""

    spaces: list
    left_out: dict


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
        self.layer_order: dict = {}
        self.values: dict = {}  # node name -> list of _Seg along its channel dim, or None (no movable channels)
        self.meta: dict = {}  # node name -> (channel dim counted from the back, number of dims or None)
        self.batch: dict = {}  # node name -> the node whose dim 0 (the batch) this value's dim 0 is
        self.scalar: set = set()  # nodes holding Python numbers / sizes read from shapes (no channel order)
        self.shape_of: dict = {}  # node name -> node whose shape (x.shape, x.size()) it holds
        self.dim0: dict = {}  # node name -> node whose size of dim 0 it holds
        self.attrs: dict = {}  # get_attr node name -> tensor
        self.use: str = ""  # the node being read: one use of the tensors it touches
        self.tensors: dict = {}  # id -> tensor
        self.decl: dict = {}  # (id, dim) -> {use: [(offset, n, kind, block, stateful, space)]}
        self.touched: dict = {}  # id -> {use: why the use would keep the tensor's order}
        self.names = {}
        for n, t in [*model.named_parameters(remove_duplicate=False), *model.named_buffers(remove_duplicate=False)]:
            self.names.setdefault(id(t), n)

    # -- union-find over spaces ----------------------------------------------------------------------------------
    def find(self, s):
        while self.parent[s] != s:
            self.parent[s] = self.parent[self.parent[s]]
            s = self.parent[s]
        return s

    def new_space(self, n, scope=None):
        self.spaces.append(_Space(n, scope or n))
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
        sa.producers += sb.producers
        sa.observable = sa.observable or sb.observable
        return a

    def observe(self, s, why):
        s = self.find(s)
        self.spaces[s].observable = self.spaces[s].observable or why

    def observe_value(self, v, why):
        for seg in v or ():
            self.observe(seg.space, why)

    # -- uses of parameters and buffers ------------------------------------------------------------------------
    def touch(self, t, why):
        """This use reads t: a dim of t it does not move (job) keeps its order."""
        if isinstance(t, torch.Tensor):
            self.tensors[id(t)] = t
            self.touched.setdefault(id(t), {}).setdefault(self.use, why)

    def touch_module(self, m, why):
        for t in [*m.parameters(), *m.buffers()]:
            self.touch(t, why)

    def job(self, s, tensor, dim, offset, n, kind="plain", block=1, stateful=True):
        """In this use, channels [offset, offset + n) of tensor's dim `dim` move with space s."""
        if tensor is None:
            return
        self.touch(tensor, "")
        self.decl.setdefault((id(tensor), dim), {}).setdefault(self.use, []).append(
            (offset, n, kind, block, stateful, s)
        )

    def reconcile(self):
        """Every use of a tensor must move each of its dims the same way (then their spaces are one), or the spaces
        moving that dim stay."""
        storages: dict = {}
        for i, t in self.tensors.items():
            try:
                ptr = t.untyped_storage().data_ptr() if t.device.type != "meta" else 0
            except Exception:  # DTensor and other wrappers: no local storage to compare
                ptr = 0
            if ptr:
                storages.setdefault(ptr, set()).add(i)
        shared = {i for ids in storages.values() if len(ids) > 1 for i in ids}
        for (i, dim), uses in self.decl.items():
            name = self.names.get(i, "a tensor")
            segs = [seg for u in uses.values() for seg in u]
            why = None
            keeping = {u: w for u, w in self.touched[i].items() if u not in uses}
            if keeping:
                u, w = next(iter(keeping.items()))
                why = f"{name} is also used where its dim {dim} keeps its order ({u}{': ' + w if w else ''})"
            elif i in shared:
                why = f"{name} shares memory with another tensor"
            elif i not in self.names:
                why = "a tensor that is not the model's parameter or buffer"
            elif len({tuple(sorted(s[:4] for s in u)) for u in uses.values()}) > 1:
                why = f"{name} is used in two places with different channel layouts"
            if why is not None:
                for seg in segs:
                    self.observe(seg[5], why)
                continue
            layouts = [sorted(u, key=lambda s: s[0]) for u in uses.values()]
            for column in zip(*layouts, strict=True):
                for seg in column[1:]:
                    self.union(column[0][5], seg[5])

    # -- values ---------------------------------------------------------------------------------------------------
    def arg_value(self, a):
        return self.values.get(a.name) if isinstance(a, torch.fx.Node) else None

    def pos(self, a):
        """(channel dim counted from the back, rank or None) of a node's value."""
        return self.meta.get(a.name, (None, None)) if isinstance(a, torch.fx.Node) else (None, None)

    def put(self, node, value, p, nd, batch=None):
        if value is not None or nd is not None:  # a value without movable channels may still have a known rank
            self.meta[node.name] = (p if value is not None else None, nd)
        if batch is not None:
            self.batch[node.name] = batch
        return value

    def carry(self, node, src, x, batch=True):
        """node keeps src's channels where they are (elementwise, per-channel, pooling over other dims)."""
        p, nd = self.pos(src)
        return self.put(node, x, p, nd, self.batch.get(src.name) if batch and isinstance(src, torch.fx.Node) else None)

    def unknown(self, node, why):
        for x in node.all_input_nodes:
            self.observe_value(self.values.get(x.name), why)
            if x.name in self.attrs:
                self.touch(self.attrs[x.name], why)
        if node.op == "call_module":
            self.touch_module(self.modules[node.target], why)
        return None

    def run(self):
        for node in self.gm.graph.nodes:
            self.use = node.name
            v = None
            if node.op == "placeholder":
                self.batch[node.name] = node.name
            elif node.op == "get_attr":  # read by its users: each says what it does with it
                t = _attr(self.gm, node.target)
                if isinstance(t, torch.Tensor):
                    self.attrs[node.name] = t
            elif node.op == "call_module":
                v = self.module(node, self.modules[node.target])
            elif node.op in ("call_function", "call_method"):
                v = self.function(node)
                for x in node.all_input_nodes:  # a parameter read here: what the function did not move stays
                    if x.name in self.attrs:
                        self.touch(self.attrs[x.name], f"{getattr(node.target, '__name__', node.target)}")
            else:  # output: what the model returns is observable
                for x in node.all_input_nodes:
                    self.observe_value(self.values.get(x.name), "the model returns it")
                    if x.name in self.attrs:
                        self.touch(self.attrs[x.name], "the model returns it")
            self.values[node.name] = v
        self.reconcile()

    # -- modules ----------------------------------------------------------------------------------------------
    def module(self, node, m):
        src = node.args[0] if node.args else None
        x = self.arg_value(src)
        name = node.target
        p, nd = self.pos(src)
        conv = next((k for c, k in _CONVS.items() if isinstance(m, c)), None)
        if conv is not None or isinstance(m, nn.Linear):
            if node.kwargs or len(node.args) != 1:
                return self.unknown(node, f"{name}: called with more than its input")
            return self.layer(node, name, m.weight, m.bias, conv, getattr(m, "groups", 1), src)
        if isinstance(m, nn.Embedding):
            return self.embedding(node, name, m)
        for cls, ranks in _BATCHNORMS.items():
            if isinstance(m, cls):
                ops = {r: (-1 if r == 2 else 1 - r) for r in ranks}  # dim 1
                return self.on_dim(node, name, m, src, ops, m.num_features, (m.weight, m.bias),
                                   (m.running_mean, m.running_var))  # fmt: skip
        for cls, k in _INSTANCENORMS.items():
            if isinstance(m, cls):
                ops = {k + 1: -(k + 1), k + 2: -(k + 1)}
                return self.on_dim(node, name, m, src, ops, m.num_features, (m.weight, m.bias),
                                   (m.running_mean, m.running_var))  # fmt: skip
        if isinstance(m, nn.GroupNorm):
            ops = {r: 1 - r for r in range(2, 9)}
            return self.on_dim(node, name, m, src, ops, m.num_channels, (m.weight, m.bias), (), groups=m.num_groups)
        if isinstance(m, nn.PReLU):
            if m.num_parameters == 1:  # one slope: elementwise
                self.touch_module(m, "")
                return self.carry(node, src, x)
            ops = {1: -1, **{r: 1 - r for r in range(2, 9)}}
            return self.on_dim(node, name, m, src, ops, m.num_parameters, (m.weight,), ())
        if isinstance(m, nn.LayerNorm):
            return self.layer_norm(node, name, m, src, x)
        if isinstance(m, nn.Softmax | nn.LogSoftmax):
            return self.softmax(node, src, x, m.dim, f"{name}: {type(m).__name__} is not known to keep channels apart")
        if isinstance(m, nn.Flatten):
            return self.flatten(node, src, x, m.start_dim, m.end_dim)
        if isinstance(m, nn.Upsample):
            return self.resample(node, name, src, x)
        for cls, k in _POOL_MODULES.items():
            if isinstance(m, cls):
                if getattr(m, "return_indices", False):
                    return self.unknown(node, f"{name}: pooling that returns indices")
                return self.pool(node, name, src, x, k)
        if isinstance(m, _ELEMENTWISE_MODULES):
            self.touch_module(m, "")
            return self.carry(node, src, x)
        return self.unknown(node, f"{name}: {type(m).__name__} is not known to keep channels apart")

    def layer(self, node, name, w, b, conv, groups, src):
        """A linear layer (conv None) or a k-d convolution (conv = k) reading src."""
        x = self.arg_value(src)
        p, nd = self.pos(src)
        order = self.layer_order.setdefault(name, len(self.layer_order))
        self.touch(w, "its input's channels keep their order" if x is None else "")
        self.touch(b, "")
        cdim = -1 if conv is None else -(conv + 1)  # where the layer reads its channels, from the back
        out_nd = nd if conv is None else (nd or conv + 2)  # a convolution's input is taken as batched
        batch = self.batch.get(src.name) if isinstance(src, torch.fx.Node) and (conv or (nd or 0) >= 2) else None
        out = w.shape[0]
        if conv is not None and groups > 1 and groups == w.shape[0] and w.shape[1] == 1:
            # depthwise: channel c feeds only output c; the input's space carries through, with the rows
            if x is None or p != cdim or any(seg.block != 1 for seg in x) or sum(seg.n for seg in x) != out:
                return self.unknown(node, f"{name}: its input's channels are not on the dim it reads")
            off = 0
            for seg in x:
                self.job(seg.space, w, 0, off, seg.n)
                self.job(seg.space, b, 0, off, seg.n)
                off += seg.n
            return self.put(node, x, cdim, out_nd, batch)
        if x is not None and groups > 1:
            self.observe_value(x, f"{name}: a grouped convolution reads its inputs in groups")
        elif x is not None and p != cdim:
            self.observe_value(x, f"{name}: its input's channels are not on the dim it reads")
        elif x is not None:
            total = sum(seg.n for seg in x)
            fan_in = w.shape[1]
            block = fan_in // total if total and fan_in % total == 0 else None
            if block is None or any(seg.block not in (None, 1, block) for seg in x) or (conv and block != 1):
                self.observe_value(x, f"{name}: its inputs do not match the channels feeding it")
            else:
                off = 0
                for seg in x:
                    self.job(seg.space, w, 1, off * block, seg.n, kind="block" if block > 1 else "plain", block=block)
                    off += seg.n
        # Output channels: a new space (a module called twice: its rows tie the two when the uses are reconciled).
        s = self.new_space(out, out // groups)
        self.spaces[s].producers.append((order, name, w))
        self.job(s, w, 0, 0, out)
        self.job(s, b, 0, 0, out)
        return self.put(node, [_Seg(s, out)], cdim, out_nd, batch)

    def embedding(self, node, name, m):
        """An embedding's features (its weight's columns) are a unit space; its rows are indexed by the input."""
        order = self.layer_order.setdefault(name, len(self.layer_order))
        self.touch_module(m, "")
        src = node.args[0] if node.args else None
        if node.kwargs or len(node.args) != 1:
            return self.unknown(node, f"{name}: called with more than its input")
        self.observe_value(self.arg_value(src), f"{name}: an embedding reads its input as indices")
        d = m.weight.shape[1]
        s = self.new_space(d)
        self.spaces[s].producers.append((order, name, m.weight))
        self.job(s, m.weight, 1, 0, d)
        nd = self.pos(src)[1]
        return self.put(node, [_Seg(s, d)], -1, nd + 1 if nd is not None else None)

    def on_dim(self, node, name, m, src, ops, size, affine, stats, groups=None):
        """A module acting per entry of one dim (ops: rank -> that dim from the back, for the ranks it accepts),
        with `size` entries and per-entry parameters and statistics: per-channel when that dim is the channels;
        otherwise it commutes with a permutation of the channels (it is elementwise along them, or reduces over
        them symmetrically) and its parameters stay. Where the rank is not known and both may be, the space stays."""
        x = self.arg_value(src)
        self.touch_module(m, "")
        if x is None:
            return None
        p, nd = self.pos(src)
        total = sum(seg.n for seg in x) if all(seg.block == 1 for seg in x) else None
        readings = {}
        for r, d in ops.items():
            if (nd is not None and r != nd) or -p > r:
                continue
            if d == p and total != size:  # the op would fail on this rank, or the channels hold blocks
                if total is None:
                    readings[r] = None
                continue
            readings[r] = d == p
        kinds = set(readings.values())
        if kinds == {False}:
            out_nd = nd if nd is not None else (next(iter(readings)) if len(readings) == 1 else None)
            return self.put(node, x, p, out_nd, self.batch.get(src.name))
        if kinds != {True}:
            why = (
                "acts on the channels or on another dim, depending on the rank of its input, which the graph does "
                "not give" if kinds == {True, False} else "does not act on whole channels"
            )
            return self.unknown(node, f"{name}: {type(m).__name__}({size}) {why}")
        if groups is not None:
            gsize = size // groups
            off = 0
            for seg in x:
                if off % gsize or seg.n % gsize:
                    return self.unknown(node, f"{name}: a GroupNorm group spans two spaces")
                space = self.spaces[self.find(seg.space)]
                space.scope = math.gcd(space.scope, gsize)
                off += seg.n
        off = 0
        for seg in x:
            for t in affine:
                self.job(seg.space, t, 0, off, seg.n)
            for t in stats:
                self.job(seg.space, t, 0, off, seg.n, stateful=False)
            off += seg.n
        out_nd = nd if nd is not None else (next(iter(readings)) if len(readings) == 1 else None)
        return self.put(node, x, p, out_nd, self.batch.get(src.name))

    def layer_norm(self, node, name, m, src, x):
        """LayerNorm over the last k dims: the channels inside them move its affine entries along (its statistics
        are symmetric in them); channels outside them are untouched by it."""
        self.touch_module(m, "")
        if x is None:
            return None
        p, nd = self.pos(src)
        k = len(m.normalized_shape)
        if p < -k:
            return self.carry(node, src, x)
        if any(seg.block != 1 for seg in x) or sum(seg.n for seg in x) != m.normalized_shape[k + p]:
            return self.unknown(node, f"{name}: LayerNorm over channels it does not match")
        off = 0
        for seg in x:
            for t in (m.weight, m.bias):
                if t is not None:
                    self.job(seg.space, t, k + p, off, seg.n)
            off += seg.n
        return self.carry(node, src, x)

    # -- shapes -------------------------------------------------------------------------------------------------
    def flatten(self, node, src, x, start, end=-1):
        """Dims start..end merged: the channels pass untouched outside them; as the first merged dim, through
        the last dim, each becomes a block of consecutive features; anything else mixes them."""
        p, nd = self.pos(src)
        if x is None:  # the rank may still be known: flatten(x, s) gives s + 1 dims
            if isinstance(start, int) and start >= 0 and end == -1:
                return self.put(node, None, None, start + 1)
            return None
        if nd is None:
            return self.unknown(node, "a flatten of a value whose rank the graph does not give")
        s, e = start % nd, end % nd
        c = nd + p
        batch = self.batch.get(src.name) if s >= 1 else None
        if e <= s:
            return self.carry(node, src, x)
        out_nd = nd - (e - s)
        if c > e:
            return self.put(node, x, p, out_nd, batch)
        if c < s:
            return self.put(node, x, c - out_nd, out_nd, batch)
        if c == s and e == nd - 1:
            return self.put(node, [_Seg(seg.space, seg.n, None) for seg in x], -1, out_nd, batch)
        return self.unknown(node, "a flatten that mixes the channels with another dim")

    def view(self, node, src, x, shape):
        """x.view(n, -1) / x.reshape(n, -1) with n the batch size of x: a flatten from dim 1."""
        if x is None:
            return self.unknown(node, "")
        if len(shape) == 1 and isinstance(shape[0], tuple | list):
            shape = tuple(shape[0])
        if len(shape) == 2 and shape[1] == -1 and isinstance(shape[0], torch.fx.Node):
            root = self.dim0.get(shape[0].name)
            if root is not None and self.batch.get(root) is not None and self.batch.get(root) == self.batch.get(
                src.name
            ):
                return self.flatten(node, src, x, 1, -1)
        return self.unknown(node, f"{node.target}: a reshape that may mix the channels with another dim")

    def permute(self, node, src, x, dims):
        if x is None:
            return None
        if len(dims) == 1 and isinstance(dims[0], tuple | list):
            dims = tuple(dims[0])
        p, nd = self.pos(src)
        if not all(isinstance(d, int) for d in dims) or (nd is not None and nd != len(dims)):
            return self.unknown(node, "a permute the analysis cannot place")
        nd = len(dims)
        dims = [d % nd for d in dims]
        if sorted(dims) != list(range(nd)) or not 0 <= nd + p < nd:
            return self.unknown(node, "a permute the analysis cannot place")
        c = dims.index(nd + p)
        return self.put(node, x, c - nd, nd, self.batch.get(src.name) if dims[0] == 0 else None)

    def transpose(self, node, src, x, a, b):
        if x is None:
            return None
        p, nd = self.pos(src)
        if not (isinstance(a, int) and isinstance(b, int)):
            return self.unknown(node, "a transpose the analysis cannot place")
        if nd is not None:
            a, b = a % nd - nd, b % nd - nd
        elif a >= 0 or b >= 0:
            return self.unknown(node, "a transpose of a value whose rank the graph does not give")
        q = b if p == a else a if p == b else p
        keeps0 = nd is not None and -nd not in (a, b)
        return self.put(node, x, q, nd, self.batch.get(src.name) if keeps0 else None)

    def reduce(self, node, src, x, dims, keepdim):
        """mean / sum / amax / amin: over the channels, the result no longer depends on their order."""
        if x is None:
            return None
        p, nd = self.pos(src)
        if dims is None or dims == ():
            return None  # over everything: symmetric in the channels
        dims = (dims,) if isinstance(dims, int) else tuple(dims)
        if not all(isinstance(d, int) for d in dims):
            return self.unknown(node, "a reduction the analysis cannot place")
        if any(d >= 0 for d in dims):
            if nd is None:
                return self.unknown(node, "a reduction over a value whose rank the graph does not give")
            dims = tuple(d % nd - nd for d in dims)
        if p in dims:
            return None
        if keepdim:
            return self.carry(node, src, x)
        q = p + sum(1 for d in dims if d > p)
        out_nd = nd - len(set(dims)) if nd is not None else None
        return self.put(node, x, q, out_nd, self.batch.get(src.name) if nd is not None and -nd not in dims else None)

    def softmax(self, node, src, x, dim, what="softmax"):
        if x is None:
            return None
        p, nd = self.pos(src)
        if dim is None or not isinstance(dim, int):
            return self.unknown(node, f"{what} (over dims the analysis cannot place)")
        if dim >= 0:
            if nd is None:
                return self.unknown(node, f"{what} (over dim {dim} of a value whose rank the graph does not give)")
            dim = dim % nd - nd
        if dim == p:
            return self.unknown(node, f"{what} (over the channels)")
        return self.carry(node, src, x)

    def pool(self, node, name, src, x, k):
        """Pooling over the last k dims: the channels must not be among them."""
        if x is None:
            return None
        p, _ = self.pos(src)
        if p >= -k:
            return self.unknown(node, f"{name}: pooling over the channels")
        return self.carry(node, src, x)

    def resample(self, node, name, src, x):
        """Upsample / interpolate: (N, C, *spatial) resampled over the spatial dims; the channels must be dim 1."""
        if x is None:
            return None
        p, nd = self.pos(src)
        if nd is None or nd + p != 1:
            return self.unknown(node, f"{name}: resampling a value whose channels may not be its dim 1")
        return self.carry(node, src, x)

    # -- functions ----------------------------------------------------------------------------------------------
    def is_scalar(self, a):
        return not isinstance(a, torch.fx.Node) or a.name in self.scalar

    def function(self, node):
        t, op = node.target, node.op
        args, kw = node.args, node.kwargs
        src = args[0] if args else None
        x = self.arg_value(src)
        method = op == "call_method"
        # Sizes and other Python values read from shapes: no channel order in them.
        if method and t in ("size", "dim", "numel"):
            self.scalar.add(node.name)
            if t == "size" and isinstance(src, torch.fx.Node):
                d = args[1] if len(args) > 1 else kw.get("dim")
                if d is None:
                    self.shape_of[node.name] = src.name
                elif d == 0:
                    self.dim0[node.name] = src.name
            return None
        if t is getattr and len(args) > 1 and args[1] in ("shape", "dtype", "device", "ndim", "is_cuda"):
            self.scalar.add(node.name)
            if args[1] == "shape":
                self.shape_of[node.name] = src.name
            return None
        if t in _SCALAR_OPS and all(self.is_scalar(a) for a in node.all_input_nodes):
            self.scalar.add(node.name)
            if t is operator.getitem and src.name in self.shape_of and args[1] == 0:
                self.dim0[node.name] = self.shape_of[src.name]
            return None
        if t in _ELEMENTWISE_FUNCTIONS or (method and t in _ELEMENTWISE_METHODS):
            others = [a for a in node.all_input_nodes if a is not src]
            if method and t == "to" or all(self.is_scalar(a) for a in others):
                return self.carry(node, src, x)
            return self.unknown(node, f"{getattr(t, '__name__', t)} with a tensor argument")
        if t in _POOL_FUNCTIONS:
            if kw.get("return_indices") or (t in (F.max_pool1d, F.max_pool2d, F.max_pool3d) and len(args) > 6
                                            and args[6]):  # fmt: skip
                return self.unknown(node, "pooling that returns indices")
            return self.pool(node, getattr(t, "__name__", t), src, x, _POOL_FUNCTIONS[t])
        if t in _BINARY or (method and t in _BINARY_METHODS):
            return self.binary(node)
        if t is F.linear:
            return self.functional_linear(node)
        if t is F.interpolate:
            if not all(self.is_scalar(a) for a in node.all_input_nodes if a is not src):
                return self.unknown(node, "interpolate with a tensor argument")
            return self.resample(node, "interpolate", src, x)
        if t is torch.flatten or (method and t == "flatten"):
            start = args[1] if len(args) > 1 else kw.get("start_dim", 0)
            end = args[2] if len(args) > 2 else kw.get("end_dim", -1)
            return self.flatten(node, src, x, start, end)
        if method and t in ("view", "reshape") or t is torch.reshape:
            return self.view(node, src, x, tuple(args[1:]) or (kw.get("shape"),))
        if t is torch.permute or (method and t == "permute"):
            return self.permute(node, src, x, tuple(args[1:]) or (kw.get("dims"),))
        if t is torch.transpose or (method and t == "transpose"):
            a = args[1] if len(args) > 1 else kw.get("dim0")
            b = args[2] if len(args) > 2 else kw.get("dim1")
            return self.transpose(node, src, x, a, b)
        if t in (torch.cat, torch.concat, torch.concatenate):
            return self.cat(node)
        if t in _REDUCTIONS or (method and t in _REDUCTIONS.values()):
            dims = args[1] if len(args) > 1 else kw.get("dim")
            keepdim = args[2] if len(args) > 2 else kw.get("keepdim", False)
            if not isinstance(keepdim, bool):
                return self.unknown(node, "a reduction the analysis cannot place")
            return self.reduce(node, src, x, dims, keepdim)
        if t in (F.softmax, F.log_softmax, torch.softmax, torch.log_softmax) or (
            method and t in ("softmax", "log_softmax")
        ):
            return self.softmax(node, src, x, args[1] if len(args) > 1 else kw.get("dim"))
        return self.unknown(node, f"{getattr(t, '__name__', t)} is not known to keep channels apart")

    def functional_linear(self, node):
        """F.linear(x, weight, bias) with the model's parameters: a linear layer named by its weight."""
        args = list(node.args) + [None] * (3 - len(node.args))
        w = args[1] if args[1] is not None else node.kwargs.get("weight")
        b = args[2] if args[2] is not None else node.kwargs.get("bias")
        wt = self.attrs.get(w.name) if isinstance(w, torch.fx.Node) else None
        bt = self.attrs.get(b.name) if isinstance(b, torch.fx.Node) else None
        if wt is None or wt.dim() != 2 or (b is not None and (bt is None or bt.shape != wt.shape[:1])):
            return self.unknown(node, "F.linear with a weight that is not one of the model's parameters")
        name = self.names.get(id(wt), w.target)
        return self.layer(node, name, wt, bt, None, 1, args[0])

    def binary(self, node):
        a, b = node.args[0], node.args[1] if len(node.args) > 1 else node.kwargs.get("other")
        if node.target is torch.add and "alpha" in node.kwargs and not self.is_scalar(node.kwargs["alpha"]):
            return self.unknown(node, "add with a tensor alpha")
        va, vb = self.arg_value(a), self.arg_value(b)
        if va is None and vb is None:
            return self.unknown(node, "")
        if self.is_scalar(a) or self.is_scalar(b):  # with a number: elementwise
            return self.carry(node, a if va is not None else b, va if va is not None else vb)
        if va is None or vb is None:
            other, value, v = (a, b, vb) if va is None else (b, a, va)
            if other.name in self.attrs:
                return self.broadcast(node, value, v, self.attrs[other.name])
            self.observe_value(v, "combined with a value whose channels cannot move")
            return None
        (pa, na), (pb, nb) = self.pos(a), self.pos(b)
        if [(s.n, s.block) for s in va] != [(s.n, s.block) for s in vb] or pa != pb:
            return self.unknown(node, "combined with differently arranged channels")
        nd = max(na, nb) if na is not None and nb is not None else None
        batch = self.batch.get(a.name) if self.batch.get(a.name) == self.batch.get(b.name) else None
        return self.put(node, [_Seg(self.union(p.space, q.space), p.n, p.block) for p, q in zip(va, vb, strict=True)],
                        pa, nd, batch)  # fmt: skip

    def broadcast(self, node, src, x, t):
        """A value combined elementwise with a parameter or buffer t: where t has the channel dim (aligned from the
        back), its entries along it move with the channels; where it broadcasts over it, it commutes."""
        p, nd = self.pos(src)
        d = t.dim() + p
        out_nd = max(nd, t.dim()) if nd is not None else None
        if d < 0 or t.shape[d] == 1:
            return self.put(node, x, p, out_nd, self.batch.get(src.name) if t.dim() <= (nd or 0) else None)
        if any(seg.block != 1 for seg in x) or t.shape[d] != sum(seg.n for seg in x):
            return self.unknown(node, "combined with a parameter that does not match the channels")
        off = 0
        for seg in x:
            self.job(seg.space, t, d, off, seg.n)
            off += seg.n
        return self.put(node, x, p, out_nd, self.batch.get(src.name) if t.dim() <= (nd or 0) else None)

    def cat(self, node):
        parts = node.args[0] if node.args else node.kwargs.get("tensors")
        dim = node.args[1] if len(node.args) > 1 else node.kwargs.get("dim", 0)
        if not isinstance(parts, tuple | list) or not parts or not isinstance(dim, int):
            return self.unknown(node, "a cat the analysis cannot place")
        vals = [self.arg_value(q) for q in parts]
        if any(v is None for v in vals):
            return self.unknown(node, "a cat with channels that cannot move")
        poses = {self.pos(q) for q in parts}
        ps = {q for q, _ in poses}
        nds = {n for _, n in poses}
        if len(ps) != 1 or (dim >= 0 and (len(nds) != 1 or None in nds)):
            return self.unknown(node, "a cat the analysis cannot place")
        (p,), nd = ps, nds.pop() if len(nds) == 1 else None
        d = dim if dim < 0 else dim - nd
        batches = {self.batch.get(q.name) for q in parts}
        batch = batches.pop() if len(batches) == 1 and nd is not None and d != -nd else None
        if d == p:  # along the channels: side by side
            return self.put(node, [seg for v in vals for seg in v], p, nd, batch)
        # along another dim: channel c of the result is channel c of every part, so their spaces are one
        if len({tuple((s.n, s.block) for s in v) for v in vals}) != 1:
            return self.unknown(node, "a cat of differently arranged channels")
        out = [_Seg(seg.space, seg.n, seg.block) for seg in vals[0]]
        for v in vals[1:]:
            out = [_Seg(self.union(o.space, q.space), o.n, o.block) for o, q in zip(out, v, strict=True)]
        return self.put(node, out, p, nd, batch)


def analyse(model: nn.Module) -> NeuronAnalysis:
    """The unit spaces of `model`'s graph: for each, the layers producing it, the parameters' and buffers' dims that
    move with it, and why it may not move (None: it may). ValueError when fx cannot trace the model."""
    if not isinstance(model, nn.Module):
        raise ValueError("neuron needs the model (to know which layer feeds which), not a list of parameters")
    gm = trace(model)
    an = _Analysis(model, gm)
    an.run()
    members: dict = {}
    for (i, dim), uses in an.decl.items():
        for off, n, _, block, stateful, s in sorted(next(iter(uses.values())), key=lambda seg: seg[0]):
            member = Member(an.names.get(i, "?"), dim, off, n, block, not stateful)
            members.setdefault(an.find(s), []).append(member)
    roots = {an.find(s) for s in range(len(an.spaces))}
    order = lambda s: min(o for o, *_ in an.spaces[s].producers)  # noqa: E731
    spaces, left_out = [], {}
    for s in sorted(roots, key=order):
        sp = an.spaces[s]
        layers = tuple(dict.fromkeys(n for _, n, _ in sorted(sp.producers, key=lambda q: q[0])))
        why = sp.observable
        if why is None and sp.scope < 2:
            why = f"{sp.n} channels in groups of {sp.scope}: nothing to exchange"
        spaces.append(UnitSpace(sp.n, sp.scope, layers, tuple(members.get(s, ())), why, order(s)))
        if why is not None:
            for n in layers:
                left_out[n] = why
    return NeuronAnalysis(spaces, left_out)


def _attr(gm, target):
    obj = gm
    for part in target.split("."):
        obj = getattr(obj, part, None)
    return obj
