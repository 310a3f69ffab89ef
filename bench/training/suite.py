"""bench.study's suite: the scales it runs at and its eight experiments on the poster's two claims (feature swaps
speed training up, up to 2x; weight swaps slow learning in step with their intensity), declared as Experiments."""

from __future__ import annotations

import json
import os
from dataclasses import dataclass

from .experiment import BASE_BATCH, GPU_LR, Declared, Experiment, default_lr, scaled_lr

POSTER = ["none", "1SA", "1PA", "ESA", "ASA", "EPA"]
GPU_SHORT = ["none", "1SA", "1PA", "ESA"]
CONFIRM_SEED0 = 100  # the confirmatory runs' fresh seeds: 100, 101, ... (the exploratory ones are 0, 1, 2)
# Plain SGD's learning rate at the base batch, as the exploratory poster-regime ran it: momentum 0.9 multiplies the
# step by about 10, so plain SGD needs a larger rate; 0.2 was chosen by hand from a one-seed baseline pilot whose
# command and runs were not saved (so nothing rests on it): the decisive experiment (scale "poster") chooses its
# rate from a saved grid instead, by a rule declared here (POSTER_LR_GRID, choose_lr).
PLAIN_SGD_LR = 0.2
POSTER_LR_GRID = (0.05, 0.1, 0.2, 0.4)  # plain SGD's rate at batch 64, scaled by sqrt(batch / 64)
POSTER_BATCHES = (32, 128)
GRID_SEED0, DECISIVE_SEED0 = 200, 300  # the grid's seeds and the comparison's, apart from every other experiment's
DOSE_P = (0.01, 0.03, 0.1, 0.3, 1.0)  # weight-dose: the probability of one weight swap in a step
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
    minutes: float | None = None  # a deadline: seeds are added one round (every arm) at a time while they fit
    max_seeds: int | None = None  # with minutes: the most seeds to run
    extra: dict | None = None  # RunConfig extra fields every run shares (the dry run's small speed-run net)

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
            **({"extra": dict(self.extra)} if self.extra else {}),
        )


SCALES = {
    "quick": Scale(
        "quick", "builtin", 1500, 500, 3, 1.0, batch=32, width=8, fast_seeds=3, weight_protocols=("rows", "mixed")
    ),
    # cpu: 3 hours on 2 cores. The intensity sweep covers rows (the poster's), cols and mixed there; all 7 at gpu scale.
    "cpu": Scale("cpu", "auto", 10000, 2000, 3, 4.0, weight_protocols=("rows", "cols", "mixed")),
    "gpu": Scale("gpu", "auto", None, None, 5, 10.0, trainer="gpu", batch=1024, fast_seeds=25),
    # gpu-short: the replication on the speed-run trainer in 5 minutes of an H200, seeds added while they fit (a
    # round of the 4 arms at 4 epochs is meant to take well under 40 s there, so at least 8 seeds fit: unmeasured
    # until a GPU is lent; the report says how many fitted).
    "gpu-short": Scale("gpu-short", "auto", None, None, 8, 4.0, trainer="gpu", batch=1024, minutes=5.0, max_seeds=32),
    # poster: the poster's regime, decisively: all 50,000 training images (and the 10,000 test images), 10 seeds
    # for the baseline and 1SA at batch 32 and 128, the rate from a saved grid (poster_experiments). Sized for a
    # GPU or a long CPU session: about 40 runs of 4 epochs over 50,000 images, plus the grid's 16.
    "poster": Scale("poster", "auto", None, None, 10, 4.0),
}

# --dry-run: the same code (the speed-run trainer, the deadline, the report written as it goes) on the CPU in
# seconds: tiny built-in data, a narrow speed-run net, half an epoch.
DRY_RUN = Scale(
    "gpu-short (dry run)",
    "builtin",
    512,
    128,
    3,
    2.0,
    trainer="gpu",
    batch=64,
    minutes=1.0,
    max_seeds=3,
    extra={"speed_widths": [8, 16, 16]},
)


