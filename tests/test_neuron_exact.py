"""`neuron` is exact or refuses: model patterns where the unit spaces are not free (issue 23's table and more of the
same kind). Each model, in float64 and eval mode, keeps its outputs to 1e-12 through 5 steps of
WeightSwap(model, "neuron", swaps=2, seed=1), and the analysis still swaps what it safely can."""

import pytest
import torch
import torchvision
from torch import nn
from torch.nn import functional as F

from swapkern import WeightSwap
from swapkern._neuron import analyse


def _randomise(model):
    """Non-trivial statistics, affines and slopes, so that moving them wrongly (or not moving them) shows."""
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, nn.BatchNorm1d | nn.BatchNorm2d | nn.GroupNorm | nn.LayerNorm | nn.InstanceNorm2d):
                if getattr(m, "weight", None) is not None:
                    m.weight.uniform_(0.5, 1.5)
                    m.bias.normal_()
            if isinstance(m, nn.BatchNorm1d | nn.BatchNorm2d):
                m.running_mean.normal_()
                m.running_var.uniform_(0.5, 2.0)
            if isinstance(m, nn.PReLU):
                m.weight.uniform_(-1.0, 1.0)


def _check(model, x, kept, left=(), steps=5):
    """The outputs stay (max abs <= 1e-12), the layers `kept` are swapped and those in `left` are left out."""
    torch.manual_seed(0)
    model = model.double().eval()
    _randomise(model)
    x = x.double() if x.is_floating_point() else x
    with torch.no_grad():
        want = model(x)
    before = {n: t.detach().clone() for n, t in model.state_dict().items()}
    ws = WeightSwap(model, "neuron", swaps=2, seed=1)
    for _ in range(steps):
        ws.step()
    with torch.no_grad():
        got = model(x)
    assert float((got - want).abs().max()) <= 1e-12
    assert set(kept) <= set(ws.layers), (ws.layers, ws.left_out)
    assert set(left) <= set(ws.left_out), (ws.layers, ws.left_out)
    moved = [n for n, t in model.state_dict().items() if not torch.equal(t, before[n])]
    assert moved, "nothing moved"
    return ws, moved


class _ReusedFirst(nn.Module):
    """A module called twice, its first call reading the model input, inside forward."""

    def __init__(self):
        super().__init__()
        self.lin, self.mid, self.out = nn.Linear(4, 4), nn.Linear(4, 6), nn.Linear(6, 2)

    def forward(self, x):
        h = torch.relu(self.lin(torch.relu(self.lin(x))))
        return self.out(torch.tanh(self.mid(h)))


def test_a_module_reused_whose_first_call_reads_the_input():
    lin = nn.Linear(4, 4)
    model = nn.Sequential(lin, nn.ReLU(), lin, nn.ReLU(), nn.Linear(4, 8), nn.ReLU(), nn.Linear(8, 2))
    ws, _ = _check(model, torch.randn(5, 4), kept=["4"], left=["0"])
    assert "keeps its order" in ws.left_out["0"]
    with pytest.raises(ValueError, match="no unit space can be permuted"):  # the model: nothing is free
        lin = nn.Linear(4, 4)
        WeightSwap(nn.Sequential(lin, nn.ReLU(), lin, nn.ReLU(), nn.Linear(4, 2)), "neuron")


def test_a_module_reused_inside_forward():
    _check(_ReusedFirst(), torch.randn(5, 4), kept=["mid"], left=["lin"])


class _TiedLM(nn.Module):
    def __init__(self, direct=False):
        super().__init__()
        self.direct = direct
        self.emb = nn.Embedding(11, 6)
        self.up, self.down = nn.Linear(6, 8), nn.Linear(8, 6)
        self.head = nn.Linear(6, 11, bias=False)
        self.head.weight = self.emb.weight  # tied

    def forward(self, idx):
        h = self.emb(idx)
        if not self.direct:
            h = h + self.down(torch.tanh(self.up(h)))
        return self.head(h)


