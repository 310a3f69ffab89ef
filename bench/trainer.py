"""One training run with or without swapping, and its curves.

Both trainers keep the uint8 dataset on the training device and build each batch with the fused loader
(gather, normalise, feature swap, flip: swapkern.DeviceLoader); the CPU trainer trains a small BN-CNN in float32,
the GPU trainer a speed-run style net in bf16 with channels_last. Randomness comes in separate streams: model
initialisation (torch seed), data order and flips (loader seed), swaps (FeatureSwap / WeightSwap seeds, derived
from the run seed but never drawn from the torch generator), so an arm that draws swaps and applies none (sham,
p = 0) repeats the baseline bit for bit.
"""

from __future__ import annotations

import math
import time
import zlib
from dataclasses import asdict, dataclass, field

import torch
from torch import nn

import swapkern
from swapkern import plans

from .models import small_cnn, speed_net, tiny_mlp
from .timing import git_commit

CONTROLS = ("sham", "gauss", "erase", "rcp")


@dataclass
class RunConfig:
    protocol: str = "none"  # feature protocol code, or "none"
    swaps: int = 1
    p: float = 1.0
    control: str | None = None  # sham | gauss | erase | rcp: the protocol's randomness, another perturbation
    weight_protocol: str | None = None
    weight_swaps: int = 1
    weight_state: bool = False
    temperature: float | None = None  # Metropolis weight swaps when set
    weight_p: float = 1.0
    max_gap: float | None = None
    weight_layers: str = "hidden"  # hidden: every layer but the classifier (whose rows are the classes) | all
    weight_noise: bool = False  # control: Gaussian weight noise of the weight swap's norm instead of the swap
    init_ulp: bool = False  # control: every initial weight moved by one ulp, the size of one float rounding
    trainer: str = "cpu"  # cpu | gpu
    model: str = "cnn"  # cnn | cnn-nobn | mlp-narrow
    width: int = 16
    batch_size: int = 64
    epochs: float = 2.0
    lr: float = 0.05
    seed: int = 0
    device: str = "cpu"
    evals_per_epoch: int = 4
    clean_subset: int = 2048
    label_smoothing: float = 0.0
    extra: dict = field(default_factory=dict)

    def arm(self) -> str:
        """A short name of what this run does beyond the baseline."""
        parts = [self.protocol if self.protocol != "none" else "none"]
        if self.protocol != "none" and (self.swaps != 1 or self.p != 1.0):
            parts.append(f"x{self.swaps}" + (f"@p{self.p:g}" if self.p != 1.0 else ""))
        if self.control:
            parts.append(self.control)
        if self.weight_protocol:
            w = f"w:{self.weight_protocol}x{self.weight_swaps}" + ("+state" if self.weight_state else "")
            w += f"+T{self.temperature:g}" if self.temperature else ""
            w += f"+gap{self.max_gap:g}" if self.max_gap else ""
            w += f"@p{self.weight_p:g}" if self.weight_p != 1.0 else ""
            parts.append(w + ("(noise)" if self.weight_noise else ""))
        if self.init_ulp:
            parts.append("ulp")
        return "+".join(parts)


def _stream_seed(seed: int, name: str) -> int:
    """A seed of its own for each random stream of a run (stable across processes)."""
    return plans.base_key(seed, 0, "order") ^ (plans.mix(zlib.crc32(name.encode())) << 32)


def build_model(cfg: RunConfig, channels: int, classes: int, size: int) -> nn.Module:
    if cfg.trainer == "gpu":
        return speed_net(channels, classes)
    if cfg.model == "mlp-narrow":
        return tiny_mlp(channels, size, classes, hidden=cfg.width)
    return small_cnn(channels, classes, width=cfg.width, batchnorm=cfg.model != "cnn-nobn")


