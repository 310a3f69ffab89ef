"""The `neuron` analysis: one walk over the model's torch.fx graph, in graph order, applying each node's rule
(swapkern._neuron.modules, .functions, .shapes) to the values it reads; then the unit spaces it found, with the
parameters' and buffers' dims that move with each and why a space stays (swapkern._neuron describes the rules)."""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.fx
from torch import nn

from .functions import FunctionRules
from .modules import ModuleRules
from .shapes import ShapeRules
from .spaces import Spaces
from .trace import attr, trace
from .uses import Uses


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


class Analysis(ModuleRules, FunctionRules, ShapeRules):
    """The walk's state: per node, the segments of unit spaces along its value's channel dim and where that dim is;
    the spaces (union-find) and the uses of the model's tensors. The rules come from the mixins."""

    def __init__(self, model, gm):
        self.model, self.gm = model, gm
        self.modules = dict(gm.named_modules())
        self.spaces = Spaces()
        self.uses = Uses(model)
        self.layer_order: dict = {}
        self.values: dict = {}  # node name -> list of Seg along its channel dim, or None (no movable channels)
        self.meta: dict = {}  # node name -> (channel dim counted from the back, number of dims or None)
        self.batch: dict = {}  # node name -> the node whose dim 0 (the batch) this value's dim 0 is
        self.scalar: set = set()  # nodes holding Python numbers / sizes read from shapes (no channel order)
        self.shape_of: dict = {}  # node name -> node whose shape (x.shape, x.size()) it holds
        self.dim0: dict = {}  # node name -> node whose size of dim 0 it holds
        self.attrs: dict = {}  # get_attr node name -> tensor

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
            self.spaces.observe_value(self.values.get(x.name), why)
            if x.name in self.attrs:
                self.uses.touch(self.attrs[x.name], why)
        if node.op == "call_module":
            self.uses.touch_module(self.modules[node.target], why)
        return None

    def run(self):
        for node in self.gm.graph.nodes:
            self.uses.use = node.name
            v = None
            if node.op == "placeholder":
                self.batch[node.name] = node.name
            elif node.op == "get_attr":  # read by its users: each says what it does with it
                t = attr(self.gm, node.target)
                if isinstance(t, torch.Tensor):
                    self.attrs[node.name] = t
            elif node.op == "call_module":
                v = self.module(node, self.modules[node.target])
            elif node.op in ("call_function", "call_method"):
                v = self.function(node)
                for x in node.all_input_nodes:  # a parameter read here: what the function did not move stays
                    if x.name in self.attrs:
                        self.uses.touch(self.attrs[x.name], f"{getattr(node.target, '__name__', node.target)}")
            else:  # output: what the model returns is observable
                for x in node.all_input_nodes:
                    self.spaces.observe_value(self.values.get(x.name), "the model returns it")
                    if x.name in self.attrs:
                        self.uses.touch(self.attrs[x.name], "the model returns it")
            self.values[node.name] = v
        self.uses.reconcile(self.spaces)


def analyse(model: nn.Module) -> NeuronAnalysis:
    """The unit spaces of `model`'s graph: for each, the layers producing it, the parameters' and buffers' dims that
    move with it, and why it may not move (None: it may). ValueError when fx cannot trace the model."""
    if not isinstance(model, nn.Module):
        raise ValueError("neuron needs the model (to know which layer feeds which), not a list of parameters")
    gm = trace(model)
    an = Analysis(model, gm)
    an.run()
    members: dict = {}
    for (i, dim), uses in an.uses.decl.items():
        for off, n, _, block, stateful, s in sorted(next(iter(uses.values())), key=lambda seg: seg[0]):
            member = Member(an.uses.names.get(i, "?"), dim, off, n, block, not stateful)
            members.setdefault(an.spaces.find(s), []).append(member)
    roots = {an.spaces.find(s) for s in range(len(an.spaces))}
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
