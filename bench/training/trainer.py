"""One training run with or without swapping, and its curves: setup (model, loaders, optimizer, swaps), one
training step, and the evaluations that make the curves.

Both trainers keep the uint8 dataset on the training device and build each batch with the fused loader
(gather, normalise, feature swap, flip: swapkern.DeviceLoader); the CPU trainer trains a small BN-CNN in float32,
the GPU trainer a speed-run style net in bf16 with channels_last. Randomness comes in separate streams: model
initialisation (torch seed), data order and flips (loader seed), swaps (FeatureSwap / WeightSwap seeds, derived
from the run seed but never drawn from the torch generator), so an arm that draws swaps and applies none (sham,
p = 0) repeats the baseline bit for bit.
"""

from __future__ import annotations

import math
import statistics
import time
from dataclasses import asdict, dataclass, field

import torch
from torch import nn

import swapkern

from ..common.provenance import git_commit
from .config import RunConfig, stream_seed
from .controls import Control, weight_noise_
from .models import ResNetMini, small_cnn, speed_net, tiny_mlp

# What a step's time covers, the one definition of time in the tables: the batch's building (with its feature swap),
# a control's perturbation, the model's step and the weight swap, each timed apart and summed; time to target is
# the steps to it times the run's median step. Runs saved before: "batch+step" (the same sum timed as one, runs
# made one after another) and no key (the model's step alone, its mean): their time is not compared (summary).
TIMING = "parts"
PARTS = ("batch", "perturb", "model", "wswap")


def build_model(cfg: RunConfig, channels: int, classes: int, size: int) -> nn.Module:
    """The run's network: the speed-run net on the GPU trainer (extra["speed_widths"]: its widths), else cfg.model
    (cnn, cnn-nobn, resnet-mini, mlp-narrow) at cfg.width."""
    if cfg.trainer == "gpu":
        return speed_net(
            channels, classes, **({"widths": cfg.extra["speed_widths"]} if "speed_widths" in cfg.extra else {})
        )
    if cfg.model == "resnet-mini":
        return ResNetMini(channels, classes, width=cfg.width)
    if cfg.model == "mlp-narrow":
        return tiny_mlp(channels, size, classes, hidden=cfg.width)
    return small_cnn(channels, classes, width=cfg.width, batchnorm=cfg.model != "cnn-nobn")


@dataclass
class Run:
    """What one run trains with, built by setup: the model, its loaders, optimizer and schedule, and the swaps."""

    cfg: RunConfig
    device: torch.device
    gpu: bool  # the GPU trainer: bf16 autocast, channels_last
    model: nn.Module
    loader: swapkern.DeviceLoader  # training batches (with the feature swap, unless a control replaces it)
    test_loader: swapkern.DeviceLoader
    clean_loader: swapkern.DeviceLoader  # a fixed slice of the training set, unswapped: the clean training loss
    opt: torch.optim.Optimizer
    sched: torch.optim.lr_scheduler.LRScheduler
    total_steps: int
    control: Control | None  # a matched perturbation in place of the feature swap
    ws: swapkern.WeightSwap | None
    noise_g: torch.Generator  # the weight-noise control's stream
    perturbation: list = field(default_factory=list)  # ||dw||^2 / ||w||^2 of the sampled weight-swap steps


def _device_loader(x, y, batch_size, mean, std, gpu, **kw):
    return swapkern.DeviceLoader(x, y, batch_size=batch_size, mean=mean, std=std, channels_last=gpu, **kw)


