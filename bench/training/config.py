"""What one training run does: RunConfig (its fields make the run's key, runner.run_key), its short name (the arm)
and the seeds of its separate random streams."""

from __future__ import annotations

import zlib
from dataclasses import dataclass, field

from swapkern import draws

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
    model: str = "cnn"  # cnn | cnn-nobn | resnet-mini | mlp-narrow
    width: int = 16
    batch_size: int = 64
    epochs: float = 2.0
    lr: float = 0.05
    seed: int = 0
    device: str = "cpu"
    evals_per_epoch: int = 4
    clean_subset: int = 2048
    label_smoothing: float = 0.0
    flip: bool = True  # random horizontal flips in the loader
    optimizer: str = "sgd-nesterov"  # sgd-nesterov: momentum 0.9, Nesterov, weight decay 5e-4 | sgd: plain, neither
    schedule: str = "warmup-linear"  # warmup-linear: 10% warm-up then linear decay to 0 | constant
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


def stream_seed(seed: int, name: str) -> int:
    """A seed of its own for each random stream of a run (stable across processes)."""
    return draws.base_key(seed, 0, "order") ^ (draws.mix(zlib.crc32(name.encode())) << 32)
