"""Seeded, device-side sampling of swap plans: a counter-based generator and disjoint pairs drawn without a host
sync, into reusable buffers.

The generator is a pure function: a 32-bit word is mix(... mix(seed) ^ step ... ^ stream ^ key ^ draw), where
mix is the lowbias32 integer hash (C. Wellons) computed exactly in int64 tensor arithmetic (products stay below
2**49), so the CPU and any GPU give the same bits. Keys are image indices (dataset indices when known), so a
draw does not depend on batch order, batch position or the number of DataLoader workers.

Every tensor operation here is in place on preallocated buffers (`Workspace`): after the first draw of a given
shape, drawing a plan allocates nothing.
"""

from __future__ import annotations

import numbers

import torch

M32 = 0xFFFFFFFF
_C1, _C2 = 0x7FEB352D, 0x846CA68B
_GOLDEN = 0x9E3779B9
BATCH = 0xB5297A4D  # the key of batch-level draws when no dataset indices are known

# Streams: independent families of draws from one seed.
STREAMS = {"coin": 1, "image": 2, "pairs": 3, "extent": 4, "flip": 5, "weights": 6, "order": 7, "accept": 8}


def mix(h: int) -> int:
    """lowbias32 on a Python int in [0, 2**32)."""
    h ^= h >> 16
    h = (h * _C1) & M32
    h ^= h >> 15
    h = (h * _C2) & M32
    h ^= h >> 16
    return h


def _mul32_(h: torch.Tensor, c: int, tmp: torch.Tensor) -> None:
    """h = h * c mod 2**32, in place and exact: split c in 16-bit halves so no product passes 2**49."""
    tmp.copy_(h).mul_(c >> 16).bitwise_and_(0xFFFF).bitwise_left_shift_(16)
    h.mul_(c & 0xFFFF).add_(tmp).bitwise_and_(M32)


def mix_(h: torch.Tensor, tmp: torch.Tensor) -> torch.Tensor:
    """lowbias32 on an int64 tensor of values in [0, 2**32), in place (tmp: a scratch tensor like h)."""
    tmp.copy_(h).bitwise_right_shift_(16)
    h.bitwise_xor_(tmp)
    _mul32_(h, _C1, tmp)
    tmp.copy_(h).bitwise_right_shift_(15)
    h.bitwise_xor_(tmp)
    _mul32_(h, _C2, tmp)
    tmp.copy_(h).bitwise_right_shift_(16)
    h.bitwise_xor_(tmp)
    return h


def base_key(seed: int, step: int, stream: str) -> int:
    """The 32-bit key of one (seed, step, stream): a chain of mixes over their 32-bit words."""
    h = mix(seed & M32)
    for word in ((seed >> 32) & M32, step & M32, (step >> 32) & M32, STREAMS[stream]):
        h = mix(h ^ word)
    return h


def check_seed(seed) -> int:
    """A seed is an int (NumPy integers too); 64 bits of it are used."""
    if isinstance(seed, bool) or not isinstance(seed, numbers.Integral):
        raise TypeError(f"seed must be an int, got {type(seed).__name__}")
    return int(seed)


def resolve_seed(seed: int | None, generator: torch.Generator | None) -> int:
    """A protocol's seed: `seed`, else 62 bits drawn from `generator`, else torch.initial_seed() (read, not
    consumed: the global random stream, and so initialisation and data order, are left alone)."""
    if seed is not None:
        return check_seed(seed)
    if generator is not None and not isinstance(generator, torch.Generator):
        raise TypeError(f"generator must be a torch.Generator, got {type(generator).__name__}")
    if generator is not None:
        return int(torch.randint(0, 2**62, (1,), generator=generator).item())
    return torch.initial_seed()


def check_count(name: str, v, most: int | None = None) -> int:
    """An int >= 1 (and <= most): TypeError for another type, ValueError for another value."""
    if isinstance(v, bool) or not isinstance(v, numbers.Integral):
        raise TypeError(f"{name} must be an int >= 1, got {type(v).__name__}")
    if v < 1 or (most is not None and v > most):
        bounds = f"in [1, {most}]" if most else ">= 1"
        raise ValueError(f"{name} must be an int {bounds}, got {v!r}")
    return int(v)


def check_counter(name: str, v) -> int:
    """A step or epoch counter: an int in [0, 2**63) (it is kept as an int64)."""
    if isinstance(v, bool) or not isinstance(v, numbers.Integral):
        raise TypeError(f"{name} must be an int >= 0, got {type(v).__name__}")
    if v < 0 or v >= 2**63:
        raise ValueError(f"{name} must be in [0, 2**63), got {v}")
    return int(v)