def _metropolis_grid(sc: Scale):
    """(temperature, proposal probability, max_gap): the full 3x2x2 grid at gpu scale; one factor at a time
    around (T=0.03, p=1, no gap) at cpu scale (its 3 hours), two points at quick scale."""
    if sc.name == "gpu":
        return [(t, p, g) for t in (0.003, 0.03, 0.3) for p in (0.25, 1.0) for g in (None, 0.01)]
    if sc.name == "quick":
        return [(0.03, 1.0, None), (0.03, 0.25, 0.01)]
    return [(0.003, 1.0, None), (0.03, 1.0, None), (0.3, 1.0, None), (0.03, 0.25, None), (0.03, 1.0, 0.01)]


def choice_path(folder: str) -> str:
    """Where bench.study declares the decisive experiment's rates: folder/poster-lr-grid/choice.json."""
    return os.path.join(folder, "poster-lr-grid", "choice.json")


def saved_choice(folder: str) -> dict | None:
    """The rates declared in choice_path(folder), {batch size: rate at batch 64}; None before they are written."""
    path = choice_path(folder)
    if not os.path.exists(path):
        return None
    with open(path) as f:
        return {int(b): lr for b, lr in json.load(f)["chosen"].items()}


def choose_lr(grid_rows: list) -> dict:
    """The declared rule that picks the decisive experiment's rate from the grid's baseline runs, per batch size:
    the rate whose runs reach the highest mean best test accuracy over the grid's seeds (ties: the smaller rate).
    grid_rows: the saved grid runs (dicts with config and best_acc). Returns {batch size: rate at batch 64}."""
    by = {}
    for r in grid_rows:
        c = r["config"]
        base_lr = round(c["lr"] / (c["batch_size"] / BASE_BATCH) ** 0.5, 6)
        by.setdefault(c["batch_size"], {}).setdefault(base_lr, []).append(r["best_acc"])
    return {
        b: min(rates, key=lambda lr: (-sum(rates[lr]) / len(rates[lr]), lr)) for b, rates in sorted(by.items())
    }


def poster_experiments(sc: Scale, chosen: dict | None) -> list:
    """The poster's regime, decisively (scale "poster"): first `poster-lr-grid`, the baseline alone at every rate of
    POSTER_LR_GRID and batch size of POSTER_BATCHES on 2 seeds of its own (200, 201); its runs are saved and the
    rate is chosen from them by choose_lr, declared before the comparison; then `poster-decisive`, the baseline and
    1SA (the poster's headline protocol) on sc.seeds fresh seeds (300...) at the chosen rate, judged by the
    equivalence verdict (TOST within the 10% margin) in steps to the target. chosen: choose_lr of the grid's runs,
    or None while the grid is unfinished (then only the grid is returned); {} names both (no rate chosen yet)."""
    regime = {"flip": False, "optimizer": "sgd", "schedule": "constant"}
    grid = Experiment(
        "poster-lr-grid",
        "The poster's regime: which plain-SGD rate suits the baseline at each batch size? (the grid that chooses "
        "poster-decisive's rate; its runs are kept)",
        [(f"lr{lr:g}", {}) for lr in POSTER_LR_GRID],
        2,
        base=regime,
        groups=[
            (f"batch {b} lr {lr:g}", {"batch_size": b, "lr": lr * (b / BASE_BATCH) ** 0.5}, [f"lr{lr:g}"])
            for b in POSTER_BATCHES
            for lr in POSTER_LR_GRID
        ],
        seed0=GRID_SEED0,
    )
    if chosen is None:
        return [grid]
    decisive = Experiment(
        "poster-decisive",
        "In the poster's regime on all 50,000 training images, does 1SA reach the target in fewer steps than the "
        "baseline, or is it equivalent within 10%?",
        [(p, {"protocol": p}) for p in ("none", "1SA")],
        sc.seeds,
        base=regime,
        groups=[
            (f"batch {b}", {"batch_size": b, "lr": chosen.get(b, float("nan")) * (b / BASE_BATCH) ** 0.5})
            for b in POSTER_BATCHES
        ],
        seed0=DECISIVE_SEED0,
        claim="feature",
        declared=Declared(
            "1SA reaches the target accuracy in fewer steps than the baseline (ratio < 1) at batch 32 and 128; "
            f"the rate of each batch size chosen from poster-lr-grid by choose_lr ({chosen}). Equivalence: TOST "
            "within a 10% margin."
        ),
    )
    return [grid, decisive]


