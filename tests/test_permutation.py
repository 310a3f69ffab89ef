"""permutation_groups / apply_permutation_: the neuron analysis as a public spec, applied in place (float64 checks)."""

import copy
import random

import pytest
import torch
import torchvision
from test_neuron import Functional  # the functional-style user model, defined once
from torch import nn
from torch.nn import functional as F

import swapkern
from swapkern import PermutationSpec, WeightSwap, apply_permutation_, permutation_groups
from swapkern.permutation import _gather_apply, _view, member, random_permutation, two_rounds


def _rel(a, b):
    return float((a - b).abs().max() / b.abs().max().clamp_min(1e-300))


def _randomise_norms(model):
    """Non-trivial affines and statistics, so that moving them wrongly (or not at all) would show."""
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, nn.BatchNorm1d | nn.BatchNorm2d | nn.GroupNorm | nn.LayerNorm):
                if m.weight is not None:
                    m.weight.uniform_(0.5, 1.5)
                    m.bias.normal_()
            if isinstance(m, nn.BatchNorm1d | nn.BatchNorm2d):
                m.running_mean.normal_()
                m.running_var.uniform_(0.5, 2.0)
    return model


class CatFlatten(nn.Module):
    """A cat of two convolutions' channels, flattened into a linear layer: the second part's columns start at
    4 channels x 16 features (the analysis placed them at column 4 before)."""

    def __init__(self):
        super().__init__()
        self.a, self.b = nn.Conv2d(3, 4, 3, padding=1), nn.Conv2d(3, 5, 3, padding=1)
        self.fc, self.out = nn.Linear(9 * 16, 6), nn.Linear(6, 2)

    def forward(self, x):
        x = torch.cat([torch.relu(self.a(x)), torch.relu(self.b(x))], 1)
        return self.out(torch.relu(self.fc(torch.flatten(x, 1))))


class GroupNormed(nn.Module):
    """A GroupNorm over one convolution's channels: exchanges stay inside its groups."""

    def __init__(self):
        super().__init__()
        self.c1, self.gn, self.c2 = nn.Conv2d(3, 8, 3, padding=1), nn.GroupNorm(2, 8), nn.Conv2d(8, 4, 1)

    def forward(self, x):
        return self.c2(F.silu(self.gn(self.c1(x)))).mean((2, 3))


def _small_vit():
    return torchvision.models.VisionTransformer(
        image_size=32, patch_size=16, num_layers=2, num_heads=4, hidden_dim=16, mlp_dim=24, num_classes=10
    )


def _small_swin():
    return torchvision.models.SwinTransformer(
        patch_size=[4, 4], embed_dim=16, depths=[1, 1], num_heads=[2, 4], window_size=[4, 4], num_classes=10
    )


def _small_vgg():
    m = torchvision.models.vgg11_bn(num_classes=10)
    # the same pattern (a flatten of 512 x 7 x 7 into a linear layer) with a smaller head, to keep the test small
    m.classifier = nn.Sequential(
        nn.Linear(512 * 7 * 7, 32), nn.ReLU(True), nn.Dropout(), nn.Linear(32, 32), nn.ReLU(True), nn.Dropout(),
        nn.Linear(32, 10),
    )  # fmt: skip
    return m


ZOO = {
    "resnet18": (lambda: torchvision.models.resnet18(num_classes=10), 32),
    "mobilenet_v2": (lambda: torchvision.models.mobilenet_v2(num_classes=10), 16),
    "vgg11_bn": (_small_vgg, 32),
    "vit": (_small_vit, 32),
    "swin": (_small_swin, 32),
    "functional": (Functional, 16),
    "cat_flatten": (CatFlatten, 4),
    "group_norm": (GroupNormed, 6),
}


def _zoo(name):
    torch.manual_seed(0)
    make, side = ZOO[name]
    model = _randomise_norms(make().double().eval())
    return model, torch.randn(2, 3, side, side, dtype=torch.float64)


