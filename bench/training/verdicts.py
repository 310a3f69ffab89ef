"""bench.study's one-line verdicts: each experiment's question answered from the intervals of its rows."""

from __future__ import annotations

import math
import re

from ..common import stats

ALPHA = 0.05  # the family-wise level of every Holm decision


def verdict(exp, rows) -> str:
    """One line: the question answered from the intervals (ratios < 1 are faster than the baseline), with the
    count chance alone predicts and what survives Holm's correction over the experiment's comparisons."""
    arms = [r for r in rows if r["arm"] != "none" and r["steps_ratio"]["pairs"]]
    if not arms:
        return "no comparison possible (no baseline reached the target)"
    if getattr(exp, "declared", None):
        return _confirmatory_verdict(exp, rows)
    if exp.name == "symmetry-null":
        return _symmetry_verdict(rows)
    if exp.name == "weight-dose":
        return dose_verdict(rows) + ". " + _holm_line(arms, "experiment")
    if exp.name == "weight-intensity":
        return _intensity_verdict(rows) + ". " + _holm_line(arms, "experiment")
    counts = _verdict_counts(arms)
    tested = [r for r in arms if not math.isnan(r["steps_ratio"].get("p_two", r["steps_ratio"]["p"]))]
    best = min(arms, key=lambda r: r["steps_ratio"]["ratio"])
    head = (
        f"In steps to target ({len(arms)} comparisons, declared margin {100 * stats.MARGIN:.0f}%): {counts}; "
        f"{len(_raw(tested, 1))} faster and {len(_raw(tested, 0))} slower at the raw 5% level of a paired t-test, "
        f"where chance alone predicts {chance(len(tested)):.1f} each way; best {best['arm']} ({best['group']}) "
        f"at {stats.fmt_ratio(best['steps_ratio'])}. {_detectable(arms)}. " + _holm_line(arms, "experiment")
    )
    if exp.name in ("replication", "fast-baseline", "regimes", "poster-regime", "replication-gpu-short"):
        two_x = any(r["steps_ratio"]["verdict"] == "faster" and r["steps_ratio"]["hi"] <= 0.5 for r in arms)
        head += ". The 2x speed-up claim " + ("holds for some arm" if two_x else "is not reproduced")
    return head


def chance(m: int, alpha: float = stats.ALPHA) -> float:
    """How many of m two-sided tests at alpha (comparisons by their 95% paired t-interval) chance alone puts below
    1 when no arm differs (as many above): alpha / 2 of them, the t-interval's coverage being exact."""
    return alpha / 2 * m


def _raw(rows, faster: int, key="steps_ratio"):
    """The rows whose two-sided paired t-test is significant at the raw ALPHA, faster (ratio < 1) or slower."""
    out = []
    for r in rows:
        q = r[key]
        p = q.get("p_two", q["p"])
        if not math.isnan(p) and p <= ALPHA and (q["ratio"] < 1) == bool(faster):
            out.append(r)
    return out


def _verdict_counts(arms, key="steps_ratio") -> str:
    """'2 faster, 3 slower, 10 equivalent within the margin, 5 inconclusive' (the TOST verdicts of the rows)."""
    n = {v: sum(r[key].get("verdict") == v for r in arms) for v in stats.VERDICTS}
    return (
        f"{n['faster']} faster, {n['slower']} slower, {n['equivalent']} equivalent within the margin, "
        f"{n['inconclusive']} inconclusive"
    )


