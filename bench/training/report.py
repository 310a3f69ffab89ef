"""What an experiment's summary becomes on disk, for both commands: the figures (per group the curves beside the
baseline and the ratio bars, then the weight sweeps), the markdown table, and the files of its layout: bench.train's
summary.{md,csv,json} and curves.csv, or one section of bench.study's <experiment>.json and REPORT.md."""

from __future__ import annotations

import csv
import dataclasses
import json
import math
import os
import time

from ..common import plots, stats
from .verdicts import _intensity_arm, _intensity_kind, verdict

SUMMARY, STUDY = "summary", "study"  # the two layouts: bench.train's output folder, one experiment of a study

_SUMMARY_CSV = (
    "batch arm seeds reached steps_to_target steps_ratio steps_lo steps_hi steps_p steps_p_holm time_ratio time_lo "
    "time_hi time_p time_p_holm wall_ratio censored final_acc final_acc_ci clean_loss steps_verdict steps_tost_p "
    "steps_mde swap_share"
).split()
_CURVES_CSV = "batch arm seed step epoch time_s train_loss clean_loss test_acc".split()


def write(exp, results, summary, out_dir, *, layout=STUDY, meta=None, figures=True) -> list:
    """Writes the experiment's figures and files into out_dir; returns the figures' paths.
    layout SUMMARY (bench.train): summary.json (with meta), summary.csv, curves.csv and summary.md; STUDY: the
    experiment's <name>.json (its spec, rows and target); the study's REPORT.md comes from report() after each.
    figures=False: no figures drawn (a report rewritten as the runs finish)."""
    paths = draw(exp, results, summary.rows, out_dir, layout=layout) if figures else []
    if layout == SUMMARY:
        _summary_files(out_dir, exp, results, summary, meta)
    else:
        with open(os.path.join(out_dir, f"{exp.name}.json"), "w") as f:
            spec = dataclasses.asdict(exp) | {"arms": [a for a, _ in exp.arms]}
            json.dump({"experiment": spec, "rows": summary.rows, "target": summary.desc}, f, indent=1, default=str)
    return paths


def _p(q, family="experiment") -> str:
    """'0.031 (0.19)': a ratio's raw p-value and, in brackets, its Holm-adjusted one; '-' where untested."""
    if math.isnan(q.get("p", float("nan"))):
        return "-"
    adj = q.get("holm", {}).get(family, float("nan"))
    return f"{q['p']:.2g} ({adj:.2g})"


def legend() -> str:
    """What a table's ratio columns mean: the interval's method, n, the verdict's rule and margin, the detectable
    effect, and time's one definition."""
    m = stats.MARGIN
    return (
        f"Ratios: arm / baseline, geometric mean over the n seed pairs with its 95% interval ({stats.METHOD}; "
        f"none from fewer than {stats.MIN_SEEDS} pairs); `>=`: a lower bound (runs that never reached the target "
        f"count at their budget). Verdict (steps, declared margin {100 * m:.0f}%): *equivalent* when TOST at 5% "
        f"puts the ratio inside [{1 - m:.2f}, {1 + m:.2f}], else *faster* / *slower* when the 95% interval excludes "
        f"1, else *inconclusive*. Detectable: the smallest speed-up (ratio) a two-sided paired t-test at 5% finds "
        f"with {100 * stats.POWER:.0f}% power at these seeds and this spread. Time: steps to target x the median "
        "step (batch building with the swap, control, model step, weight swap, timed apart), compared only between "
        "runs trained in one lockstep; n/a for runs made one after another. Swap share: the swap's part of the "
        "arm's median step (lockstep runs)."
    )


