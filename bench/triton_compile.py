"""Compiles every Triton kernel of swapkern ahead of time for NVIDIA sm_90 and sm_80, with no GPU, over the dtypes
and constexpr variants the ops launch, so that a kernel that only works in the interpreter fails CI.

    python -m bench.triton_compile --out DIR [--arch 90 80] [--only SUBSTRING]

Writes DIR/<kernel>-<variant>-sm<arch>.ptx for each compile and prints "compiled N kernels for sm_80, sm_90".
Also writes the loader compiled with floating-point fusion on (DIR/_load_kernel-fused-control-sm90.ptx), the
control that shows what the loader's launch option (enable_fp_fusion=False) prevents. TRITON_INTERPRET must be
unset: interpreted kernels cannot be compiled (this module refuses to run under it).
"""

from __future__ import annotations

import argparse
import os
import sys
import time

if os.environ.get("TRITON_INTERPRET", "0") == "1":
    raise SystemExit("bench.triton_compile: unset TRITON_INTERPRET (interpreted kernels cannot be compiled)")

import triton  # noqa: E402
from triton.backends.compiler import GPUTarget  # noqa: E402
from triton.compiler import ASTSource  # noqa: E402

from swapkern.triton import kernels, loader, packed  # noqa: E402

D16 = [["tt.divisibility", 16]]  # what the JIT infers for 16-byte aligned pointers and ints divisible by 16
PTR = {1: "*i8", 2: "*i16", 4: "*i32", 8: "*i64"}


def _exchange(kernel, width, ints, constexprs, aligned=False, ptr_args=6):
    """Signature of an exchange kernel: x, y (width-byte ints), a, b, sample, geo (*i64), then int args."""
    types = {"x_ptr": PTR[width], "y_ptr": PTR[width], "a_ptr": "*i64", "b_ptr": "*i64", "s_ptr": "*i64", "geo": "*i64"}
    names = [n for n in kernel.arg_names if n not in constexprs]
    for n in names[ptr_args:]:
        types[n] = ints
    attrs = {(0,): D16, (1,): D16} if aligned else {}
    return types, constexprs, attrs, {}


