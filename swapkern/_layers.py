"""The output layer of a model: what WeightSwap(layers=None) leaves out, as the study's trainer does (a row swap
of the classifier exchanges two class logits).

Found as the last layer on the traced graph's path to the model's output (torch.fx); where fx cannot trace the
model (or tracing would run hooks: FSDP, sharded parameters), the classifier by name (the last module called fc,
classifier, head, ... that holds a weight of 2 or more dims); where neither finds one, the last such weight in
registration order.
"""

from __future__ import annotations

import copy
import itertools

import torch
from torch import nn

CLASSIFIER_NAMES = ("fc", "classifier", "head", "heads", "out", "output", "lm_head", "logits", "last_linear")


def _weights(module: nn.Module, prefix: str) -> list[str]:
    """The module's own parameters of 2 or more dims, by full name."""
    return [f"{prefix}.{n}" if prefix else n for n, p in module.named_parameters(recurse=False) if p.dim() >= 2]


def _traced(model: nn.Module) -> list[str] | None:
    """Weights of the last layers before the output on the fx graph; None if fx cannot trace the model, or if
    tracing could change it (modules with forward hooks, such as FSDP's, run them on the trace)."""
    if any(m._forward_pre_hooks or m._forward_hooks for m in model.modules()):
        return None
    if any(type(p).__name__ == "DTensor" or hasattr(p, "_local_tensor") for p in model.parameters()):
        return None
    # fx runs forward's Python on proxies: trace a copy that shares the tensors, so what forward writes to its
    # module (counters, lists) lands in the copy
    memo = {id(t): t for t in itertools.chain(model.parameters(), model.buffers())}
    try:
        gm = torch.fx.symbolic_trace(copy.deepcopy(model, memo))
    except Exception:
        return None
    params = dict(model.named_parameters())
    found, seen = [], set()
    stack = [n for n in gm.graph.nodes if n.op == "output"]
    while stack:
        node = stack.pop()
        if node in seen:
            continue
        seen.add(node)
        hit = []
        if node.op == "call_module":
            hit = _weights(gm.get_submodule(node.target), node.target)
        elif node.op == "get_attr" and node.target in params and params[node.target].dim() >= 2:
            hit = [node.target]
        if hit:
            found.extend(h for h in hit if h not in found)
            continue  # a layer ends this path
        stack.extend(reversed(node.all_input_nodes))
    return found


def output_layer(model: nn.Module) -> tuple[list[str], str]:
    """(weight names of the output layer, how they were found)."""
    traced = _traced(model)
    if traced:
        return traced, "the output layer (the last layer on the traced graph's path to the output)"
    for name, m in reversed(list(model.named_modules())):
        if name and name.rsplit(".", 1)[-1].lower() in CLASSIFIER_NAMES:
            w = _weights(m, name) or [n for n, p in m.named_parameters(prefix=name) if p.dim() >= 2][-1:]
            if w:
                return w, f"the output layer (the classifier by name, {name!r}: fx cannot trace the model)"
    last = [n for n, p in model.named_parameters() if p.dim() >= 2][-1:]
    return last, "the output layer (the last weight registered: fx cannot trace the model and no classifier is named)"
