"""One row of the overhead table, timed one way for every part (op cases, feature protocols, the loader, weight
swaps), and what rows are measured against: the backends a device has, its copy bandwidth."""

from __future__ import annotations

import torch

import swapkern

from ..common.timing import allocated_bytes, measure, rotation


def timed_row(case, backend, calls, device, *, moved=0, derived=None, **timing) -> dict:
    """A row {case, backend, moved_bytes, alloc_bytes, ..., median_us, p20_us, p80_us, host_us, repeats}: `calls`
    (closures over rotated inputs) timed by measure(**timing), then the allocation of one call after that warm-up
    (plan buffers are reused). derived(timing) -> the fields that depend on the time (a backend label with its
    share, a marginal cost): set before the timing fields. The caller chooses the backend (swapkern.use_backend)."""
    t = measure(calls, device, **timing)
    row = {"case": case, "backend": backend, "moved_bytes": moved, "alloc_bytes": allocated_bytes(calls[0], device)}
    if derived is not None:
        row.update(derived(t))
    return row | t.as_dict()


def copy_row(case, moved, device) -> dict:
    """The copy floor of a case: copying a buffer whose read + write traffic equals the swap's moved bytes, timed the
    same way in the same run (the swap's "%copy" is this time over its own)."""
    n = max(1, moved // 2 // 4)
    copies = [
        (torch.empty(n, device=device).fill_(1), torch.empty(n, device=device))
        for _ in range(rotation(4 * n, device=device))
    ]
    calls = [lambda s=s, d=d: d.copy_(s) for s, d in copies]
    return timed_row(case, "copy of the moved bytes", calls, device, moved=moved)


FLOOR_CASE = "dispatch floor (one call from Python, nothing to move)"
FLOOR_ATEN = "ATen in-place op on an empty tensor: y.add_(1)"


def floor_rows(device) -> list[dict]:
    """The floor of one dispatch from Python, timed like every row: an in-place ATen op on an empty tensor, and a
    swapkern op through the same stable-ABI registration as every op of ours with nothing to do (swap_elements_ of
    an empty tensor with no pairs: the boxed call, the argument checks, no kernel work). The "x floor" column is
    each row's time over the first."""
    y = torch.empty(0, device=device)
    rows = [timed_row(FLOOR_CASE, FLOOR_ATEN, [lambda: y.add_(1)], device)]
    if "native" in swapkern.backends(device.type):
        e, none = torch.empty(0, device=device), torch.empty(0, dtype=torch.int64, device=device)
        op = torch.ops.swapkern.swap_elements_.default
        empty = [lambda: op(e, none, none, True)]
        rows.append(timed_row(FLOOR_CASE, "swapkern op, no pairs (stable ABI)", empty, device))
    return rows


def backends_for(device) -> list[str]:
    """The backends timed on a device, the reference ("torch") last."""
    usable = swapkern.backends(device.type)
    names = []
    if "native" in usable:
        names.append("native")
    if device.type == "cuda" and "triton" in usable:
        names.append("triton")  # the CPU interpreter is a correctness tool, not a contender
    return names + ["torch"]


def copy_bandwidth(device, nbytes) -> float:
    """Device copy bandwidth in GB/s (read + write) on a buffer of nbytes, measured like the swaps."""
    src = torch.empty(nbytes // 4, dtype=torch.float32, device=device).fill_(1)
    dst = torch.empty_like(src)
    t = measure([lambda: dst.copy_(src)], device, repeats=20)
    return 2 * src.nbytes / (t.median_us * 1e-6) / 1e9