def setup(data, cfg: RunConfig) -> Run:
    """Seeds torch, builds the model (one ulp up with init_ulp), moves the data to the device, and builds the
    loaders, the optimizer with its warm-up/decay schedule, the feature swap (or its control) and the weight swap."""
    device = torch.device(cfg.device)
    torch.manual_seed(cfg.seed)
    size, channels = data.train_x.shape[1], data.channels
    model = build_model(cfg, channels, data.classes, size).to(device)
    gpu = cfg.trainer == "gpu"
    if gpu:
        model = model.to(memory_format=torch.channels_last)
    if cfg.init_ulp:  # the symmetry null's yardstick: one rounding error in every initial weight, nothing else
        with torch.no_grad():
            for q in model.parameters():
                q.copy_(torch.nextafter(q, torch.full_like(q, math.inf)))
    mean, std = data.stats()
    train_x, test_x = data.train_x.to(device), data.test_x.to(device)
    train_y, test_y = data.train_y.to(device), data.test_y.to(device)
    fs_loader, control = None, None
    if cfg.protocol != "none":
        fs = swapkern.FeatureSwap(cfg.protocol, swaps=cfg.swaps, p=cfg.p, seed=stream_seed(cfg.seed, "feature"))
        if cfg.control:
            control = Control(cfg.control, fs, cfg.seed)
        else:
            fs_loader = fs
    loader = _device_loader(
        train_x, train_y, cfg.batch_size, mean, std, gpu, feature_swap=fs_loader, flip=cfg.flip, seed=cfg.seed
    )
    test_loader = _device_loader(test_x, test_y, min(1000, len(test_y)), mean, std, gpu, shuffle=False, drop_last=False)
    n_clean = min(cfg.clean_subset, len(train_y))
    clean_loader = _device_loader(
        train_x[:n_clean], train_y[:n_clean], min(1000, n_clean), mean, std, gpu, shuffle=False, drop_last=False
    )
    total_steps = max(1, int(round(cfg.epochs * len(loader))))
    opt, sched = optimizer(model, cfg, total_steps)
    ws = None
    if cfg.weight_protocol:
        head = [n for n, p in model.named_parameters() if p.dim() >= 2][-1].rsplit(".", 1)[0]
        hidden = "all" if cfg.weight_layers == "all" else (lambda n, p: not n.startswith(head + "."))
        ws = swapkern.WeightSwap(
            model,
            cfg.weight_protocol,
            swaps=cfg.weight_swaps,
            state=cfg.weight_state,
            layers=hidden,
            accept="metropolis" if cfg.temperature else "always",
            temperature=cfg.temperature,
            seed=stream_seed(cfg.seed, "weights"),
            p=cfg.weight_p,
            max_gap=cfg.max_gap,
        )
    noise_g = torch.Generator().manual_seed(stream_seed(cfg.seed, "noise") & (2**63 - 1))
    return Run(
        cfg, device, gpu, model, loader, test_loader, clean_loader, opt, sched, total_steps, control, ws, noise_g
    )


