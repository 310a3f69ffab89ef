"""The op cases of the overhead benchmark: each public swap op on image batches (channels, pixels) and on weight
matrices (rows, cols, between, elements), with the plan each draws, timed on every backend of a device with and
without validation. Bytes moved by a swap = 4 x the bytes of one side's slices (read both slices, write both)."""

from __future__ import annotations

from dataclasses import dataclass

import torch

import swapkern

from ..common.timing import rotation
from . import plain
from .rows import backends_for, copy_row, timed_row


@dataclass
class Case:
    name: str
    shape: tuple
    dtype: torch.dtype
    plan: object  # (x, generator) -> (args, kwargs, elements moved per side)
    op: str  # name of the op in swapkern / swapkern.reference
    layout: str = "contiguous"


def _pairs(n, k, g, device):
    perm = torch.randperm(n, generator=g)[: 2 * k].to(device)
    return perm[:k], perm[k:]


def _per_image(n_images, n, g, device):
    """One random pair per image: (sample, a, b)."""
    a = torch.randint(0, n, (n_images,), generator=g)
    b = (a + torch.randint(1, n, (n_images,), generator=g)) % n
    return torch.arange(n_images).to(device), a.to(device), b.to(device)


def feature_cases(n_images, dtypes):
    img = (n_images, 3, 32, 32)
    hw = 32 * 32
    out = []
    for dtype in dtypes:
        t = str(dtype).replace("torch.", "")
        out += [
            Case(
                f"ASA channels 0<->2, all {n_images} images, {t}",
                img,
                dtype,
                lambda x, g: ((x, [0], [2]), {}, x.shape[0] * hw),
                "swap_channels_",
            ),
            Case(
                f"ASA channels_last, {t}",
                img,
                dtype,
                lambda x, g: ((x, [0], [2]), {}, x.shape[0] * hw),
                "swap_channels_",
                layout="channels_last",
            ),
            Case(f"ESA a channel pair per image, {t}", img, dtype, lambda x, g: _esa(x, g), "swap_channels_"),
            Case(
                f"1SA one image, {t}", img, dtype, lambda x, g: ((x, [0], [1]), {"sample": [7]}, hw), "swap_channels_"
            ),
            Case(  # the arguments as Python lists, converted on every call (issue 29's list case)
                f"1PA one pixel pair of one image, Python lists, {t}",
                img,
                dtype,
                lambda x, g: ((x, [5], [1000]), {"sample": [7]}, 3),
                "swap_pixels_",
            ),
            Case(
                f"APA pixel pair, all images, {t}",
                img,
                dtype,
                lambda x, g: ((x, [5], [1000]), {}, x.shape[0] * 3),
                "swap_pixels_",
            ),
            Case(
                f"EPA a pixel pair per image ({n_images} small pairs), {t}",
                img,
                dtype,
                lambda x, g: _epa(x, g),
                "swap_pixels_",
            ),
        ]
    return out


def _esa(x, g):
    s, a, b = _per_image(x.shape[0], 3, g, x.device)
    return (x, a, b), {"sample": s}, x.shape[0] * x.shape[2] * x.shape[3]


def _epa(x, g):
    s, a, b = _per_image(x.shape[0], x.shape[2] * x.shape[3], g, x.device)
    return (x, a, b), {"sample": s}, x.shape[0] * x.shape[1]


def weight_cases(w, dtypes):
    out = []
    for dtype in dtypes:
        t = str(dtype).replace("torch.", "")
        out += [
            Case(
                f"rows: half the rows of {w}x{w}, {t}",
                (w, w),
                dtype,
                lambda x, g: ((x, *_pairs(x.shape[0], x.shape[0] // 4, g, x.device)), {}, x.numel() // 4),
                "swap_rows_",
            ),
            Case(
                f"cols: half the cols of {w}x{w}, {t}",
                (w, w),
                dtype,
                lambda x, g: ((x, *_pairs(x.shape[1], x.shape[1] // 4, g, x.device)), {}, x.numel() // 4),
                "swap_cols_",
            ),
            Case(
                f"between: a quarter of the rows of one {w}x{w} with another's, {t}",
                (2, w, w),
                dtype,
                lambda x, g: (
                    (x[0], x[1], *_pairs(x.shape[1], x.shape[1] // 4, g, x.device)),
                    {"dim_x": 0, "dim_y": 0},
                    x[0].numel() // 4,
                ),
                "swap_between_",
            ),
            Case(
                f"mixed: 4096 element pairs of {w}x{w}, {t}",
                (w, w),
                dtype,
                lambda x, g: ((x, *_pairs(x.numel(), 4096, g, x.device)), {}, 4096),
                "swap_elements_",
            ),
        ]
    return out


def all_cases(device, quick):
    """Every op case at this device's sizes (smaller with --quick; bfloat16 beside float32 unless quick on the CPU)."""
    cuda = device.type == "cuda"
    n_images = 4096 if cuda else (256 if quick else 512)
    w = 16384 if cuda else (1024 if quick else 4096)
    dtypes = [torch.float32, torch.bfloat16] if cuda or not quick else [torch.float32]
    return feature_cases(n_images, dtypes) + weight_cases(w, dtypes)


def _make(case, device):
    x = torch.empty(case.shape, dtype=case.dtype, device=device)
    x.copy_(torch.arange(x.numel(), device=device).view(case.shape).to(case.dtype))
    if case.layout == "channels_last":
        x = x.contiguous(memory_format=torch.channels_last)
    return x


def run_case(case, device, g):
    """The case's rows: its plans drawn once per rotated copy of the input, then timed on every backend (native and
    triton with and without validation, the reference without)."""
    probe = _make(case, device)
    copies = [probe] + [_make(case, device) for _ in range(rotation(probe.nbytes, device=device) - 1)]
    planned = [case.plan(x, g) for x in copies]
    moved = 4 * planned[0][2] * probe.element_size()
    rows = []
    for backend in backends_for(device):
        for validate in [True, False] if backend != "torch" else [False]:
            label = backend + ("" if validate else " (validate=False)")
            with swapkern.use_backend(backend):
                op = getattr(swapkern, case.op)
                calls = [lambda a=a, k=k: op(*a, **k, validate=validate) for a, k, _ in planned]
                rows.append(timed_row(case.name, label, calls, device, moved=moved))
    calls = [plain.op(case.op, a, k) for a, k, _ in planned]
    rows.append(timed_row(case.name, "plain PyTorch", calls, device, moved=moved))
    rows.append(copy_row(case.name, moved, device))
    return rows
