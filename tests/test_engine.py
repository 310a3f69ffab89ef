"""The multi-tensor engine (swapkern.multi): waves that never race, packed plans that follow the tensors they were
packed for, and the same result on every backend as exchanging tensor by tensor in job order."""

import copy

import pytest
import torch
from conftest import usable_backends
from torch import nn

import swapkern
from swapkern import reference as ref
from swapkern._weightplan import PAIRS, Group, Job, draw_group
from swapkern.multi import BoundJob, Engine, waves
from swapkern.optim import WeightSwap


@pytest.fixture(
    params=[
        "native",
        "torch",
        pytest.param("triton", marks=pytest.mark.triton),
        pytest.param("cuda-emulated", marks=pytest.mark.emulation),
    ]
)
def any_backend(request):
    if request.param not in usable_backends("cpu"):
        pytest.skip(f"backend {request.param} cannot run on CPU tensors here")
    with swapkern.use_backend(request.param):
        yield request.param


def test_waves_never_put_two_exchanges_of_one_memory_in_one_launch():
    lin = nn.Linear(6, 6)  # one module used twice: its rows (as a layer's outputs) and columns (as the next's inputs)
    w = lin.weight.detach()
    other = torch.zeros(6, 6)
    flat = torch.zeros(100)
    jobs = [
        BoundJob(w, w, 0, 0, 0, 0),
        BoundJob(other, other, 0, 0, 0, 1),
        BoundJob(w, w, 1, 1, 1, 0),  # w again: a later wave
        BoundJob(flat[:50], flat[:50], None, None, 2, 0),
        BoundJob(flat[50:], flat[50:], None, None, 3, 0),  # disjoint views of one storage: same wave
        BoundJob(flat[40:60], flat[40:60], None, None, 4, 0),  # overlaps both: after both
        BoundJob(other, w, 0, 0, 5, 0),  # touches w (wave 1) and other (wave 0): after both
    ]
    assert waves(jobs) == [0, 0, 1, 0, 0, 1, 2]


def _engine(groups, jobs_fn, device="cpu"):
    return Engine(groups, torch.device(device), jobs_fn)


def test_tied_exchanges_run_in_job_order_on_every_backend(any_backend):
    torch.manual_seed(0)
    w = torch.randn(8, 8)
    want = w.clone()
    groups = [Group(3, [Job(w, w, 0, 0)], PAIRS, 0, 8), Group(3, [Job(w, w, 1, 1)], PAIRS, 1, 8)]
    engine = _engine(groups, lambda: ([BoundJob(w, w, 0, 0, 0, 0), BoundJob(w, w, 1, 1, 1, 0)], [w]))
    for step in range(3):
        engine.step(seed=11, step=step, mode=3)
        for g, dim in zip(groups, (0, 1), strict=True):
            a, b, _ = draw_group(g, 11, step)
            ref.swap_(want, dim, a, b)
        assert torch.equal(w, want)
    assert engine.wave == [0, 1]


def test_a_changed_layout_at_the_same_address_is_packed_again(any_backend):
    p = nn.Parameter(torch.arange(24.0).view(4, 6))
    ws = WeightSwap([("w", p)], "mixed", swaps=2, seed=3)
    ws.step()
    with torch.no_grad():
        p.data = p.data.t()  # same storage and address, other shape and strides
    want = p.detach().clone()
    ws.step()
    a, b, _ = draw_group(ws.groups[0], ws.seed, 1)
    ref.swap_elements_(want, a, b)
    assert torch.equal(p.detach(), want)


def test_a_new_storage_is_packed_again(any_backend):
    p = nn.Parameter(torch.arange(24.0).view(4, 6))
    ws = WeightSwap([("w", p)], "rows", seed=3)
    ws.step()
    old = p.data
    p.data = torch.arange(100.0, 124.0).view(4, 6)
    snapshot = old.clone()
    ws.step()
    assert torch.equal(old, snapshot)  # the old storage is left alone; the new one moves
    assert not torch.equal(p.detach(), torch.arange(100.0, 124.0).view(4, 6))


def test_optimizer_state_replaced_by_load_state_dict_is_followed(any_backend):
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(4, 6), nn.ReLU(), nn.Linear(6, 3))
    opt = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    model(torch.randn(2, 4)).sum().backward()
    opt.step()
    ws = WeightSwap(model, "rows", state=True, seed=1)
    ws.attach(opt)
    ws.step(optimizer=opt)
    opt.load_state_dict(copy.deepcopy(opt.state_dict()))  # new state tensors, same values
    w = model[0].weight
    buf = opt.state[w]["momentum_buffer"]
    before_w, before_m = w.detach().clone(), buf.clone()
    ws.step(optimizer=opt)
    a, b, _ = draw_group(ws.groups[0], ws.seed, 1)
    ref.swap_(before_w, 0, a, b)
    ref.swap_(before_m, 0, a, b)
    assert torch.equal(w.detach(), before_w) and torch.equal(opt.state[w]["momentum_buffer"], before_m)
