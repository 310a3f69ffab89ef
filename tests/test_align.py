"""align_: weight matching and activation matching permute model_b towards model_a, its function unchanged."""

import copy

import pytest
import torch
from torch import nn
from torch.nn import functional as F

from swapkern import align_, apply_permutation_, permutation_groups
from swapkern.permutation import random_permutation


class Block(nn.Module):
    def __init__(self, c, hidden):
        super().__init__()
        self.a, self.bn_a = nn.Conv2d(c, hidden, 3, padding=1, bias=False), nn.BatchNorm2d(hidden)
        self.b, self.bn_b = nn.Conv2d(hidden, c, 3, padding=1, bias=False), nn.BatchNorm2d(c)

    def forward(self, x):
        return F.relu(x + self.bn_b(self.b(F.relu(self.bn_a(self.a(x))))))


class ResNetish(nn.Module):
    """A residual network in miniature: a stem, two blocks, a strided projection, a block, a head."""

    def __init__(self):
        super().__init__()
        self.stem, self.bn = nn.Conv2d(3, 8, 3, padding=1, bias=False), nn.BatchNorm2d(8)
        self.block1, self.block2 = Block(8, 12), Block(8, 6)
        self.down, self.bn_down = nn.Conv2d(8, 16, 3, stride=2, padding=1), nn.BatchNorm2d(16)
        self.block3 = Block(16, 10)
        self.fc = nn.Linear(16, 10)

    def forward(self, x):
        x = self.block2(self.block1(F.relu(self.bn(self.stem(x)))))
        x = self.block3(F.relu(self.bn_down(self.down(x))))
        return self.fc(torch.flatten(F.adaptive_avg_pool2d(x, 1), 1))


def _mlp():
    return nn.Sequential(nn.Linear(8, 32), nn.ReLU(), nn.Linear(32, 24), nn.Tanh(), nn.Linear(24, 3))


def _vit():
    import torchvision

    return torchvision.models.VisionTransformer(
        image_size=16, patch_size=8, num_layers=2, num_heads=4, hidden_dim=16, mlp_dim=24, num_classes=3
    )


def _model(name, seed):
    torch.manual_seed(seed)
    m = {"resnetish": ResNetish, "mlp": _mlp, "vit": _vit}[name]().double().eval()
    with torch.no_grad():
        for mod in m.modules():
            if isinstance(mod, nn.BatchNorm2d):
                mod.weight.uniform_(0.5, 1.5)
                mod.bias.normal_()
                mod.running_mean.normal_()
                mod.running_var.uniform_(0.5, 2.0)
    return m


def _input(name, n=4):
    if name == "mlp":
        return torch.randn(n, 8).double()
    return torch.randn(n, 3, 8 if name == "resnetish" else 16, 8 if name == "resnetish" else 16).double()


def _distance(a, b, spec):
    keys = {m[0] for g in spec.groups for m in g["members"]}
    sa, sb = a.state_dict(), b.state_dict()
    return sum(float((sa[k] - sb[k]).pow(2).sum()) for k in keys)


@pytest.mark.parametrize("method", ["weights", "activations"])
@pytest.mark.parametrize("name", ["resnetish", "mlp", "vit"])
def test_a_permuted_copy_is_aligned_back_exactly(name, method):
    a = _model(name, 0)
    spec = permutation_groups(a)
    b = copy.deepcopy(a)
    gen = torch.Generator().manual_seed(5)
    truth = [random_permutation(g, gen) for g in spec.groups]
    apply_permutation_(b, truth, spec=spec)
    assert _distance(a, b, spec) > 1.0
    x = _input(name)
    with torch.no_grad():
        want = b(x)
    batches = [_input(name, 16) for _ in range(3)]
    result = align_(b, a, method, batches=batches)
    assert result.spec == spec and len(result.perms) == len(result.before) == len(result.after) == len(spec.groups)
    for p, q in zip(truth, result.perms, strict=True):
        assert torch.equal(q, torch.argsort(p))  # the inverse of what was applied
    assert _distance(a, b, spec) == 0.0
    with torch.no_grad():
        assert float((b(x) - want).abs().max()) < 1e-12
    assert all(after >= before - 1e-9 for before, after in zip(result.before, result.after, strict=True))


@pytest.mark.parametrize("method", ["weights", "activations"])
@pytest.mark.parametrize("name", ["resnetish", "mlp", "vit"])
def test_two_independent_models_come_closer_and_b_keeps_its_function(name, method):
    a, b = _model(name, 0), _model(name, 1)
    spec = permutation_groups(b)
    x = _input(name)
    with torch.no_grad():
        want = b(x)
    b.train()  # activation matching runs in eval mode and gives the modes back; BatchNorm statistics stay
    before = _distance(a, b, spec)
    result = align_(b, a, method, batches=[_input(name, 32) for _ in range(2)])
    assert b.training and all(m.training for m in b.modules())
    after = _distance(a, b, spec)
    assert after < before
    if method == "weights":  # the objective is what it says: sum of <W_a, P(W_b)>, distance = |a|^2 + |b|^2 - 2 sum
        assert sum(result.after) > sum(result.before) and result.iterations >= 1
    b.eval()
    with torch.no_grad():
        assert float((b(x) - want).abs().max()) < 1e-12


