"""The rules for modules: linear layers and convolutions (each output a new unit space), embeddings, modules acting
per entry of one dim (BatchNorm, InstanceNorm, GroupNorm, PReLU), LayerNorm; pooling, softmax, flatten, resampling
and elementwise modules by their kind (swapkern._neuron.shapes)."""

from __future__ import annotations

import math

import torch
import torch.fx
from torch import nn

from .spaces import Seg
from .tables import BATCHNORMS, CONVS, ELEMENTWISE_MODULES, INSTANCENORMS, POOL_MODULES


class ModuleRules:
    """What a call_module node does to its input's channels (a part of swapkern._neuron.analysis.Analysis)."""

    def module(self, node, m):
        src = node.args[0] if node.args else None
        x = self.arg_value(src)
        name = node.target
        p, nd = self.pos(src)
        conv = next((k for c, k in CONVS.items() if isinstance(m, c)), None)
        if conv is not None or isinstance(m, nn.Linear):
            if node.kwargs or len(node.args) != 1:
                return self.unknown(node, f"{name}: called with more than its input")
            return self.layer(node, name, m.weight, m.bias, conv, getattr(m, "groups", 1), src)
        if isinstance(m, nn.Embedding):
            return self.embedding(node, name, m)
        for cls, ranks in BATCHNORMS.items():
            if isinstance(m, cls):
                ops = {r: (-1 if r == 2 else 1 - r) for r in ranks}  # dim 1
                return self.on_dim(node, name, m, src, ops, m.num_features, (m.weight, m.bias),
                                   (m.running_mean, m.running_var))  # fmt: skip
        for cls, k in INSTANCENORMS.items():
            if isinstance(m, cls):
                ops = {k + 1: -(k + 1), k + 2: -(k + 1)}
                return self.on_dim(node, name, m, src, ops, m.num_features, (m.weight, m.bias),
                                   (m.running_mean, m.running_var))  # fmt: skip
        if isinstance(m, nn.GroupNorm):
            ops = {r: 1 - r for r in range(2, 9)}
            return self.on_dim(node, name, m, src, ops, m.num_channels, (m.weight, m.bias), (), groups=m.num_groups)
        if isinstance(m, nn.PReLU):
            if m.num_parameters == 1:  # one slope: elementwise
                self.uses.touch_module(m, "")
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
        for cls, k in POOL_MODULES.items():
            if isinstance(m, cls):
                if getattr(m, "return_indices", False):
                    return self.unknown(node, f"{name}: pooling that returns indices")
                return self.pool(node, name, src, x, k)
        if isinstance(m, ELEMENTWISE_MODULES):
            self.uses.touch_module(m, "")
            return self.carry(node, src, x)
        return self.unknown(node, f"{name}: {type(m).__name__} is not known to keep channels apart")

    def layer(self, node, name, w, b, conv, groups, src):
        """A linear layer (conv None) or a k-d convolution (conv = k) reading src."""
        x = self.arg_value(src)
        p, nd = self.pos(src)
        order = self.layer_order.setdefault(name, len(self.layer_order))
        self.uses.touch(w, "its input's channels keep their order" if x is None else "")
        self.uses.touch(b, "")
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
                self.uses.job(seg.space, w, 0, off, seg.n)
                self.uses.job(seg.space, b, 0, off, seg.n)
                off += seg.n
            return self.put(node, x, cdim, out_nd, batch)
        if x is not None and groups > 1:
            self.spaces.observe_value(x, f"{name}: a grouped convolution reads its inputs in groups")
        elif x is not None and p != cdim:
            self.spaces.observe_value(x, f"{name}: its input's channels are not on the dim it reads")
        elif x is not None:
            total = sum(seg.n for seg in x)
            fan_in = w.shape[1]
            block = fan_in // total if total and fan_in % total == 0 else None
            if block is None or any(seg.block not in (None, 1, block) for seg in x) or (conv and block != 1):
                self.spaces.observe_value(x, f"{name}: its inputs do not match the channels feeding it")
            else:
                off = 0
                for seg in x:
                    kind = "block" if block > 1 else "plain"
                    self.uses.job(seg.space, w, 1, off * block, seg.n, kind=kind, block=block)
                    off += seg.n
        # Output channels: a new space (a module called twice: its rows tie the two when the uses are reconciled).
        s = self.spaces.new(out, out // groups)
        self.spaces[s].producers.append((order, name, w))
        self.uses.job(s, w, 0, 0, out)
        self.uses.job(s, b, 0, 0, out)
        return self.put(node, [Seg(s, out)], cdim, out_nd, batch)

    def embedding(self, node, name, m):
        """An embedding's features (its weight's columns) are a unit space; its rows are indexed by the input."""
        order = self.layer_order.setdefault(name, len(self.layer_order))
        self.uses.touch_module(m, "")
        src = node.args[0] if node.args else None
        if node.kwargs or len(node.args) != 1:
            return self.unknown(node, f"{name}: called with more than its input")
        self.spaces.observe_value(self.arg_value(src), f"{name}: an embedding reads its input as indices")
        d = m.weight.shape[1]
        s = self.spaces.new(d)
        self.spaces[s].producers.append((order, name, m.weight))
        self.uses.job(s, m.weight, 1, 0, d)
        nd = self.pos(src)[1]
        return self.put(node, [Seg(s, d)], -1, nd + 1 if nd is not None else None)

    def on_dim(self, node, name, m, src, ops, size, affine, stats, groups=None):
        """A module acting per entry of one dim (ops: rank -> that dim from the back, for the ranks it accepts),
        with `size` entries and per-entry parameters and statistics: per-channel when that dim is the channels;
        otherwise it commutes with a permutation of the channels (it is elementwise along them, or reduces over
        them symmetrically) and its parameters stay. Where the rank is not known and both may be, the space stays."""
        x = self.arg_value(src)
        self.uses.touch_module(m, "")
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
                space = self.spaces[self.spaces.find(seg.space)]
                space.scope = math.gcd(space.scope, gsize)
                off += seg.n
        off = 0
        for seg in x:
            for t in affine:
                self.uses.job(seg.space, t, 0, off, seg.n)
            for t in stats:
                self.uses.job(seg.space, t, 0, off, seg.n, stateful=False)
            off += seg.n
        out_nd = nd if nd is not None else (next(iter(readings)) if len(readings) == 1 else None)
        return self.put(node, x, p, out_nd, self.batch.get(src.name))

    def layer_norm(self, node, name, m, src, x):
        """LayerNorm over the last k dims: the channels inside them move its affine entries along (its statistics
        are symmetric in them); channels outside them are untouched by it."""
        self.uses.touch_module(m, "")
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
                    self.uses.job(seg.space, t, k + p, off, seg.n)
            off += seg.n
        return self.carry(node, src, x)
