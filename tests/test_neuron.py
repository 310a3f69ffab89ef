"""The function-preserving `neuron` swap on real architectures: unit spaces derived from the torch.fx graph."""

import copy

import pytest
import torch
import torchvision
from torch import nn
from torch.nn import functional as F

from swapkern import WeightSwap


def _rel(a, b):
    return float((a - b).abs().max() / b.abs().max().clamp_min(1e-300))


class Functional(nn.Module):
    """A user module written with functional calls, a residual add and a cat."""

    def __init__(self):
        super().__init__()
        self.c1 = nn.Conv2d(3, 8, 3, padding=1)
        self.bn1 = nn.BatchNorm2d(8)
        self.c2 = nn.Conv2d(8, 8, 3, padding=1)
        self.c3 = nn.Conv2d(8, 6, 1)
        self.gn = nn.GroupNorm(2, 14)
        self.fc1 = nn.Linear(14 * 4 * 4, 12)
        self.ln = nn.LayerNorm(12)
        self.fc2 = nn.Linear(12, 5)

    def forward(self, x):
        x = F.relu(self.bn1(self.c1(x)))
        x = x + F.relu(self.c2(x))  # residual: c1's and c2's outputs are one space
        x = F.max_pool2d(x, 2)
        x = torch.cat([x, self.c3(x)], dim=1)  # 8 + 6 channels side by side
        x = F.relu(self.gn(x))
        x = torch.flatten(F.avg_pool2d(x, 2), 1)
        return self.fc2(F.gelu(self.ln(self.fc1(x))))


def _models():
    out = {
        name: (lambda name=name: getattr(torchvision.models, name)(num_classes=10))
        for name in ("resnet18", "resnet50", "vgg11_bn", "mobilenet_v2")
    }
    out["functional"] = Functional
    return out


@pytest.mark.parametrize("name", sorted(_models()))
def test_outputs_unchanged_while_the_weights_move(name):
    torch.manual_seed(0)
    model = _models()[name]().double().eval()
    with torch.no_grad():  # non-trivial statistics and affines, so that moving them wrongly would show
        for m in model.modules():
            if isinstance(m, nn.BatchNorm2d | nn.GroupNorm | nn.LayerNorm):
                m.weight.uniform_(0.5, 1.5)
                m.bias.normal_()
            if isinstance(m, nn.BatchNorm2d):
                m.running_mean.normal_()
                m.running_var.uniform_(0.5, 2.0)
    side = 16 if name == "functional" else 32
    x = torch.randn(2, 3, side, side, dtype=torch.float64)
    with torch.no_grad():
        want = model(x)
    before = {n: t.detach().clone() for n, t in model.state_dict().items()}
    ws = WeightSwap(model, "neuron", swaps=3, seed=2)
    for _ in range(3):
        ws.step()
    with torch.no_grad():
        got = model(x)
    assert _rel(got, want) < 1e-10
    moved = [n for n, t in model.state_dict().items() if not torch.equal(t, before[n])]
    assert len(moved) >= 5, moved
    assert any("running_mean" in n for n in moved) or name == "functional"


def _train(model, opt_name, swap_state, steps=5):
    torch.manual_seed(1)
    data = [(torch.randn(4, 3, 16, 16, dtype=torch.float64), torch.randint(0, 5, (4,))) for _ in range(steps)]
    opt = (
        torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9)
        if opt_name == "sgd"
        else torch.optim.Adam(model.parameters(), lr=1e-3)
    )
    ws = WeightSwap(model, "neuron", swaps=3, seed=4, state=True) if swap_state is not None else None
    if ws is not None:
        ws.state = swap_state
    losses = []
    for x, y in data:
        loss = F.cross_entropy(model(x), y)
        opt.zero_grad()
        loss.backward()
        opt.step()
        if ws is not None:
            ws.step(optimizer=opt)
        losses.append(float(loss))
    with torch.no_grad():
        losses.append(float(F.cross_entropy(model(data[0][0]), data[0][1])))
    return losses


