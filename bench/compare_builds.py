"""Is a change slower? bench.overhead rows of two checkouts, measured in alternating rounds on one machine.

    python -m bench.compare_builds --base ../old-checkout [--head .] [--rounds 4] [--only SUBSTRING ...]
        [--jsonl FILE] [-- ARGS FOR bench.overhead]
    python -m bench.compare_builds --base ../old-checkout --dispatch [--rounds 6]

--dispatch times the host cost of dispatch-bound calls instead (bench/overhead/dispatch.py of the head checkout,
run against each checkout's swapkern; the minimum over loops per round).

Each round runs `python -m bench.overhead --device cpu` once in each checkout (each with its own built
swapkern._C; the order alternates, base-head then head-base, so a drift of the machine's load hits both), and every
row's median is paired by round. For each row: the ratio head / base (geometric mean over rounds of the per-round
ratios) and its noise, judged two ways from the same data: the 95% t-interval of the mean log ratio over rounds,
and the spread of the repeat-to-repeat ratio of each checkout with itself (round r against round r+1). A row is
"slower" only when its interval lies wholly above 1 and its ratio exceeds the larger of 1.05 and the median
self-repeat spread; "faster" symmetrically; otherwise "same within noise". Prints a table; writes JSON lines.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import re
import subprocess
import sys
import tempfile

from scipy import stats as sstats


def _run(checkout, only, extra, out):
    cmd = [sys.executable, "-m", "bench.overhead", "--device", "cpu", "--out", out]
    if only:
        cmd += ["--only", *only]
    cmd += extra
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    res = subprocess.run(cmd, cwd=checkout, env=env, capture_output=True, text=True)
    if res.returncode != 0:
        raise SystemExit(f"bench.overhead failed in {checkout}:\n{res.stdout[-2000:]}\n{res.stderr[-2000:]}")
    with open(out) as f:
        rows = json.load(f)["devices"]["cpu"]["rows"]
    # a weight row's label carries its share of a training step ("native, 0.01% of a step"), which varies by run
    return {(r["case"], re.sub(r", [\d.]+%( of a step)?$", "", r["backend"])): r["median_us"] for r in rows}


def _run_dispatch(checkout, script):
    env = {**{k: v for k, v in os.environ.items() if k != "PYTHONPATH"}, "PYTHONPATH": checkout}
    res = subprocess.run([sys.executable, script], cwd=checkout, env=env, capture_output=True, text=True)
    if res.returncode != 0:
        raise SystemExit(f"the dispatch probe failed in {checkout}:\n{res.stderr[-2000:]}")
    return {(case, "native"): us for case, us in json.loads(res.stdout.strip().splitlines()[-1]).items()}


def _commit(checkout):
    res = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=checkout, capture_output=True, text=True)
    return res.stdout.strip() or "?"


def compare(base_rounds, head_rounds):
    """Per row present in every round of both: ratio, interval, self-repeat noise and verdict (a list of dicts)."""
    keys = set(base_rounds[0])
    for r in base_rounds + head_rounds:
        keys &= set(r)
    out = []
    for key in sorted(keys):
        b = [r[key] for r in base_rounds]
        h = [r[key] for r in head_rounds]
        logs = [math.log(y / x) for x, y in zip(b, h, strict=True)]
        n = len(logs)
        mean = sum(logs) / n
        if n >= 2:
            sd = math.sqrt(sum((v - mean) ** 2 for v in logs) / (n - 1))
            half = sstats.t.ppf(0.975, n - 1) * sd / math.sqrt(n)
        else:
            half = float("inf")
        repeats = [abs(math.log(s[i + 1] / s[i])) for s in (b, h) for i in range(len(s) - 1)]
        repeats.sort()
        noise = math.exp(repeats[len(repeats) // 2]) if repeats else float("nan")
        ratio, lo, hi = math.exp(mean), math.exp(mean - half), math.exp(mean + half)
        band = max(1.05, noise if noise == noise else 1.05)
        if lo > 1 and ratio > band:
            verdict = "slower"
        elif hi < 1 and ratio < 1 / band:
            verdict = "faster"
        else:
            verdict = "same within noise"
        out.append(
            {
                "case": key[0],
                "backend": key[1],
                "base_us": sorted(b)[n // 2],
                "head_us": sorted(h)[n // 2],
                "ratio": ratio,
                "ci95": [lo, hi],
                "self_repeat_noise": noise,
                "verdict": verdict,
            }
        )
    return out


def main(argv=None):
    argv = list(sys.argv[1:] if argv is None else argv)
    extra = []
    if "--" in argv:
        at = argv.index("--")
        argv, extra = argv[:at], argv[at + 1 :]
    ap = argparse.ArgumentParser(
        prog="python -m bench.compare_builds", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--base", required=True, help="the checkout to compare against (with its swapkern._C built)")
    ap.add_argument("--head", default=".", help="the checkout under test (default: this one)")
    ap.add_argument("--rounds", type=int, default=4)
    ap.add_argument("--only", nargs="*", default=None, help="bench.overhead --only: cases containing one of these")
    ap.add_argument("--backends", nargs="*", default=["native"], help="rows of these backends (default native)")
    ap.add_argument("--jsonl", default=None, help="write one JSON line per row here")
    ap.add_argument("--dispatch", action="store_true", help="time dispatch-bound calls (bench/overhead/dispatch.py)")
    args = ap.parse_args(argv)
    if args.rounds < 2:
        raise SystemExit("--rounds must be at least 2 (the noise is judged from the rounds)")
    base_rounds, head_rounds = [], []
    with tempfile.TemporaryDirectory() as tmp:
        for r in range(args.rounds):
            order = [("base", args.base), ("head", args.head)]
            if r % 2:
                order.reverse()
            for name, checkout in order:
                if args.dispatch:
                    probe = os.path.join(os.path.abspath(args.head), "bench", "overhead", "dispatch.py")
                    rows = _run_dispatch(os.path.abspath(checkout), probe)
                else:
                    rows = _run(os.path.abspath(checkout), args.only, extra, os.path.join(tmp, f"{name}{r}.json"))
                (base_rounds if name == "base" else head_rounds).append(rows)
            print(f"round {r + 1}/{args.rounds} done", file=sys.stderr, flush=True)
    rows = [x for x in compare(base_rounds, head_rounds) if any(x["backend"].startswith(b) for b in args.backends)]
    head, base = _commit(args.head), _commit(args.base)
    print(f"head {head} vs base {base}, {args.rounds} alternating rounds; ratio = head / base (geometric mean)")
    print(
        f"{'case':66s} {'backend':24s} {'base us':>9s} {'head us':>9s} {'ratio':>6s} {'95% CI':>13s} "
        f"{'noise':>6s}  verdict"
    )
    for x in rows:
        lo, hi = x["ci95"]
        print(
            f"{x['case'][:66]:66s} {x['backend'][:24]:24s} {x['base_us']:9.1f} {x['head_us']:9.1f} "
            f"{x['ratio']:6.3f} {lo:6.3f}-{hi:6.3f} {x['self_repeat_noise']:6.3f}  {x['verdict']}"
        )
    counts = {v: sum(x["verdict"] == v for x in rows) for v in ("slower", "same within noise", "faster")}
    print(f"{len(rows)} rows: " + ", ".join(f"{n} {v}" for v, n in counts.items()))
    if args.jsonl:
        with open(args.jsonl, "w") as f:
            for x in rows:
                f.write(json.dumps({**x, "head": head, "base": base, "rounds": args.rounds}) + "\n")
    return rows


if __name__ == "__main__":
    main()