def test_the_optimizer_state_moves_with_the_alignment():
    a, b = _model("resnetish", 0), _model("resnetish", 1)
    b.train()
    opt = torch.optim.SGD(b.parameters(), lr=0.1, momentum=0.9)
    b(_input("resnetish")).square().sum().backward()
    opt.step()
    momentum = {n: opt.state[p]["momentum_buffer"].clone() for n, p in b.named_parameters()}
    twin = copy.deepcopy(b)
    twin_params = dict(twin.named_parameters())
    result = align_(b, a, optimizer=opt)
    for n, t in momentum.items():  # each buffer moved exactly as its parameter did: permute a copy of both alike
        twin_params[n].data.copy_(t)
    apply_permutation_(twin, result.perms, spec=result.spec)
    for n, p in b.named_parameters():
        assert torch.equal(opt.state[p]["momentum_buffer"], twin_params[n]), n


def test_bad_calls_are_refused_before_anything_moves():
    a, b = _model("mlp", 0), _model("mlp", 1)
    before = copy.deepcopy(b.state_dict())
    with pytest.raises(ValueError, match="method"):
        align_(b, a, "nope")
    with pytest.raises(ValueError, match="batches"):
        align_(b, a, "activations")
    with pytest.raises(ValueError, match="no batch"):
        align_(b, a, "activations", batches=[])
    with pytest.raises(TypeError):
        align_(b, [p for p in a.parameters()])
    with pytest.raises(ValueError, match="max_iter"):
        align_(b, a, max_iter=0)
    wider = nn.Sequential(nn.Linear(8, 32), nn.ReLU(), nn.Linear(32, 24), nn.Tanh(), nn.Linear(24, 4)).double()
    with pytest.raises(ValueError):
        align_(b, wider)
    for k, t in b.state_dict().items():
        assert torch.equal(t, before[k]), k


def test_bench_align_barrier_on_tiny_data():
    """bench.align's barrier: zero for a network against itself; for two trained ones, both alignments keep b's
    outputs and give a number for every alpha."""
    from bench import align as bench_align
    from bench.training import datasets

    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # tiny tensors: one thread (two spin against each other on a loaded machine)
    try:
        _barrier_on_tiny_data(bench_align, datasets)
    finally:
        torch.set_num_threads(threads)


def _barrier_on_tiny_data(bench_align, datasets):
    tensors = bench_align._tensors(datasets.load("builtin-tiny"), 256, 128)
    x, y, xt, yt, classes = tensors
    torch.manual_seed(0)
    net = bench_align.mlp(x[0].numel(), 8, classes).eval()
    alphas = [0.0, 0.5, 1.0]
    assert abs(bench_align.barrier(net, net, x, y, xt, yt, alphas)["barrier"]) < 1e-6
    r = bench_align.barrier_case("cnn", 4, tensors, 1, points=3)
    for method in ("naive", "weights", "activations"):
        assert len(r[method]["train_loss"]) == 3
    assert r["weights"]["max_output_change"] < 1e-4 and r["activations"]["max_output_change"] < 1e-4


class CrossAttends(nn.Module):
    """Cross-attention: queries from one sequence, keys and values from another of another length."""

    def __init__(self):
        super().__init__()
        self.q, self.kv = nn.Linear(6, 8), nn.Linear(6, 8)
        self.att, self.out = nn.MultiheadAttention(8, 4, batch_first=True), nn.Linear(8, 3)

    def forward(self, x, y):
        kv = self.kv(y)
        return self.out(self.att(self.q(x), kv, kv, need_weights=False)[0])


@pytest.mark.parametrize("method", ["weights", "activations"])
def test_cross_attention_heads_are_aligned_back(method):
    torch.manual_seed(0)
    a = CrossAttends().double().eval()
    spec = permutation_groups(a)
    assert [g["size"] for g in spec.groups if g.get("heads")] == [4]
    b = copy.deepcopy(a)
    truth = [torch.tensor([2, 0, 3, 1]) if g.get("heads") else random_permutation(g) for g in spec.groups]
    apply_permutation_(b, truth, spec=spec)
    batches = [(torch.randn(4, 5, 6).double(), torch.randn(4, 7, 6).double()) for _ in range(2)]
    with torch.no_grad():
        want = b(*batches[0])
    result = align_(b, a, method, batches=batches)
    for p, q in zip(truth, result.perms, strict=True):
        assert torch.equal(q, torch.argsort(p))
    with torch.no_grad():
        assert float((b(*batches[0]) - want).abs().max()) < 1e-12
