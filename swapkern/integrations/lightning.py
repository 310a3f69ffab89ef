"""swapkern in Lightning: `SwapCallback(feature_swap=None, weight_protocol=None, **weight_swap_kwargs)`.

    trainer = lightning.Trainer(callbacks=[SwapCallback(fs, "rows", swaps=1, state=True, seed=0)])

- the FeatureSwap `fs` (a transform in the DataLoader workers, or a module) gets the epoch: set to e + 1 when epoch e
  ends (so the checkpoint Lightning saves then resumes into e + 1, and the workers of the next epoch, which
  Lightning may start before `on_train_epoch_start`, see it), and to the current epoch when an epoch starts
  elsewhere;
- when fitting starts, `callback.weight_swap = WeightSwap(pl_module, weight_protocol, **weight_swap_kwargs)` is built
  and attached to the first optimizer: one weight swap per optimizer step (accumulate_grad_batches respected);
- both states are saved in Lightning checkpoints and restored on `fit(ckpt_path=...)` (the weight swap's once it is
  built).
"""

from __future__ import annotations

try:
    from lightning.pytorch.callbacks import Callback
except ImportError:  # the standalone package
    try:
        from pytorch_lightning.callbacks import Callback
    except ImportError as e:
        raise ImportError("swapkern.integrations.lightning needs Lightning: pip install swapkern[lightning]") from e

from ._common import SwapState


class SwapCallback(Callback):
    """Feature-swap epochs, a weight swap on the optimizer, and both states in checkpoints (see the module)."""

    def __init__(self, feature_swap=None, weight_protocol=None, **weight_swap_kwargs):
        super().__init__()
        self._swap = SwapState(feature_swap, weight_protocol, weight_swap_kwargs)
        self._loaded = False

    @property
    def feature_swap(self):
        return self._swap.feature_swap

    @property
    def weight_swap(self):
        """The WeightSwap built when fitting started (None before, or without a weight_protocol)."""
        return self._swap.weight_swap

    def _set_epoch(self, epoch):
        fs = self._swap.feature_swap
        if fs is not None and fs.epoch != epoch:
            fs.set_epoch(epoch)

    def on_fit_start(self, trainer, pl_module):
        optimizers = trainer.optimizers
        self._swap.build(pl_module, optimizers[0] if optimizers else None)
        if not self._loaded:  # a fresh fit starts at the trainer's epoch; a resume keeps the checkpoint's
            self._set_epoch(trainer.current_epoch)

    def on_train_epoch_start(self, trainer, pl_module):
        self._set_epoch(trainer.current_epoch)

    def on_train_epoch_end(self, trainer, pl_module):
        self._set_epoch(trainer.current_epoch + 1)

    def on_fit_end(self, trainer, pl_module):
        self._swap.detach()
        self._loaded = False

    def state_dict(self):
        return self._swap.state()

    def load_state_dict(self, state_dict):
        self._swap.load(state_dict)
        self._loaded = True
