"""A small GPU workload for compute-sanitizer (memcheck, racecheck): every op of the native backend on small
tensors (the CUDA kernels; the CPU ones where there is no GPU), every work split (flat and per-pair, contiguous
and strided, 1- to 16-byte elements), each result checked against the reference. Exits non-zero on a wrong
result.

    compute-sanitizer --tool memcheck --error-exitcode 9 python -m bench.gpu.sanitize
"""

import torch

import swapkern
from swapkern import reference as ref


def main():
    g = torch.Generator().manual_seed(0)
    dev = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    checks = 0
    for dtype in (torch.uint8, torch.bfloat16, torch.float32, torch.float64, torch.complex128):
        for layout in ("contiguous", "channels_last"):
            x = (torch.randn(9, 3, 40, 40, generator=g) * 50).to(dtype).to(dev)
            if layout == "channels_last":
                x = x.contiguous(memory_format=torch.channels_last)
            calls = [
                ("swap_channels_", (x, [0], [2]), {}),
                ("swap_channels_", (x, [0, 1], [1, 2]), {"sample": [3, 5]}),
                ("swap_pixels_", (x, torch.arange(0, 800, 2), torch.arange(1, 800, 2)), {}),
                ("swap_pixels_", (x, [0, 5], [1599, 7]), {"sample": [8, 8]}),
                ("swap_", (x, 0, [0, 1, 2], [8, 7, 6]), {}),
                ("swap_elements_", (x, torch.arange(0, 4000, 2), torch.arange(1, 4000, 2)), {}),
                ("swap_", (x[:, :, ::3, 1:], 3, [0, 3], [38, 10]), {}),
            ]
            for name, args, kw in calls:
                want = args[0].clone()
                getattr(swapkern, name)(*args, **kw)
                getattr(ref, name)(want, *args[1:], **kw)
                assert torch.equal(args[0], want), (name, dtype, layout)
                checks += 1
    w, v = torch.randn(300, 70, device=dev), torch.randn(40, 70, device=dev)
    ww, vv = w.clone(), v.clone()
    swapkern.swap_between_(w, v, [0, 299], [39, 1], dim_x=0, dim_y=0)
    ref.swap_between_(ww, vv, [0, 299], [39, 1], dim_x=0, dim_y=0)
    swapkern.swap_cols_(w, torch.arange(0, 70, 2), torch.arange(1, 70, 2))
    ref.swap_cols_(ww, torch.arange(0, 70, 2), torch.arange(1, 70, 2))
    assert torch.equal(w, ww) and torch.equal(v, vv)
    print(f"gpu_sanitize: {checks + 1} checks passed")


if __name__ == "__main__":
    main()
