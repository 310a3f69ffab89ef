"""Weight swaps on sharded models: FSDP2 (fully_shard) and a tensor-parallel Shard(1) weight, in 2 gloo processes on
the CPU, held bit for bit to the same seeded swaps of the unsharded model in one process."""

import copy
import os
import socket
import sys
import traceback

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from torch import nn
from torch.nn import functional as F

pytest.importorskip("torch.distributed.fsdp")
pytestmark = pytest.mark.skipif(not dist.is_available(), reason="torch.distributed is not available")

PROTOCOLS = ["rows", "cols", "mixed", "neuron"]


def _mlp():
    torch.manual_seed(0)  # 6 and 5 hidden units: an even and an uneven split over 2 ranks
    return nn.Sequential(nn.Linear(8, 6), nn.ReLU(), nn.Linear(6, 5), nn.ReLU(), nn.Linear(5, 4))


def _train(model, ws, opt, steps=3):
    torch.manual_seed(1)
    for _ in range(steps):  # the same batch on every rank: FSDP2's averaged gradients equal the unsharded ones
        x, y = torch.randn(7, 8), torch.randn(7, 4)
        loss = F.mse_loss(model(x), y)
        opt.zero_grad()
        loss.backward()
        opt.step()
        ws.step(optimizer=opt)


def _full(t):
    from torch.distributed.tensor import DTensor

    return t.full_tensor() if isinstance(t, DTensor) else t


def _check_fsdp2(mesh, out):
    from torch.distributed.fsdp import fully_shard

    from swapkern import WeightSwap

    for protocol in PROTOCOLS:
        for state in (False, True):
            ref = _mlp()
            model = copy.deepcopy(ref)
            for m in model:
                if isinstance(m, nn.Linear):
                    fully_shard(m, mesh=mesh)
            fully_shard(model, mesh=mesh)
            results = []
            for net in (ref, model):
                opt = torch.optim.SGD(net.parameters(), lr=0.1, momentum=0.9)
                ws = WeightSwap(net, protocol, swaps=2, state=state, seed=3)
                _train(net, ws, opt)
                params = [_full(p.detach()) for p in net.parameters()]
                moms = [_full(opt.state[p]["momentum_buffer"]) for p in net.parameters()]
                results.append((params, moms, ws))
            (rp, rm, _), (sp, sm, sws) = results
            same = all(torch.equal(a, b) for a, b in zip(rp + rm, sp + sm, strict=True))
            out.append((f"fsdp2 {protocol} state={state}", same, sws._engine._packed.bytes_sent))


def _check_tensor_parallel(mesh, out):
    from torch.distributed.tensor import Shard, distribute_tensor

    from swapkern import WeightSwap

    for protocol in ("rows", "cols", "mixed", "bias"):
        torch.manual_seed(2)
        ref = nn.Linear(6, 4)
        lin = copy.deepcopy(ref)
        lin.weight = nn.Parameter(distribute_tensor(lin.weight.detach(), mesh, [Shard(1)]))
        results = []
        for net in (ref, lin):
            opt = torch.optim.SGD(net.parameters(), lr=0.1, momentum=0.9)
            for p in net.parameters():  # a gradient of the tensor's own kind, so the state is too
                p.grad = torch.ones_like(p)
            opt.step()
            ws = WeightSwap(
                net, protocol, swaps=2, state=True, seed=5, layers=["weight"] if protocol != "bias" else "all"
            )
            for _ in range(3):
                ws.step(optimizer=opt)
            results.append(
                [_full(p.detach()) for p in net.parameters()] + [_full(opt.state[net.weight]["momentum_buffer"])]
            )
        same = all(torch.equal(a, b) for a, b in zip(*results, strict=True))
        out.append((f"tensor-parallel Shard(1) {protocol}", same, None))


def _check_refusals(out):
    from torch.distributed.device_mesh import init_device_mesh
    from torch.distributed.fsdp import FullyShardedDataParallel, fully_shard
    from torch.distributed.tensor import Partial, distribute_tensor

    from swapkern import WeightSwap

    mesh2d = init_device_mesh("cpu", (1, 2), mesh_dim_names=("replicate", "shard"))
    model = _mlp()
    fully_shard(model, mesh=mesh2d)
    try:
        WeightSwap(model, "rows")
        out.append(("2-D mesh refused", False, None))
    except ValueError as e:
        out.append(("2-D mesh refused", "2-D mesh" in str(e) and "Shard(0)" in str(e), None))
    lin = nn.Linear(4, 4)
    lin.weight = nn.Parameter(distribute_tensor(torch.ones(4, 4), init_device_mesh("cpu", (2,)), [Partial()]))
    try:
        WeightSwap([("w", lin.weight)], "rows")
        out.append(("Partial refused", False, None))
    except ValueError as e:
        out.append(("Partial refused", "Partial" in str(e), None))
    for orig in (False, True):
        fsdp1 = FullyShardedDataParallel(_mlp(), device_id=torch.device("cpu"), use_orig_params=orig)
        # The module is recognised; so is a flat parameter given alone (use_orig_params=False). The plain 1-D shard
        # views of use_orig_params=True carry no mark: only the module form can be refused.
        for target in (fsdp1,) if orig else (fsdp1, list(fsdp1.named_parameters())):
            try:
                WeightSwap(target, "rows")
                out.append((f"FSDP1 (use_orig_params={orig}) refused", False, None))
            except ValueError as e:
                out.append((f"FSDP1 (use_orig_params={orig}) refused", "FSDP1" in str(e), None))


def _worker(rank, world, port, path):
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), RANK=str(rank), WORLD_SIZE=str(world))
    torch.set_num_threads(1)
    dist.init_process_group("gloo", rank=rank, world_size=world)
    out = []
    try:
        from torch.distributed.device_mesh import init_device_mesh

        mesh = init_device_mesh("cpu", (world,))
        _check_fsdp2(mesh, out)
        _check_tensor_parallel(mesh, out)
        _check_refusals(out)
    except Exception:
        out.append(("exception", False, traceback.format_exc()))
    torch.save(out, f"{path}.{rank}")
    dist.barrier()
    dist.destroy_process_group()
    sys.stdout.flush()
    os._exit(0)  # leave without the interpreter's teardown, where gloo's threads can abort a process


def _free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_weight_swaps_on_sharded_models_equal_unsharded(tmp_path):
    path = str(tmp_path / "result")
    mp.spawn(_worker, args=(2, _free_port(), path), nprocs=2, join=True)
    for rank in range(2):
        results = torch.load(f"{path}.{rank}", weights_only=False)
        bad = [r for r in results if not r[1]]
        assert not bad, (rank, bad)
        names = [r[0] for r in results]
        assert len([n for n in names if n.startswith("fsdp2")]) == 2 * len(PROTOCOLS)
        sent = {n: b for n, _, b in results if n.startswith("fsdp2")}
        assert sent["fsdp2 rows state=True"] > 0 and sent["fsdp2 cols state=False"] == 0  # columns stay local
