"""Weight swaps on sharded parameters: DTensors on a 1-D device mesh (FSDP2's fully_shard, tensor parallelism)
with Shard(0), Shard(1) or Replicate() placements, and their DTensor optimizer state.

Every rank draws the same exchanges (the counter-based generator, from one seed). An exchange moves slices along
one dim (rows, columns) or single elements. A position along a dim a tensor is not sharded on exists on every rank
(a replicated tensor, or columns of a row-sharded weight): every rank exchanges its part locally. A position along
the sharded dim lives on one rank: two positions on one rank are exchanged there; two on different ranks are sent
to each other, only the slices involved, all of a step's slices to one peer in one buffer, with one batched
point-to-point call per step (never an all-gather of a parameter). Local exchanges run through the public swap ops
on the local shards (FSDP2's to_local() shares storage with the sharded parameter): this module is a layer above the
seam (swapkern._backend), not a backend; swapkern.multi.Engine packs and steps sharded tensors with it.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.distributed as dist

from . import ops
from ._common import APPLY, DRAW, fingerprint
from ._groups import INTER, draw_group

try:
    from torch.distributed.tensor import DTensor, Replicate, Shard
except ImportError:  # torch without distributed
    DTensor = None


def is_sharded(t) -> bool:
    return DTensor is not None and isinstance(t, DTensor)


def is_flat_param(t) -> bool:
    """FSDP1's flat parameters (whole modules flattened into one 1-D tensor)."""
    return bool(getattr(t, "_is_flat_param", False)) or type(t).__name__ == "FlatParameter"


def check(name: str, t) -> None:
    """ValueError for placements this module does not handle, naming them and what is supported."""
    if is_flat_param(t):
        raise ValueError(
            f"{name} is an FSDP1 flat parameter (FullyShardedDataParallel); weight swaps address layers' own "
            "tensors: use FSDP2's fully_shard, or swap inside FSDP1's summon_full_params"
        )
    if not is_sharded(t):
        return
    mesh, placements = t.device_mesh, t.placements
    if mesh.ndim != 1:
        raise ValueError(
            f"{name} is a DTensor on a {mesh.ndim}-D mesh with placements {placements}: weight swaps support 1-D "
            "meshes with Shard(0), Shard(1) or Replicate()"
        )
    p = placements[0]
    if not (isinstance(p, Replicate) or (isinstance(p, Shard) and p.dim in (0, 1))):
        raise ValueError(
            f"{name} has placement {type(p).__name__} ({p!r}): weight swaps support Shard(0), Shard(1) and Replicate()"
        )


def check_model(model) -> None:
    """FSDP1 (FullyShardedDataParallel) at module level: with use_orig_params=True its parameters are plain 1-D
    shard views that no per-parameter check can recognise."""
    for name, m in model.named_modules():
        if type(m).__name__ == "FullyShardedDataParallel":
            raise ValueError(
                f"{name or 'the model'} is wrapped by FSDP1 (FullyShardedDataParallel), whose flat shards cut across "
                "layers; weight swaps support FSDP2's fully_shard, or swap inside FSDP1's summon_full_params"
            )


@dataclass
class _Side:
    """One tensor of a job on this rank: its local shard (viewed as the job needs), the dim it is sharded on
    (None: every rank holds every position of the exchanged dim), the global shape, and the shard offsets."""

    local: torch.Tensor
    shard: int | None
    shape: tuple
    offsets: list  # start of each rank's shard along `shard` (and the total at the end)

    def owner(self, i: int, dim: int | None):
        """(rank or None for every rank, local index) of position i along dim (None: flat element index)."""
        if dim is None:  # a flat element: its coordinate along the sharded dim decides
            if self.shard is None:
                return None, i
            coords, rest = [], i
            for s in reversed(self.shape):
                coords.append(rest % s)
                rest //= s
            coords.reverse()
            r = _rank_of(self.offsets, coords[self.shard])
            coords[self.shard] -= self.offsets[r]
            local_shape = list(self.shape)
            local_shape[self.shard] = self.offsets[r + 1] - self.offsets[r]
            flat = 0
            for c, s in zip(coords, local_shape, strict=True):
                flat = flat * s + c
            return r, flat
        if self.shard != dim:
            return None, i
        r = _rank_of(self.offsets, i)
        return r, i - self.offsets[r]

    def piece(self, j: int, dim: int | None):
        """The local slice (or one-element view) at local position j."""
        return self.local.reshape(-1)[j : j + 1] if dim is None else self.local.select(dim, j)


def _rank_of(offsets, i):
    for r in range(len(offsets) - 1):
        if offsets[r] <= i < offsets[r + 1]:
            return r
    raise IndexError(f"position {i} is in no shard {offsets}")


def _side(t, view, view_dim, name):
    if not is_sharded(t):
        return _Side(view(t) if view else t, None, tuple(t.shape), [])
    p = t.placements[0]
    shard = p.dim if isinstance(p, Shard) else None
    if view is not None and view_dim is not None and view_dim == shard:
        raise ValueError(f"{name}: a view along the sharded dim {shard} is not supported")
    local = t.to_local()
    if view is not None:
        local = view(local)
    if not local.is_contiguous():
        raise ValueError(f"{name}: the local shard is not contiguous")
    offsets = []
    if shard is not None:
        n = t.device_mesh.size(0)
        for r in range(n):
            _, off = Shard.local_shard_size_and_offset(t.shape[shard], n, r)
            offsets.append(off)
        offsets.append(t.shape[shard])
    return _Side(local, shard, tuple(t.shape), offsets)


