"""Micro-timing, done one way for every benchmark: warm-up, many repeats over rotated inputs, median and spread;
and the largest allocation a call makes.

CPU: perf_counter per call. CUDA: CUDA events around batches of back-to-back calls (per-call device time), and the
host's issuing time per call (what a training loop pays when the launch cost dominates), reported apart.
"""

from __future__ import annotations

import contextlib
import os
import statistics
import sys
import time
from dataclasses import dataclass

import torch
from torch.profiler import ProfilerActivity, profile


@dataclass
class Timing:
    median_us: float  # per call: wall time on the CPU; device time on a GPU (a batch of calls between two events)
    p20_us: float
    p80_us: float
    host_us: float  # per call, the host's time to issue it (a GPU run does not wait for it); = median_us on the CPU
    repeats: int

    def as_dict(self):
        return dict(self.__dict__)


def _quantile(xs, q):
    xs = sorted(xs)
    return xs[min(len(xs) - 1, max(0, round(q * (len(xs) - 1))))]


def measure(
    calls,
    device: torch.device,
    *,
    warmup: int = 3,
    repeats: int = 30,
    min_time_s: float = 0.2,
    batch: int | None = None,
) -> Timing:
    """Times `calls` (closures over rotated inputs), run round-robin; at least `repeats` samples and at least
    `min_time_s` of timed work. On the CPU a sample is one call. On a GPU a sample is `batch` back-to-back calls
    (default: one pass over the rotated inputs, at least 8) between two CUDA events, so a kernel shorter than the
    launch cost is still timed on the device; host_us is the issuing loop's wall time per call."""
    calls = list(calls)
    cuda = device.type == "cuda"
    for i in range(max(warmup, len(calls))):
        calls[i % len(calls)]()
    if not cuda:
        samples = []
        start_all = time.perf_counter()
        i = 0
        while i < repeats or (time.perf_counter() - start_all < min_time_s and i < 100 * repeats):
            s = time.perf_counter()
            calls[i % len(calls)]()
            samples.append((time.perf_counter() - s) * 1e6)
            i += 1
        med = statistics.median(samples)
        return Timing(med, _quantile(samples, 0.2), _quantile(samples, 0.8), med, len(samples))
    n = batch or max(8, len(calls))
    torch.cuda.synchronize()
    events, host, start_all, i = [], [], time.perf_counter(), 0
    while len(events) < max(3, repeats // 4) or (time.perf_counter() - start_all < min_time_s and len(events) < 400):
        t0, t1 = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        h = time.perf_counter()
        t0.record()
        for _ in range(n):
            calls[i % len(calls)]()
            i += 1
        t1.record()
        host.append((time.perf_counter() - h) * 1e6 / n)
        events.append((t0, t1))
        torch.cuda.synchronize()  # the batches do not overlap: each one's time is its own
    samples = [a.elapsed_time(b) * 1e3 / n for a, b in events]
    med = statistics.median(samples)
    return Timing(med, _quantile(samples, 0.2), _quantile(samples, 0.8), statistics.median(host), len(samples))


def rotation(nbytes: int, budget: int = 64 << 20, most: int = 16, device=None) -> int:
    """How many copies of an input to rotate through so that together they exceed the caches (within budget). On a
    GPU the copies span at least 4x its L2 cache (H100/H200: about 50-60 MB), so no timed call finds its data there."""
    if nbytes <= 0:
        return 1
    if device is not None and torch.device(device).type == "cuda":
        return max(1, min(64, -(-max(budget, 256 << 20) // nbytes)))
    return max(1, min(most, budget // nbytes))


@contextlib.contextmanager
def _quiet_stderr():
    """The profiler's C++ side logs a few lines per session to fd 2 (no GPU found, start, stop): muted here."""
    sys.stderr.flush()
    saved, null = os.dup(2), os.open(os.devnull, os.O_WRONLY)
    os.dup2(null, 2)
    try:
        yield
    finally:
        os.dup2(saved, 2)
        os.close(saved)
        os.close(null)


def allocated_bytes(fn, device):
    """Largest allocation a call makes: the profiler's memory events on the CPU, the peak delta on CUDA."""
    if device.type == "cuda":
        torch.cuda.synchronize()
        base = torch.cuda.memory_allocated()
        torch.cuda.reset_peak_memory_stats()
        fn()
        torch.cuda.synchronize()
        return torch.cuda.max_memory_allocated() - base
    with _quiet_stderr(), profile(activities=[ProfilerActivity.CPU], profile_memory=True) as prof:
        fn()
    return max([e.cpu_memory_usage for e in prof.events() if e.cpu_memory_usage > 0], default=0)
