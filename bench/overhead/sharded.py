"""The sharded weight-swap rows (python -m bench.overhead --sharded): a WeightSwap step on an FSDP2 model in 2 gloo
processes on the CPU (one thread each), against the same step on the unsharded model in the same process, and the
bytes a step sends to the other rank."""

from __future__ import annotations

import os
import socket
import tempfile

import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from torch import nn

from ..common.timing import measure

PROTOCOLS = ("rows", "cols", "mixed", "neuron")


def _mlp(width=512, depth=4):
    torch.manual_seed(0)
    layers = []
    for _ in range(depth):
        layers += [nn.Linear(width, width), nn.ReLU()]
    return nn.Sequential(*layers, nn.Linear(width, 10))


def _worker(rank, world, port, path):
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), RANK=str(rank), WORLD_SIZE=str(world))
    torch.set_num_threads(1)
    dist.init_process_group("gloo", rank=rank, world_size=world)
    from torch.distributed.device_mesh import init_device_mesh
    from torch.distributed.fsdp import fully_shard

    import swapkern

    mesh = init_device_mesh("cpu", (world,))
    rows = []
    for protocol in PROTOCOLS:
        for state in (False, True):
            times = {}
            for kind in ("unsharded", "FSDP2, 2 ranks"):
                model = _mlp()
                if kind != "unsharded":
                    for m in model:
                        if isinstance(m, nn.Linear):
                            fully_shard(m, mesh=mesh)
                    fully_shard(model, mesh=mesh)
                opt = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
                model(torch.randn(8, 512)).sum().backward()
                opt.step()
                ws = swapkern.WeightSwap(model, protocol, swaps=4, state=state, seed=1, layers="all")
                ws.step(optimizer=opt)  # packs
                dist.barrier()
                # a fixed number of calls (min_time_s=0): a sharded step is a collective, so both ranks must make
                # the same calls; a time-based count differs between ranks and leaves one waiting for ever
                step = lambda ws=ws, opt=opt: ws.step(optimizer=opt)  # noqa: E731
                t = measure([step], torch.device("cpu"), repeats=50, min_time_s=0)
                packed = ws._engine._packed
                sent = getattr(packed, "bytes_sent", 0) / max(1, ws.draws)
                times[kind] = t.median_us
                rows.append(
                    {
                        "case": f"sharded: MLP 4x512 on 2 gloo ranks, {protocol}, state={state}",
                        "backend": kind + (f", {sent:.0f} B sent per step" if kind != "unsharded" else ""),
                        "moved_bytes": 0,
                        "alloc_bytes": 0,
                        "bytes_sent_per_step": sent,
                        **t.as_dict(),
                    }
                )
    if rank == 0:
        torch.save(rows, path)
    dist.barrier()
    dist.destroy_process_group()
    os._exit(0)  # leave without the interpreter's teardown, where gloo's threads can abort a process


def sharded_rows():
    """Runs the 2-process measurement; returns rank 0's rows."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    with tempfile.TemporaryDirectory() as d:
        path = os.path.join(d, "rows.pt")
        mp.spawn(_worker, args=(2, port, path), nprocs=2, join=True)
        return torch.load(path, weights_only=False)