@pytest.mark.parametrize("direct", [False, True])
def test_an_embedding_tied_to_the_output_head(direct):
    idx = torch.randint(0, 11, (3, 7))
    kept = ["emb"] if direct else ["emb", "up", "down"]
    ws, moved = _check(_TiedLM(direct), idx, kept=kept, left=["head"])
    assert "emb.weight" in moved
    # One tensor with two roles: its columns are the embedding's features and the head's inputs (one space), its
    # rows the token table and the head's outputs (returned): only the columns move.
    space = next(s for s in analyse(_TiedLM(direct)).spaces if "emb" in s.layers)
    assert space.why is None and ("emb.weight", 1) in {(m.name, m.dim) for m in space.members}
    assert ("emb.weight", 0) not in {(m.name, m.dim) for m in space.members}


def test_per_channel_prelu_after_a_linear_moves_its_slopes():
    model = nn.Sequential(nn.Flatten(), nn.Linear(12, 8), nn.PReLU(8), nn.Linear(8, 3))  # rank 2: known
    _, moved = _check(model, torch.randn(5, 3, 4), kept=["1"])
    assert "2.weight" in moved


@pytest.mark.parametrize("shape", [(5, 4), (5, 8, 4)])
def test_per_channel_prelu_after_a_linear_of_unknown_rank_stays(shape):
    # On (N, 8) PReLU(8) is per feature, on (N, 8, 4) -> (N, 8, 8) per position: the graph does not say which.
    model = nn.Sequential(nn.Linear(4, 8), nn.PReLU(8), nn.Linear(8, 6), nn.ReLU(), nn.Linear(6, 3))
    ws, _ = _check(model, torch.randn(*shape), kept=["2"], left=["0"])
    assert "rank" in ws.left_out["0"]


def test_per_channel_prelu_after_a_conv_moves_its_slopes():
    model = nn.Sequential(nn.Conv2d(3, 8, 3), nn.PReLU(8), nn.Conv2d(8, 4, 3), nn.PReLU(), nn.Conv2d(4, 2, 1))
    _, moved = _check(model, torch.randn(2, 3, 8, 8), kept=["0", "2"])
    assert "1.weight" in moved and "3.weight" not in moved


@pytest.mark.parametrize("length", [5, 7])
def test_batchnorm1d_on_a_3d_linear_output(length):
    # BatchNorm1d normalises dim 1 (the positions), not the features: with L != C the graph knows the rank (3) and
    # the features pass through it untouched; with L == C it may be per feature (rank 2) or not: they stay.
    model = nn.Sequential(nn.Linear(4, 6), nn.ReLU(), nn.Linear(6, 5), nn.BatchNorm1d(length), nn.ReLU(),
                          nn.Linear(5, 2))  # fmt: skip
    ws, moved = _check(model, torch.randn(3, length, 4), kept=["0"])
    assert not any(n.startswith("3.") for n in moved)
    assert ("2" in ws.layers) == (length != 5)


def test_batchnorm1d_on_a_flat_2d_value_moves_its_statistics():
    model = nn.Sequential(nn.Flatten(), nn.Linear(12, 6), nn.BatchNorm1d(6), nn.ReLU(), nn.Linear(6, 2))
    _, moved = _check(model, torch.randn(5, 3, 4), kept=["1"])
    assert {"2.running_mean", "2.running_var", "2.weight", "2.bias"} <= set(moved)


def test_maxpool1d_over_the_features():
    model = nn.Sequential(nn.Linear(4, 6), nn.ReLU(), nn.Linear(6, 8), nn.MaxPool1d(2), nn.Linear(4, 2))
    ws, _ = _check(model, torch.randn(3, 5, 4), kept=["0"], left=["2"])
    assert "pooling over the channels" in ws.left_out["2"]


