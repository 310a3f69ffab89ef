"""Figures of a benchmark run (matplotlib, Agg): curves beside the baseline, time-to-target bars, sweeps."""

from __future__ import annotations

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402


def _mean_curve(runs, key):
    n = min(len(r["curves"][key]) for r in runs)
    steps = np.asarray(runs[0]["curves"]["step"][:n])
    vals = np.asarray([r["curves"][key][:n] for r in runs], dtype=float)
    return steps, vals.mean(0), vals.std(0)


def curves(by_arm: dict, path: str, title: str):
    """Training loss (swapped batches), clean training loss and test accuracy against the step, one line per arm
    (mean over seeds, band: one standard deviation): the poster's figure with the baseline beside each protocol."""
    fig, axes = plt.subplots(1, 3, figsize=(16, 4.5))
    for arm, runs in by_arm.items():
        style = dict(lw=2.5, color="black") if arm == "none" else dict(lw=1.4)
        for ax, key in zip(axes, ("train_loss", "clean_loss", "test_acc"), strict=True):
            steps, m, s = _mean_curve(runs, key)
            if key == "train_loss":
                steps, m, s = steps[1:], m[1:], s[1:]
            line = ax.plot(steps, m, label=f"{arm} (n={len(runs)})", **style)[0]
            ax.fill_between(steps, m - s, m + s, color=line.get_color(), alpha=0.12)
    for ax, label in zip(
        axes, ("training loss (swapped batches)", "clean training loss", "test accuracy"), strict=True
    ):
        ax.set_xlabel("iteration")
        ax.set_ylabel(label)
        ax.grid(alpha=0.3)
    axes[0].set_yscale("log")
    axes[1].set_yscale("log")
    axes[2].legend(fontsize=8)
    fig.suptitle(title)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def ratio_bars(rows, path: str, title: str, key="time_ratio"):
    """Steps- or time-to-target ratio (key) to the baseline per arm with its 95% interval, labelled with the
    interval's method and n (1 = no change; < 1 faster)."""
    rows = [r for r in rows if r[key]["pairs"]]
    fig, ax = plt.subplots(figsize=(max(5, 0.7 * len(rows) + 2), 4))
    x = np.arange(len(rows))
    est = np.array([r[key]["ratio"] for r in rows])
    lo = np.array([r[key]["lo"] for r in rows])
    hi = np.array([r[key]["hi"] for r in rows])
    colors = ["tab:red" if r[key]["lower_bound"] else "tab:blue" for r in rows]
    ax.bar(x, est, color=colors, alpha=0.7)
    ax.errorbar(x, est, yerr=[est - lo, hi - est], fmt="none", ecolor="black", capsize=4)
    ax.axhline(1.0, color="black", lw=1)
    ax.set_xticks(x, [f"{r['arm']} (n={r[key]['pairs']})" for r in rows], rotation=45, ha="right", fontsize=8)
    what = "steps" if key == "steps_ratio" else "time"
    method = rows[0][key].get("method", "bootstrap") if rows else ""
    ax.set_ylabel(f"{what} to target / baseline\n(95% CI, {method})", fontsize=8)
    ax.set_title(title + "  (red: some runs censored, ratio is a lower bound)", fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def sweep(
    series: dict, path: str, title: str, xlabel="swaps per step", ylabel="steps to target / baseline", reference=1.0
):
    """Slowdown against intensity: series name -> list of (x, ratio, lo, hi)."""
    fig, ax = plt.subplots(figsize=(6, 4.2))
    for name, pts in series.items():
        pts = sorted(pts)
        xs = np.array([p[0] for p in pts], dtype=float)
        ys = np.array([p[1] for p in pts])
        ax.errorbar(
            xs,
            ys,
            yerr=[ys - np.array([p[2] for p in pts]), np.array([p[3] for p in pts]) - ys],
            marker="o",
            capsize=3,
            label=name,
        )
    ax.axhline(reference, color="black", lw=1)
    xs_all = [p[0] for pts in series.values() for p in pts]
    if xs_all and min(xs_all) > 0:
        ax.set_xscale("log")  # perturbations: small positive numbers over decades
    else:
        ax.set_xscale("symlog", linthresh=1)  # swap counts from 0
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    ax.set_title(title, fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
