"""An experiment: arms x groups x seeds of training runs against a baseline, declared as data (Experiment), turned
into RunConfigs by the one config builder, with the one learning-rate rule, and run resumably. bench.study runs
its suite of experiments through this; bench.train's flags build one experiment."""

from __future__ import annotations

from dataclasses import dataclass, field

from . import runner
from .config import RunConfig

# The learning-rate rule: the CPU trainer's 0.05 at batch 64, scaled by sqrt(batch / 64); the GPU speed-run
# trainer's fixed 0.4 (its batch is 1024 with label smoothing).
BASE_LR, BASE_BATCH, GPU_LR = 0.05, 64, 0.4


def scaled_lr(batch_size: int) -> float:
    """BASE_LR at BASE_BATCH, scaled by the square root of the batch size."""
    return BASE_LR * (batch_size / BASE_BATCH) ** 0.5


def default_lr(trainer: str, batch_size: int) -> float:
    """The learning rate of a trainer at a batch size: GPU_LR on the GPU trainer, else scaled_lr."""
    return GPU_LR if trainer == "gpu" else scaled_lr(batch_size)


@dataclass
class Declared:
    """A confirmatory experiment's plan, fixed in code before its runs and printed at the head of its report section:
    the hypothesis, the primary metric (a row's ratio key), the test on it (a paired t-test on the log ratios,
    one-sided: the arm takes less than the baseline), its level, and the correction over the comparisons."""

    hypothesis: str
    metric: str = "steps_ratio"
    alternative: str = "less"
    alpha: float = 0.05
    correction: str = "Holm"

    def text(self, comparisons: int, seeds) -> str:
        metric = {"steps_ratio": "steps to the target (machine load cannot touch it)", "time_ratio": "time to target"}
        side = "one-sided (arm < baseline)" if self.alternative == "less" else "two-sided"
        return (
            f"Hypothesis: {self.hypothesis} Primary metric: the ratio arm / baseline of {metric[self.metric]}, paired "
            f"by seed (seeds {seeds}). Test: paired t-test on the log ratios, {side}, alpha {self.alpha:g}, "
            f"{self.correction}-adjusted over the {comparisons} comparisons of this experiment. Every other column "
            "is secondary."
        )


@dataclass
class Experiment:
    """arms: (label, RunConfig overrides) pairs; groups: which runs share a baseline, as (group name, overrides for
    every arm of the group) or (name, overrides, the labels of the arms run in that group); metric: "accuracy"
    (time to a target test accuracy) or "clean_loss" (to a clean training-loss threshold); seeds: how many, from
    seed0 (a confirmatory experiment takes fresh seeds); claim: "feature" or "weight", the poster's claim whose
    family of comparisons the experiment's rows join, or None; declared: the plan of a confirmatory experiment."""

    name: str
    question: str
    arms: list
    seeds: int
    base: dict = field(default_factory=dict)  # RunConfig overrides; extra["fraction"]: share of the training set
    metric: str = "accuracy"
    groups: list | None = None
    target: float | None = None  # fixed target; None: auto from the baseline
    skipped: str = ""  # what this data could not run, and why (said in the report)
    seed0: int = 0
    claim: str | None = None
    declared: Declared | None = None

    def seed_list(self) -> list:
        return list(range(self.seed0, self.seed0 + self.seeds))


def configs(exp: Experiment, defaults: dict) -> list:
    """The experiment's runs as (group, arm label, RunConfig) triples, group by group, arm by arm, seed by seed:
    defaults (the fields every run shares), then exp.base, the group's and the arm's overrides (a later part
    wins; "extra" dicts are merged)."""
    out = []
    for gname, gover, label, over in _cells(exp):
        for seed in exp.seed_list():
            fields = dict(defaults, seed=seed)
            for part in (exp.base, gover, over):
                for k, v in part.items():
                    fields[k] = {**fields.get(k, {}), **v} if k == "extra" else v
            out.append((gname, label, RunConfig(**fields)))
    return out


def _cells(exp: Experiment) -> list:
    """(group name, group overrides, arm label, arm overrides) of every arm that runs in every group."""
    return [
        (gname, gover, label, over)
        for gname, gover, *only in exp.groups or [("all", {})]
        for label, over in exp.arms
        if not only or label in only[0]
    ]


def cells(exp: Experiment) -> set:
    """The (group, arm label) pairs the experiment runs, each once per seed."""
    return {(g, label) for g, _, label, _ in _cells(exp)}


def run(exp: Experiment, data, defaults: dict, out_dir: str, *, progress=False, log=print, each=None) -> list:
    """Runs (or loads) every run of the experiment under out_dir/runs with runner.run_all, in run order by group
    and seed; a run with extra["fraction"] trains on that share of the training set (at least 100 images). Returns
    the results in config order, each labelled with its "arm" and "group". each(group, label, config, result,
    seconds, trained): called after each run is loaded (trained False) or trained."""
    triples = configs(exp, defaults)
    subsets = {}

    def data_for(cfg):
        frac = cfg.extra.get("fraction", 1.0)
        if frac not in subsets:
            subsets[frac] = data if frac == 1.0 else data.subset(max(100, int(len(data.train_y) * frac)))
        return subsets[frac]

    def labelled(i, res, seconds, trained):
        gname, label, cfg = triples[i]
        res["arm"], res["group"] = label, gname
        if each is not None:
            each(gname, label, cfg, res, seconds, trained)

    return runner.run_all(
        data_for,
        [cfg for _, _, cfg in triples],
        out_dir,
        blocks=[gname for gname, _, _ in triples],
        progress=progress,
        log=log,
        each=labelled,
    )