class _Merged(nn.Module):
    def __init__(self, merge):
        super().__init__()
        self.merge = merge
        self.c1, self.c2 = nn.Conv2d(3, 6, 1), nn.Conv2d(6, 4, 1)
        self.fc = nn.Linear((2 if merge else 1) * 4 * 3 * 3, 2)

    def forward(self, x):
        h = F.relu(self.c2(F.relu(self.c1(x))))
        n = h.size(0)
        return self.fc(h.view(n // 2, -1) if self.merge else h.view(n, -1))


def test_a_view_merging_two_images():
    ws, _ = _check(_Merged(True), torch.randn(4, 3, 3, 3), kept=["c1"], left=["c2"])
    assert "reshape" in ws.left_out["c2"]
    _check(_Merged(False), torch.randn(4, 3, 3, 3), kept=["c1", "c2"])  # the batch flatten still swaps


# -- more patterns of the same kind ----------------------------------------------------------------------------------
class _ConvNeXtish(nn.Module):
    """permute to channels-last, LayerNorm, pointwise Linears, a layer-scale parameter, permute back, a residual."""

    def __init__(self):
        super().__init__()
        self.stem = nn.Conv2d(3, 8, 1)
        self.dw = nn.Conv2d(8, 8, 3, padding=1, groups=8)
        self.ln = nn.LayerNorm(8)
        self.fc1, self.fc2 = nn.Linear(8, 16), nn.Linear(16, 8)
        self.gamma = nn.Parameter(torch.rand(8) + 0.5)
        self.head = nn.Conv2d(8, 2, 1)

    def forward(self, x):
        x = self.stem(x)
        h = self.dw(x).permute(0, 2, 3, 1)
        h = self.gamma * self.fc2(F.gelu(self.fc1(self.ln(h))))
        return self.head(x + h.permute(0, 3, 1, 2))


def test_permute_layer_norm_and_a_layer_scale_parameter():
    _, moved = _check(_ConvNeXtish(), torch.randn(2, 3, 5, 5), kept=["stem", "fc1", "fc2"])  # dw carries stem's space
    assert {"gamma", "ln.weight", "ln.bias", "dw.weight"} <= set(moved)


class _Attention(nn.Module):
    def __init__(self):
        super().__init__()
        self.inp = nn.Linear(4, 8)
        self.attn = nn.MultiheadAttention(8, 2, batch_first=True)
        self.fc1, self.fc2 = nn.Linear(8, 12), nn.Linear(12, 8)
        self.q, self.k = nn.Linear(8, 8), nn.Linear(8, 8)

    def forward(self, x):
        h = self.inp(x)
        h = h + self.attn(h, h, h, need_weights=False)[0]
        h = h + self.fc2(F.relu(self.fc1(h)))
        w = torch.softmax(self.q(h) @ self.k(h).transpose(-2, -1), dim=-1)  # q and k mix their units
        return (w @ h).mean(dim=1)


def test_attention_pins_what_it_mixes():
    ws, _ = _check(_Attention(), torch.randn(2, 5, 4), kept=["fc1"], left=["inp", "q", "k", "fc2"])
    assert "inp" in ws.left_out


class _Functional(nn.Module):
    """F.linear with the model's parameters, a parameter read elsewhere in forward, cat along another dim."""

    def __init__(self):
        super().__init__()
        self.w1, self.b1 = nn.Parameter(torch.randn(6, 4)), nn.Parameter(torch.randn(6))
        self.w2 = nn.Parameter(torch.randn(5, 6))
        self.a, self.b = nn.Linear(4, 7), nn.Linear(4, 7)
        self.c = nn.Linear(7, 3)
        self.d = nn.Linear(7, 7)

    def forward(self, x):
        h = F.linear(F.relu(F.linear(x, self.w1, self.b1)), self.w2)
        g = torch.cat([F.relu(self.a(x)), torch.tanh(self.b(x))], dim=-2)  # rows of both: one space
        g = F.relu(self.d(g))
        # a sum over the units is order-free; d's bias is read beside its module
        return h.sum(dim=-1) + self.c(g).sum() + self.d.bias[0]


def test_functional_linear_cat_along_rows_and_a_parameter_read_in_forward():
    ws, _ = _check(_Functional(), torch.randn(3, 4), kept=["w1", "w2", "a", "b"], left=["d"])
    assert "d.bias" in ws.left_out["d"]
    space = next(s for s in analyse(_Functional()).spaces if "a" in s.layers)
    assert space.layers == ("a", "b")  # one space


def test_grouped_conv_keeps_exchanges_inside_its_groups_and_reads_its_input_in_place():
    model = nn.Sequential(nn.Conv2d(3, 8, 1), nn.ReLU(), nn.Conv2d(8, 8, 3, padding=1, groups=2), nn.ReLU(),
                          nn.Conv2d(8, 2, 1))  # fmt: skip
    ws, _ = _check(model, torch.randn(2, 3, 4, 4), kept=["2"], left=["0"])
    assert "grouped" in ws.left_out["0"]
    assert ws.groups[0].L == 4  # rows exchanged inside each group of 4


class _Opaque(nn.Module):
    def __init__(self, lin):
        super().__init__()
        self.lin = lin

    def forward(self, x):
        if x.sum() > 0:  # fx cannot trace it: an unknown leaf
            return self.lin(x)
        return -self.lin(x)


class _SharedWithOpaque(nn.Module):
    def __init__(self):
        super().__init__()
        self.a, self.shared, self.c, self.e = nn.Linear(4, 6), nn.Linear(6, 6), nn.Linear(6, 5), nn.Linear(5, 2)
        self.opaque = _Opaque(self.shared)  # the same Linear, inside a module fx cannot trace

    def forward(self, x):
        h = F.relu(self.a(x))
        return self.e(F.relu(self.c(F.relu(self.shared(h))))) + self.opaque(h).sum()


def test_a_parameter_inside_an_unknown_module_stays():
    ws, _ = _check(_SharedWithOpaque(), torch.randn(3, 4), kept=["c"], left=["a", "shared"])
    assert "opaque" in ws.left_out["shared"] and "opaque" in ws.left_out["a"]


def test_inplace_ops_and_a_reduction_over_the_channels():
    class M(nn.Module):
        def __init__(self):
            super().__init__()
            self.a, self.b, self.c = nn.Conv2d(3, 6, 1), nn.Conv2d(6, 6, 1), nn.Linear(6, 2)

        def forward(self, x):
            h = F.relu(self.a(x), inplace=True)
            h = h.add_(self.b(h))
            return self.c(h.mean((2, 3))) + h.mean(dim=1).sum()  # a mean over the channels: order-free

    _check(M(), torch.randn(2, 3, 4, 4), kept=["a"])


# -- the good cases stay as they were ---------------------------------------------------------------------------------
GOOD = {  # (key, channels, jobs) of each group, recorded before the analysis was made exact
    "resnet18": [(0, 64, 19), (1, 64, 6), (3, 64, 6), (5, 128, 6), (6, 128, 18), (8, 128, 6), (10, 256, 6),
                 (11, 256, 18), (13, 256, 6), (15, 512, 6), (16, 512, 17), (18, 512, 6)],
    "mobilenet_v2": [(0, 32, 11), (2, 16, 6), (3, 96, 11), (5, 24, 12), (6, 144, 11), (9, 144, 11), (11, 32, 18),
                     (12, 192, 11), (15, 192, 11), (18, 192, 11), (20, 64, 24), (21, 384, 11), (24, 384, 11),
                     (27, 384, 11), (30, 384, 11), (32, 96, 18), (33, 576, 11), (36, 576, 11), (39, 576, 11),
                     (41, 160, 18), (42, 960, 11), (45, 960, 11), (48, 960, 11), (50, 320, 6), (51, 1280, 6)],
    "vit_b_16": [(k, 3072, 3) for k in range(1, 24, 2)],
}  # fmt: skip


@pytest.mark.parametrize("name", sorted(GOOD))
def test_torchvision_models_swap_what_they_swapped(name):
    kw = {"image_size": 32} if name == "vit_b_16" else {}
    torch.manual_seed(0)
    model = getattr(torchvision.models, name)(weights=None, num_classes=10, **kw)
    if name == "vit_b_16":  # 86M parameters: the groups only (its function is checked on a smaller ViT below)
        ws = WeightSwap(model, "neuron", swaps=2, seed=1)
    else:
        ws, _ = _check(model, torch.randn(2, 3, 32, 32), kept=[])
    assert [(g.key, g.n, len(g.jobs)) for g in ws.groups] == GOOD[name]


def test_a_small_vit_keeps_its_function():
    model = torchvision.models.VisionTransformer(image_size=16, patch_size=8, num_layers=2, num_heads=2,
                                                 hidden_dim=8, mlp_dim=12, num_classes=3)  # fmt: skip
    ws, _ = _check(model, torch.randn(2, 3, 16, 16), kept=["encoder.layers.encoder_layer_0.mlp.0"])
    assert len(ws.groups) == 2


class _UNetish(nn.Module):
    """Upsampling, a cat of skip and upsampled channels, a position embedding added to a 3-D Linear output."""

    def __init__(self):
        super().__init__()
        self.down, self.mid = nn.Conv2d(3, 4, 3, stride=2, padding=1), nn.Conv2d(4, 6, 1)
        self.skip, self.out = nn.Conv2d(3, 5, 1), nn.Conv2d(11, 2, 1)
        self.tok, self.pos, self.proj = nn.Linear(4, 6), nn.Parameter(torch.randn(1, 5, 6)), nn.Linear(6, 2)

    def forward(self, x, t):
        u = F.interpolate(F.relu(self.mid(F.relu(self.down(x)))), scale_factor=2.0)
        y = self.out(torch.cat([F.relu(self.skip(x)), u], dim=1))
        return y, self.proj(F.gelu(self.tok(t) + self.pos))


def test_upsampling_a_cat_of_skips_and_a_position_embedding():
    torch.manual_seed(0)
    model = _UNetish().double().eval()
    x, t = torch.randn(2, 3, 4, 4, dtype=torch.float64), torch.randn(3, 5, 4, dtype=torch.float64)
    with torch.no_grad():
        want = model(x, t)
    ws = WeightSwap(model, "neuron", swaps=2, seed=1)
    pos = model.pos.detach().clone()
    for _ in range(5):
        ws.step()
    with torch.no_grad():
        got = model(x, t)
    assert max(float((g - w).abs().max()) for g, w in zip(got, want, strict=True)) <= 1e-12
    assert set(ws.layers) == {"down", "mid", "skip", "tok"}
    assert not torch.equal(model.pos.detach(), pos) and torch.equal(model.pos.detach().sort(-1)[0], pos.sort(-1)[0])


def test_the_analysis_is_a_plain_description_of_the_unit_spaces():
    model = nn.Sequential(nn.Conv2d(3, 8, 3), nn.BatchNorm2d(8), nn.ReLU(), nn.Flatten(), nn.Linear(8 * 4 * 4, 5),
                          nn.ReLU(), nn.Linear(5, 3))  # fmt: skip
    result = analyse(model)
    assert [(s.layers, s.n, s.scope, s.why, s.key) for s in result.spaces] == [
        (("0",), 8, 8, None, 0),
        (("4",), 5, 5, None, 1),
        (("6",), 3, 3, "the model returns it", 2),
    ]
    assert [(m.name, m.dim, m.offset, m.n, m.block, m.buffer) for m in result.spaces[0].members] == [
        ("0.weight", 0, 0, 8, 1, False),
        ("0.bias", 0, 0, 8, 1, False),
        ("1.weight", 0, 0, 8, 1, False),
        ("1.bias", 0, 0, 8, 1, False),
        ("1.running_mean", 0, 0, 8, 1, True),
        ("1.running_var", 0, 0, 8, 1, True),
        ("4.weight", 1, 0, 8, 16, False),  # after the flatten, each channel owns 16 consecutive columns
    ]
    assert result.left_out == {"6": "the model returns it"}
