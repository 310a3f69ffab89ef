"""Micro-timing, done one way for every benchmark: warm-up, many repeats over rotated inputs, median and spread;
and the largest allocation a call makes.

CPU: perf_counter per call. CUDA: CUDA events per call (device time), plus the host wall time per call of a
back-to-back loop (what a training loop pays when the launch cost dominates).
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
    median_us: float
    p20_us: float
    p80_us: float
    host_us: float  # wall time per call of a back-to-back loop (CUDA); equals median_us on the CPU
    repeats: int

    def as_dict(self):
        return dict(self.__dict__)


def _quantile(xs, q):
    xs = sorted(xs)
    return xs[min(len(xs) - 1, max(0, round(q * (len(xs) - 1))))]


def measure(calls, device: torch.device, *, warmup: int = 3, repeats: int = 30, min_time_s: float = 0.2) -> Timing:
    """Times `calls` (closures over rotated inputs), run round-robin; at least `repeats` timed calls and at least
    `min_time_s` of timed work."""
    calls = list(calls)
    cuda = device.type == "cuda"
    for i in range(max(warmup, len(calls))):
        calls[i % len(calls)]()
    sync = torch.cuda.synchronize if cuda else (lambda: None)
    sync()
    samples = []
    start_all = time.perf_counter()
    i = 0
    while i < repeats or (time.perf_counter() - start_all < min_time_s and i < 100 * repeats):
        fn = calls[i % len(calls)]
        if cuda:
            t0, t1 = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
            t0.record()
            fn()
            t1.record()
            samples.append((t0, t1))
        else:
            s = time.perf_counter()
            fn()
            samples.append((time.perf_counter() - s) * 1e6)
        i += 1
    sync()
    if cuda:
        samples = [a.elapsed_time(b) * 1e3 for a, b in samples]
        n = len(samples)
        s = time.perf_counter()
        for j in range(n):
            calls[j % len(calls)]()
        sync()
        host = (time.perf_counter() - s) * 1e6 / n
    else:
        host = statistics.median(samples)
    return Timing(statistics.median(samples), _quantile(samples, 0.2), _quantile(samples, 0.8), host, len(samples))


def rotation(nbytes: int, budget: int = 64 << 20, most: int = 16) -> int:
    """How many copies of an input to rotate through so that together they exceed the caches (within budget)."""
    if nbytes <= 0:
        return 1
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
