"""Statistics of a comparison over seeds: paired ratios with bootstrap intervals, censoring, mean intervals."""

from __future__ import annotations

import math

import numpy as np

# Two-sided 97.5% quantiles of Student's t for 1..30 degrees of freedom (then the normal 1.96).
_T975 = [
    12.706,
    4.303,
    3.182,
    2.776,
    2.571,
    2.447,
    2.365,
    2.306,
    2.262,
    2.228,
    2.201,
    2.179,
    2.160,
    2.145,
    2.131,
    2.120,
    2.110,
    2.101,
    2.093,
    2.086,
    2.080,
    2.074,
    2.069,
    2.064,
    2.060,
    2.056,
    2.052,
    2.048,
    2.045,
    2.042,
]


def mean_ci(values):
    """Mean and 95% t-interval half-width (nan for fewer than two values)."""
    v = np.asarray([x for x in values if x is not None and math.isfinite(x)], dtype=float)
    if len(v) == 0:
        return float("nan"), float("nan")
    if len(v) == 1:
        return float(v[0]), float("nan")
    t = _T975[len(v) - 2] if len(v) - 1 <= len(_T975) else 1.96
    return float(v.mean()), float(t * v.std(ddof=1) / math.sqrt(len(v)))


def bootstrap(values, stat=np.mean, n=10000, seed=0):
    """Percentile bootstrap 95% interval of stat over values (resampling the values)."""
    v = np.asarray(values, dtype=float)
    if len(v) == 0:
        return float("nan"), float("nan"), float("nan")
    rng = np.random.default_rng(seed)
    draws = stat(v[rng.integers(0, len(v), size=(n, len(v)))], axis=1)
    return float(stat(v)), float(np.percentile(draws, 2.5)), float(np.percentile(draws, 97.5))


def paired_ratio(arm, base, budget_arm, budget_base, seed=0):
    """Ratio arm / baseline of a time-to-target, paired by seed.

    arm, base: {seed: value or None (never reached the target: censored)}. A censored arm run counts at its
    budget (the ratio is then a lower bound); a pair whose baseline is censored has no ratio and is reported.
    Returns the geometric-mean ratio with a bootstrap 95% interval over the pairs, and the counts.
    """
    logs, censored_arm, censored_base = [], 0, 0
    for s in sorted(set(arm) & set(base)):
        if base[s] is None:
            censored_base += 1
            continue
        a = arm[s]
        if a is None:
            censored_arm += 1
            a = budget_arm
        logs.append(math.log(max(a, 1e-12) / max(base[s], 1e-12)))
    est, lo, hi = bootstrap(logs, seed=seed)
    return {
        "ratio": math.exp(est) if logs else float("nan"),
        "lo": math.exp(lo) if logs else float("nan"),
        "hi": math.exp(hi) if logs else float("nan"),
        "pairs": len(logs),
        "censored_arm": censored_arm,
        "censored_base": censored_base,
        "lower_bound": censored_arm > 0,
    }


def fmt_ratio(r) -> str:
    if not r["pairs"]:
        return "n/a"
    s = f"{r['ratio']:.2f} [{r['lo']:.2f}, {r['hi']:.2f}]"
    return (">=" + s) if r["lower_bound"] else s
