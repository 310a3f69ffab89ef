"""Callbacks for training frameworks, imported lazily (each needs its framework installed):

- swapkern.integrations.lightning.SwapCallback: Lightning (`pip install swapkern[lightning]`)
- swapkern.integrations.transformers.SwapCallback: Hugging Face transformers.Trainer (`swapkern[transformers]`)

Both set a FeatureSwap's epoch each train epoch (a resume included), build a WeightSwap on the model when fitting
starts and attach it to the optimizer (one weight swap per optimizer step, after gradient accumulation), and save
and restore both states in the framework's checkpoints.
"""

_EXPORTS = ("lightning", "transformers")


def __getattr__(name):
    if name in _EXPORTS:
        import importlib

        return importlib.import_module(f"{__name__}.{name}")
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