class Packed:
    def __init__(self, engine):
        self.jobs, meshes = [], set()
        for job in engine.jobs:
            x, y = job.x, job.y
            meshes |= {t.device_mesh for t in (x, y) if is_sharded(t)}
            sx = _side(x, job.view, job.view_dim, "x")
            sy = sx if y is x else _side(y, job.view, job.view_dim, "y")
            self.jobs.append((job, sx, sy))
        if len(meshes) != 1:
            raise ValueError(f"weight swaps over sharded tensors need them on one device mesh, got {len(meshes)}")
        self.group = meshes.pop().get_group()
        self.rank, self.world = dist.get_rank(self.group), dist.get_world_size(self.group)
        self.prints = fingerprint([t.to_local() if is_sharded(t) else t for t in engine.watched])
        self.drawn = None
        self.bytes_sent = 0


def multi_pack(engine):
    return Packed(engine)


def multi_step_(engine, packed, seed, step, mode):
    if fingerprint([t.to_local() if is_sharded(t) else t for t in engine.watched]) != packed.prints:
        return False
    if mode & DRAW:
        packed.drawn = [draw_group(g, seed, step) for g in engine.groups]
    if mode & APPLY:
        _apply(engine, packed)
    return True


def _apply(engine, packed):
    """Exchanges one drawn step: locally where both positions are on this rank (or on every rank); by sending the
    slices involved where they are not, all of them to one peer in one buffer, in one batched call. A position on
    one rank paired with one that is on every rank (a replicated tensor) is exchanged by its owner, which then
    sends the replicated side's new value to the other ranks."""
    me = packed.rank
    sends: dict = {}  # peer -> [tensor whose bytes go to the peer, read after the local exchanges]
    recvs: dict = {}  # peer -> [tensor the peer's bytes are written into]
    with torch.no_grad():
        for job, sx, sy in packed.jobs:
            a, b, pick = packed.drawn[job.group]
            if engine.groups[job.group].kind == INTER and job.job != pick:
                continue
            la, lb = [], []
            for i, j in zip(a, b, strict=True):
                (rx, ix), (ry, jy) = sx.owner(i, job.dx), sy.owner(j, job.dy)
                if rx == ry:  # both on every rank, or both on one rank
                    if rx is None or rx == me:
                        la.append(ix)
                        lb.append(jy)
                elif rx is None or ry is None:  # one side on every rank: its owner-side partner's rank decides
                    owner, mine = (ry, sx.piece(ix, job.dx)) if rx is None else (rx, sy.piece(jy, job.dy))
                    if owner == me:
                        la.append(ix)
                        lb.append(jy)
                        for q in range(packed.world):
                            if q != me:
                                sends.setdefault(q, []).append(mine)
                    else:
                        recvs.setdefault(owner, []).append(mine)
                elif me in (rx, ry):  # on two ranks: each sends its slice and takes the other's
                    peer = ry if me == rx else rx
                    piece = sx.piece(ix, job.dx) if me == rx else sy.piece(jy, job.dy)
                    sends.setdefault(peer, []).append(piece)
                    recvs.setdefault(peer, []).append(piece)
            if la:
                _local(job, sx.local, sy.local, la, lb)
        if sends or recvs:
            packed.bytes_sent += _exchange(packed.group, sends, recvs)


def _local(job, x, y, a, b):
    if x is y and job.dx is None:
        ops.swap_elements_(x, a, b, validate=False)
    elif x is y:
        ops.swap_(x, job.dx, a, b, validate=False)
    else:
        ops.swap_between_(x, y, a, b, dim_x=job.dx, dim_y=job.dy, validate=False)


def _bytes(t):
    return t.contiguous().reshape(-1).view(torch.uint8)


def _exchange(group, sends, recvs):
    """One batched point-to-point call: to each peer the concatenated bytes of the slices it needs, from each
    peer those of ours, written back in the order both sides enumerated the pairs. Returns the bytes sent."""
    p2p, incoming, sent = [], [], 0
    for peer in sorted(set(sends) | set(recvs)):
        g = dist.get_global_rank(group, peer)
        if sends.get(peer):
            out = torch.cat([_bytes(t) for t in sends[peer]])
            p2p.append(dist.P2POp(dist.isend, out, g, group))
            sent += out.numel()
        if recvs.get(peer):
            into = torch.empty(sum(t.numel() * t.element_size() for t in recvs[peer]), dtype=torch.uint8)
            p2p.append(dist.P2POp(dist.irecv, into, g, group))
            incoming.append((recvs[peer], into))
    for work in dist.batch_isend_irecv(p2p):
        work.wait()
    for dests, into in incoming:
        at = 0
        for dest in dests:
            n = dest.numel() * dest.element_size()
            dest.copy_(into[at : at + n].view(dest.dtype).view(dest.shape))
            at += n
    return sent