class _Control:
    """Perturbations matched to a feature-swap plan (study controls): what the swap would change, applied as
    Gaussian noise of the same per-image L2 norm, erasure of the same fraction of values, or a random channel
    permutation of the images the protocol touches. Its own random stream."""

    def __init__(self, kind, fs, seed):
        self.kind, self.fs = kind, fs
        self.g = torch.Generator().manual_seed(_stream_seed(seed, "control") & (2**63 - 1))

    def __call__(self, x, index):
        plan = self.fs.plan(x, indices=index)
        if self.kind == "sham":
            return
        swapped = self.fs.apply_(x.clone(), plan)
        delta = (swapped - x).flatten(1)
        touched = delta.ne(0).any(1)
        if self.kind == "gauss":
            noise = torch.randn(x.shape, generator=self.g).to(x)
            scale = delta.norm(dim=1) / noise.flatten(1).norm(dim=1).clamp_min(1e-12)
            x.add_(noise * scale.view(-1, 1, 1, 1))
        elif self.kind == "erase":
            frac = delta.ne(0).float().mean(1).view(-1, 1, 1, 1)
            mask = torch.rand(x.shape, generator=self.g).to(x.device) < frac
            x.masked_fill_(mask, 0.0)
        elif self.kind == "rcp":
            for n in touched.nonzero().flatten().tolist():
                x[n] = x[n, torch.randperm(x.shape[1], generator=self.g).to(x.device)]


def _evaluate(model, loader, device, autocast):
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


def _weight_noise_(model, ws, g):
    """Control for weight swaps: Gaussian noise with the norm the swap would inject into each parameter."""
    before = [p.detach().clone() for p in model.parameters()]
    ws.step()
    with torch.no_grad():
        for p, b in zip(model.parameters(), before, strict=True):
            d = (p - b).norm()
            p.copy_(b)
            if d > 0:
                n = torch.randn(p.shape, generator=g).to(p)
                p.add_(n * (d / n.norm()))