def check_probability(name: str, v) -> float:
    """A real number in [0, 1]: TypeError for another type, ValueError for another value (NaN included)."""
    if isinstance(v, bool) or not isinstance(v, numbers.Real):
        raise TypeError(f"{name} must be a real number in [0, 1], got {type(v).__name__}")
    if not 0.0 <= float(v) <= 1.0:
        raise ValueError(f"{name} must be in [0, 1], got {v!r}")
    return float(v)


class Workspace:
    """Named int64 buffers of fixed shapes on one device, made on first use and reused after."""

    def __init__(self, device):
        self.device = torch.device(device)
        self._bufs: dict = {}

    def get(self, name: str, *shape: int) -> torch.Tensor:
        t = self._bufs.get(name)
        if t is None or tuple(t.shape) != shape:
            t = self._bufs[name] = torch.zeros(shape, dtype=torch.int64, device=self.device)
        return t


def words_(out: torch.Tensor, keys: torch.Tensor, base: int, draw: int, tmp: torch.Tensor) -> torch.Tensor:
    """out = uniform 32-bit words, one per key, for draw number `draw` under `base` (in place)."""
    out.copy_(keys).bitwise_xor_(base)
    mix_(out, tmp)
    out.bitwise_xor_((draw * _GOLDEN + 1) & M32)
    return mix_(out, tmp)


def below_(u: torch.Tensor, n: int) -> torch.Tensor:
    """Maps uniform 32-bit words to uniform integers in [0, n) (multiply-shift; bias below n / 2**32)."""
    return u.mul_(n).bitwise_right_shift_(32)


def distinct_(out: torch.Tensor, keys: torch.Tensor, n: int, base: int, ws: Workspace, tag: str) -> torch.Tensor:
    """Fills out (G, m) with m distinct integers of [0, n) per row, uniform over ordered m-tuples (keys: (G,)).

    Draw t picks the r-th smallest value not yet taken, r uniform in [0, n - t); that value is the fixed point of
    e = r + #{taken <= e}, reached in at most t steps. In place; no host sync.
    """
    g, m = out.shape
    r, e, acc, tmp = (ws.get(f"{tag}.{name}", g) for name in ("r", "e", "acc", "tmp"))
    for t in range(m):
        below_(words_(r, keys, base, t, tmp), n - t)
        e.copy_(r)
        for _ in range(t):
            acc.zero_()
            for t2 in range(t):
                acc.add_(tmp.copy_(out[:, t2]).le_(e))
            e.copy_(r).add_(acc)
        out[:, t].copy_(e)
    return out


def image_keys_(out: torch.Tensor, indices: torch.Tensor | None, tmp: torch.Tensor) -> torch.Tensor:
    """Per-image keys: mixed dataset indices (or batch positions when indices is None), in [0, 2**32)."""
    if indices is None:
        torch.arange(out.numel(), out=out)
    else:
        out.copy_(indices).bitwise_and_(M32)
    return mix_(out, tmp)


def batch_key_(out: torch.Tensor, keys: torch.Tensor) -> torch.Tensor:
    """An order-independent key of a batch: the sum of its image keys mod 2**32 (out: shape (1,))."""
    torch.sum(keys, dim=0, keepdim=True, out=out)
    return out.bitwise_and_(M32)


# Host-side draws: the same generator on Python ints, for plans whose size is a handful of numbers per tensor
# (weight swaps). They cost microseconds, need no device work and are identical for every device and rank.


def word(key: int, base: int, draw: int) -> int:
    """One uniform 32-bit word, as words_ computes it for one key."""
    return mix(mix((key ^ base) & M32) ^ ((draw * _GOLDEN + 1) & M32))


def below(u: int, n: int) -> int:
    """Uniform integer in [0, n) from a uniform 32-bit word, as below_."""
    return (u * n) >> 32


def distinct(key: int, base: int, n: int, m: int, first_draw: int = 0) -> list[int]:
    """m distinct integers of [0, n), uniform over ordered m-tuples, as distinct_ computes one row."""
    out: list[int] = []
    for t in range(m):
        r = below(word(key, base, first_draw + t), n - t)
        e = r
        for _ in range(t):
            e = r + sum(1 for v in out if v <= e)
        out.append(e)
    return out