def weight_dose(sc: Scale) -> Experiment:
    """Below one weight swap a step: rows, cols and mixed swapped with probability p per step (DOSE_P), at least 5
    seeds; the trend of the accuracy lost over log10 p is tested per protocol (verdicts.dose_trend). At cpu scale
    the weight-intensity setting (3,000 images, 0.75 x the epochs, about 140 steps); at quick scale the built-in data
    for as many steps (3 epochs of 1,500 images at batch 32)."""
    quick = sc.name == "quick"
    return Experiment(
        "weight-dose",
        "Below one swap a step, does the harm of weight swaps grow with their rate? (rows, cols, mixed; one swap "
        "with probability p per step; trend of the accuracy lost over log10 p, per seed)",
        [("none", {})]
        + [
            (f"{w}@p{p:g}", {"weight_protocol": w, "weight_swaps": 1, "weight_p": p})
            for w in ("rows", "cols", "mixed")
            for p in DOSE_P
        ],
        max(5, sc.seeds),
        base={
            "extra": {"perturbation_every": 10, "fraction": 1.0 if quick else 0.3},
            "epochs": 3.0 * sc.epochs if quick else 0.75 * sc.epochs,
            "evals_per_epoch": 2,
        },
        claim="weight",
    )


def experiments(sc: Scale, quick: bool) -> list:
    """The experiments at a scale (quick: fewer batch sizes and intensities): the eight exploratory ones, the
    poster's regime and the confirmatory one; at gpu-short scale only the replication on the speed-run trainer."""
    if sc.minutes:
        return [
            Experiment(
                "replication-gpu-short",
                "On the speed-run trainer, do the poster's protocols reach a target accuracy sooner than no swap?",
                [(p, {"protocol": p}) for p in GPU_SHORT],
                sc.seeds,
                base={"label_smoothing": 0.2},
                claim="feature",
            )
        ]
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
            claim="feature",
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
            claim="feature",
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
            claim="feature",
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
            claim="feature",
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
            claim="weight",
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
            # the chain CNN, and a small residual network (its adds tie the units of the blocks they join)
            groups=[
                ("chain CNN", {}),
                ("residual", {"model": "resnet-mini"}, ["none", "none+ulp", "neuronx1+state", "neuronx1"]),
            ],
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
            claim="weight",
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
            claim="weight",
        ),
        Experiment(
            "poster-regime",
            "In the poster's plainer setup (normalised images, no flips, plain SGD without momentum or weight decay, a "
            "constant learning rate), where added noise is most likely to help: does any protocol reach the target "
            "sooner?",
            [(p, {"protocol": p}) for p in POSTER],
            sc.seeds,
            base={"flip": False, "optimizer": "sgd", "schedule": "constant"},
            # the replication's batch sizes but 8 (the most expensive on the CPU, 5000 steps a run)
            groups=[
                (f"batch {b}", {"batch_size": b, "lr": PLAIN_SGD_LR * (b / BASE_BATCH) ** 0.5})
                for b in (bs_list if quick else [32, 128])
            ],
            claim="feature",
        ),
        Experiment(
            "confirm",
            "Confirmatory: do the exploratory study's three leads (1SA in long training, steps 0.96 [0.92, 0.99]; "
            "1SA at batch 8 and 1PA at batch 32, about 1% fewer steps) hold on fresh seeds?",
            [(p, {"protocol": p}) for p in ("none", "1SA", "1PA")],
            3 if quick else 10,
            groups=[
                ("long training", {"epochs": 3 * ep, "evals_per_epoch": 2}, ["none", "1SA"]),
                ("batch 8", {"batch_size": 8, "lr": scaled_lr(8)}, ["none", "1SA"]),
                ("batch 32", {"batch_size": 32, "lr": scaled_lr(32)}, ["none", "1PA"]),
            ],
            seed0=CONFIRM_SEED0,
            declared=Declared(
                "the swap arm reaches the target accuracy in fewer steps than the baseline (ratio < 1), in each of "
                "the three settings where the exploratory study saw it."
            ),
        ),
        weight_dose(sc),
    ]
    return exps
