"""The experiment suite on the poster's two claims: feature swaps speed training up (up to 2x); weight swaps slow
learning in step with their intensity.

    python -m bench.study --scale {quick,cpu,gpu} [--data ...] [--only NAME ...] --out DIR

Each experiment is a declarative spec (arms, seeds, data, budget, metric) in EXPERIMENTS. Every (experiment, arm,
seed) run is saved as it finishes under DIR/<experiment>/runs/; a rerun skips finished runs. DIR/REPORT.md has a
table and a one-line verdict per experiment, beside plots and the raw per-run JSON.
Scales: quick (built-in data, minutes), cpu (CIFAR-10 subsets on the CPU trainer, about two hours on 2 cores),
gpu (the speed-run trainer on full CIFAR-10).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import time
from dataclasses import dataclass, field

from . import datasets, runner
from .study_report import make_plots, provenance, report, verdict
from .timing import machine_info
from .trainer import RunConfig

POSTER = ["none", "1SA", "1PA", "ESA", "ASA", "EPA"]
WEIGHT = ["rows", "cols", "in-row", "in-col", "mixed", "bias", "inter-layer"]


@dataclass
class Scale:
    name: str
    data: str
    train: int | None  # training images (None: all)
    test: int | None
    seeds: int
    epochs: float
    trainer: str = "cpu"
    batch: int = 64
    width: int = 16
    fast_seeds: int = 5
    weight_protocols: tuple = tuple(WEIGHT)  # the weight-intensity sweep's protocols


SCALES = {
    "quick": Scale(
        "quick", "builtin", 1500, 500, 2, 1.0, batch=32, width=8, fast_seeds=2, weight_protocols=("rows", "mixed")
    ),
    # cpu: 3 hours on 2 cores. The intensity sweep covers rows (the poster's), cols and mixed there; all 7 at gpu scale.
    "cpu": Scale("cpu", "auto", 10000, 2000, 3, 4.0, weight_protocols=("rows", "cols", "mixed")),
    "gpu": Scale("gpu", "auto", None, None, 5, 10.0, trainer="gpu", batch=1024, fast_seeds=25),
}


@dataclass
class Experiment:
    """arms: (label, RunConfig overrides) pairs; group: which runs share a baseline (key, label) -> group name;
    metric: "accuracy" (time to a target test accuracy) or "clean_loss" (to a clean training-loss threshold)."""

    name: str
    question: str
    arms: list
    seeds: int
    base: dict = field(default_factory=dict)  # RunConfig overrides; extra["fraction"]: share of the training set
    metric: str = "accuracy"
    groups: list | None = None  # [(group name, overrides for every arm of the group)]
    target: float | None = None  # fixed target; None: auto from the baseline
    skipped: str = ""  # what this data could not run, and why (said in the report)


def _metropolis_grid(sc: Scale):
    """(temperature, proposal probability, max_gap): the full 3x2x2 grid at gpu scale; one factor at a time
    around (T=0.03, p=1, no gap) at cpu scale (its 3 hours), two points at quick scale."""
    if sc.name == "gpu":
        return [(t, p, g) for t in (0.003, 0.03, 0.3) for p in (0.25, 1.0) for g in (None, 0.01)]
    if sc.name == "quick":
        return [(0.03, 1.0, None), (0.03, 0.25, 0.01)]
    return [(0.003, 1.0, None), (0.03, 1.0, None), (0.3, 1.0, None), (0.03, 0.25, None), (0.03, 1.0, 0.01)]


def experiments(sc: Scale, quick: bool):
    ep = sc.epochs
    bs_list = [8, 32, 128] if not quick else [16, 64]
    intensities = [1, 4, 16, 64] if not quick else [1, 16]
    weights = list(sc.weight_protocols)
    exps = [
        Experiment(
            "replication",
            "Do the poster's feature protocols reach a target accuracy sooner than no swap, at batch sizes 8, 32, 128?",
            [(p, {"protocol": p}) for p in POSTER],
            sc.seeds,
            groups=[(f"batch {b}", {"batch_size": b, "lr": 0.05 * (b / 64) ** 0.5}) for b in bs_list],
        ),
        Experiment(
            "fast-baseline",
            "Inside a strong, fast trainer (large batch, label smoothing, flips; the GPU "
            "speed-run trainer at gpu scale), does any protocol cut the time to target?",
            [(p, {"protocol": p}) for p in POSTER],
            sc.fast_seeds,
            base={
                "batch_size": 1024 if sc.trainer == "gpu" else 256,
                "lr": 0.4 if sc.trainer == "gpu" else 0.2,
                "label_smoothing": 0.2,
                "width": sc.width,
            },
            target=0.94 if sc.trainer == "gpu" else None,
        ),
        Experiment(
            "controls",
            "Matched-strength controls: is any effect specific to swapping, or what any noise "
            "of the same size does (Gaussian, erasing, RandomChannelPermutation), or nothing (sham)?",
            [("none", {})]
            + [
                (f"{p}{'+' + c if c else ''}", {"protocol": p, "control": c})
                for p in ("ESA", "EPA")
                for c in (None, "gauss", "erase", "rcp", "sham")
            ],
            sc.seeds,
        ),
        Experiment(
            "regimes",
            "Where augmentation-like regularisers help late, not early: 10% of the data, no BatchNorm, long training.",
            [(p, {"protocol": p}) for p in ("none", "1SA", "ESA", "EPA")],
            sc.seeds,
            groups=[
                # long runs evaluate less often (each evaluation reads the whole test set)
                ("10% data", {"extra": {"fraction": 0.1}, "epochs": 5 * ep, "evals_per_epoch": 1}),
                ("no BatchNorm", {"model": "cnn-nobn", "lr": 0.02}),
                ("long training", {"epochs": 3 * ep, "evals_per_epoch": 2}),
            ],
        ),
        Experiment(
            "weight-intensity",
            "Do weight swaps slow learning in step with intensity, more than Gaussian "
            "weight noise of the same norm, with and without the optimizer state?",
            [("none", {})]
            + [
                (f"{w}x{k}{tag}", {"weight_protocol": w, "weight_swaps": k, **kw})
                for w in weights
                for k in intensities
                for tag, kw in (("", {}), ("+state", {"weight_state": True}), ("(noise)", {"weight_noise": True}))
            ],
            max(2, sc.seeds - 1),
            base={
                "extra": {"perturbation_every": 10, "fraction": 1.0 if quick else 0.3},
                "epochs": 0.75 * ep,
                "evals_per_epoch": 2,
            },
        ),
        Experiment(
            "symmetry-null",
            "The function-preserving `neuron` permutation: with state=True it must follow "
            "the baseline to float rounding; with state=False, what does losing the momentum cost? "
            "Yardstick: the baseline with every initial weight moved by one ulp (`none+ulp`), float rounding and "
            "nothing else, amplified by the same training.",
            [("none", {}), ("none+ulp", {"init_ulp": True})]
            + [
                (
                    f"neuronx{k}{'+state' if s else ''}",
                    {"weight_protocol": "neuron", "weight_swaps": k, "weight_state": s},
                )
                for k in (1, 16)
                for s in (True, False)
            ],
            sc.seeds,
        ),
        Experiment(
            "metropolis",
            "Swap Monte Carlo proper: Metropolis-accepted weight swaps over temperature, "
            "proposal probability and a max_gap bound, at equal compute (extra forward passes counted).",
            [("none", {})]
            + [
                (
                    f"T{t:g}-p{p:g}{'-gap' if g else ''}",
                    {"weight_protocol": "mixed", "weight_swaps": 4, "temperature": t, "weight_p": p, "max_gap": g},
                )
                for t, p, g in _metropolis_grid(sc)
            ],
            max(2, sc.seeds - 1),
        ),
        Experiment(
            "glassy",
            "An under-parameterised (8 hidden units) network trained long: do Metropolis swaps "
            "reach a clean training-loss threshold sooner?",
            [
                ("none", {}),
                ("mixed", {"weight_protocol": "mixed", "weight_swaps": 2}),
                ("T0.01", {"weight_protocol": "mixed", "weight_swaps": 2, "temperature": 0.01}),
                ("T0.1", {"weight_protocol": "mixed", "weight_swaps": 2, "temperature": 0.1}),
            ],
            sc.seeds,
            base={"model": "mlp-narrow", "width": 8, "epochs": 5 * ep, "lr": 0.05, "evals_per_epoch": 1},
            metric="clean_loss",
        ),
    ]
    return exps


def _configs(exp: Experiment, sc: Scale, device):
    """RunConfigs of an experiment: (group, label, config) triples."""
    out = []
    for gname, gover in exp.groups or [("all", {})]:
        for label, over in exp.arms:
            for seed in range(exp.seeds):
                fields = dict(
                    trainer=sc.trainer,
                    device=device,
                    batch_size=sc.batch,
                    epochs=sc.epochs,
                    seed=seed,
                    width=sc.width,
                    lr=0.4 if sc.trainer == "gpu" else 0.05,
                )
                for part in (exp.base, gover, over):
                    for k, v in part.items():
                        fields[k] = {**fields.get(k, {}), **v} if k == "extra" else v
                out.append((gname, label, RunConfig(**fields)))
    return out


def _clean_target(results, margin=1.05):
    return margin * max(min(r["curves"]["clean_loss"]) for r in results if r["arm"] == "none")


def _steps_to_loss(result, threshold):
    c = result["curves"]
    for s, t, v in zip(c["step"], c["time_s"], c["clean_loss"], strict=True):
        if v <= threshold:
            return s, t
    return None


def run_experiment(exp, sc, data, device, out_dir, log=print):
    triples = _configs(exp, sc, device)
    datas = {}
    results = [None] * len(triples)
    for i in runner.run_order([g for g, _, _ in triples], [c.seed for _, _, c in triples]):
        gname, label, cfg = triples[i]
        frac = cfg.extra.get("fraction", 1.0)
        d = datas.get(frac)
        if d is None:
            d = datas[frac] = data if frac == 1.0 else data.subset(max(100, int(len(data.train_y) * frac)))
        t0 = time.time()
        res = runner.run_all(d, [cfg], os.path.join(out_dir, exp.name), progress=False, log=lambda *_: None)[0]
        if time.time() - t0 > 0.5:  # trained now, not loaded
            log(
                f"  {exp.name} | {gname} | {label} | seed {cfg.seed}: final acc {100 * res['final_acc']:.1f}%, "
                f"{res['train_seconds']:.1f} s",
                flush=True,
            )
        res["arm"], res["group"] = label, gname
        results[i] = res
    if exp.metric == "clean_loss":
        threshold = _clean_target(results)
        for r in results:  # express the metric through the accuracy machinery: a curve that crosses at the threshold
            hit = _steps_to_loss(r, threshold)
            r["curves"] = dict(r["curves"], test_acc=[0.0] * len(r["curves"]["step"]))
            if hit:
                i = r["curves"]["step"].index(hit[0])
                r["curves"]["test_acc"] = [0.0] * i + [1.0] * (len(r["curves"]["step"]) - i)
        target, target_desc = 1.0, f"clean training loss <= {threshold:.3f}"
        rows = runner.summarise(results, target, group=lambda r: r["group"])
    else:  # each group (batch size, regime) its own target, from its own baseline
        rows, descs = [], []
        for g in dict.fromkeys(r["group"] for r in results):
            in_g = [r for r in results if r["group"] == g]
            target = exp.target or runner.auto_target([r for r in in_g if r["arm"] == "none"])
            rows += runner.summarise(in_g, target, group=lambda r: r["group"])
            descs.append(f"{100 * target:.1f}%" + (f" ({g})" if g != "all" else ""))
        target_desc = "test accuracy >= " + ", ".join(descs)
    for row in rows:
        runs = [r for r in results if r["arm"] == row["arm"] and r["group"] == row["group"]]
        row["extra_forward_passes"] = sum(r["extra_forward_passes"] for r in runs) / len(runs)
        pert = [r["perturbation"] for r in runs if r.get("perturbation") is not None]
        row["perturbation"] = sum(pert) / len(pert) if pert else None
        acc = [
            r["weight_stats"]["accepted"] / max(r["weight_stats"]["proposals"], 1)
            for r in runs
            if r.get("weight_stats") and r["config"]["temperature"]
        ]
        row["acceptance"] = sum(acc) / len(acc) if acc else None
        base = {r["config"]["seed"]: r for r in results if r["arm"] == "none" and r["group"] == row["group"]}
        devs = [
            max(
                abs(a - b)
                for a, b in zip(
                    r["curves"]["clean_loss"], base[r["config"]["seed"]]["curves"]["clean_loss"], strict=False
                )
            )
            for r in runs
            if r["config"]["seed"] in base
        ]
        row["max_dev"] = max(devs) if devs else float("nan")
    return results, rows, target_desc


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--scale", choices=list(SCALES), default="quick")
    ap.add_argument("--data", default=None)
    ap.add_argument("--only", nargs="+", default=None, metavar="NAME")
    ap.add_argument("--out", required=True)
    ap.add_argument("--device", default=None)
    ap.add_argument("--note", default="", help="a paragraph for the report's head (how the runs were made)")
    args = ap.parse_args(argv)
    sc = SCALES[args.scale]
    import torch

    device = args.device or ("cuda" if sc.trainer == "gpu" and torch.cuda.is_available() else "cpu")
    data = datasets.load(args.data or sc.data)
    if sc.train or sc.test:
        data = data.subset(sc.train, sc.test)
    exps = experiments(sc, args.scale == "quick")
    if args.only:
        unknown = set(args.only) - {e.name for e in exps}
        if unknown:
            raise SystemExit(f"--only: unknown experiments {sorted(unknown)}; known: {[e.name for e in exps]}")
        exps = [e for e in exps if e.name in args.only]
    if data.channels == 1:
        for e in exps:
            skipped = [label for label, over in e.arms if over.get("protocol", "none")[1:2] == "S"]
            if skipped:
                e.skipped = f"1-channel data: the channel-swap arms {', '.join(skipped)} were skipped"
                print(f"notice: {e.name}: {e.skipped}")
            e.arms = [(label, over) for label, over in e.arms if over.get("protocol", "none")[1:2] != "S"]
    os.makedirs(args.out, exist_ok=True)
    started, sections, machine = time.time(), [], machine_info()
    for exp in exps:
        t0 = time.time()
        results, rows, target_desc = run_experiment(exp, sc, data, device, args.out)
        paths = make_plots(exp, results, rows, args.out)
        sections.append((exp, rows, target_desc, paths, provenance(results)))
        with open(os.path.join(args.out, f"{exp.name}.json"), "w") as f:
            json.dump(
                {
                    "experiment": dataclasses.asdict(exp) | {"arms": [a for a, _ in exp.arms]},
                    "rows": rows,
                    "target": target_desc,
                },
                f,
                indent=1,
                default=str,
            )
        print(f"[{exp.name}] {len(results)} runs, {time.time() - t0:.0f} s: {verdict(exp, rows)}")
        report(args.out, sc, data, sections, started, machine, args.note)
    print(f"wrote {os.path.join(args.out, 'REPORT.md')}")
    return sections


if __name__ == "__main__":
    main()
