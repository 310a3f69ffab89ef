"""Statistics of a comparison over seeds: paired ratios with t-intervals on the log ratios and paired t-tests,
censoring, equivalence (TOST) within a declared margin, the smallest effect a comparison could detect, mean
intervals, and Holm's correction for a family of comparisons.

Every ratio interval is a paired t-interval on the log ratios (METHOD): with 3 to 10 seeds a percentile bootstrap
is far narrower than its nominal level (from 3 values it is exactly [min, max], about 75% coverage), a t-interval
is exact for normal log ratios. No interval is given from fewer than MIN_SEEDS values: a t-interval with one
degree of freedom is a formality that reads as evidence where there is none."""

from __future__ import annotations

import math

import numpy as np
from scipy import stats as _sp

MIN_SEEDS = 3  # the fewest values an interval or a test is computed from
NO_INTERVAL = f"an interval needs at least {MIN_SEEDS} seeds"
METHOD = "paired t on log ratios"  # how every ratio interval is made (named in every table)
ALPHA = 0.05  # the level of every test: 95% two-sided intervals, TOST at 5% (a 90% interval inside the margin)
# The declared equivalence margin: a ratio below 1 - MARGIN (a speed-up of more than 10%) or above 1 + MARGIN (a
# slow-down of more than 10%) is an effect that matters; one shown inside [1 - MARGIN, 1 + MARGIN] is equivalence.
MARGIN = 0.10
POWER = 0.8  # the power at which the smallest detectable effect is stated
VERDICTS = ("faster", "slower", "equivalent", "inconclusive")


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


def t_interval(logs, level=1 - ALPHA):
    """(mean, lo, hi) of the t-interval at `level` on the mean of logs (nan bounds below MIN_SEEDS values; a
    zero-width interval when every value is the same)."""
    v = np.asarray(logs, dtype=float)
    if len(v) == 0:
        return float("nan"), float("nan"), float("nan")
    m = float(v.mean())
    if len(v) < MIN_SEEDS:
        return m, float("nan"), float("nan")
    half = float(_sp.t.ppf(0.5 + level / 2, len(v) - 1) * v.std(ddof=1) / math.sqrt(len(v)))
    return m, m - half, m + half


def tost(logs, margin=MARGIN):
    """p-value of the two one-sided t-tests that the mean log ratio lies inside (log(1 - margin), log(1 + margin)):
    the larger of the two one-sided p-values (equivalence at ALPHA when it is <= ALPHA, i.e. when the 90% interval
    lies inside the margin). nan below MIN_SEEDS values; with no spread, 0 inside the margin and 1 outside."""
    v = np.asarray(logs, dtype=float)
    if len(v) < MIN_SEEDS:
        return float("nan")
    lo, hi = math.log(1 - margin), math.log(1 + margin)
    if np.ptp(v) == 0:
        return 0.0 if lo < v[0] < hi else 1.0
    p_lo = float(_sp.ttest_1samp(v, lo, alternative="greater").pvalue)
    p_hi = float(_sp.ttest_1samp(v, hi, alternative="less").pvalue)
    return max(p_lo, p_hi)


def detectable(sd, n, alpha=ALPHA, power=POWER) -> float:
    """The smallest true mean log ratio (in absolute value) that a two-sided paired t-test at alpha over n pairs
    detects with the given power, when the log ratios spread by sd (the noncentral t); nan below MIN_SEEDS or
    without spread."""
    if n < MIN_SEEDS or not (sd > 0):
        return float("nan")
    df, crit = n - 1, float(_sp.t.ppf(1 - alpha / 2, n - 1))

    def gap(d):
        nc = d / (sd / math.sqrt(n))
        return float(_sp.nct.sf(crit, df, nc) + _sp.nct.cdf(-crit, df, nc)) - power

    hi = sd
    while gap(hi) < 0:
        hi *= 2
    from scipy.optimize import brentq

    return float(brentq(gap, 0.0, hi, xtol=1e-6))


