"""The multi-tensor engine (swapkern.multi): waves that never race, packed plans that follow the tensors they were
packed for, and the same result on every backend as exchanging tensor by tensor in job order."""

import copy

import pytest
import torch
from torch import nn

from swapkern import reference as ref
from swapkern._groups import PAIRS, Group, Job, draw_group
from swapkern.multi import BoundJob, Engine, waves
from swapkern.optim import WeightSwap


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
        p.data = p.data.as_strided((4, 6), (1, 4))  # same storage, address and shape, other strides
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


def _counted_waves(jobs):
    from swapkern import multi

    before = multi.WAVE_COMPARISONS[0]
    out = waves(jobs)
    return out, multi.WAVE_COMPARISONS[0] - before


def _waves_by_definition(jobs):
    """One after the last earlier job whose bytes any of its tensors touch: every earlier job compared."""
    from swapkern._checks import memory_intersects

    out = []
    for j, job in enumerate(jobs):
        mine = (job.x, job.y)
        touched = [
            out[i] for i in range(j) if any(memory_intersects(a, b) for a in mine for b in (jobs[i].x, jobs[i].y))
        ]
        out.append(max(touched) + 1 if touched else 0)
    return out


@pytest.mark.parametrize("n", [50, 400])
def test_waves_grow_linearly_with_the_jobs(n):
    # A neuron-like chain (each layer's rows; its columns with the next layer's rows) and n disjoint views of one
    # flat buffer (FSDP1-like) with exchanges between neighbours, and views overlapping two of them: the waves are
    # those of the definition, and the ranges compared stay within a constant per job, whatever n.
    ws_ = [torch.zeros(4, 4) for _ in range(n)]
    jobs = [BoundJob(w, w, 0, 0, 0, i) for i, w in enumerate(ws_)]
    jobs += [BoundJob(ws_[i], ws_[i + 1], 1, 0, 1, i) for i in range(0, n - 1, 2)]
    flat = torch.zeros(16 * n)
    views = [flat[16 * i : 16 * (i + 1)] for i in range(n)]
    jobs += [BoundJob(v, v, None, None, 2, i) for i, v in enumerate(views)]
    jobs += [BoundJob(views[i], views[i + 1], None, None, 3, i) for i in range(0, n - 1, 2)]
    across = [flat[16 * i + 8 : 16 * i + 24] for i in range(n - 1)]
    jobs += [BoundJob(v, v, None, None, 4, i) for i, v in enumerate(across)]
    wave, count = _counted_waves(jobs)
    if n <= 50:
        assert wave == _waves_by_definition(jobs)
    assert max(wave) == 2 and count <= 3 * len(jobs)


# -- the engine binds to what the model holds now (issue 23) -----------------------------------------------------------
def _counting_packs(ws):
    """Counts the engine's (re)packs: each calls the WeightSwap binding's bind() once."""
    calls = [0]
    bind = ws._engine.bind

    def counted():
        calls[0] += 1
        return bind()

    ws._engine.bind = counted
    return calls


def _bn_mlp():
    torch.manual_seed(0)
    # Flatten gives the BatchNorm a 2-D input, so neuron can prove it normalises the features
    m = nn.Sequential(nn.Flatten(), nn.Linear(4, 8), nn.BatchNorm1d(8), nn.ReLU(), nn.Linear(8, 3)).double()
    with torch.no_grad():
        m[2].running_mean.normal_()
        m[2].running_var.uniform_(0.5, 2.0)
    return m.eval()


def test_neuron_keeps_the_function_after_the_model_is_converted_and_back(any_backend):
    # Module._apply gives the BatchNorm new buffer objects (and parameters new .data): the engine follows them.
    m = _bn_mlp()
    x = torch.randn(5, 4, dtype=torch.float64)
    ws = WeightSwap(m, "neuron", swaps=2, seed=1)
    ws.step()
    m.float()
    m.double()
    before, mean = m(x), m[2].running_mean.clone()
    for _ in range(5):
        ws.step()
    assert (m(x) - before).abs().max() < 1e-12
    assert not torch.equal(m[2].running_mean, mean)  # the model's buffers moved (with their units)