def variants():
    """(kernel, variant name, types, constexprs, attrs, options) for every compile: the work splits of the swap
    ops for each element width, both int widths the JIT picks (i32 below 2^31, i64 above), the multi-tensor
    kernel, and the fused loader for each output dtype and protocol family."""
    out = []
    flat, rows, pairs = kernels.exchange_flat, kernels.exchange_rows, kernels.exchange_pairs
    for w in (1, 2, 4, 8):
        for ints in ("i32", "i64"):
            c = dict(IX=2, IY=2, NDIM=0, HAS_SAMPLE=False, PAIRS_INNER=False, BLOCK=1024)
            out.append((flat, f"elements-w{w}-{ints}", *_exchange(flat, w, ints, c)))
        c = dict(IX=1, IY=1, NDIM=1, HAS_SAMPLE=False, BR=1, BC=1024, VEC=16 // w)
        out.append((rows, f"rows-w{w}-vec{16 // w}", *_exchange(rows, w, "i32", c, aligned=True)))
    out.append(
        (
            flat,
            "cols-w4",
            *_exchange(flat, 4, "i32", dict(IX=1, IY=1, NDIM=1, HAS_SAMPLE=False, PAIRS_INNER=True, BLOCK=1024)),
        )
    )
    out.append(
        (
            flat,
            "pixels-sampled-w4",
            *_exchange(flat, 4, "i32", dict(IX=1, IY=1, NDIM=1, HAS_SAMPLE=True, PAIRS_INNER=False, BLOCK=1024)),
        )
    )
    out.append(
        (
            rows,
            "channels-nchw-w4-vec1",
            *_exchange(rows, 4, "i64", dict(IX=1, IY=1, NDIM=2, HAS_SAMPLE=False, BR=1, BC=1024, VEC=1)),
        )
    )
    out.append(
        (
            rows,
            "channels-sampled-w2-vec8",
            *_exchange(rows, 2, "i32", dict(IX=1, IY=1, NDIM=1, HAS_SAMPLE=True, BR=1, BC=1024, VEC=8), aligned=True),
        )
    )
    out.append(
        (pairs, "strided-w8", *_exchange(pairs, 8, "i64", dict(IX=1, IY=1, NDIM=2, HAS_SAMPLE=False, BLOCK=1024)))
    )
    for w, nd in ((4, 2), (8, 3)):
        types = {"table": "*i64", "prefix": "*i64", "ref_ptr": PTR[w], "n_jobs": "i32", "total": "i64"}
        c = dict(F=packed.FIELDS, LOG=6, ND=nd, BLOCK=packed.BLOCK)
        out.append((packed.exchange_packed, f"w{w}-nd{nd}", types, c, {}, {}))
    lk = loader._load_kernel
    ptrs = [
        "data_ptr",
        "index_ptr",
        "scale_ptr",
        "shift_ptr",
        "pairs_ptr",
        "at_ptr",
        "image_ptr",
        "active_ptr",
        "flip_ptr",
    ]
    ptr_types = ["*u8", "*i64", "*fp32", "*fp32", "*i64", "*i64", "*i64", "*i64", "*i64"]
    for out_t, bf16 in (("*fp32", False), ("*fp16", False), ("*i16", True)):
        for which, what, extent, cl in ((1, 0, True, False), (2, 1, True, True), (0, 0, False, False)):
            types = {"out_ptr": out_t, **dict(zip(ptrs, ptr_types, strict=True))}
            for n in ("total", "C", "H", "W", "o0", "o1", "o2", "o3", "d0", "d1", "d2", "d3"):
                types[n] = "i32"
            c = dict(
                SWAPS=1,
                WHICH=which,
                WHAT=what,
                EXTENT_ALL=extent,
                HAS_PLAN=True,
                HAS_FLIP=True,
                CL_ORDER=cl,
                BF16_BITS=bf16,
                BLOCK=loader.BLOCK,
            )
            proto = "1AE"[which] + "SP"[what] + ("A" if extent else "1")
            name = f"{out_t[1:]}-{proto}{'-cl' if cl else ''}"
            out.append((lk, name, types, c, {}, {"enable_fp_fusion": False}))  # as loader.py launches it
    return out


def compile_one(fn, types, constexprs, attrs, options, arch):
    sig = {n: ("constexpr" if n in constexprs else types[n]) for n in fn.arg_names}
    src = ASTSource(fn=fn, signature=sig, constexprs=constexprs, attrs=attrs)
    return triton.compile(src, target=GPUTarget("cuda", arch, 32), options=options)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", required=True)
    ap.add_argument("--arch", nargs="+", type=int, default=[90, 80])
    ap.add_argument("--only", default=None, help="compile only kernels whose '<kernel>-<variant>' contains this")
    args = ap.parse_args(argv)
    os.makedirs(args.out, exist_ok=True)
    jobs = [v for v in variants() if not args.only or args.only in f"{v[0].fn.__name__}-{v[1]}"]
    t0, n, failed = time.time(), 0, []
    for fn, variant, types, constexprs, attrs, options in jobs:
        for arch in args.arch:
            name = f"{fn.fn.__name__}-{variant}-sm{arch}"
            try:
                k = compile_one(fn, types, constexprs, attrs, options, arch)
            except Exception as e:  # report every failure, then fail
                failed.append(f"{name}: {type(e).__name__}: {str(e)[:500]}")
                continue
            with open(os.path.join(args.out, name + ".ptx"), "w") as f:
                f.write(k.asm["ptx"])
            n += 1
    if not args.only or "_load_kernel" in args.only:
        fn, variant, types, constexprs, attrs, _ = next(v for v in variants() if v[0] is loader._load_kernel)
        k = compile_one(fn, types, constexprs, attrs, {}, 90)  # fusion on: the control
        with open(os.path.join(args.out, "_load_kernel-fused-control-sm90.ptx"), "w") as f:
            f.write(k.asm["ptx"])
    for line in failed:
        print("FAILED", line, file=sys.stderr)
    archs = ", ".join(f"sm_{a}" for a in sorted(args.arch))
    print(f"compiled {n} kernels for {archs} in {time.time() - t0:.0f} s (triton {triton.__version__})")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