def optimizer(model, cfg: RunConfig, total_steps: int):
    """The run's optimizer and learning-rate schedule: SGD with Nesterov momentum 0.9 and weight decay 5e-4, or
    plain SGD (cfg.optimizer "sgd"); a 10% linear warm-up then a linear decay to zero, or a constant rate."""
    if cfg.optimizer == "sgd-nesterov":
        opt = torch.optim.SGD(model.parameters(), lr=cfg.lr, momentum=0.9, nesterov=True, weight_decay=5e-4)
    elif cfg.optimizer == "sgd":
        opt = torch.optim.SGD(model.parameters(), lr=cfg.lr)
    else:
        raise ValueError(f"optimizer: {cfg.optimizer!r} is not sgd-nesterov or sgd")
    if cfg.schedule == "constant":
        return opt, torch.optim.lr_scheduler.LambdaLR(opt, lambda s: 1.0)
    if cfg.schedule != "warmup-linear":
        raise ValueError(f"schedule: {cfg.schedule!r} is not warmup-linear or constant")
    warm = max(1, total_steps // 10)
    return opt, torch.optim.lr_scheduler.LambdaLR(
        opt, lambda s: min((s + 1) / warm, max(0.0, (total_steps - s) / max(1, total_steps - warm)))
    )


def perturb(run: Run, x, index) -> float:
    """The control's perturbation of the batch x in place (index: the dataset indices of its images), if the run
    has one; returns its seconds (timed apart from the model's step, like the feature swap)."""
    if run.control is None:
        return 0.0
    t0 = time.perf_counter()
    run.control(x, index)
    _sync(run)
    return time.perf_counter() - t0


def model_step(run: Run, x, y):
    """The model's step on the batch (x, y): forward, backward, the optimizer and its schedule. Returns the loss."""
    with torch.autocast(run.device.type, dtype=torch.bfloat16, enabled=run.gpu):
        loss = nn.functional.cross_entropy(run.model(x), y, label_smoothing=run.cfg.label_smoothing)
    run.opt.zero_grad(set_to_none=True)
    loss.backward()
    run.opt.step()
    run.sched.step()
    return loss


def weight_swap(run: Run, x, y, step: int) -> float:
    """The run's weight swap after the model's step (Metropolis arms: their extra forward passes included).
    Returns the seconds spent measuring the injected perturbation (every extra["perturbation_every"] steps),
    which are not training time."""
    cfg, model = run.cfg, run.model
    if run.ws is None:
        return 0.0
    every_n = cfg.extra.get("perturbation_every", 0)
    m0 = time.perf_counter()
    snap = [q.detach().clone() for q in model.parameters()] if every_n and step % every_n == 0 else None
    measuring = time.perf_counter() - m0
    if cfg.weight_noise:
        weight_noise_(model, run.ws, run.noise_g)
    elif cfg.temperature:
        with torch.autocast(run.device.type, dtype=torch.bfloat16, enabled=run.gpu):
            run.ws.step(lambda x=x, y=y: nn.functional.cross_entropy(model(x), y))
    else:
        run.ws.step(optimizer=run.opt)
    if snap is not None:  # injected perturbation ||dw||^2 / ||w||^2 of this step (not timed)
        m0 = time.perf_counter()
        with torch.no_grad():
            num = sum(float((q - b).float().pow(2).sum()) for q, b in zip(model.parameters(), snap, strict=True))
            den = sum(float(b.float().pow(2).sum()) for b in snap)
        run.perturbation.append(num / max(den, 1e-30))
        measuring += time.perf_counter() - m0
    return measuring


def train_step(run: Run, x, y, index, step: int):
    """One training step on the batch (x, y): the control, if any, perturbs x in place first (index: the dataset
    indices of its images), then the model's step, then the weight swap. Returns the loss tensor and the seconds
    spent measuring the injected perturbation, which are not training time."""
    perturb(run, x, index)
    loss = model_step(run, x, y)
    return loss, weight_swap(run, x, y, step)


def _sync(run: Run):
    if run.device.type == "cuda":
        torch.cuda.synchronize()


def evaluate(model, loader, device, autocast):
    """Accuracy and mean cross-entropy of the model over the loader (eval mode, no gradients)."""
    model.eval()
    correct = total = 0
    loss_sum = 0.0
    with torch.no_grad(), torch.autocast(device.type, dtype=torch.bfloat16, enabled=autocast):
        for x, y in loader:
            out = model(x).float()
            loss_sum += nn.functional.cross_entropy(out, y, reduction="sum").item()
            correct += (out.argmax(1) == y).sum().item()
            total += y.numel()
    model.train()
    return correct / max(total, 1), loss_sum / max(total, 1)


def record(run: Run, curves: dict, step: int, train_time: float, train_loss: float):
    """Appends one evaluation to the curves: test accuracy and clean training loss at this step."""
    acc, _ = evaluate(run.model, run.test_loader, run.device, run.gpu)
    _, clean = evaluate(run.model, run.clean_loader, run.device, run.gpu)
    curves["step"].append(step)
    curves["time_s"].append(train_time)
    curves["train_loss"].append(train_loss)
    curves["clean_loss"].append(clean)
    curves["test_acc"].append(acc)
    curves["epoch"].append(step / len(run.loader))


class Stepper:
    """One run advanced a step at a time (train() runs one alone, train_lockstep() several side by side). Each
    step is timed in parts, one clock each: `batch` (the request of the batch from the fused loader: gather,
    normalise, the feature swap, flip), `perturb` (a control's perturbation in place of the swap, its plan drawn),
    `model` (forward, backward, optimizer) and `wswap` (the weight swap, a Metropolis arm's extra forwards
    included). A step's time is their sum; evaluations are not timed."""

    def __init__(self, data, cfg: RunConfig, lockstep=1):
        self.data, self.cfg, self.lockstep = data, cfg, lockstep
        self.run = run = setup(data, cfg)
        self.steps_per_epoch = len(run.loader)
        self.eval_every = max(1, self.steps_per_epoch // max(1, cfg.evals_per_epoch))
        self.curves = {"step": [], "time_s": [], "train_loss": [], "clean_loss": [], "test_acc": [], "epoch": []}
        self.parts = {k: [] for k in PARTS}
        self.step, self.train_time, self.running, self.count = 0, 0.0, 0.0, 0
        self._it = None
        record(run, self.curves, 0, 0.0, 0.0)

    @property
    def done(self) -> bool:
        return self.step >= self.run.total_steps

    def _next_batch(self):
        """The next batch and its images' dataset indices (for a control), a new epoch begun when one ends."""
        run = self.run
        while True:
            if self._it is None:
                self._index_order = run.loader._order().clone() if run.control is not None else None
                self._it, self._i = iter(run.loader), 0
            try:
                x, y = next(self._it)
            except StopIteration:
                self._it = None
                continue
            i, bs = self._i, self.cfg.batch_size
            self._i += 1
            index = self._index_order[i * bs : (i + 1) * bs] if self._index_order is not None else None
            return x, y, index

    def advance(self, progress=None):
        """One training step, timed in its parts, then an evaluation if one falls due."""
        run = self.run
        _sync(run)
        t0 = time.perf_counter()
        x, y, index = self._next_batch()
        _sync(run)
        t1 = time.perf_counter()
        t_perturb = perturb(run, x, index)
        t2 = time.perf_counter()
        loss = model_step(run, x, y)
        _sync(run)
        t3 = time.perf_counter()
        measuring = weight_swap(run, x, y, self.step)
        _sync(run)
        t4 = time.perf_counter()
        wswap = t4 - t3 - measuring if run.ws is not None else 0.0
        part = {"batch": t1 - t0, "perturb": t_perturb, "model": t3 - t2, "wswap": wswap}
        for k, v in part.items():
            self.parts[k].append(v)
        self.train_time += sum(part.values())
        self.running += loss.item()
        self.count += 1
        self.step += 1
        if progress is not None:
            progress.update(1)
        if self.step % self.eval_every == 0 or self.done:
            record(run, self.curves, self.step, self.train_time, self.running / max(self.count, 1))
            self.running, self.count = 0.0, 0

    def result(self) -> dict:
        """The config, the curves (per evaluation: step, training seconds, swapped-batch training loss, clean
        training loss, test accuracy), the median of each part of a step and of the whole step, and the rest."""
        cfg, run, curves = self.cfg, self.run, self.curves
        totals = [sum(p) for p in zip(*(self.parts[k] for k in PARTS), strict=True)]
        ws, perturbation = run.ws, run.perturbation
        out = {
            "config": asdict(cfg),
            "arm": cfg.arm(),
            "data": self.data.name,
            "curves": curves,
            "steps": self.step,
            "steps_per_epoch": self.steps_per_epoch,
            "train_seconds": self.train_time,  # the sum of the steps' times, a stall of the machine included
            # the typical step (TIMING): time to target is steps x this, so one stall cannot pass for a speed-up
            "step_seconds_median": statistics.median(totals),
            "step_seconds_p90": statistics.quantiles(totals, n=10)[-1] if len(totals) > 1 else totals[0],
            "part_seconds_median": {k: statistics.median(self.parts[k]) for k in PARTS},
            "timing": TIMING,
            "lockstep": self.lockstep,  # how many runs stepped side by side with this one (1: alone)
            "final_acc": curves["test_acc"][-1],
            "best_acc": max(curves["test_acc"]),
            "final_clean_loss": curves["clean_loss"][-1],
            "extra_forward_passes": ws.stats["closure_calls"] if ws is not None else 0,
            "perturbation": sum(perturbation) / len(perturbation) if perturbation else None,
            "commit": git_commit(),
            "finite": all(math.isfinite(v) for v in curves["clean_loss"]),
        }
        if ws is not None:
            out["weight_stats"] = dict(ws.stats)
        return out


def train(data, cfg: RunConfig, progress=None) -> dict:
    """Trains one model alone; returns Stepper.result()."""
    return train_lockstep(data, [cfg], progress)[0]


def train_lockstep(data, cfgs, progress=None, each=None) -> list:
    """Trains the runs of cfgs side by side in one process: step k of every run before step k+1 of any (the order
    among them rotating by one each step), so a burst of machine load hits every arm alike and the ratio of their
    step times is the ratio of their work. Each run computes exactly what it computes alone (its own random
    streams, reseeded at setup). data: the Data, or a function config -> Data. each(i, result): called as run i
    finishes. Returns the results in the order of cfgs."""
    data_for = data if callable(data) else (lambda cfg: data)
    steppers = [Stepper(data_for(c), c, lockstep=len(cfgs)) for c in cfgs]
    started = time.strftime("%Y-%m-%dT%H:%M:%S") + f".{time.time_ns() % 10**9:09d}"  # names the lockstep group
    results = [None] * len(cfgs)
    k = 0
    while any(r is None for r in results):
        for j in range(len(steppers)):
            i = (j + k) % len(steppers)
            s = steppers[i]
            if results[i] is not None:
                continue
            s.advance(progress)
            if s.done:
                results[i] = dict(s.result(), lockstep_started=started)
                if each is not None:
                    each(i, results[i])
        k += 1
    return results