def table(rows, group_name="batch") -> str:
    """The markdown table of an experiment's rows, with a line under it naming its method (and why n/a)."""
    head = (
        f"| {group_name} | arm | n | reached | steps to target | steps ratio [95% CI] | verdict | detectable "
        f"| time ratio [95% CI] | swap share | p steps (Holm) | final acc | vs baseline (pts) | clean loss | ms/step |"
    )
    lines = [head, "|" + "|".join(["---"] * 15) + "|"]
    for r in rows:
        steps = f"{r['steps_to_target']:.0f}" if r["reached"] else "-"
        sr, base = r["steps_ratio"], r["arm"] == "none"
        mde = sr.get("mde", float("nan"))
        share = r.get("swap_share")
        lines.append(
            f"| {r['group']} | {r['arm']} | {sr['pairs']} | {r['reached']}/{r['seeds']} | {steps} "
            f"| {stats.fmt_ratio(sr)} | {'-' if base else sr.get('verdict', '-')} "
            f"| {'-' if base or math.isnan(mde) else f'{mde:.2f}'} "
            f"| {stats.fmt_ratio(r['time_ratio']) if r['time_ratio']['pairs'] else 'n/a'} "
            f"| {'-' if share is None or base else f'{100 * share:+.1f}%'} "
            f"| {_p(sr) if not base else '-'} "
            f"| {stats.fmt_mean(r['final_acc'], r['final_acc_ci'], 100)} "
            f"| {stats.fmt_mean(r['delta_acc'], r['delta_acc_ci'], 100, sign=True)} "
            f"| {r['final_clean_loss']:.3f} | {r['seconds_per_step'] * 1e3:.1f} |"
        )
    lines += ["", f"CI: 95% {stats.METHOD}; n: seed pairs. " + (stats.NO_INTERVAL + "." if any(
        r["seeds"] < stats.MIN_SEEDS for r in rows) else "")]
    return "\n".join(lines)


def _by_arm(runs):
    out = {}
    for r in runs:
        out.setdefault(r["arm"], []).append(r)
    return out


def draw(exp, results, rows, out_dir, *, layout=STUDY) -> list:
    """Per group, the curves beside the baseline and the bars of the time-to-target ratios; then the sweeps.
    STUDY: <name>-<group>-curves.png (every arm, if no more than 12) and -ratios.png; for weight-intensity, the
    accuracy lost against the injected perturbation. SUMMARY (groups are batch sizes): curves_bs<batch>.png of the
    feature arms, time_to_target_bs<batch>.png and, with a weight sweep, weight_sweep_bs<batch>.png."""
    paths = []
    for g in dict.fromkeys(r["group"] for r in results):
        in_g = [r for r in results if r["group"] == g]
        ratios = [r for r in rows if r["group"] == g and r["arm"] != "none"]
        if layout == SUMMARY:
            feature = [r for r in in_g if not r["config"]["weight_protocol"]]
            paths.append(os.path.join(out_dir, f"curves_bs{g}.png"))
            plots.curves(_by_arm(feature), paths[-1], f"feature swaps, batch {g}, {feature[0]['data']}")
            paths.append(os.path.join(out_dir, f"time_to_target_bs{g}.png"))
            plots.ratio_bars(ratios, paths[-1], f"batch {g}", key="steps_ratio")
            paths += _weight_sweep(results, rows, g, out_dir)
            continue
        stem = os.path.join(out_dir, f"{exp.name}-{g.replace(' ', '_').replace('%', 'pc')}")
        if len(_by_arm(in_g)) <= 12:
            paths.append(stem + "-curves.png")
            plots.curves(_by_arm(in_g), paths[-1], f"{exp.name}: {g}")
        paths.append(stem + "-ratios.png")
        plots.ratio_bars(ratios, paths[-1], f"{exp.name}: {g}", key="steps_ratio")
    if layout == STUDY and exp.name == "weight-intensity":
        paths.append(_perturbation_sweep(rows, out_dir))
    return paths


