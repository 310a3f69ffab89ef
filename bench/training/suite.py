"""bench.study's suite: the scales it runs at and its eight experiments on the poster's two claims (feature swaps
speed training up, up to 2x; weight swaps slow learning in step with their intensity), declared as Experiments."""

from __future__ import annotations

from dataclasses import dataclass

from .experiment import BASE_BATCH, GPU_LR, Experiment, default_lr, scaled_lr

POSTER = ["none", "1SA", "1PA", "ESA", "ASA", "EPA"]
WEIGHT = ["rows", "cols", "in-row", "in-col", "mixed", "bias", "inter-layer"]


@dataclass
class Scale:
    """A scale of the study: its data and subset sizes, seeds, epochs and trainer (fast_seeds: the fast-baseline's)."""

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

    def defaults(self, device) -> dict:
        """The RunConfig fields every run shares at this scale (experiments override them), with the trainer's
        learning rate at the base batch size whatever the batch."""
        return dict(
            trainer=self.trainer,
            device=device,
            batch_size=self.batch,
            epochs=self.epochs,
            width=self.width,
            lr=default_lr(self.trainer, BASE_BATCH),
        )


SCALES = {
    "quick": Scale(
        "quick", "builtin", 1500, 500, 2, 1.0, batch=32, width=8, fast_seeds=2, weight_protocols=("rows", "mixed")
    ),
    # cpu: 3 hours on 2 cores. The intensity sweep covers rows (the poster's), cols and mixed there; all 7 at gpu scale.
    "cpu": Scale("cpu", "auto", 10000, 2000, 3, 4.0, weight_protocols=("rows", "cols", "mixed")),
    "gpu": Scale("gpu", "auto", None, None, 5, 10.0, trainer="gpu", batch=1024, fast_seeds=25),
}


def _metropolis_grid(sc: Scale):
    """(temperature, proposal probability, max_gap): the full 3x2x2 grid at gpu scale; one factor at a time
    around (T=0.03, p=1, no gap) at cpu scale (its 3 hours), two points at quick scale."""
    if sc.name == "gpu":
        return [(t, p, g) for t in (0.003, 0.03, 0.3) for p in (0.25, 1.0) for g in (None, 0.01)]
    if sc.name == "quick":
        return [(0.03, 1.0, None), (0.03, 0.25, 0.01)]
    return [(0.003, 1.0, None), (0.03, 1.0, None), (0.3, 1.0, None), (0.03, 0.25, None), (0.03, 1.0, 0.01)]


def experiments(sc: Scale, quick: bool) -> list:
    """The eight experiments at a scale (quick: fewer batch sizes and intensities)."""
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
            groups=[(f"batch {b}", {"batch_size": b, "lr": scaled_lr(b)}) for b in bs_list],
        ),
        Experiment(
            "fast-baseline",
            "Inside a strong, fast trainer (large batch, label smoothing, flips; the GPU "
            "speed-run trainer at gpu scale), does any protocol cut the time to target?",
            [(p, {"protocol": p}) for p in POSTER],
            sc.fast_seeds,
            base={
                "batch_size": 1024 if sc.trainer == "gpu" else 256,
                "lr": GPU_LR if sc.trainer == "gpu" else 0.2,
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
