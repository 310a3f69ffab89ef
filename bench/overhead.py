"""Swap overhead: every op and protocol, every backend here, against the reference and the device's copy
bandwidth measured in the same run.

    python -m bench.overhead [--device cpu|cuda|all] [--quick] [--out FILE.json] [--only SUBSTRING ...]

Prints a table and writes a JSON file with every figure, the machine, the versions and the commit.
Bytes moved by a swap = 4 x the bytes of one side's slices (each pair: read both slices, write both).
"""

from __future__ import annotations

import argparse
import json
import os
import time
from dataclasses import dataclass, field

import torch

import swapkern

from .protocols import loader_rows, protocol_rows
from .timing import allocated_bytes, machine_info, measure, rotation
from .weights import weight_rows


@dataclass
class Case:
    name: str
    shape: tuple
    dtype: torch.dtype
    plan: object  # (x, generator) -> (args, kwargs, elements moved per side)
    op: str  # name of the op in swapkern / swapkern.reference
    layout: str = "contiguous"
    peers: dict = field(default_factory=dict)  # name -> (x, args, kwargs) -> callable, compared like the reference


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


def copy_bandwidth(device, nbytes):
    """Device copy bandwidth in GB/s (read + write) on a buffer of nbytes, measured like the swaps."""
    src = torch.empty(nbytes // 4, dtype=torch.float32, device=device).fill_(1)
    dst = torch.empty_like(src)
    t = measure([lambda: dst.copy_(src)], device, repeats=20)
    return 2 * src.nbytes / (t.median_us * 1e-6) / 1e9


def backends_for(device):
    names = []
    if swapkern._backend.native_available(device.type):
        names.append("native")
    if device.type == "cuda" and swapkern._backend.triton_available("cuda"):
        names.append("triton")  # the CPU interpreter is a correctness tool, not a contender
    return names + ["torch"]


def run_case(case, device, g):
    probe = _make(case, device)
    copies = [probe] + [_make(case, device) for _ in range(rotation(probe.nbytes) - 1)]
    planned = [case.plan(x, g) for x in copies]
    moved = 4 * planned[0][2] * probe.element_size()
    rows = []
    for backend in backends_for(device):
        for validate in [True, False] if backend != "torch" else [False]:
            with swapkern.use_backend(backend):
                op = getattr(swapkern, case.op)
                calls = [lambda a=a, k=k: op(*a, **k, validate=validate) for a, k, _ in planned]
                t = measure(calls, device)
                alloc = allocated_bytes(calls[0], device)
            rows.append(
                {
                    "case": case.name,
                    "backend": backend + ("" if validate else " (validate=False)"),
                    "moved_bytes": moved,
                    "alloc_bytes": alloc,
                    **t.as_dict(),
                }
            )
    return rows


def report(rows, copy_gbs, device):
    ref = {r["case"]: r["median_us"] for r in rows if r["backend"].startswith("torch")}
    ref.update({r["case"]: r["median_us"] for r in rows if "swap none" in r["case"]})  # the loader's baseline
    print(f"\n{device.type.upper()}: copy bandwidth {copy_gbs:.1f} GB/s (measured in this run)")
    head = (
        f"{'case':58} {'backend':26} {'median us':>10} {'p20-p80 us':>17} {'GB/s':>7} {'%copy':>6} "
        f"{'x ref':>7} {'alloc B':>9}"
    )
    print(head)
    print("-" * len(head))
    for r in rows:
        gbs = r["moved_bytes"] / (r["median_us"] * 1e-6) / 1e9
        base = ref.get(r["case"]) or ref.get(r["case"].rsplit("swap", 1)[0] + "swap none") or r["median_us"]
        r.update(gbs=gbs, copy_share=gbs / copy_gbs, speedup_vs_reference=base / r["median_us"])
        spread = f"{r['p20_us']:.1f}-{r['p80_us']:.1f}"
        print(
            f"{r['case'][:58]:58} {r['backend']:26} {r['median_us']:10.1f} {spread:>17} {gbs:7.1f} "
            f"{100 * r['copy_share']:5.1f}% {r['speedup_vs_reference']:7.1f} {r['alloc_bytes']:9d}"
        )


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--device", default="all", choices=["cpu", "cuda", "all"])
    ap.add_argument("--quick", action="store_true", help="smaller tensors, one dtype on the CPU")
    ap.add_argument("--only", nargs="*", default=None, help="run cases whose name contains one of these")
    ap.add_argument("--out", default=None, help="JSON path (default bench/results/overhead-<timestamp>.json)")
    ap.add_argument("--no-weights", action="store_true", help="skip the weight-swap rows (ResNet-18, MLP)")
    ap.add_argument(
        "--images",
        type=int,
        nargs="*",
        default=None,
        help="batch sizes of the protocol and loader rows (default 512 4096; --quick: 512)",
    )
    args = ap.parse_args(argv)
    devices = [torch.device("cpu")] if args.device in ("cpu", "all") else []
    if args.device in ("cuda", "all") and torch.cuda.is_available():
        devices.append(torch.device("cuda"))
    if args.device == "cuda" and not devices:
        raise SystemExit("--device cuda: no CUDA device here")
    result = {"machine": machine_info(), "backends": swapkern.backends(), "devices": {}}
    for device in devices:
        g = torch.Generator().manual_seed(0)
        copy_gbs = copy_bandwidth(device, 256 << 20 if device.type == "cuda" else 64 << 20)
        rows = []
        for case in all_cases(device, args.quick):
            if args.only and not any(s in case.name for s in args.only):
                continue
            rows += run_case(case, device, g)
        if not args.no_weights and (not args.only or any("weight" in s for s in args.only)):
            rows += weight_rows(device, args.quick)
        for n in args.images or ([512] if args.quick else [512, 4096]):
            for row in protocol_rows(device, n, backends_for(device)) + loader_rows(device, n, backends_for(device)):
                if not args.only or any(s in row["case"] for s in args.only):
                    rows.append(row)
        report(rows, copy_gbs, device)
        result["devices"][device.type] = {"copy_gbs": copy_gbs, "rows": rows}
    out = args.out or os.path.join("bench", "results", f"overhead-{time.strftime('%Y%m%d-%H%M%S')}.json")
    os.makedirs(os.path.dirname(out) or ".", exist_ok=True)
    with open(out, "w") as f:
        json.dump(result, f, indent=1)
    print(f"\nwrote {out}")
    return result


if __name__ == "__main__":
    main()