def _weight_sweep(results, rows, g, out_dir):
    """bench.train's weight sweep of one batch size: steps ratio against swaps per step, with and without the
    optimizer state, and the Metropolis arm. Returns the path drawn, if any."""
    series, protocol = {}, None
    for r in rows:
        if r["group"] != g or not r["arm"].startswith("none+w:"):
            continue
        cfg = next(x["config"] for x in results if x["arm"] == r["arm"])
        protocol = cfg["weight_protocol"]
        name = ("metropolis" if cfg["temperature"] else "") + (" state" if cfg["weight_state"] else " no state")
        sr = r["steps_ratio"]
        if sr["pairs"]:
            series.setdefault(name.strip(), []).append((cfg["weight_swaps"], sr["ratio"], sr["lo"], sr["hi"]))
    if not series:
        return []
    path = os.path.join(out_dir, f"weight_sweep_bs{g}.png")
    plots.sweep(series, path, f"{protocol} swaps: slowdown against intensity (batch {g})")
    return [path]


def _perturbation_sweep(rows, out_dir):
    """The weight-intensity experiment: final accuracy lost against the injected perturbation, per protocol/kind."""
    series = {}
    for r in rows:
        if r["arm"] != "none" and r["perturbation"] and math.isfinite(r["perturbation"]):
            name = f"{_intensity_arm(r['arm'])[0]} {_intensity_kind(r['arm'])}"
            lost, half = -100 * r["delta_acc"], 100 * r["delta_acc_ci"]
            series.setdefault(name, []).append((r["perturbation"], lost, lost - half, lost + half))
    path = os.path.join(out_dir, "weight-intensity-perturbation.png")
    plots.sweep(
        series,
        path,
        "accuracy lost against injected perturbation",
        xlabel="||dw||^2 / ||w||^2 per step",
        ylabel="final accuracy lost vs baseline (points)",
        reference=0.0,
    )
    return path