def _detectable(arms, key="steps_ratio") -> str:
    """The smallest speed-up the experiment's comparisons could detect at POWER: the median over its rows."""
    m = sorted(r[key]["mde"] for r in arms if not math.isnan(r[key].get("mde", float("nan"))))
    if not m:
        return "No detectable effect stated (fewer than 3 pairs, or no spread)"
    med = m[len(m) // 2]
    return (
        f"At these seeds a speed-up to {med:.2f}x the baseline's steps (median over rows; range "
        f"{m[0]:.2f}-{m[-1]:.2f}) "
        f"is detected with {100 * stats.POWER:.0f}% power"
    )


def survivors(arms, family, key="steps_ratio"):
    """(faster, slower): the arms whose ratio `key` differs from 1 at family-wise ALPHA after Holm over family."""
    hit = [r for r in arms if r[key].get("holm", {}).get(family, float("nan")) <= ALPHA]
    return [r for r in hit if r[key]["ratio"] < 1], [r for r in hit if r[key]["ratio"] > 1]


def _names(rows):
    return ", ".join(f"{r['arm']} ({r['group']})" if r["group"] != "all" else r["arm"] for r in rows) or "none"


def _holm_line(arms, family):
    """What survives Holm over the family's m comparisons, in steps and in time, beside chance's count."""
    tested = [r for r in arms if not math.isnan(r["steps_ratio"]["p"])]
    if not tested:
        return f"No test: fewer than {stats.MIN_SEEDS} seeds per arm"
    m = len(tested)
    sf, ss = survivors(tested, family, "steps_ratio")
    tf, ts = survivors(tested, family, "time_ratio")
    timed = sum(r["time_ratio"]["pairs"] >= stats.MIN_SEEDS for r in tested)
    time_part = (
        f"faster in time {_names(tf)}, slower in time {_names(ts)} ({timed} of {m} timed in lockstep)"
        if timed
        else "time not compared (no run of these arms was trained in lockstep with its baseline)"
    )
    return (
        f"After Holm over the {m} (paired t-tests, family-wise {ALPHA:g}): faster in steps {_names(sf)}, slower in "
        f"steps {_names(ss)}; {time_part}"
    )


def _confirmatory_verdict(exp, rows):
    """Each declared comparison: its primary ratio, one-sided p, Holm-adjusted p, and confirmed or not."""
    d = exp.declared
    parts = []
    for r in rows:
        if r["arm"] == "none":
            continue
        q = r[d.metric]
        adj = q.get("holm", {}).get("experiment", float("nan"))
        ok = adj <= d.alpha
        parts.append(
            f"{r['arm']} ({r['group']}): {d.metric.replace('_', ' ')} {stats.fmt_ratio(q)}, p {q['p']:.3g}, "
            f"Holm p {adj:.3g}: {'CONFIRMED' if ok else 'not confirmed'} (within the {100 * stats.MARGIN:.0f}% "
            f"margin: {q.get('verdict', 'n/a')}, detectable speed-up {q.get('mde', float('nan')):.2f})"
        )
    return "; ".join(parts)


def claim_families(sections) -> list:
    """The study's families, one per claim: every swap arm of every experiment of the claim (feature: the feature
    swaps of replication, fast-baseline, controls, regimes, poster-regime; weight: the weight swaps of
    weight-intensity, metropolis, glassy), Holm-adjusted together (ratio["holm"]["claim"]). Returns lines for the
    report's head: per claim the comparisons, the raw count beside chance's, and what survives."""
    from .summary import add_holm

    lines = []
    for claim, word, direction in (("feature", "faster", 0), ("weight", "slower", 1)):
        rows = [
            r
            for exp, rows, *_ in sections
            if exp.claim == claim and not getattr(exp, "declared", None)
            for r in rows
            if r["kind"] == claim and r["steps_ratio"]["pairs"]
        ]
        tested = [r for r in rows if not math.isnan(r["steps_ratio"]["p"])]
        if not tested:
            continue
        add_holm(tested, "claim")
        m = len(tested)
        raw = _raw(tested, 1 - direction)
        held = survivors(tested, "claim", "steps_ratio")[direction]
        held_t = survivors(tested, "claim", "time_ratio")[direction]
        excluded = [r for r in tested if r["steps_ratio"]["verdict"] == "equivalent"]
        open_ = [r for r in tested if r["steps_ratio"]["verdict"] == "inconclusive"]
        lines.append(
            f"- **{'Feature swaps speed training up' if claim == 'feature' else 'Weight swaps slow learning'}** "
            f"({m} comparisons of a swap arm with its baseline, in steps to target): {len(raw)} {word} at the raw 5% "
            f"level of a paired t-test, where chance alone predicts {chance(m):.1f}; after Holm over all {m}: "
            f"{len(held)} {word} in steps ({_names(held)}), {len(held_t)} in time ({_names(held_t)}). Verdicts "
            f"within the {100 * stats.MARGIN:.0f}% margin: {_verdict_counts(tested)}; an effect beyond the margin "
            f"is excluded (equivalence) in {len(excluded)} of {m}; open (inconclusive): {_names(open_)}."
        )
    return lines


# An arm whose clean loss leaves its seed's baseline by no more than this many times the one-ulp yardstick's
# deviation follows the baseline to float rounding.
_ROUNDING_FACTOR = 1.5


def _symmetry_verdict(rows):
    """Per group (architecture), each arm's largest clean-loss deviation from its seed's baseline, judged against
    the one-ulp yardstick (`none+ulp`) of the same group: training amplifies any rounding difference to the same
    chaotic size, so the yardstick, not zero, is the null."""
    out = []
    for g in dict.fromkeys(r["group"] for r in rows):
        in_g = [r for r in rows if r["group"] == g]
        dev = [r for r in in_g if r["arm"] not in ("none", "none+ulp")]
        parts = [
            f"{r['arm']}: max |d clean loss| {r.get('max_dev', float('nan')):.2e}, "
            f"time {stats.fmt_ratio(r['time_ratio'])}"
            for r in dev
        ]
        ulp = next((r.get("max_dev", float("nan")) for r in in_g if r["arm"] == "none+ulp"), None)
        where = "" if g == "all" else f"{g}: "
        if ulp is None or math.isnan(ulp):
            out.append(where + "; ".join(parts))
            continue
        bound = _ROUNDING_FACTOR * max(ulp, 1e-12)
        within = [r["arm"] for r in dev if r.get("max_dev", float("inf")) <= bound]
        out.append(
            f"{where}one ulp on every initial weight moves the baseline's clean loss by up to {ulp:.2e}; "
            f"no more than {_ROUNDING_FACTOR:g}x that, i.e. float rounding: {', '.join(within) or 'no arm'}. "
            + "; ".join(parts)
        )
    return ". ".join(out)


def _intensity_verdict(rows):
    """How many swapped arms reach the target at all, and intensity against the accuracy lost at the end of the
    budget (equal steps), which is measured for every arm: swaps strong enough never reach the target."""
    by, reached, arms, at_one = {}, 0, 0, []
    lowest = min(_intensity_arm(r["arm"])[1] for r in rows if r["arm"] != "none")
    for r in rows:
        if r["arm"] == "none":
            continue
        proto, k, _ = _intensity_arm(r["arm"])
        kind = _intensity_kind(r["arm"])
        arms += 1
        reached += r["reached"] == r["seeds"]
        by.setdefault((proto, kind), []).append((k, -r["delta_acc"]))
        if k == lowest and kind == "swap":
            at_one.append(f"{proto} {100 * r['delta_acc']:+.1f}")
    mono = sum(1 for pts in by.values() if _spearman(sorted(pts)) > 0.5)
    return (
        f"{reached} of {arms} swapped arms reach the baseline's target in every seed; accuracy lost at equal steps "
        f"rises with intensity (Spearman > 0.5) in {mono} of {len(by)} protocol/kind series; at the lowest "
        f"intensity the swaps alone cost {', '.join(at_one)} points of final accuracy"
    )


def _intensity_kind(arm):
    return "noise" if "(noise)" in arm else ("swap+state" if "+state" in arm else "swap")


def _intensity_arm(arm):
    """'mixedx16+state' -> ('mixed', 16, '+state'): protocol names may contain an x themselves."""
    m = re.fullmatch(r"(.+)x(\d+)(.*)", arm)
    return m.group(1), int(m.group(2)), m.group(3)


def _spearman(pts):
    if len(pts) < 3:
        return float("nan")
    xs = [p[0] for p in pts]
    ys = [p[1] for p in pts]
    rx = {v: i for i, v in enumerate(sorted(xs))}
    ry = {v: i for i, v in enumerate(sorted(ys))}
    a, b = [rx[x] for x in xs], [ry[y] for y in ys]
    n = len(a)
    d2 = sum((i - j) ** 2 for i, j in zip(a, b, strict=True))
    return 1 - 6 * d2 / (n * (n * n - 1))


def dose_trend(rows, protocol):
    """The trend of a weight-swap protocol's harm over its rate: per seed, the least-squares slope of the final
    accuracy lost against the baseline (points) over log10 p (the arms `protocol@pP`), then the mean slope over the
    seeds with its 95% t-interval (points lost per tenfold rate) and the two-sided p of a t-test of slope 0.
    Returns (slope, lo, hi, p, n seeds, rates) or None with fewer than two rates."""
    pts = {}
    for r in rows:
        m = re.fullmatch(re.escape(protocol) + r"@p([0-9.e-]+)", r["arm"])
        if m:
            for seed, d in r.get("delta_acc_by_seed", {}).items():
                pts.setdefault(seed, []).append((math.log10(float(m.group(1))), -100 * d))
    slopes = []
    for xy in pts.values():
        if len(xy) < 2:
            continue
        mx = sum(x for x, _ in xy) / len(xy)
        my = sum(y for _, y in xy) / len(xy)
        sxx = sum((x - mx) ** 2 for x, _ in xy)
        slopes.append(sum((x - mx) * (y - my) for x, y in xy) / sxx)
    if not slopes:
        return None
    est, lo, hi = stats.t_interval(slopes)
    rates = len(next(iter(pts.values())))
    return est, lo, hi, stats.t_test(slopes), len(slopes), rates


def dose_verdict(rows):
    """weight-dose: per protocol, the accuracy lost at the lowest and highest rate, and the trend test."""
    parts = []
    for w in dict.fromkeys(r["arm"].split("@")[0] for r in rows if "@p" in r["arm"]):
        t = dose_trend(rows, w)
        arms = sorted((r for r in rows if r["arm"].startswith(w + "@p")), key=lambda r: float(r["arm"].split("@p")[1]))
        ends = ", ".join(
            f"p {r['arm'].split('@p')[1]}: {stats.fmt_mean(r['delta_acc'], r['delta_acc_ci'], 100, sign=True)} pts"
            for r in (arms[0], arms[-1])
        )
        if t is None or math.isnan(t[1]):
            parts.append(f"{w}: {ends}; no trend test (fewer than {stats.MIN_SEEDS} seeds)")
            continue
        est, lo, hi, p, n, k = t
        parts.append(
            f"{w}: {ends}; trend {est:+.1f} points lost per tenfold rate [95% t-interval {lo:+.1f}, {hi:+.1f}], "
            f"p {p:.2g} (per-seed slopes over {k} rates, n = {n} seeds)"
        )
    return "Accuracy lost against the rate of weight swaps: " + "; ".join(parts)