@pytest.mark.parametrize("convert", ["half", "to_double", "assign_buffer"])
def test_replaced_buffers_and_parameters_are_the_ones_swapped(any_backend, convert):
    m = _bn_mlp()
    ws = WeightSwap(m, "neuron", swaps=2, seed=1)
    ws.step()
    old_mean = m[2].running_mean
    if convert == "half":
        m.half()
    elif convert == "to_double":
        m.float()
        m.to(torch.float64)
    else:
        m[2].running_mean = torch.arange(8.0, dtype=torch.float64)
    old_snapshot, mean = old_mean.clone(), m[2].running_mean.clone()
    w, b = m[1].weight.detach().clone(), m[1].bias.detach().clone()
    ws.step()
    assert torch.equal(old_mean, old_snapshot)  # the stale buffer is left alone
    # rows of the first layer, its bias and the BatchNorm entries move together: by the same permutation
    perm = [int((w == row).all(1).nonzero()[0]) for row in m[1].weight.detach()]
    assert sorted(perm) == list(range(8)) and perm != list(range(8))
    assert torch.equal(m[1].bias.detach(), b[perm]) and torch.equal(m[2].running_mean, mean[perm])


def test_load_state_dict_assign_swaps_the_new_parameters(any_backend):
    torch.manual_seed(0)
    m = nn.Sequential(nn.Linear(4, 6), nn.ReLU(), nn.Linear(6, 3))
    ws = WeightSwap(m, "rows", seed=2)
    ws.step()
    old = m[0].weight
    old_snapshot = old.detach().clone()
    sd = {k: v.clone() for k, v in m.state_dict().items()}
    m.load_state_dict(sd, assign=True)
    assert m[0].weight is not old
    new_before = m[0].weight.detach().clone()
    ws.step()
    assert torch.equal(old.detach(), old_snapshot)
    a, b, _ = draw_group(ws.groups[0], ws.seed, 1)
    ref.swap_(new_before, 0, a, b)
    assert torch.equal(m[0].weight.detach(), new_before)


@pytest.mark.parametrize("how", ["data", "assign"])
def test_a_parameter_of_another_shape_is_refused_untouched(any_backend, how):
    m = nn.Sequential(nn.Linear(4, 2, bias=False))
    ws = WeightSwap(m, "rows", layers="all", seed=0)
    ws.step()
    small = torch.arange(4.0).view(1, 4)
    if how == "data":
        m[0].weight.data = small
    else:
        m[0].weight = nn.Parameter(small)
    with pytest.raises(ValueError, match=r"0\.weight has shape \(1, 4\) but the WeightSwap was built for \(2, 4\)"):
        ws.step()
    assert torch.equal(m[0].weight.detach(), torch.arange(4.0).view(1, 4))


def test_a_parameter_list_of_another_shape_is_refused(any_backend):
    p = nn.Parameter(torch.arange(8.0).view(2, 4))
    ws = WeightSwap([("w", p)], "rows", seed=0)
    ws.step()
    p.data = torch.arange(4.0).view(1, 4)
    with pytest.raises(ValueError, match="w has shape"):
        ws.step()


def test_a_model_moved_to_another_device_is_refused(any_backend):
    m = nn.Sequential(nn.Linear(4, 4))
    ws = WeightSwap(m, "rows", layers="all", seed=0)
    m.to("meta")
    with pytest.raises(ValueError, match="is on meta but the WeightSwap was built for cpu"):
        ws.step()


def test_a_broken_tie_or_a_removed_tensor_is_refused(any_backend):
    emb, head = nn.Embedding(6, 4), nn.Linear(4, 6, bias=False)
    head.weight = emb.weight
    m = nn.ModuleDict({"emb": emb, "head": head})
    ws = WeightSwap(m, "rows", layers="all", seed=0)
    ws.step()
    head.weight = nn.Parameter(emb.weight.detach().clone())
    with pytest.raises(ValueError, match="tie was broken"):
        ws.step()
    head.weight = emb.weight
    ws.step()  # tied again: fine
    m2 = nn.Sequential(nn.Linear(4, 4))
    ws2 = WeightSwap(m2, "rows", layers="all", seed=0)
    del m2[0].weight
    with pytest.raises(ValueError, match="was removed"):
        ws2.step()


