"""What both callbacks share: the optimizer under a framework's wrappers, and the swap state as plain data."""

from __future__ import annotations

import torch

from ..data import FeatureSwap
from ..optim import WeightSwap


def torch_optimizer(opt):
    """The torch.optim.Optimizer under a framework's wrappers (LightningOptimizer, accelerate's
    AcceleratedOptimizer), whose step post-hooks fire once per real optimizer step."""
    for _ in range(8):  # wrappers hold the optimizer as .optimizer (some subclass Optimizer without its hooks)
        inner = getattr(opt, "optimizer", None)
        if inner is None or inner is opt:
            break
        opt = inner
    if not isinstance(opt, torch.optim.Optimizer):
        raise TypeError(f"SwapCallback: cannot find the torch optimizer inside {type(opt).__name__}")
    return opt


class SwapState:
    """The feature swap, the weight swap built when fitting starts, and a state loaded before it exists."""

    def __init__(self, feature_swap, weight_protocol, weight_swap_kwargs):
        if feature_swap is not None and not isinstance(feature_swap, FeatureSwap):
            raise TypeError(f"feature_swap must be a swapkern.FeatureSwap, got {type(feature_swap).__name__}")
        if feature_swap is None and weight_protocol is None:
            raise ValueError("SwapCallback needs a feature_swap, a weight_protocol, or both")
        self.feature_swap, self.weight_protocol = feature_swap, weight_protocol
        self.weight_swap_kwargs = dict(weight_swap_kwargs)
        self.weight_swap, self._handle, self._pending = None, None, None

    def build(self, model, optimizer):
        """Builds the WeightSwap on model and attaches it to optimizer (once per fit), then applies a pending state."""
        self.detach()
        if self.weight_protocol is not None:
            self.weight_swap = WeightSwap(model, self.weight_protocol, **self.weight_swap_kwargs)
            if optimizer is None:
                raise ValueError("SwapCallback: the trainer has no optimizer to attach the weight swap to")
            self._handle = self.weight_swap.attach(torch_optimizer(optimizer))
        if self._pending is not None:
            pending, self._pending = self._pending, None
            self.load(pending)

    def detach(self):
        if self._handle is not None:
            self._handle.remove()
            self._handle = None

    def state(self) -> dict:
        fs, ws = self.feature_swap, self.weight_swap
        return {
            "feature_swap": None if fs is None else fs.get_extra_state(),
            "weight_swap": None if ws is None else ws.state_dict(),
        }

    def load(self, state: dict) -> None:
        """Restores the feature swap now; the weight swap now if built, else when fitting starts."""
        if state.get("feature_swap") is not None and self.feature_swap is not None:
            self.feature_swap.set_extra_state(state["feature_swap"])
        if state.get("weight_swap") is not None:
            if self.weight_swap is None:
                self._pending = {"weight_swap": state["weight_swap"]}
            else:
                self.weight_swap.load_state_dict(state["weight_swap"])