def train(data, cfg: RunConfig, progress=None) -> dict:
    """Trains one model; returns the config, the curves (per evaluation: step, training seconds, swapped-batch
    training loss, clean training loss, test accuracy) and summary numbers."""
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
    fs = None
    control = None
    if cfg.protocol != "none":
        fs = swapkern.FeatureSwap(cfg.protocol, swaps=cfg.swaps, p=cfg.p, seed=_stream_seed(cfg.seed, "feature"))
        if cfg.control:
            control, fs_loader = _Control(cfg.control, fs, cfg.seed), None
        else:
            fs_loader = fs
    else:
        fs_loader = None
    loader = swapkern.DeviceLoader(
        train_x,
        train_y,
        batch_size=cfg.batch_size,
        mean=mean,
        std=std,
        feature_swap=fs_loader,
        flip=True,
        seed=cfg.seed,
        channels_last=gpu,
    )
    test_loader = swapkern.DeviceLoader(
        test_x,
        test_y,
        batch_size=min(1000, len(test_y)),
        mean=mean,
        std=std,
        shuffle=False,
        drop_last=False,
        channels_last=gpu,
    )
    n_clean = min(cfg.clean_subset, len(train_y))
    clean_loader = swapkern.DeviceLoader(
        train_x[:n_clean],
        train_y[:n_clean],
        batch_size=min(1000, n_clean),
        mean=mean,
        std=std,
        shuffle=False,
        drop_last=False,
        channels_last=gpu,
    )
    steps_per_epoch = len(loader)
    total_steps = max(1, int(round(cfg.epochs * steps_per_epoch)))
    opt = torch.optim.SGD(model.parameters(), lr=cfg.lr, momentum=0.9, nesterov=True, weight_decay=5e-4)
    warm = max(1, total_steps // 10)
    sched = torch.optim.lr_scheduler.LambdaLR(
        opt, lambda s: min((s + 1) / warm, max(0.0, (total_steps - s) / max(1, total_steps - warm)))
    )
    ws = None
    if cfg.weight_protocol:
        head = [n for n, p in model.named_parameters() if p.dim() >= 2][-1].rsplit(".", 1)[0]
        hidden = None if cfg.weight_layers == "all" else (lambda n, p: not n.startswith(head + "."))
        ws = swapkern.WeightSwap(
            model,
            cfg.weight_protocol,
            swaps=cfg.weight_swaps,
            state=cfg.weight_state,
            layers=hidden,
            accept="metropolis" if cfg.temperature else "always",
            temperature=cfg.temperature,
            seed=_stream_seed(cfg.seed, "weights"),
            p=cfg.weight_p,
            max_gap=cfg.max_gap,
        )
    noise_g = torch.Generator().manual_seed(_stream_seed(cfg.seed, "noise") & (2**63 - 1))
    eval_every = max(1, steps_per_epoch // max(1, cfg.evals_per_epoch))
    sync = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)
    curves = {"step": [], "time_s": [], "train_loss": [], "clean_loss": [], "test_acc": [], "epoch": []}
    step, train_time, running, count = 0, 0.0, 0.0, 0
    perturbation = []

    def record():
        acc, _ = _evaluate(model, test_loader, device, gpu)
        _, clean = _evaluate(model, clean_loader, device, gpu)
        curves["step"].append(step)
        curves["time_s"].append(train_time)
        curves["train_loss"].append(running / max(count, 1))
        curves["clean_loss"].append(clean)
        curves["test_acc"].append(acc)
        curves["epoch"].append(step / steps_per_epoch)

    record()
    while step < total_steps:
        order_epoch = loader.epoch
        index_order = loader._order().clone() if control is not None else None
        for i, (x, y) in enumerate(loader):
            sync()
            t0 = time.perf_counter()
            if control is not None:
                control(x, index_order[i * cfg.batch_size : (i + 1) * cfg.batch_size])
            with torch.autocast(device.type, dtype=torch.bfloat16, enabled=gpu):
                loss = nn.functional.cross_entropy(model(x), y, label_smoothing=cfg.label_smoothing)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            sched.step()
            if ws is not None:
                every_n = cfg.extra.get("perturbation_every", 0)
                m0 = time.perf_counter()
                snap = [q.detach().clone() for q in model.parameters()] if every_n and step % every_n == 0 else None
                measuring = time.perf_counter() - m0
                if cfg.weight_noise:
                    _weight_noise_(model, ws, noise_g)
                elif cfg.temperature:
                    with torch.autocast(device.type, dtype=torch.bfloat16, enabled=gpu):
                        ws.step(lambda x=x, y=y: nn.functional.cross_entropy(model(x), y))
                else:
                    ws.step(optimizer=opt)
                if snap is not None:  # injected perturbation ||dw||^2 / ||w||^2 of this step (not timed)
                    m0 = time.perf_counter()
                    with torch.no_grad():
                        num = sum(
                            float((q - b).float().pow(2).sum()) for q, b in zip(model.parameters(), snap, strict=True)
                        )
                        den = sum(float(b.float().pow(2).sum()) for b in snap)
                    perturbation.append(num / max(den, 1e-30))
                    measuring += time.perf_counter() - m0
            else:
                measuring = 0.0
            sync()
            train_time += time.perf_counter() - t0 - measuring
            running += loss.item()
            count += 1
            step += 1
            if progress is not None:
                progress.update(1)
            if step % eval_every == 0 or step == total_steps:
                record()
                running, count = 0.0, 0
            if step >= total_steps:
                break
        assert loader.epoch >= order_epoch
    out = {
        "config": asdict(cfg),
        "arm": cfg.arm(),
        "data": data.name,
        "curves": curves,
        "steps": step,
        "steps_per_epoch": steps_per_epoch,
        "train_seconds": train_time,
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


def time_to_target(result: dict, target: float):
    """(steps, seconds) at which test accuracy first reaches target, interpolated linearly between the two
    evaluations around the crossing; None if it never does (a censored run)."""
    c = result["curves"]
    prev = None
    for s, t, a in zip(c["step"], c["time_s"], c["test_acc"], strict=True):
        if a >= target:
            if prev is None or prev[2] >= a:
                return float(s), float(t)
            f = (target - prev[2]) / (a - prev[2])
            return prev[0] + f * (s - prev[0]), prev[1] + f * (t - prev[1])
        prev = (s, t, a)
    return None
