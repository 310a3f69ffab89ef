"""Statistics of a comparison over seeds: paired ratios with bootstrap intervals and paired t-tests, censoring,
mean intervals, and Holm's correction for a family of comparisons.

No interval is given from fewer than MIN_SEEDS values: a bootstrap over two pairs resamples four ways and a
t-interval with one degree of freedom is a formality; both read as evidence where there is none."""

from __future__ import annotations

import math

import numpy as np
from scipy import stats as _sp

MIN_SEEDS = 3  # the fewest values an interval or a test is computed from
NO_INTERVAL = f"an interval needs at least {MIN_SEEDS} seeds"


def mean_ci(values):
    """Mean and 95% t-interval half-width (nan for fewer than MIN_SEEDS values)."""
    v = np.asarray([x for x in values if x is not None and math.isfinite(x)], dtype=float)
    if len(v) == 0:
        return float("nan"), float("nan")
    if len(v) < MIN_SEEDS:
        return float(v.mean()), float("nan")
    t = float(_sp.t.ppf(0.975, len(v) - 1))
    return float(v.mean()), float(t * v.std(ddof=1) / math.sqrt(len(v)))


def bootstrap(values, stat=np.mean, n=10000, seed=0):
    """Percentile bootstrap 95% interval of stat over values (resampling the values)."""
    v = np.asarray(values, dtype=float)
    if len(v) == 0:
        return float("nan"), float("nan"), float("nan")
    rng = np.random.default_rng(seed)
    draws = stat(v[rng.integers(0, len(v), size=(n, len(v)))], axis=1)
    return float(stat(v)), float(np.percentile(draws, 2.5)), float(np.percentile(draws, 97.5))


def t_test(logs, alternative="two-sided"):
    """p-value of a one-sample t-test of mean(logs) = 0 (logs: log ratios of paired runs): "two-sided", or "less"
    (the arm takes less than the baseline). nan for fewer than MIN_SEEDS values; 0 or 1 when every log ratio is
    the same nonzero value (no spread: the test is decided by the sign), 1 when all are 0."""
    v = np.asarray(logs, dtype=float)
    if len(v) < MIN_SEEDS:
        return float("nan")
    if np.ptp(v) == 0:
        m = float(v[0])
        if m == 0:
            return 1.0
        return 0.0 if alternative == "two-sided" or m < 0 else 1.0
    return float(_sp.ttest_1samp(v, 0.0, alternative=alternative).pvalue)


def paired_ratio(arm, base, budget_arm, budget_base, seed=0, alternative="two-sided"):
    """Ratio arm / baseline of a time-to-target, paired by seed.

    arm, base: {seed: value or None (never reached the target: censored)}. A censored arm run counts at its
    budget (the ratio is then a lower bound); a pair whose baseline is censored has no ratio and is reported.
    Returns the geometric-mean ratio with a bootstrap 95% interval over the pairs (nan with fewer than MIN_SEEDS
    pairs), the p-value of a paired t-test on the log ratios (alternative: "two-sided" or "less"), and the counts.
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
    if len(logs) < MIN_SEEDS:
        lo = hi = float("nan")
    return {
        "ratio": math.exp(est) if logs else float("nan"),
        "lo": math.exp(lo) if logs else float("nan"),
        "hi": math.exp(hi) if logs else float("nan"),
        "p": t_test(logs, alternative),
        "pairs": len(logs),
        "censored_arm": censored_arm,
        "censored_base": censored_base,
        "lower_bound": censored_arm > 0,
    }


def holm(pvalues):
    """Holm's step-down adjusted p-values, in the order given (nan stays nan and does not count in the family):
    reject where the adjusted p <= alpha, and the family-wise error rate is at most alpha."""
    idx = [i for i, p in enumerate(pvalues) if p is not None and not math.isnan(p)]
    m = len(idx)
    out = [float("nan")] * len(pvalues)
    running = 0.0
    for rank, i in enumerate(sorted(idx, key=lambda i: pvalues[i])):
        running = max(running, min(1.0, (m - rank) * pvalues[i]))
        out[i] = running
    return out


def fmt_ratio(r) -> str:
    """'0.96 [0.92, 0.99]'; '0.96 [n/a]' below MIN_SEEDS pairs; '>=' prefixed where censored runs make it a bound."""
    if not r["pairs"]:
        return "n/a"
    ci = "n/a" if math.isnan(r["lo"]) else f"{r['lo']:.2f}, {r['hi']:.2f}"
    s = f"{r['ratio']:.2f} [{ci}]"
    return (">=" + s) if r["lower_bound"] else s


def fmt_mean(mean, half, scale=1.0, fmt=".1f", sign=False) -> str:
    """'71.2 ± 0.8', or '71.2 ± n/a' where no interval is given."""
    m = f"{scale * mean:{'+' if sign else ''}{fmt}}"
    return f"{m} ± n/a" if math.isnan(half) else f"{m} ± {scale * half:{fmt}}"