@pytest.mark.parametrize("opt_name", ["sgd", "adam"])
def test_training_with_the_state_follows_the_unswapped_run(opt_name):
    torch.manual_seed(0)
    model = Functional().double()
    base = _train(copy.deepcopy(model), opt_name, None)
    with_state = _train(copy.deepcopy(model), opt_name, True)
    without_state = _train(copy.deepcopy(model), opt_name, False)
    assert max(abs(a - b) for a, b in zip(with_state, base, strict=True)) < 1e-10 * max(abs(v) for v in base)
    assert max(abs(a - b) for a, b in zip(without_state, base, strict=True)) > 1e-6


def test_a_module_used_twice_keeps_the_function():
    torch.manual_seed(0)
    lin = nn.Linear(6, 6)
    model = nn.Sequential(nn.Linear(4, 6), nn.ReLU(), lin, nn.Tanh(), lin, nn.ReLU(), nn.Linear(6, 3)).double()
    x = torch.randn(5, 4, dtype=torch.float64)
    want = model(x).detach()
    w0 = model[2].weight.detach().clone()
    ws = WeightSwap(model, "neuron", swaps=2, seed=0)
    for _ in range(3):
        ws.step()
    assert _rel(model(x).detach(), want) < 1e-12
    assert not torch.equal(model[2].weight.detach(), w0)
    assert ws.layers == ["0", "2"]  # lin's rows and columns move together, as one space with its own input


def test_an_unknown_op_stops_its_spaces_and_says_which_layers_were_kept():
    class Softmaxed(nn.Module):
        def __init__(self):
            super().__init__()
            self.a, self.b, self.c = nn.Linear(4, 6), nn.Linear(6, 6), nn.Linear(6, 2)

        def forward(self, x):
            h = torch.softmax(self.a(x), dim=1)  # mixes a's units: a's space may not move
            return self.c(torch.relu(self.b(h)))

    ws = WeightSwap(Softmaxed(), "neuron", seed=0)
    assert ws.layers == ["b"]
    assert "softmax" in ws.left_out["a"] and "returns" in ws.left_out["c"]
    assert "layers=1" in repr(ws) and "left out 2" in repr(ws)


def test_group_norm_confines_exchanges_to_its_groups():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(3, 8, 1), nn.GroupNorm(4, 8), nn.ReLU(), nn.Conv2d(8, 2, 1)).double()
    ws = WeightSwap(model, "neuron", swaps=1, seed=0)
    w0 = model[0].weight.detach().clone()
    x = torch.randn(2, 3, 4, 4, dtype=torch.float64)
    want = model(x).detach()
    for _ in range(20):
        ws.step()
        rows = [int((model[0].weight.detach() == w0[r]).all(dim=(1, 2, 3)).nonzero()[0]) for r in range(8)]
        assert all(r // 2 == q // 2 for q, r in enumerate(rows))  # each row stays inside its group of 2
    assert _rel(model(x).detach(), want) < 1e-12


def test_an_untraceable_model_names_the_call():
    class Branchy(nn.Module):
        def __init__(self):
            super().__init__()
            self.a, self.b = nn.Linear(4, 4), nn.Linear(4, 2)

        def forward(self, x):
            if x.sum() > 0:  # data-dependent control flow: fx cannot trace it
                x = -x
            return self.b(self.a(x))

    with pytest.raises(ValueError, match="cannot trace Branchy.forward.*layers="):
        WeightSwap(Branchy(), "neuron")


def test_a_chain_keeps_its_draws():
    # For nn.Sequential chains the graph gives the same groups and keys as the chain rule it replaces, so seeded
    # runs made before (the study's symmetry null) repeat.
    model = nn.Sequential(
        nn.Conv2d(3, 8, 3),
        nn.BatchNorm2d(8),
        nn.ReLU(),
        nn.Flatten(),
        nn.Linear(8 * 4 * 4, 5),
        nn.ReLU(),
        nn.Linear(5, 3),
    )
    ws = WeightSwap(model, "neuron", swaps=2, seed=0)
    assert [(g.key, g.n, g.k) for g in ws.groups] == [(0, 8, 2), (1, 5, 2)]
    assert [len(g.jobs) for g in ws.groups] == [7, 3]  # conv w, b, bn w, b, mean, var, next columns; lin w, b, next
