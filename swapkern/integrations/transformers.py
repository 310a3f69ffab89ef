"""swapkern in Hugging Face transformers: `SwapCallback(feature_swap=None, weight_protocol=None, **weight_swap_kwargs)`.

    trainer = transformers.Trainer(..., callbacks=[SwapCallback(fs, "rows", swaps=1, seed=0)])

- the FeatureSwap `fs` (a transform in the dataset, run in the DataLoader workers) gets the epoch at each
  `on_epoch_begin`, which the Trainer calls before it starts the epoch's DataLoader iterator;
- at `on_train_begin`, `callback.weight_swap = WeightSwap(model, weight_protocol, **weight_swap_kwargs)` is built and
  attached to the optimizer: one weight swap per optimizer step (gradient_accumulation_steps respected);
- both states travel in the checkpoint's trainer_state.json (the callback is an ExportableState) and are restored
  by `train(resume_from_checkpoint=...)`. Leave `restore_callback_states_from_checkpoint` False (the default):
  the Trainer would replace this callback by a new one without its FeatureSwap.
"""

from __future__ import annotations

import math

try:
    from transformers import TrainerCallback
    from transformers.trainer_callback import ExportableState
except ImportError as e:
    raise ImportError(
        "swapkern.integrations.transformers needs transformers: pip install swapkern[transformers]"
    ) from e

from ._common import SwapState


class SwapCallback(TrainerCallback, ExportableState):
    """Feature-swap epochs, a weight swap on the optimizer, and both states in checkpoints (see the module)."""

    def __init__(self, feature_swap=None, weight_protocol=None, **weight_swap_kwargs):
        empty = feature_swap is None and weight_protocol is None  # only as the Trainer rebuilds it (see _check)
        self._swap = None if empty else SwapState(feature_swap, weight_protocol, weight_swap_kwargs)

    @property
    def feature_swap(self):
        return None if self._swap is None else self._swap.feature_swap

    @property
    def weight_swap(self):
        """The WeightSwap built when training began (None before, or without a weight_protocol)."""
        return None if self._swap is None else self._swap.weight_swap

    def _check(self):
        if self._swap is None:
            raise ValueError(
                "SwapCallback has no feature_swap or weight_protocol: the Trainer rebuilt it from a checkpoint "
                "(restore_callback_states_from_checkpoint=True); leave that False, SwapCallback restores itself"
            )

    def on_train_begin(self, args, state, control, model=None, optimizer=None, **kwargs):
        self._check()
        self._swap.build(model, optimizer)
        saved = (state.stateful_callbacks or {}).get(type(self).__name__)
        if isinstance(saved, list):
            saved = saved[0] if saved else None
        swap_state = (saved or {}).get("attributes", {}).get("swap_state")
        if swap_state is not None and state.global_step > 0:  # a resume: the checkpoint's state
            self._swap.load(swap_state)

    def on_epoch_begin(self, args, state, control, **kwargs):
        fs = self._swap.feature_swap
        if fs is not None:
            fs.set_epoch(math.floor((state.epoch or 0) + 1e-6))

    def on_train_end(self, args, state, control, **kwargs):
        self._swap.detach()

    def state(self) -> dict:
        return {"args": {}, "attributes": {"swap_state": None if self._swap is None else self._swap.state()}}
