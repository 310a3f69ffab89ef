"""Training data for the benchmarks, as uint8 (N, H, W, C) tensors decoded once and cached.

Sources: an image-folder tree (PATH/{train,test}/<class>/*.jpg|png, e.g. ../shared/data/cifar10-jpg),
torchvision's CIFAR-10 download ("cifar10", needs internet once), or "builtin": a small deterministic RGB set made
at run time in which colour and position both carry the class. "auto" takes the first tree found in the usual
places, else builtin (with a one-line notice).
"""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass

import torch

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))  # the repository
SEARCH = [os.path.join(ROOT, "..", "shared", "data", "cifar10-jpg"), os.path.join(ROOT, "data", "cifar10-jpg")]
CACHE = os.environ.get("SWAPKERN_CACHE", os.path.join(os.path.expanduser("~"), ".cache", "swapkern"))


@dataclass
class Data:
    name: str
    train_x: torch.Tensor  # uint8 (N, H, W, C)
    train_y: torch.Tensor  # int64 (N,)
    test_x: torch.Tensor
    test_y: torch.Tensor
    classes: int

    @property
    def channels(self):
        return self.train_x.shape[3]

    def stats(self):
        """Per-channel mean and std of the training images, in [0, 1] units."""
        x = self.train_x.float().div_(255)
        return x.mean((0, 1, 2)).tolist(), x.std((0, 1, 2)).tolist()

    def subset(self, n_train=None, n_test=None, seed=0):
        """The first-come n images of a fixed random permutation (class balance kept on average)."""
        g = torch.Generator().manual_seed(seed)
        tr = torch.randperm(len(self.train_y), generator=g)[:n_train] if n_train else slice(None)
        te = torch.randperm(len(self.test_y), generator=g)[:n_test] if n_test else slice(None)
        name = self.name + (f"[{n_train} train]" if n_train else "") + (f"[{n_test} test]" if n_test else "")
        return Data(name, self.train_x[tr], self.train_y[tr], self.test_x[te], self.test_y[te], self.classes)


def builtin(n_train=6000, n_test=1500, size=16, classes=10, channels=3, seed=0) -> Data:
    """Deterministic synthetic images: class c has its own mean colour (channel mix) and a bright blob at its own
    position, plus noise and random shifts, so both channel order and pixel position matter to the label."""
    g = torch.Generator().manual_seed(seed)
    colours = torch.rand(classes, channels, generator=g) * 0.6 + 0.2
    centres = torch.rand(classes, 2, generator=g) * (size - 6) + 3
    yy, xx = torch.meshgrid(torch.arange(size).float(), torch.arange(size).float(), indexing="ij")

    def make(n):
        y = torch.randint(0, classes, (n,), generator=g)
        shift = torch.randn(n, 2, generator=g) * 1.2
        c = centres[y] + shift
        blob = torch.exp(-((yy - c[:, 0, None, None]) ** 2 + (xx - c[:, 1, None, None]) ** 2) / 6.0)
        col = colours[y] + torch.randn(n, channels, generator=g) * 0.08
        img = 0.35 * col[:, None, None, :] + 0.55 * blob[..., None] * col[:, None, None, :].flip(-1)
        img = img + torch.randn(n, size, size, channels, generator=g) * 0.1
        return (img.clamp(0, 1) * 255).round().to(torch.uint8), y

    tx, ty = make(n_train)
    vx, vy = make(n_test)
    return Data(f"builtin-{channels}x{size}x{size}", tx, ty, vx, vy, classes)


def _decode_tree(path, split):
    from torchvision.io import ImageReadMode, decode_image, read_file

    split_dir = os.path.join(path, split)
    classes = sorted(d for d in os.listdir(split_dir) if os.path.isdir(os.path.join(split_dir, d)))
    xs, ys = [], []
    for ci, c in enumerate(classes):
        for f in sorted(os.listdir(os.path.join(split_dir, c))):
            if f.lower().endswith((".jpg", ".jpeg", ".png")):
                img = decode_image(read_file(os.path.join(split_dir, c, f)), mode=ImageReadMode.UNCHANGED)
                xs.append(img.permute(1, 2, 0))
                ys.append(ci)
    if not xs:
        raise ValueError(f"no images under {split_dir}/<class>/")
    return torch.stack(xs), torch.tensor(ys, dtype=torch.int64), len(classes)


def image_folder(path) -> Data:
    """An image-folder tree, decoded once to uint8 and cached (keyed by the tree's path and file listing)."""
    path = os.path.abspath(path)
    listing = "".join(sorted(os.listdir(os.path.join(path, "train")) + os.listdir(os.path.join(path, "test"))))
    key = hashlib.sha1(f"{path}:{listing}:{os.path.getmtime(os.path.join(path, 'train'))}".encode()).hexdigest()[:16]
    cache = os.path.join(CACHE, f"{os.path.basename(path)}-{key}.pt")
    if os.path.exists(cache):
        d = torch.load(cache)
    else:
        tx, ty, k = _decode_tree(path, "train")
        vx, vy, _ = _decode_tree(path, "test")
        d = {"train_x": tx, "train_y": ty, "test_x": vx, "test_y": vy, "classes": k}
        os.makedirs(CACHE, exist_ok=True)
        torch.save(d, cache + ".tmp")
        os.replace(cache + ".tmp", cache)
    return Data(os.path.basename(path), d["train_x"], d["train_y"], d["test_x"], d["test_y"], d["classes"])


def torchvision_cifar10(root=None) -> Data:
    """torchvision's CIFAR-10 (downloaded once into root, default the cache folder)."""
    from torchvision.datasets import CIFAR10

    root = root or os.path.join(CACHE, "torchvision")
    tr, te = CIFAR10(root, train=True, download=True), CIFAR10(root, train=False, download=True)
    t = lambda a: torch.from_numpy(a)  # noqa: E731
    return Data("cifar10", t(tr.data), torch.tensor(tr.targets), t(te.data), torch.tensor(te.targets), 10)


def load(spec: str | None = "auto", *, quiet=False) -> Data:
    """Data by name: a tree path, "cifar10", "builtin", or "auto"."""
    if spec in (None, "auto"):
        for path in SEARCH:
            if os.path.isdir(os.path.join(path, "train")):
                return image_folder(path)
        if not quiet:
            print("notice: no image data found (--data PATH|cifar10); using the built-in synthetic set")
        return builtin()
    if spec == "builtin":
        return builtin()
    if spec == "builtin-gray":
        return builtin(channels=1)
    if spec == "builtin-tiny":  # for the benchmark's own tests
        return builtin(n_train=512, n_test=256, size=8)
    if spec == "cifar10":
        return torchvision_cifar10()
    if os.path.isdir(spec):
        return image_folder(spec)
    raise ValueError(f"--data: {spec!r} is not a folder, 'cifar10', 'builtin' or 'auto'")
