"""The Lightning and transformers.Trainer callbacks against the real packages: a short fit on the CPU with feature
swaps in two DataLoader workers and a weight swap on the optimizer, a checkpoint at each epoch end, and a resume
from the first that repeats the uninterrupted run's draws bit for bit."""

import glob
import os
import warnings

import pytest
import torch
from torch import nn
from torch.utils.data import DataLoader, Dataset

from swapkern import FeatureSwap


class _Images(Dataset):
    """12 images of 4 channels (channel c holds c, plus a per-image offset), swapped by fs in the workers."""

    def __init__(self, fs, as_dict=False):
        self.fs, self.as_dict = fs, as_dict

    def __len__(self):
        return 12

    def __getitem__(self, i):
        x = self.fs(torch.arange(4.0).view(4, 1, 1).expand(4, 2, 2) + 10 * i)
        if self.as_dict:
            return {"x": x, "labels": i % 3, "idx": i}
        return x, i % 3, i


def _net():
    torch.manual_seed(0)
    return nn.Sequential(nn.Flatten(), nn.Linear(16, 8), nn.ReLU(), nn.Linear(8, 3))


# -- Lightning ---------------------------------------------------------------------------------------------------------
def _lightning_fit(tmp, epochs, ckpt_path=None, accumulate=1):
    L = pytest.importorskip("lightning")
    from swapkern.integrations.lightning import SwapCallback

    seen = []

    class Module(L.LightningModule):
        def __init__(self):
            super().__init__()
            self.net = _net()

        def training_step(self, batch, _):
            x, y, idx = batch
            seen.append((self.current_epoch, idx.tolist(), x.clone()))
            return nn.functional.cross_entropy(self.net(x), y)

        def configure_optimizers(self):
            return torch.optim.SGD(self.parameters(), lr=0.1, momentum=0.9)

    fs = FeatureSwap("1SA", seed=21)
    loader = DataLoader(_Images(fs), batch_size=4, num_workers=2, persistent_workers=True)
    cb = SwapCallback(fs, "rows", seed=5, state=True)
    ckpt = L.pytorch.callbacks.ModelCheckpoint(dirpath=tmp, save_top_k=-1, every_n_epochs=1)
    trainer = L.Trainer(
        max_epochs=epochs,
        accelerator="cpu",
        callbacks=[cb, ckpt],
        logger=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        accumulate_grad_batches=accumulate,
    )
    module = Module()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        trainer.fit(module, loader, ckpt_path=ckpt_path)
    return seen, cb, module


def test_lightning_callback_fits_checkpoints_and_resumes_the_draws(tmp_path):
    seen, cb, module = _lightning_fit(str(tmp_path), 3)
    ws = cb.weight_swap
    assert ws is not None and ws.calls == 9 and ws.draws == 9  # 3 optimizer steps an epoch, one swap each
    assert "net.3.weight" in ws.left_out and ws.layers == ["net.1.weight"]  # the classifier's rows are left alone
    by_epoch = [[s for s in seen if s[0] == e] for e in range(3)]
    assert not torch.equal(by_epoch[0][0][2], by_epoch[1][0][2])  # the epochs draw anew
    first = sorted(glob.glob(os.path.join(str(tmp_path), "epoch=0*.ckpt")))[0]
    resumed, cb2, module2 = _lightning_fit(str(tmp_path / "resumed"), 3, ckpt_path=first)
    assert [s[1] for s in resumed] == [s[1] for s in seen if s[0] >= 1]
    assert all(torch.equal(a[2], b[2]) for a, b in zip(resumed, [s for s in seen if s[0] >= 1], strict=True))
    assert cb2.weight_swap.draws == 9 and cb2.feature_swap.epoch == cb.feature_swap.epoch
    for p, q in zip(module.parameters(), module2.parameters(), strict=True):
        assert torch.equal(p, q)  # the same data, the same weight swaps: the same weights


def test_lightning_callback_respects_gradient_accumulation(tmp_path):
    _, cb, _ = _lightning_fit(str(tmp_path), 1, accumulate=3)
    assert cb.weight_swap.calls == 1  # 3 batches, one optimizer step


# -- transformers.Trainer ----------------------------------------------------------------------------------------------
class _HFNet(nn.Module):
    def __init__(self, seen):
        super().__init__()
        self.net, self.seen = _net(), seen

    def forward(self, x, labels=None, idx=None):
        self.seen.append((idx.tolist(), x.clone()))
        logits = self.net(x)
        return {"loss": nn.functional.cross_entropy(logits, labels), "logits": logits}


def _hf_train(tmp, resume=None, accumulate=1, epochs=3):
    transformers = pytest.importorskip("transformers")
    pytest.importorskip("accelerate")
    from swapkern.integrations.transformers import SwapCallback

    seen = []
    fs = FeatureSwap("1SA", seed=21)
    cb = SwapCallback(fs, "rows", seed=5, state=True)
    args = transformers.TrainingArguments(
        output_dir=tmp,
        num_train_epochs=epochs,
        per_device_train_batch_size=4,
        gradient_accumulation_steps=accumulate,
        learning_rate=0.1,
        save_strategy="epoch",
        logging_strategy="no",
        report_to=[],
        use_cpu=True,
        dataloader_num_workers=2,
        remove_unused_columns=False,
        seed=0,
        disable_tqdm=True,
    )
    model = _HFNet(seen)
    trainer = transformers.Trainer(model=model, args=args, train_dataset=_Images(fs, as_dict=True), callbacks=[cb])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        trainer.train(resume_from_checkpoint=resume)
    return seen, cb, model


def test_transformers_callback_trains_checkpoints_and_resumes_the_draws(tmp_path):
    seen, cb, model = _hf_train(str(tmp_path))
    assert cb.weight_swap.calls == 9 and cb.weight_swap.draws == 9
    assert not torch.equal(seen[0][1], seen[3][1])
    first = os.path.join(str(tmp_path), "checkpoint-3")
    resumed, cb2, model2 = _hf_train(str(tmp_path / "resumed"), resume=first)
    assert [s[0] for s in resumed] == [s[0] for s in seen[3:]]
    assert all(torch.equal(a[1], b[1]) for a, b in zip(resumed, seen[3:], strict=True))
    assert cb2.weight_swap.draws == 9
    for p, q in zip(model.parameters(), model2.parameters(), strict=True):
        assert torch.equal(p, q)


def test_transformers_callback_respects_gradient_accumulation(tmp_path):
    _, cb, _ = _hf_train(str(tmp_path), accumulate=3, epochs=1)
    assert cb.weight_swap.calls == 1