@pytest.mark.parametrize("name", sorted(ZOO))
def test_zoo_spec_round_trips_and_a_random_permutation_keeps_the_function(name):
    model, x = _zoo(name)
    spec = permutation_groups(model)
    assert spec.groups, spec.left_out
    back = PermutationSpec.from_json(spec.to_json())
    assert back == spec and back.to_json() == spec.to_json()
    sd = {k: t.clone() for k, t in model.state_dict().items()}
    for g in spec.groups:  # every member names a state_dict tensor that can hold the group
        for m in g["members"]:
            key, dim, off, block = member(m)
            assert off + g["size"] * block <= sd[key].shape[dim]
    keys = {member(m)[0] for g in spec.groups for m in g["members"]}
    if name in ("resnet18", "mobilenet_v2", "vgg11_bn"):
        assert any(k.endswith("running_mean") for k in keys) and any(k.endswith("running_var") for k in keys)
    with torch.no_grad():
        want = model(x)
    twin = copy.deepcopy(model)
    gen = torch.Generator().manual_seed(1)
    perms = [random_permutation(g, gen) for g in spec.groups]
    apply_permutation_(model, perms, spec=spec)
    with torch.no_grad():
        got = model(x)
    assert _rel(got, want) < 1e-10
    _gather_apply(twin, spec, perms)  # the engine's result is the plain index_select one, tensor for tensor
    after = model.state_dict()
    for k, t in twin.state_dict().items():
        assert torch.equal(after[k], t), k
    moved = [k for k in keys if not torch.equal(after[k], sd[k])]
    assert len(moved) >= len(keys) // 2  # (a bias that starts at zero stays zero)


@pytest.mark.parametrize("name", sorted(ZOO))
def test_weightswap_neuron_uses_the_same_groups(name):
    """WeightSwap(model, "neuron") and the spec come from one analysis: the same groups, in the same order, moving
    the same slices of the same tensors; what one leaves out the other leaves out."""
    model, _ = _zoo(name)
    spec = permutation_groups(model)
    ws = WeightSwap(model, "neuron")
    sd = model.state_dict(keep_vars=True)
    units = [g for g in spec.groups if not g.get("heads")]  # attention heads: the spec's own addition
    assert len(ws.groups) == len(units)
    for g, sg in zip(ws.groups, units, strict=True):
        n = sg["size"]
        assert g.n * g.L == n and (g.L == 1 or sg["within"] == g.L)

        def where(t, dim, view):
            v = view(t)
            return (id(t), dim, v.storage_offset(), tuple(v.shape), v.stride())

        mine = sorted(where(sd[k], d, _view(d, o, n, b)) for k, d, o, b in map(member, sg["members"]))
        theirs = sorted(where(j.x, j.dx, j.view) for j in g.jobs)
        assert mine == theirs
    heads = {n for g in spec.groups if g.get("heads") for n in g["layers"]}
    assert set(ws.left_out) == {n for lo in spec.left_out for n in lo["layers"]} - heads
    assert set(ws.layers) == {n for g in units for n in g["layers"]}