def test_a_new_optimizer_state_tensor_is_the_one_swapped(any_backend):
    torch.manual_seed(0)
    m = nn.Sequential(nn.Linear(4, 6))
    opt = torch.optim.SGD(m.parameters(), lr=0.1, momentum=0.9)
    m(torch.randn(2, 4)).sum().backward()
    opt.step()
    ws = WeightSwap(m, "rows", layers="all", state=True, seed=1)
    ws.step(optimizer=opt)
    w = m[0].weight
    old = opt.state[w]["momentum_buffer"]
    old_snapshot = old.clone()
    opt.state[w]["momentum_buffer"] = torch.arange(24.0).view(6, 4)
    want = torch.arange(24.0).view(6, 4)
    ws.step(optimizer=opt)
    a, b, _ = draw_group(ws.groups[0], ws.seed, 1)
    ref.swap_(want, 0, a, b)
    assert torch.equal(opt.state[w]["momentum_buffer"], want) and torch.equal(old, old_snapshot)


@pytest.mark.parametrize("make_opt", ["sgd", "sgd_momentum", "lbfgs"])
def test_state_true_packs_once_when_the_state_does_not_change(any_backend, make_opt):
    torch.manual_seed(0)
    m = nn.Sequential(nn.Linear(4, 6), nn.ReLU(), nn.Linear(6, 3))
    params = list(m.parameters())
    opt = {
        "sgd": lambda: torch.optim.SGD(params, lr=0.1),
        "sgd_momentum": lambda: torch.optim.SGD(params, lr=0.1, momentum=0.9),
        "lbfgs": lambda: torch.optim.LBFGS(params, lr=0.1, max_iter=2),
    }[make_opt]()
    ws = WeightSwap(m, "rows", layers="all", state=True, seed=1)
    packs = _counting_packs(ws)
    x = torch.randn(3, 4)

    def closure():
        opt.zero_grad()
        loss = m(x).pow(2).sum()
        loss.backward()
        return loss

    for _ in range(6):
        opt.step(closure)
        ws.step(optimizer=opt)
    # the state (none; momentum buffers; LBFGS's own entries, replaced every step) is there from the first step on
    assert packs[0] == 1
    ws2 = WeightSwap(m, "rows", layers="all", state=True, seed=1)
    packs2 = _counting_packs(ws2)
    ws2.step(optimizer=opt)
    assert packs2[0] == 1


def test_state_true_repacks_when_the_state_appears(any_backend):
    torch.manual_seed(0)
    m = nn.Sequential(nn.Linear(4, 6))
    opt = torch.optim.SGD(m.parameters(), lr=0.1, momentum=0.9)
    ws = WeightSwap(m, "rows", layers="all", state=True, seed=1)
    packs = _counting_packs(ws)
    ws.step(optimizer=opt)  # no state yet
    m(torch.randn(2, 4)).sum().backward()
    opt.step()  # the momentum buffers appear
    w = m[0].weight
    want = opt.state[w]["momentum_buffer"].clone()
    for step in (1, 2, 3):
        ws.step(optimizer=opt)
        a, b, _ = draw_group(ws.groups[0], ws.seed, step)
        ref.swap_(want, 0, a, b)
    assert torch.equal(opt.state[w]["momentum_buffer"], want) and packs[0] == 2


def test_inference_tensors_move_only_inside_inference_mode(any_backend):
    with torch.inference_mode():
        m = nn.Sequential(nn.Linear(4, 6))
    ws = WeightSwap(m, "rows", layers="all", seed=0)
    before = m[0].weight.clone()
    with pytest.raises(RuntimeError, match="inference tensor outside InferenceMode"):
        ws.step()
    assert torch.equal(m[0].weight, before)
    with torch.inference_mode():
        ws.step()
    assert not torch.equal(m[0].weight, before)
