"""Training data for the benchmarks, as uint8 (N, H, W, C) tensors decoded once and cached.

Sources: an image-folder tree (PATH/{train,test}/<class>/*.jpg|png) given by --data PATH or the SWAPKERN_DATA
environment variable, torchvision's CIFAR-10 download ("cifar10", needs internet once), or "builtin": a small
deterministic RGB set made at run time in which colour and position both carry the class. "auto" takes the tree
named by SWAPKERN_DATA, else builtin (with a one-line notice). A JPEG tree is described as what it is (describe():
its estimated JPEG quality and chroma subsampling, read from a file's header), since a lossy re-encoding of
CIFAR-10 (e.g. quality 75 with 4:2:0 chroma, colour at half resolution) is not CIFAR-10 for channel swaps.
"""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass

import torch

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))  # the repository
ENV = "SWAPKERN_DATA"  # the image tree "auto" loads
CACHE = os.environ.get("SWAPKERN_CACHE", os.path.join(os.path.expanduser("~"), ".cache", "swapkern"))


@dataclass
class Data:
    name: str
    train_x: torch.Tensor  # uint8 (N, H, W, C)
    train_y: torch.Tensor  # int64 (N,)
    test_x: torch.Tensor
    test_y: torch.Tensor
    classes: int
    source: str = ""  # what the images are, in words (a JPEG tree: its quality and chroma subsampling)

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
        return Data(
            name, self.train_x[tr], self.train_y[tr], self.test_x[te], self.test_y[te], self.classes, self.source
        )


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
    data = Data(os.path.basename(path), d["train_x"], d["train_y"], d["test_x"], d["test_y"], d["classes"])
    data.source = describe(path)
    return data


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
        path = os.environ.get(ENV)
        if path:
            if not os.path.isdir(os.path.join(path, "train")):
                raise ValueError(f"{ENV}={path!r}: no train/ folder there")
            return image_folder(path)
        if not quiet:
            print(f"notice: no image data given (--data PATH, or {ENV}=PATH); using the built-in synthetic set")
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


# The IJG standard luminance quantisation table (quality 50), in zig-zag order as stored in a JPEG's DQT segment.
_STD_LUMA = [16, 11, 12, 14, 12, 10, 16, 14, 13, 14, 18, 17, 16, 19, 24, 40, 26, 24, 22, 22, 24, 49, 35, 37, 29, 40,
             58, 51, 61, 60, 57, 51, 56, 55, 64, 72, 92, 78, 64, 68, 87, 69, 55, 56, 80, 109, 81, 87, 95, 98, 103,
             104, 103, 62, 77, 113, 121, 112, 100, 120, 92, 101, 103, 99]  # fmt: skip


def jpeg_info(path: str):
    """(estimated IJG quality, chroma subsampling "4:2:0" / "4:2:2" / "4:4:4") of one JPEG file, from its first
    luminance quantisation table and its frame header; (None, None) if they cannot be read."""
    with open(path, "rb") as f:
        b = f.read()
    quality = sub = None
    i = 2
    while i + 4 <= len(b) and b[i] == 0xFF:
        marker, length = b[i + 1], int.from_bytes(b[i + 2 : i + 4], "big")
        seg = b[i + 4 : i + 2 + length]
        if marker == 0xDB and quality is None and seg and seg[0] >> 4 == 0:  # DQT, 8-bit, table 0 first
            table = list(seg[1:65])
            scale = sum(100.0 * q / s for q, s in zip(table, _STD_LUMA, strict=True)) / 64  # the IJG scale factor
            quality = round(50 * 100 / scale if scale > 100 else (200 - scale) / 2)
        elif marker in (0xC0, 0xC1, 0xC2) and seg[5] >= 3:  # SOF: the first component's sampling factors
            h, v = seg[7] >> 4, seg[7] & 15
            sub = {(2, 2): "4:2:0", (2, 1): "4:2:2", (1, 1): "4:4:4"}.get((h, v), f"{h}x{v}")
        if marker == 0xDA:
            break
        i += 2 + length
    return quality, sub


def describe(path: str) -> str:
    """The tree's images in words: for a JPEG tree, "lossy JPEG (about quality Q, 4:2:0 chroma subsampling)" from
    its first training file; else its image format."""
    split = os.path.join(path, "train")
    cls = sorted(d for d in os.listdir(split) if os.path.isdir(os.path.join(split, d)))[0]
    first = sorted(os.listdir(os.path.join(split, cls)))[0]
    if not first.lower().endswith((".jpg", ".jpeg")):
        return f"{os.path.splitext(first)[1].lstrip('.').upper()} images"
    q, sub = jpeg_info(os.path.join(split, cls, first))
    return f"lossy JPEG (about quality {q}, {sub} chroma subsampling)"