def test_left_out_says_why_and_group_norm_is_within():
    spec = permutation_groups(_zoo("functional")[0])
    assert spec.left_out == [
        {"size": 8, "layers": ["c1", "c2"], "why": "gn: a GroupNorm group spans two spaces"},
        {"size": 6, "layers": ["c3"], "why": "gn: a GroupNorm group spans two spaces"},
        {"size": 5, "layers": ["fc2"], "why": "the model returns it"},
    ]
    spec = permutation_groups(_zoo("group_norm")[0])
    assert [g.get("within") for g in spec.groups] == [4]  # GroupNorm(2, 8): exchanges stay in groups of 4
    assert {"gn.weight", "gn.bias"} <= {m[0] for m in spec.groups[0]["members"]}
    assert all(p // 4 == i // 4 for i, p in enumerate(random_permutation(spec.groups[0]).tolist()))


def _good(spec):
    gen = torch.Generator().manual_seed(0)
    return [random_permutation(g, gen) for g in spec.groups]


def _with_first(p):
    return lambda spec: [p(spec.groups[0]["size"])] + _good(spec)[1:]


def _repeat(n):
    p = torch.arange(n)
    p[1] = 0
    return p


BAD = {
    "one too few": (lambda spec: _good(spec)[:-1], ValueError),
    "one too many": (lambda spec: _good(spec) + [torch.arange(3)], ValueError),
    "too long": (_with_first(lambda n: torch.arange(n + 1)), ValueError),
    "2-D": (_with_first(lambda n: torch.arange(n).view(1, -1)), ValueError),
    "float": (_with_first(lambda n: torch.arange(n).double()), TypeError),
    "bool": (_with_first(lambda n: torch.ones(n, dtype=torch.bool)), TypeError),
    "above": (_with_first(lambda n: torch.arange(n) + 1), IndexError),
    "negative": (_with_first(lambda n: -torch.arange(n)), IndexError),
    "repeats": (_with_first(_repeat), ValueError),
    "a tensor, not a list": (lambda spec: torch.arange(spec.groups[0]["size"]), TypeError),
    "a string": (lambda spec: "abc", TypeError),
}


@pytest.mark.parametrize("case", sorted(BAD))
def test_bad_permutations_are_refused_before_anything_moves(case):
    model, _ = _zoo("functional")
    spec = permutation_groups(model)
    make, err = BAD[case]
    before = copy.deepcopy(model.state_dict())
    with pytest.raises(err):
        apply_permutation_(model, make(spec), spec=spec)
    for k, t in model.state_dict().items():
        assert torch.equal(t, before[k]), k


def test_a_permutation_across_group_norm_groups_is_refused():
    model, _ = _zoo("group_norm")
    spec = permutation_groups(model)
    gi = next(i for i, g in enumerate(spec.groups) if "within" in g)
    perms = [torch.arange(g["size"]) for g in spec.groups]
    perms[gi] = torch.roll(perms[gi], 1)  # moves unit 0 into the last block
    with pytest.raises(ValueError, match="blocks"):
        apply_permutation_(model, perms, spec=spec)


def test_a_spec_that_does_not_fit_the_model_is_refused():
    model, _ = _zoo("functional")
    spec = PermutationSpec.from_json(permutation_groups(model).to_json())
    spec.groups[0]["members"].append(["nope.weight", 0])
    with pytest.raises(ValueError, match="nope.weight"):
        apply_permutation_(model, [torch.arange(g["size"]) for g in spec.groups], spec=spec)
    with pytest.raises(ValueError):
        PermutationSpec.from_json('{"version": 1, "groups": [{"size": 2, "members": [["w", -1]]}]}')
    with pytest.raises(ValueError):
        PermutationSpec.from_json('{"groups": []}')


def test_two_rounds_of_disjoint_exchanges_make_any_permutation():
    rng = random.Random(0)
    for n in [1, 2, 3, 5, 8, 33]:
        for _ in range(20):
            perm = list(range(n))
            rng.shuffle(perm)
            x = list(range(n))
            for pairs in two_rounds(torch.tensor(perm)):
                touched = [i for pair in pairs for i in pair]
                assert len(touched) == len(set(touched))  # disjoint: one engine step
                for a, b in pairs:
                    x[a], x[b] = x[b], x[a]
            assert x == perm


def test_every_backend_applies_the_same_permutation(backend):
    model, x = _zoo("cat_flatten")
    spec = permutation_groups(model)
    twin = copy.deepcopy(model)
    perms = [random_permutation(g, torch.Generator().manual_seed(3)) for g in spec.groups]
    apply_permutation_(model, perms, spec=spec)
    _gather_apply(twin, spec, perms)
    for k, t in twin.state_dict().items():
        assert torch.equal(model.state_dict()[k], t), k


@pytest.mark.parametrize("name", ["cat_flatten", "group_norm", "functional"])
@pytest.mark.parametrize("opt_name", ["sgd", "adam"])
def test_optimizer_state_moves_with_the_weights(opt_name, name):
    """Training the permuted model (its optimizer state permuted too) is training the original, permuted (to
    rounding: Adam scales the rounding-level gradients of a bias before a BatchNorm up to about 1e-11)."""
    model, x = _zoo(name)
    model.train()
    spec = permutation_groups(model)
    perms = [random_permutation(g, torch.Generator().manual_seed(4)) for g in spec.groups]

    def make(m):
        if opt_name == "sgd":
            return torch.optim.SGD(m.parameters(), lr=0.1, momentum=0.9)
        return torch.optim.Adam(m.parameters(), lr=0.01)

    def step(m, opt):
        opt.zero_grad()
        m(x).square().sum().backward()
        opt.step()

    a, b = model, copy.deepcopy(model)
    oa, ob = make(a), make(b)
    step(a, oa)
    step(b, ob)
    apply_permutation_(b, perms, ob, spec=spec)  # b: permuted after one step, state included
    step(a, oa)
    step(b, ob)
    apply_permutation_(a, perms, oa, spec=spec)  # a: permuted at the end
    for k, t in a.state_dict().items():
        assert torch.allclose(t, b.state_dict()[k], rtol=1e-9, atol=1e-9), k
    sa, sb = oa.state_dict()["state"], ob.state_dict()["state"]
    for i in sa:
        for name, t in sa[i].items():
            assert torch.allclose(t, sb[i][name], rtol=1e-9, atol=1e-9), (i, name)


def test_example_inputs_check_every_group():
    model, x = _zoo("functional")
    spec = permutation_groups(model, example_inputs=x)
    assert spec == permutation_groups(model)  # the analysis is exact here: the check removes nothing


def test_the_top_level_names_are_exported():
    for name in ("PermutationSpec", "permutation_groups", "apply_permutation_", "align_"):
        assert name in swapkern.__all__ and hasattr(swapkern, name)


def test_example_inputs_catch_a_group_that_changes_the_function():
    """The numerical check is a real check: a spec missing a member (fc2's columns) fails it and is left out."""
    from swapkern.permutation import _check_numerically

    model, x = _zoo("cat_flatten")
    spec = permutation_groups(model)
    gi = next(i for i, g in enumerate(spec.groups) if g["layers"] == ["fc"])
    spec.groups[gi]["members"] = [m for m in spec.groups[gi]["members"] if m[0] != "out.weight"]
    _check_numerically(model, spec, x)
    assert ["fc"] not in [g["layers"] for g in spec.groups]
    assert {"size": 6, "layers": ["fc"], "why": "changed the outputs on example_inputs"} in spec.left_out


def test_vit_heads_and_mlp_units_move_and_what_stays_is_named():
    spec = permutation_groups(_zoo("vit")[0])
    heads = [g for g in spec.groups if g.get("heads")]
    assert [g["size"] for g in heads] == [4, 4] and [g["size"] for g in spec.groups if not g.get("heads")] == [24, 24]
    q = "encoder.layers.encoder_layer_0.self_attention"
    assert heads[0]["members"][:3] == [[f"{q}.in_proj_weight", 0, 16 * i, 4] for i in range(3)]
    assert [f"{q}.out_proj.weight", 1, 0, 4] in heads[0]["members"]
    whys = {lo["why"] for lo in spec.left_out}
    assert "the dims inside each head stay (whole heads move)" in whys
    assert any("reshape" in w for w in whys)  # the residual stream (patch embedding, position embedding) stays
    swin = permutation_groups(_zoo("swin")[0])
    assert any("shifted_window_attention" in lo["why"] for lo in swin.left_out)  # hand-written attention: stays


class Attends(nn.Module):
    """An nn.MultiheadAttention called as `how` says, between two linear layers."""

    def __init__(self, how):
        super().__init__()
        self.how = how
        self.inp, self.att, self.out = nn.Linear(6, 8), nn.MultiheadAttention(8, 4, batch_first=True), nn.Linear(8, 3)
        self.register_buffer("mask", torch.zeros(2 * 4, 5, 5))  # batch 2 x 4 heads, length 5: one mask per head

    def forward(self, x):
        h = self.inp(x)
        if self.how == "plain":
            a, _ = self.att(h, h, h)
        elif self.how == "mask":
            a, _ = self.att(h, h, h, attn_mask=self.mask)
        else:  # per-head weights, added to the output
            a, w = self.att(h, h, h, average_attn_weights=False)
            a = a + w.sum((1, 3))[:, None, :1]
        return self.out(a)


@pytest.mark.parametrize("how", ["plain", "mask", "per-head"])
def test_multihead_attention_heads_move_only_where_they_cannot_be_seen(how):
    torch.manual_seed(0)
    model = Attends(how).double().eval()
    spec = permutation_groups(model)
    heads = [g for g in spec.groups if g.get("heads")]
    if how == "plain":
        assert [g["size"] for g in heads] == [4]
        x = torch.randn(2, 5, 6, dtype=torch.float64)
        with torch.no_grad():
            want = model(x)
        apply_permutation_(model, [torch.tensor([2, 0, 3, 1])], spec=spec)
        with torch.no_grad():
            assert _rel(model(x), want) < 1e-10
    else:
        assert not heads
        why = "attn_mask" if how == "mask" else "per-head attention weights"
        assert any(why in lo["why"] for lo in spec.left_out)


class _Tied(nn.Module):
    def __init__(self):
        super().__init__()
        self.emb, self.fc, self.head = nn.Embedding(10, 8), nn.Linear(8, 8), nn.Linear(8, 10, bias=False)
        self.head.weight = self.emb.weight

    def forward(self, x):
        return self.head(torch.relu(self.fc(self.emb(x))))


class _Reused(nn.Module):
    def __init__(self):
        super().__init__()
        self.lin, self.a, self.out = nn.Linear(4, 4), nn.Linear(4, 6), nn.Linear(6, 2)

    def forward(self, x):
        return self.out(torch.relu(self.a(torch.relu(self.lin(torch.relu(self.lin(x)))))))


class _Merged(nn.Module):
    def __init__(self):
        super().__init__()
        self.a, self.out = nn.Linear(4, 6), nn.Linear(12, 2)

    def forward(self, x):
        h = torch.relu(self.a(x))
        return self.out(h.view(x.shape[0] // 2, -1))


PATTERNS = {  # the integrity issue's patterns: (model, input); the spec must keep the function whatever it moves
    "reused": (_Reused, lambda: torch.randn(3, 4)),
    "tied": (_Tied, lambda: torch.randint(0, 10, (3,))),
    "prelu": (lambda: nn.Sequential(nn.Linear(4, 6), nn.PReLU(6), nn.Linear(6, 2)), lambda: torch.randn(3, 4)),
    "prelu_conv": (
        lambda: nn.Sequential(nn.Conv2d(3, 6, 3), nn.PReLU(6), nn.Conv2d(6, 2, 1)),
        lambda: torch.randn(2, 3, 5, 5),
    ),
    "bn1d_3d": (
        lambda: nn.Sequential(nn.Linear(4, 6), nn.BatchNorm1d(6), nn.Linear(6, 2)),
        lambda: torch.randn(3, 6, 4),
    ),
    "pool_features": (
        lambda: nn.Sequential(nn.Linear(4, 6), nn.MaxPool1d(2), nn.Linear(3, 2)),
        lambda: torch.randn(3, 5, 4),
    ),
    "merged_view": (_Merged, lambda: torch.randn(4, 4)),
}


@pytest.mark.parametrize("name", sorted(PATTERNS))
def test_the_integrity_patterns_keep_the_function(name):
    torch.manual_seed(0)
    make, inp = PATTERNS[name]
    model = _randomise_norms(make().double().eval())
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, nn.PReLU):
                m.weight.uniform_(-1, 1)
    x = inp()
    x = x.double() if x.is_floating_point() else x
    with torch.no_grad():
        want = model(x)
    spec = permutation_groups(model)
    assert spec.groups or spec.left_out
    if name in ("prelu_conv", "reused", "tied"):  # what the analysis proves free here
        assert spec.groups
    if name == "prelu_conv":
        assert ["1.weight", 0] in spec.groups[0]["members"]  # the slopes move with their channels
    for seed in range(3):
        gen = torch.Generator().manual_seed(seed)
        apply_permutation_(model, [random_permutation(g, gen) for g in spec.groups], spec=spec)
        with torch.no_grad():
            assert _rel(model(x), want) < 1e-10
