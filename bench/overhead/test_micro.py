"""Micro-benchmarks under pytest-benchmark (not part of the test suite):

    python -m pytest bench/overhead/test_micro.py --benchmark-only [--benchmark-compare]

Each case times one swapkern call against the pure-PyTorch reference on the same inputs; CUDA cases run where
there is a GPU (they synchronise inside the timed call so the device time is counted).
"""

import pytest
import torch

import swapkern
from swapkern.data import FeatureSwap

DEVICES = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])


def _sync(device):
    return torch.cuda.synchronize if device == "cuda" else (lambda: None)


_S = torch.arange(512)
_A = torch.arange(0, 1024, 2)
_FS = FeatureSwap("ESA", seed=0)


def _images(d):
    return torch.randn(512, 3, 32, 32, device=d)


CASES = {
    "channels ASA 512x3x32x32": (_images, lambda x: swapkern.swap_channels_(x, [0], [2], validate=False)),
    "pixels EPA 512 pairs": (
        _images,
        lambda x: swapkern.swap_pixels_(x, _S % 1024, (_S * 7 + 1) % 1024, sample=_S, validate=False),
    ),
    "rows half of 2048x2048": (
        lambda d: torch.randn(2048, 2048, device=d),
        lambda x: swapkern.swap_rows_(x, _A, _A + 1, validate=False),
    ),
    "feature protocol ESA (plan + swap)": (_images, lambda x: _FS.swap_(x)),
}


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("backend", ["native", "torch"])
@pytest.mark.parametrize("case", sorted(CASES))
def test_micro(benchmark, device, backend, case):
    make, call = CASES[case]
    x = make(device)
    sync = _sync(device)
    benchmark.group = f"{case} [{device}]"
    with swapkern.use_backend(backend):
        benchmark(lambda: (call(x), sync()))
