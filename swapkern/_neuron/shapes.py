"""The rules for ops that move, merge or reduce dims: flatten, view / reshape, permute, transpose, reductions,
softmax, pooling and resampling. Each says where the channels are afterwards, or keeps their spaces."""

from __future__ import annotations

import torch
import torch.fx

from .spaces import Seg


class ShapeRules:
    """Where the channels go through shape ops (a part of swapkern._neuron.analysis.Analysis)."""

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
            return self.put(node, [Seg(seg.space, seg.n, None) for seg in x], -1, out_nd, batch)
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
