"""torch.fx tracing for the `neuron` analysis: a submodule fx cannot trace is kept as a leaf (an op the analysis
does not know), as are the layers the analysis knows, even when a wrapper subclassed them."""

from __future__ import annotations

import torch
import torch.fx
from torch import nn

from .tables import KNOWN_LEAVES


class _Tracer(torch.fx.Tracer):
    """fx's tracer, with extra leaf modules (the model's own modules that cannot be traced)."""

    def __init__(self, leaves):
        super().__init__()
        self.leaves = leaves
        self.stack: list = []
        self.failed: str | None = None

    def is_leaf_module(self, m, qualname):
        # The layers the analysis knows stay leaves even when a wrapper subclassed them (FSDP2's FSDPLinear).
        return qualname in self.leaves or isinstance(m, KNOWN_LEAVES) or super().is_leaf_module(m, qualname)

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


def attr(gm, target):
    """The attribute a get_attr node reads (None when it is missing)."""
    obj = gm
    for part in target.split("."):
        obj = getattr(obj, part, None)
    return obj