def _summary_files(out, exp, results, summary, meta):
    rows, target = summary.rows, summary.target
    with open(os.path.join(out, "summary.json"), "w") as f:
        json.dump({"meta": meta, "target": target, "rows": rows}, f, indent=1)
    with open(os.path.join(out, "summary.csv"), "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(_SUMMARY_CSV)
        for r in rows:
            s, t = r["steps_ratio"], r["time_ratio"]
            holm = lambda q: q.get("holm", {}).get("experiment", float("nan"))  # noqa: E731
            w.writerow(
                [r["group"], r["arm"], r["seeds"], r["reached"], r["steps_to_target"]]
                + [s["ratio"], s["lo"], s["hi"], s["p"], holm(s), t["ratio"], t["lo"], t["hi"], t["p"], holm(t)]
                + [r["wall_ratio"]["ratio"], t["censored_arm"], r["final_acc"], r["final_acc_ci"]]
                + [r["final_clean_loss"], s.get("verdict"), s.get("tost_p"), s.get("mde"), r.get("swap_share")]
            )
    with open(os.path.join(out, "curves.csv"), "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(_CURVES_CSV)
        for res in results:
            c, cfg = res["curves"], res["config"]
            for i in range(len(c["step"])):
                w.writerow(
                    [cfg["batch_size"], res["arm"], cfg["seed"], c["step"][i], c["epoch"][i], c["time_s"][i]]
                    + [c["train_loss"][i], c["clean_loss"][i], c["test_acc"][i]]
                )
    with open(os.path.join(out, "summary.md"), "w") as f:
        f.write(
            f"target test accuracy {100 * target:.1f}% ({'given' if exp.target else 'auto'}); "
            f"data {meta['data']}{' (' + meta['source'] + ')' if meta.get('source') else ''}; trainer "
            f"{meta['trainer']}; {exp.seeds} seeds\n\n{legend()}\n\n{table(rows)}\n"
        )


def provenance(results) -> str:
    """Where an experiment's runs come from (a resumed or merged study mixes invocations): commits, run count and
    the summed training time."""
    commits = sorted({r.get("commit", "?") for r in results})
    minutes = sum(r["train_seconds"] for r in results) / 60
    return f"{len(results)} runs made at commit {', '.join(commits)}; {minutes:.0f} min of training in all"


def report(out, sc, data, sections, started, machine, note=""):
    """Writes the study's REPORT.md: a head (data, trainer, commit, machine, how ratios and tests are read), the
    multiple-comparison count per claim, then per experiment of sections (exp, rows, target in words, figure paths,
    provenance) its question, verdict, target, table, details table and figures: the exploratory experiments
    first, the confirmatory ones (declared before their runs, fresh seeds) apart after them."""
    lines = [
        f"# bench.study report: scale {sc.name}",
        "",
        f"Data {data.name} ({len(data.train_y)} train / {len(data.test_y)} test images"
        + (f"; {data.source}" if getattr(data, "source", "") else "")
        + f"); trainer {sc.trainer}; "
        f"commit {machine['commit']} (at the start); machine {machine['cpu']}, torch {machine['torch']}; "
        f"{(time.time() - started) / 60:.0f} min for the runs made in this invocation.",
        "",
        *([note, ""] if note else []),
        legend() + " The raw wall-clock ratio is kept in each experiment's JSON (`wall_ratio`). "
        "p: paired t-test on the log ratios (two-sided unless declared), in brackets Holm-adjusted over the "
        "experiment's comparisons.",
        "",
    ]
    from .verdicts import claim_families

    families = claim_families(sections)
    if families:
        lines += [
            "## Multiple comparisons",
            "",
            "Each claim is one family: every swap arm compared with its baseline in the exploratory experiments "
            "of that claim, at a family-wise 5% (Holm). With no effect anywhere, chance alone puts 2.5% of "
            f"two-sided 95% {stats.METHOD} intervals on each side of 1.",
            "",
            *families,
            "",
        ]
    exploratory = [s for s in sections if not getattr(s[0], "declared", None)]
    confirmatory = [s for s in sections if getattr(s[0], "declared", None)]
    for title, part in (("Exploratory experiments", exploratory), ("Confirmatory experiments", confirmatory)):
        if not part:
            continue
        if confirmatory:
            lines += [f"# {title}", ""]
        for exp, rows, target_desc, paths, made in part:
            lines += _section(exp, rows, target_desc, paths, made)
    with open(os.path.join(out, "REPORT.md"), "w") as f:
        f.write("\n".join(lines))


def _section(exp, rows, target_desc, paths, made) -> list:
    lines = [f"## {exp.name}", "", f"**Question.** {exp.question}", ""]
    if getattr(exp, "declared", None):
        comparisons = sum(r["arm"] != "none" for r in rows)
        lines += [f"**Declared before the runs.** {exp.declared.text(comparisons, _seeds(exp))}", ""]
    lines += [
        f"**Verdict.** {verdict(exp, rows)}.",
        "",
        f"Target: {target_desc}; {exp.seeds} seeds per arm; {made}."
        + (f" Note: {exp.skipped}." if exp.skipped else ""),
        "",
        table(rows, "group"),
    ]
    extra = [r for r in rows if r["perturbation"] or r["acceptance"] is not None or r["extra_forward_passes"]]
    if extra:
        lines += [
            "",
            "| group | arm | injected ||dw||^2/||w||^2 per step | acceptance | extra forwards/run |",
            "|---|---|---|---|---|",
        ]
        for r in extra:
            pert = f"{r['perturbation']:.2e}" if r["perturbation"] else "-"
            acc = f"{100 * r['acceptance']:.0f}%" if r["acceptance"] is not None else "-"
            lines.append(f"| {r['group']} | {r['arm']} | {pert} | {acc} | {r['extra_forward_passes']:.0f} |")
    return lines + [""] + [f"![{os.path.basename(p)}]({os.path.basename(p)})" for p in paths] + [""]


def _seeds(exp) -> str:
    seeds = exp.seed_list()
    return f"{seeds[0]}..{seeds[-1]}" if len(seeds) > 2 else ", ".join(map(str, seeds))
