"""bench.study's one-line verdicts: each experiment's question answered from the intervals of its rows."""

from __future__ import annotations

import math
import re

from ..common import stats


def verdict(exp, rows) -> str:
    """One line: the question answered from the intervals (ratios < 1 are faster than the baseline)."""
    arms = [r for r in rows if r["arm"] != "none" and r["time_ratio"]["pairs"]]
    if not arms:
        return "no comparison possible (no baseline reached the target)"
    if exp.name == "symmetry-null":
        return _symmetry_verdict(rows)
    if exp.name == "weight-intensity":
        return _intensity_verdict(rows)
    faster, slower = _significant(arms, "time_ratio")
    steps_faster, steps_slower = _significant(arms, "steps_ratio")
    best = min(arms, key=lambda r: r["time_ratio"]["ratio"])
    head = (
        f"{len(faster)} of {len(arms)} arms significantly faster than the baseline, {len(slower)} slower; "
        f"best {best['arm']} ({best['group']}) at {stats.fmt_ratio(best['time_ratio'])}x the baseline's time "
        f"(steps {stats.fmt_ratio(best['steps_ratio'])}x). In steps to target, which machine load does not "
        f"touch: {len(steps_faster)} faster, {len(steps_slower)} slower"
    )
    if exp.name in ("replication", "fast-baseline", "regimes"):
        two_x = any(r["time_ratio"]["hi"] <= 0.5 for r in faster)
        head += ". The 2x speed-up claim " + ("holds for some arm" if two_x else "is not reproduced")
    return head


def _significant(arms, key):
    """Arms whose interval of ratio `key` lies below 1 (faster), and those above 1 or censored (slower)."""
    faster = [r for r in arms if r[key]["hi"] < 1 and not r[key]["lower_bound"]]
    slower = [r for r in arms if r[key]["lo"] > 1 or r[key]["lower_bound"]]
    return faster, slower


# An arm whose clean loss leaves its seed's baseline by no more than this many times the one-ulp yardstick's
# deviation follows the baseline to float rounding.
_ROUNDING_FACTOR = 1.5


def _symmetry_verdict(rows):
    """Each arm's largest clean-loss deviation from its seed's baseline, judged against the one-ulp yardstick
    (`none+ulp`): training amplifies any rounding difference to the same chaotic size, so the yardstick, not
    zero, is the null."""
    dev = [r for r in rows if r["arm"] not in ("none", "none+ulp")]
    parts = [
        f"{r['arm']}: max |d clean loss| {r.get('max_dev', float('nan')):.2e}, time {stats.fmt_ratio(r['time_ratio'])}"
        for r in dev
    ]
    ulp = next((r.get("max_dev", float("nan")) for r in rows if r["arm"] == "none+ulp"), None)
    if ulp is None or math.isnan(ulp):
        return "; ".join(parts)
    bound = _ROUNDING_FACTOR * max(ulp, 1e-12)
    within = [r["arm"] for r in dev if r.get("max_dev", float("inf")) <= bound]
    return (
        f"one ulp on every initial weight moves the baseline's clean loss by up to {ulp:.2e}; "
        f"no more than {_ROUNDING_FACTOR:g}x that, i.e. float rounding: {', '.join(within) or 'no arm'}. "
        + "; ".join(parts)
    )


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
