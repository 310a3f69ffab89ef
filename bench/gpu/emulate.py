"""Coverage of the CUDA kernels under emulation: runs a workload through the "cuda-emulated" backend (the CUDA
kernels and launchers of csrc/cuda/*.cu compiled for the host, csrc/cuda/emulation.h) with every result checked
bit for bit against the reference, then counts the kernel instantiations the library holds (each __global__
function, each template instantiation the launchers can choose, registered when it loads) and those launched.

    SWAPKERN_CUDA_EMULATION=1 python setup.py build_ext --inplace
    python -m bench.gpu.emulate            # prints "launched K of K CUDA kernels under emulation"

Exits 1 when a kernel was never launched (it is listed), 2 on a wrong result, 3 when the emulation is not built.
--no-large leaves out the one case that needs 2^31 output elements (up to 8 GiB, minutes): the loader kernel's
64-bit coordinates, which the launcher chooses only past 2^31; it then cannot reach K of K.
"""

from __future__ import annotations

import argparse
import copy
import ctypes
import sys

import torch

import swapkern
from swapkern import reference as ref


def registry():
    """[(name, launches)] of every kernel instantiation of the loaded emulation library."""
    from swapkern import _backend

    lib = ctypes.CDLL(_backend.emulation_library())
    lib.swapkern_emu_kernels.restype = ctypes.c_int64
    lib.swapkern_emu_kernel_name.restype = ctypes.c_char_p
    lib.swapkern_emu_kernel_name.argtypes = [ctypes.c_int64]
    lib.swapkern_emu_kernel_launches.restype = ctypes.c_int64
    lib.swapkern_emu_kernel_launches.argtypes = [ctypes.c_int64]
    n = lib.swapkern_emu_kernels()
    return [(lib.swapkern_emu_kernel_name(i).decode(), lib.swapkern_emu_kernel_launches(i)) for i in range(n)]


class WrongResult(AssertionError):
    pass


def _same(got, want, what):
    if not torch.equal(got.reshape(-1).view(torch.uint8), want.reshape(-1).view(torch.uint8)):
        raise WrongResult(f"cuda-emulated differs from the reference: {what}")


def _bits(shape, dtype, g):
    n = torch.Size(shape).numel() * torch.empty((), dtype=dtype).element_size()
    return torch.randint(0, 256, (n,), dtype=torch.uint8, generator=g).view(dtype).view(shape)


def _check(name, x, *args, **kw):
    """Runs op `name` on x (cuda-emulated) and on a copy (reference); compares every byte."""
    want = x.clone()
    getattr(swapkern, name)(x, *args, **kw)
    with swapkern.use_backend("torch"):
        getattr(swapkern, name)(want, *args, **kw)
    _same(x.contiguous(), want.contiguous(), f"{name} {tuple(x.shape)} {x.dtype} {args} {kw}")


DTYPES = (torch.uint8, torch.float16, torch.float32, torch.float64, torch.complex128)  # 1, 2, 4, 8, 16 bytes


def exchanges(g):
    """Every shape of the exchange launcher, for every element width: rows (16-byte units or elements), strided
    slices, large slices per pair or one flat loop, interleaved pairs tiled in shared memory or not."""
    n = 0
    for dtype in DTYPES:
        big = _bits((6, 96, 64), dtype, g)  # 6144-element slices of 64-element rows: 16-byte units when aligned
        _check("swap_", big, 0, [0, 1, 2], [5, 4, 3])
        _check("swap_", _bits((6, 5, 257), dtype, g), 0, [0, 4], [5, 1])  # rows of odd length: elements
        _check("swap_", _bits((6, 40, 20), dtype, g)[:, :, ::2], 0, [0, 1], [2, 3])  # strided slices, large
        _check("swap_", _bits((40, 2, 8), dtype, g), 0, torch.arange(0, 40, 2), torch.arange(1, 40, 2))  # small
        _check("swap_", _bits((40, 3, 5), dtype, g), 0, torch.arange(0, 40, 2), torch.arange(1, 40, 2))  # odd rows
        _check("swap_", _bits((40, 6, 3), dtype, g).transpose(1, 2), 0, [0, 1, 2], [9, 8, 7])  # strided, small
        _check("swap_elements_", _bits((50,), dtype, g), torch.arange(0, 50, 2), torch.arange(1, 50, 2))
        cols = _bits((70, 48), dtype, g)  # dense interleaved pairs of one tensor: the tiled kernel
        _check("swap_cols_", cols, torch.arange(0, 48, 2), torch.arange(1, 48, 2))
        wide = _bits((5, 4096), dtype, g)  # two pairs in long rows: too sparse to tile, one flat loop
        _check("swap_cols_", wide, [0, 4095], [7, 100])
        x, y = _bits((30, 20), dtype, g), _bits((10, 20), dtype, g)
        wx, wy = x.clone(), y.clone()
        swapkern.swap_between_(x, y, [0, 29], [9, 1], dim_x=0, dim_y=0)
        ref.swap_between_(wx, wy, [0, 29], [9, 1], dim_x=0, dim_y=0)
        _same(torch.stack([x[:10], y]), torch.stack([wx[:10], wy]), f"swap_between_ {dtype}")
        _same(x, wx, f"swap_between_ {dtype}")
        n += 10
    return n


