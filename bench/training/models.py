"""The trainers' networks: a small BN-CNN (and a very narrow MLP) for the CPU, a compact speed-run style net for the
GPU."""

from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F


def small_cnn(channels: int, classes: int, width: int = 16, batchnorm: bool = True) -> nn.Sequential:
    """Three conv stages (width, 2w, 4w), max-pooling, global average pooling, a linear head: a few MFLOP per
    32x32 image, so a CPU trains it on CIFAR-10 subsets in minutes."""
    norm = (lambda c: nn.BatchNorm2d(c)) if batchnorm else (lambda c: nn.Identity())

    def stage(cin, cout):
        return [nn.Conv2d(cin, cout, 3, padding=1, bias=not batchnorm), norm(cout), nn.ReLU(), nn.MaxPool2d(2)]

    w = width
    return nn.Sequential(
        *stage(channels, w),
        *stage(w, 2 * w),
        *stage(2 * w, 4 * w),
        nn.AdaptiveAvgPool2d(1),
        nn.Flatten(),
        nn.Linear(4 * w, classes),
    )


def tiny_mlp(channels: int, size: int, classes: int, hidden: int = 8) -> nn.Sequential:
    """A very narrow network (the under-parameterised, "glassy" regime of the study)."""
    return nn.Sequential(nn.Flatten(), nn.Linear(channels * size * size, hidden), nn.ReLU(), nn.Linear(hidden, classes))


class Block(nn.Module):
    """A ResNet basic block: two 3x3 conv-BN with a ReLU between, plus the shortcut (a 1x1 conv-BN where the shape
    changes), then a ReLU of the sum."""

    def __init__(self, cin: int, cout: int, stride: int = 1):
        super().__init__()
        self.conv1 = nn.Conv2d(cin, cout, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(cout)
        self.conv2 = nn.Conv2d(cout, cout, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(cout)
        self.shortcut = (
            nn.Sequential(nn.Conv2d(cin, cout, 1, stride, bias=False), nn.BatchNorm2d(cout))
            if stride != 1 or cin != cout
            else nn.Identity()
        )

    def forward(self, x):
        out = F.relu(self.bn1(self.conv1(x)))
        return F.relu(self.bn2(self.conv2(out)) + self.shortcut(x))


class ResNetMini(nn.Module):
    """A small residual network (stem, three basic blocks at width w, 2w, 4w, average pool, linear head): the
    symmetry-null's non-chain architecture, whose adds tie the units of the blocks they join."""

    def __init__(self, channels: int, classes: int, width: int = 16):
        super().__init__()
        w = width
        self.stem = nn.Sequential(nn.Conv2d(channels, w, 3, 1, 1, bias=False), nn.BatchNorm2d(w), nn.ReLU())
        self.blocks = nn.Sequential(Block(w, w), Block(w, 2 * w, 2), Block(2 * w, 4 * w, 2))
        self.head = nn.Linear(4 * w, classes)

    def forward(self, x):
        x = self.blocks(self.stem(x))
        return self.head(torch.flatten(F.adaptive_avg_pool2d(x, 1), 1))


class Scale(nn.Module):
    def __init__(self, s: float):
        super().__init__()
        self.s = s

    def forward(self, x):
        return x * self.s


def speed_net(channels: int, classes: int, widths=(64, 256, 256)) -> nn.Sequential:
    """The CIFAR-10 speed-run shape (as in airbench): a 2x2 stem conv, three conv-pool-BN-GELU blocks, a max-pool
    to 1x1 and a scaled linear head. Trained in bf16 with channels_last on a GPU."""

    def block(cin, cout):
        return nn.Sequential(
            nn.Conv2d(cin, cout, 3, padding=1, bias=False),
            nn.MaxPool2d(2),
            nn.BatchNorm2d(cout),
            nn.GELU(),
            nn.Conv2d(cout, cout, 3, padding=1, bias=False),
            nn.BatchNorm2d(cout),
            nn.GELU(),
        )

    w0, w1, w2 = widths
    return nn.Sequential(
        nn.Conv2d(channels, 24, 2, bias=True),
        nn.GELU(),
        block(24, w0),
        block(w0, w1),
        block(w1, w2),
        nn.AdaptiveMaxPool2d(1),
        nn.Flatten(),
        nn.Linear(w2, classes, bias=False),
        Scale(1 / 9),
    )