def decide(r, margin=MARGIN) -> str:
    """A comparison's verdict from its tests: "equivalent" when TOST at ALPHA puts it inside the margin (even if a
    difference smaller than the margin is significant), else "faster" / "slower" when the two-sided 95% interval
    excludes 1, else "inconclusive". A ratio that is a lower bound (censored arm runs) can only be "slower" (its
    interval above 1) or "inconclusive"; fewer than MIN_SEEDS pairs: "inconclusive"."""
    if r["pairs"] < MIN_SEEDS or math.isnan(r["lo"]):
        return "inconclusive"
    if r["lower_bound"]:
        return "slower" if r["lo"] > 1 else "inconclusive"
    if r["tost_p"] <= ALPHA:
        return "equivalent"
    if r["hi"] < 1:
        return "faster"
    if r["lo"] > 1:
        return "slower"
    return "inconclusive"


def paired_ratio(arm, base, budget_arm, budget_base, seed=0, alternative="two-sided", margin=MARGIN):
    """Ratio arm / baseline of a time-to-target, paired by seed.

    arm, base: {seed: value or None (never reached the target: censored)}. A censored arm run counts at its
    budget (budget_arm: one for all, or {seed: budget}, e.g. that run's own steps x its step time; the ratio is
    then a lower bound); a pair whose baseline is censored has no ratio and is reported.
    Returns the geometric-mean ratio with its 95% paired t-interval on the log ratios (nan with fewer than
    MIN_SEEDS pairs), the p-value of the paired t-test (alternative: "two-sided" or "less") and its two-sided one
    (p_two), the TOST p-value within the margin and the 90% interval it reads, the spread of the log ratios, the
    smallest speed-up (`mde`, a ratio below 1) and slow-down (`mde_up`) detectable at POWER, the verdict
    (`decide`) and the counts. seed: unused (kept for callers of the bootstrap version)."""
    logs, censored_arm, censored_base = [], 0, 0
    for s in sorted(set(arm) & set(base)):
        if base[s] is None:
            censored_base += 1
            continue
        a = arm[s]
        if a is None:
            censored_arm += 1
            a = budget_arm[s] if isinstance(budget_arm, dict) else budget_arm
        logs.append(math.log(max(a, 1e-12) / max(base[s], 1e-12)))
    est, lo, hi = t_interval(logs)
    _, lo90, hi90 = t_interval(logs, 1 - 2 * ALPHA)
    sd = float(np.std(logs, ddof=1)) if len(logs) > 1 else float("nan")
    d = detectable(sd, len(logs))
    exp = lambda x: math.exp(x) if logs and not math.isnan(x) else float("nan")  # noqa: E731
    out = {
        "ratio": exp(est),
        "lo": exp(lo),
        "hi": exp(hi),
        "lo90": exp(lo90),
        "hi90": exp(hi90),
        "method": METHOD,
        "p": t_test(logs, alternative),
        "p_two": t_test(logs),
        "tost_p": tost(logs, margin),
        "margin": margin,
        "sd_log": sd,
        "mde": exp(-d),
        "mde_up": exp(d),
        "pairs": len(logs),
        "censored_arm": censored_arm,
        "censored_base": censored_base,
        "lower_bound": censored_arm > 0,
    }
    out["verdict"] = decide(out, margin)
    return out


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
    """'0.96 [0.92, 0.99]' (the 95% interval of METHOD); '0.96 [n/a]' below MIN_SEEDS pairs; '>=' prefixed where
    censored runs make it a bound."""
    if not r or not r.get("pairs"):
        return "n/a"
    ci = "n/a" if math.isnan(r["lo"]) else f"{r['lo']:.2f}, {r['hi']:.2f}"
    s = f"{r['ratio']:.2f} [{ci}]"
    return (">=" + s) if r["lower_bound"] else s


def fmt_mean(mean, half, scale=1.0, fmt=".1f", sign=False) -> str:
    """'71.2 ± 0.8', or '71.2 ± n/a' where no interval is given."""
    m = f"{scale * mean:{'+' if sign else ''}{fmt}}"
    return f"{m} ± n/a" if math.isnan(half) else f"{m} ± {scale * half:{fmt}}"
