"""Loading with feature swaps: a DataLoader collate wrapper (swaps in the worker, CPU kernels) and a GPU-resident
loader in the speed-run style (the whole uint8 dataset on the device, one fused kernel per batch)."""

from __future__ import annotations

import torch
from torch.utils.data import Dataset, default_collate

from . import draws, ops
from ._nvtx import nvtx_range
from .data import FeatureSwap


class DatasetIndex(int):
    """The index WithIndex appends to an item: an int that says where it came from, so SwapCollate can tell it
    from a label."""

    __slots__ = ()


class WithIndex(Dataset):
    """Wraps a map-style dataset so each item also carries its index: item i -> (*dataset[i], DatasetIndex(i)).
    SwapCollate keys the swaps by these indices, so they do not depend on batch order or the number of workers."""

    def __init__(self, dataset):
        self.dataset = dataset

    def __len__(self):
        return len(self.dataset)

    def __getitem__(self, i):
        item = self.dataset[i]
        i = DatasetIndex(i)
        return (*item, i) if isinstance(item, tuple | list) else (item, i)


class SwapCollate:
    """A DataLoader collate_fn that collates, then swaps the image batch (element `image` of the batch) in place
    with `feature_swap`, in the worker.

    indexed=True (items from WithIndex): draws are keyed by (seed, feature_swap.epoch, dataset index) and the
    indices are dropped from the batch; call feature_swap.set_epoch(e) before each epoch (like
    DistributedSampler). indexed=False: keyed by batch position and the transform path's step (seed, epoch, worker
    id, that worker's call count: FeatureSwap's draw rule), which depends on the number of workers.
    """

    def __init__(self, feature_swap: FeatureSwap, collate_fn=default_collate, *, image: int = 0, indexed=True):
        self.fs, self.collate_fn, self.image, self.indexed = feature_swap, collate_fn, image, indexed

    def __call__(self, items):
        indices = None
        if self.indexed:
            if not all(isinstance(it, tuple | list) and type(it[-1]) is DatasetIndex for it in items):
                raise ValueError(
                    "SwapCollate(indexed=True) needs items from swapkern.WithIndex(dataset) (their last entry is the "
                    "dataset index); wrap the dataset, or pass indexed=False to key draws by batch position"
                )
            indices = torch.tensor([int(it[-1]) for it in items], dtype=torch.int64)
            items = [tuple(it[:-1]) for it in items]
        batch = self.collate_fn(items)
        x = batch[self.image] if isinstance(batch, tuple | list) else batch
        with nvtx_range("swapkern/collate"):
            plan = self.fs.plan(x, indices=indices, step=self.fs.epoch if self.indexed else self.fs._next_step())
            self.fs.apply_(x, plan)
        return batch


class DeviceLoader:
    """The whole uint8 dataset on one device; each batch is one fused kernel (gather, normalise, swap, flip) into a
    preallocated output buffer, as in the CIFAR-10 speed-run trainers.

    images: uint8 (N, H, W, C) if layout == "NHWC" else (N, C, H, W), already on the device; labels: (N,).
    Yields (x, y): x (B, C, H, W) of `dtype` (channels_last memory if asked), y (B,) int64. Two output buffers
    alternate: a batch stays valid while the next one is made, not longer. The stored images are never written.
    Order, swaps and flips are drawn by the counter-based generator: the same seed gives the same batches on
    any device.
    """

    def __init__(
        self,
        images,
        labels,
        *,
        batch_size,
        mean,
        std,
        layout="NHWC",
        feature_swap=None,
        flip=False,
        dtype=torch.float32,
        channels_last=False,
        shuffle=True,
        drop_last=True,
        seed=0,
    ):
        if layout not in ("NHWC", "NCHW"):
            raise ValueError(f"layout must be 'NHWC' or 'NCHW', got {layout!r}")
        if images.dtype != torch.uint8 or images.dim() != 4:
            raise ValueError("images must be a uint8 tensor of 4 dims")
        if labels.shape[0] != images.shape[0]:
            raise ValueError(f"{images.shape[0]} images but {labels.shape[0]} labels")
        if batch_size < 1 or batch_size > images.shape[0]:
            raise ValueError(f"batch_size must be in [1, {images.shape[0]}], got {batch_size}")
        self.images, self.labels = images, labels.to(images.device)
        self.nhwc = layout == "NHWC"
        n, a, b, c = images.shape
        self.shape = (batch_size, c, a, b) if self.nhwc else (batch_size, a, b, c)
        self.batch_size, self.shuffle, self.drop_last, self.seed = batch_size, shuffle, drop_last, seed
        self.fs, self.flip, self.epoch = feature_swap, flip, 0
        channels = self.shape[1]
        for name, v in (("mean", mean), ("std", std)):
            n = torch.as_tensor(v).numel()
            if n != channels:
                raise ValueError(f"{name} must have one entry per channel ({channels}), got {n}")
        self.scale, self.shift = (t.to(images.device) for t in ops.normalization(mean, std))
        if feature_swap is not None:
            feature_swap.check(self.shape)
        fmt = torch.channels_last if channels_last else torch.contiguous_format
        self._out = [torch.empty(self.shape, dtype=dtype, device=images.device, memory_format=fmt) for _ in range(2)]
        self._y = [torch.empty(batch_size, dtype=self.labels.dtype, device=images.device) for _ in range(2)]
        self._ws = draws.Workspace(images.device)

    def __len__(self):
        n = self.images.shape[0]
        return n // self.batch_size if self.drop_last else -(-n // self.batch_size)

    def _order(self):
        n = self.images.shape[0]
        order = self._ws.get("order", n)
        torch.arange(n, out=order)
        if self.shuffle:  # argsort of per-index hashes: a permutation that is the same on every device
            keys, tmp = self._ws.get("okeys", n), self._ws.get("otmp", n)
            draws.words_(keys, order, draws.base_key(self.seed, self.epoch, "order"), 0, tmp)
            keys.mul_(n).add_(order)  # distinct keys: ties broken by index
            torch.sort(keys, stable=True, out=(tmp, order))
        return order

    def _flips(self, index):
        f, tmp = self._ws.get("flip", index.numel()), self._ws.get("ftmp", index.numel())
        draws.words_(f, index, draws.base_key(self.seed, self.epoch, "flip"), 0, tmp)
        return f.bitwise_right_shift_(31)  # the top bit: 0 or 1, each with probability 1/2

    def __iter__(self):
        order = self._order()
        for i in range(len(self)):
            index = order[i * self.batch_size : (i + 1) * self.batch_size]
            out, y = self._out[i % 2], self._y[i % 2]
            if index.numel() != self.batch_size:  # the last, short batch
                out = torch.empty((index.numel(), *self.shape[1:]), dtype=out.dtype, device=out.device)
                y = y[: index.numel()]
            with nvtx_range("swapkern/device_loader.batch"):
                plan = self.fs.plan(out, indices=index) if self.fs is not None else None
                flip = self._flips(index) if self.flip else None
                ops.load_batch_(
                    out,
                    self.images,
                    index,
                    self.scale,
                    self.shift,
                    plan=plan,
                    flip=flip,
                    nhwc=self.nhwc,
                    validate=False,
                )
                torch.index_select(self.labels, 0, index, out=y)
            yield out, y
        self.epoch += 1
