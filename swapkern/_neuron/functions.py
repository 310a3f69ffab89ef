"""The rules for call_function / call_method nodes: sizes and other Python values read from shapes, elementwise and
binary ops (a residual add ties its operands' spaces), a value combined with a parameter (broadcast), F.linear, cat;
shape ops go to swapkern._neuron.shapes."""

from __future__ import annotations

import operator

import torch
import torch.fx
from torch.nn import functional as F

from .spaces import Seg
from .tables import (
    BINARY,
    BINARY_METHODS,
    ELEMENTWISE_FUNCTIONS,
    ELEMENTWISE_METHODS,
    POOL_FUNCTIONS,
    REDUCTIONS,
    SCALAR_OPS,
)


class FunctionRules:
    """What a call_function / call_method node does to its inputs' channels (a part of
    swapkern._neuron.analysis.Analysis)."""

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
        if t in SCALAR_OPS and all(self.is_scalar(a) for a in node.all_input_nodes):
            self.scalar.add(node.name)
            if t is operator.getitem and src.name in self.shape_of and args[1] == 0:
                self.dim0[node.name] = self.shape_of[src.name]
            return None
        if t in ELEMENTWISE_FUNCTIONS or (method and t in ELEMENTWISE_METHODS):
            others = [a for a in node.all_input_nodes if a is not src]
            if method and t == "to" or all(self.is_scalar(a) for a in others):
                return self.carry(node, src, x)
            return self.unknown(node, f"{getattr(t, '__name__', t)} with a tensor argument")
        if t in POOL_FUNCTIONS:
            if kw.get("return_indices") or (t in (F.max_pool1d, F.max_pool2d, F.max_pool3d) and len(args) > 6
                                            and args[6]):  # fmt: skip
                return self.unknown(node, "pooling that returns indices")
            return self.pool(node, getattr(t, "__name__", t), src, x, POOL_FUNCTIONS[t])
        if t in BINARY or (method and t in BINARY_METHODS):
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
        if t in REDUCTIONS or (method and t in REDUCTIONS.values()):
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
        name = self.uses.names.get(id(wt), w.target)
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
            self.spaces.observe_value(v, "combined with a value whose channels cannot move")
            return None
        (pa, na), (pb, nb) = self.pos(a), self.pos(b)
        if [(s.n, s.block) for s in va] != [(s.n, s.block) for s in vb] or pa != pb:
            return self.unknown(node, "combined with differently arranged channels")
        nd = max(na, nb) if na is not None and nb is not None else None
        batch = self.batch.get(a.name) if self.batch.get(a.name) == self.batch.get(b.name) else None
        tied = [Seg(self.spaces.union(p.space, q.space), p.n, p.block) for p, q in zip(va, vb, strict=True)]
        return self.put(node, tied, pa, nd, batch)

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
            self.uses.job(seg.space, t, d, off, seg.n)
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
        out = [Seg(seg.space, seg.n, seg.block) for seg in vals[0]]
        for v in vals[1:]:
            out = [Seg(self.spaces.union(o.space, q.space), o.n, o.block) for o, q in zip(out, v, strict=True)]
        return self.put(node, out, p, nd, batch)