def features():
    """The feature-plan draw (one block, reductions in shared memory between barriers) and the fused draw+swap,
    for all 12 protocols, against the reference."""
    from swapkern._codes import PROTOCOLS

    n = 0
    for proto in PROTOCOLS:
        for shape, indices in (((33, 7, 17, 19), None), ((600, 7, 4, 4), torch.randperm(5000)[:600])):
            x = torch.randn(*shape)
            want = x.clone()
            fs = swapkern.FeatureSwap(proto, swaps=3, seed=11, p=0.7)
            fs.step = 4
            fs(x, indices=indices)
            with swapkern.use_backend("torch"):
                fr = swapkern.FeatureSwap(proto, swaps=3, seed=11, p=0.7)
                fr.step = 4
                fr(want, indices=indices)
            _same(x, want, f"FeatureSwap {proto} {shape}")
            n += 1
    return n


def loader():
    """DeviceLoader epochs (load_batch_: gather, normalise, swap, flip) into float32, float16 and bfloat16."""
    data = torch.randint(0, 256, (70, 12, 12, 3), dtype=torch.uint8)
    labels = torch.arange(70)
    n = 0
    for dtype in (torch.float32, torch.float16, torch.bfloat16):
        kw = dict(batch_size=16, mean=(0.5, 0.4, 0.3), std=(0.2, 0.25, 0.3), flip=True, seed=3, dtype=dtype)
        fs = swapkern.FeatureSwap("EPA", seed=1)
        got = [x.clone() for x, _ in swapkern.DeviceLoader(data, labels, feature_swap=fs, **kw)]
        with swapkern.use_backend("torch"):
            loader = swapkern.DeviceLoader(data, labels, feature_swap=swapkern.FeatureSwap("EPA", seed=1), **kw)
            want = [x.clone() for x, _ in loader]
        for a, b in zip(got, want, strict=True):
            _same(a, b, f"DeviceLoader {dtype}")
            n += 1
    return n


def large_loader():
    """load_batch_ past 2^31 output elements, into each output dtype: the launcher's 64-bit-coordinate kernels,
    which it chooses only there. One image gathered 2^31 / (3 * 64 * 64) times plus one (4 GiB of float16, 8 GiB
    of float32, one at a time); the output is checked at sampled images."""
    data = torch.randint(0, 256, (2, 64, 64, 3), dtype=torch.uint8)
    per = 3 * 64 * 64
    b = (1 << 31) // per + 1
    index = torch.zeros(b, dtype=torch.int64)
    index[-1] = 1
    scale, shift = torch.tensor([0.5, 0.25, 2.0]), torch.tensor([0.0, -1.0, 0.5])
    n = 0
    for dtype in (torch.float16, torch.bfloat16, torch.float32):
        out = torch.empty(b, 3, 64, 64, dtype=dtype)
        swapkern.load_batch_(out, data, index, scale, shift)
        want = torch.empty(2, 3, 64, 64, dtype=dtype)
        with swapkern.use_backend("torch"):
            swapkern.load_batch_(want, data, torch.tensor([0, 1]), scale, shift)
        for i, j in ((0, 0), (b // 2, 0), (b - 2, 0), (b - 1, 1)):
            _same(out[i], want[j], f"load_batch_ of {b} images into {dtype}, image {i}")
            n += 1
        del out
    return n


def weights():
    """WeightSwap steps (the engine: draw_groups, then one packed exchange per wave) on Linear-only models."""
    from torch import nn

    n = 0
    for proto, state in (("rows", False), ("mixed", True), ("cols", True), ("neuron", True)):
        torch.manual_seed(0)
        model = nn.Sequential(nn.Linear(12, 16), nn.ReLU(), nn.Linear(16, 8), nn.ReLU(), nn.Linear(8, 3))
        models = [model, copy.deepcopy(model)]
        params = []
        for backend, m in zip(("cuda-emulated", "torch"), models, strict=True):
            opt = torch.optim.SGD(m.parameters(), lr=0.1, momentum=0.9)
            m(torch.randn(4, 12, generator=torch.Generator().manual_seed(1))).sum().backward()
            opt.step()
            with swapkern.use_backend(backend):
                ws = swapkern.WeightSwap(m, proto, swaps=2, state=state, seed=5)
                for _ in range(3):
                    ws.step(optimizer=opt)
            params.append([p.detach().clone() for p in m.parameters()])
        for a, b in zip(*params, strict=True):
            _same(a, b, f"WeightSwap {proto}")
        n += 1
    return n


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--no-large", action="store_true", help="leave out the 2^31-element loader case")
    args = parser.parse_args(argv)
    if "cuda-emulated" not in swapkern.backends():
        print(f"emulate: {swapkern._backend.emulation_problem()}", file=sys.stderr)
        return 3
    g = torch.Generator().manual_seed(0)
    parts = {"exchanges": lambda: exchanges(g), "features": features, "loader": loader, "weights": weights}
    if not args.no_large:
        parts["large loader"] = large_loader
    with swapkern.use_backend("cuda-emulated"):
        for name, part in parts.items():
            try:
                n = part()
            except WrongResult as e:
                print(f"emulate: {e}", file=sys.stderr)
                return 2
            print(f"emulate: {name}: {n} checks passed", flush=True)
    kernels = registry()
    never = [name for name, launches in kernels if launches == 0]
    for name, launches in kernels:
        print(f"  {launches:6d}  {name}")
    print(f"launched {len(kernels) - len(never)} of {len(kernels)} CUDA kernels under emulation")
    for name in never:
        print(f"never launched: {name}")
    return 1 if never else 0


if __name__ == "__main__":
    sys.exit(main())
