"""Uses of the model's parameters and buffers: each node of the graph that reads a tensor is one use, which either
moves a dim of it with a unit space (a job) or relies on its order (a touch). reconcile() ties the spaces that move
one dim in every use, and keeps those a use relies on where they are, so the function never changes."""

from __future__ import annotations

import torch


class Uses:
    """Per tensor (by id): the uses that touch it and why they would keep its order, and per (tensor, dim) the jobs
    each use declares. `use` names the node being read; `names` the model's names of its parameters and buffers."""

    def __init__(self, model):
        self.use: str = ""  # the node being read: one use of the tensors it touches
        self.tensors: dict = {}  # id -> tensor
        self.decl: dict = {}  # (id, dim) -> {use: [(offset, n, kind, block, stateful, space)]}
        self.touched: dict = {}  # id -> {use: why the use would keep the tensor's order}
        self.names = {}
        for n, t in [*model.named_parameters(remove_duplicate=False), *model.named_buffers(remove_duplicate=False)]:
            self.names.setdefault(id(t), n)

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

    def reconcile(self, spaces):
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
                    spaces.observe(seg[5], why)
                continue
            layouts = [sorted(u, key=lambda s: s[0]) for u in uses.values()]
            for column in zip(*layouts, strict=True):
                for seg in column[1:]:
                    spaces.union(column[0][5], seg[5])
