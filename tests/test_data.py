"""FeatureSwap: the 12 protocols against the reference, statistics of the draws, reset, seeding, errors."""

import math

import pytest
import torch
from conftest import DTYPES, LAYOUTS, assert_bits_equal, bits, make
from torch.profiler import ProfilerActivity, profile

import swapkern
from swapkern import reference as ref
from swapkern.data import PROTOCOLS, FeatureSwap


def _fits(proto, c, h, w, swaps):
    return 2 * swaps <= (c if proto[1] == "S" else h * w)


@pytest.mark.parametrize("proto", PROTOCOLS)
@pytest.mark.parametrize("channels", [1, 2, 3, 4])
@pytest.mark.parametrize("swaps", [1, 2, 3])
def test_protocol_against_reference(backend, device, proto, channels, swaps):
    for b, (h, w), dtype, layout in [
        (1, (3, 2), torch.float32, "contiguous"),
        (5, (4, 4), torch.uint8, "channels_last"),
        (8, (2, 5), torch.bfloat16, "sliced"),
        (3, (7, 3), torch.float64, "transposed"),
    ]:
        x = make((b, channels, h, w), dtype, layout, device=device)
        fs = FeatureSwap(proto, swaps=swaps, seed=123)
        if not _fits(proto, channels, h, w, swaps):
            before = bits(x).clone()
            with pytest.raises(ValueError):
                fs.swap_(x)
            assert torch.equal(bits(x), before)
            continue
        for _ in range(3):  # several steps
            want = x.clone()
            plan = fs.plan(x)
            fs.apply_(x, plan)
            ref.apply_feature_plan_(want, plan)
            assert_bits_equal(x, want)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("layout", LAYOUTS)
def test_every_dtype_and_layout(dtype, layout):
    for proto in ("ESA", "1P1", "APA", "AS1"):
        x = make((6, 3, 5, 4), dtype, layout)
        want = x.clone()
        fs = FeatureSwap(proto, swaps=1, seed=7)
        plan = fs.plan(x)
        fs.apply_(x, plan)
        ref.apply_feature_plan_(want, plan)
        assert_bits_equal(x, want)


def _chi2_pvalue(counts):
    """Chi-square goodness of fit against the uniform distribution (survival function via gammaincc)."""
    counts = counts.double()
    expected = counts.sum() / counts.numel()
    stat = ((counts - expected) ** 2 / expected).sum()
    df = counts.numel() - 1
    return float(torch.special.gammaincc(torch.tensor(df / 2.0, dtype=torch.double), stat / 2))


def _pair_counts(pairs, n):
    """Counts of each unordered pair {u, v} (u != v) over rows of pairs (..., 2)."""
    u, v = pairs[..., 0].reshape(-1), pairs[..., 1].reshape(-1)
    lo, hi = torch.minimum(u, v), torch.maximum(u, v)
    assert bool((lo != hi).all())
    return torch.bincount(lo * n + hi, minlength=n * n).view(n, n)[torch.triu_indices(n, n, 1).unbind()]


@pytest.mark.parametrize("proto,n", [("ESA", 4), ("EPA", 16)])
def test_pairs_are_uniform(proto, n):
    shape = (60000, 4, 4, 4)
    fs = FeatureSwap(proto, swaps=1, seed=2024)
    counts = _pair_counts(fs.plan(torch.empty(shape)).pairs, n)
    assert _chi2_pvalue(counts) > 1e-3, counts
    # The test has power: the same draws with a 10% tilt (half the pairs 10% likelier than the rest) fail it.
    tilt = 1 + 0.1 * (torch.arange(counts.numel()) % 2)
    assert _chi2_pvalue((counts * tilt).round().long()) < 1e-3


def test_chi2_rejects_a_biased_sampler():
    # Pairs from a biased sampler (b = a + 1 mod n) fail the uniformity test used above.
    g = torch.Generator().manual_seed(0)
    a = torch.randint(0, 4, (20000,), generator=g)
    b = torch.where(
        torch.rand(20000, generator=g) < 0.6, (a + 1) % 4, (a + 2 + torch.randint(0, 2, (20000,), generator=g)) % 4
    )
    assert _chi2_pvalue(_pair_counts(torch.stack([a, b], -1), 4)) < 1e-6


def test_disjoint_and_uniform_extent_and_image():
    fs = FeatureSwap("ES1", swaps=3, seed=5)
    plan = fs.plan(torch.empty(5000, 6, 3, 3))
    flat = plan.pairs.view(5000, 6)
    assert bool((flat.sort(1).values.diff(dim=1) > 0).all()), "pairs of an image must be disjoint"
    assert _chi2_pvalue(torch.bincount(plan.at, minlength=9)) > 1e-3
    # The image of a `1` protocol is uniform over the batch (with dataset indices or without).
    fs1 = FeatureSwap("1SA", seed=9)
    x = torch.empty(8, 3, 2, 2)
    chosen = torch.tensor([int(fs1.plan(x).image[0]) for _ in range(4000)])
    assert _chi2_pvalue(torch.bincount(chosen, minlength=8)) > 1e-3


def test_p_is_honoured():
    x = torch.empty(4, 3, 2, 2)
    for p, lo, hi in [(0.0, 0, 0), (1.0, 3000, 3000), (0.3, 900 - 3 * 25, 900 + 3 * 25)]:
        fs = FeatureSwap("ASA", p=p, seed=3)
        active = sum(int(fs.plan(x).active[0]) for _ in range(3000))
        assert lo <= active <= hi, (p, active)


def test_p_zero_leaves_data_bit_identical():
    x = make((16, 3, 8, 8), torch.float32, "contiguous")
    before = bits(x).clone()
    fs = FeatureSwap("EPA", swaps=2, p=0.0, seed=1)
    for _ in range(5):
        fs.swap_(x)
    assert torch.equal(bits(x), before)


def test_swapped_restores_bit_for_bit(backend):
    x = make((32, 3, 8, 8), torch.float32, "channels_last")
    before = bits(x).clone()
    for proto in PROTOCOLS:
        fs = FeatureSwap(proto, swaps=1 if proto[1] == "S" else 2, seed=11)
        with fs.swapped(x) as y:
            assert y is x
            if proto.startswith(("A", "E")):
                assert not torch.equal(bits(x), before)
        assert torch.equal(bits(x), before), proto


def test_seeded_runs_repeat_and_seeds_differ():
    x = make((8, 3, 6, 6), torch.float32, "contiguous")
    runs = []
    for seed in (1, 1, 2):
        y, fs = x.clone(), FeatureSwap("EPA", swaps=2, seed=seed)
        for _ in range(4):
            fs.swap_(y)
        runs.append(bits(y))
    assert torch.equal(runs[0], runs[1]) and not torch.equal(runs[0], runs[2])


def test_generator_seeds_it():
    a = FeatureSwap("ESA", generator=torch.Generator().manual_seed(5))
    b = FeatureSwap("ESA", generator=torch.Generator().manual_seed(5))
    c = FeatureSwap("ESA", generator=torch.Generator().manual_seed(6))
    assert a.seed == b.seed != c.seed
    state = torch.get_rng_state()
    FeatureSwap("ESA")  # the default seed reads torch.initial_seed() and leaves the global stream alone
    assert torch.equal(state, torch.get_rng_state())


def test_same_image_same_swap_whatever_the_batch_order():
    # Keyed by dataset index: permuting the batch permutes the swapped images, nothing else.
    x = make((10, 3, 4, 4), torch.float32, "contiguous")
    idx = torch.arange(100, 110)
    perm = torch.randperm(10)
    for proto in ("ESA", "EP1", "1PA", "ASA"):
        fs = FeatureSwap(proto, swaps=1, seed=42)
        y1, y2 = x.clone(), x[perm].clone()
        fs.apply_(y1, fs.plan(y1, indices=idx, step=3))
        fs.apply_(y2, fs.plan(y2, indices=idx[perm], step=3))
        assert_bits_equal(y1[perm], y2)


def test_state_dict_resumes_exactly():
    x = make((8, 3, 4, 4), torch.float32, "contiguous")
    fs = FeatureSwap("EP1", swaps=2, seed=8)
    for _ in range(3):
        fs.swap_(x.clone())
    state = fs.state_dict()
    want = [fs.plan(x).pairs.clone() for _ in range(3)]
    resumed = FeatureSwap("EP1", swaps=2, seed=0)
    resumed.load_state_dict(state)
    assert all(torch.equal(resumed.plan(x).pairs, w) for w in want)
    with pytest.raises(ValueError):
        FeatureSwap("ESA").load_state_dict(state)


def test_plan_refill_allocates_nothing():
    x = torch.randn(64, 4, 8, 8)
    for proto in ("ESA", "1P1", "AS1", "EPA", "1SA"):
        fs = FeatureSwap(proto, swaps=2, seed=1)
        fs.swap_(x)  # first step: buffers are made
        with profile(activities=[ProfilerActivity.CPU], profile_memory=True) as prof:
            fs.swap_(x)
        # Python scalars in in-place ops become 8-byte CPU scalar tensors; nothing else may be allocated.
        allocs = [e.cpu_memory_usage for e in prof.events() if e.cpu_memory_usage > 8]
        assert not allocs, (proto, allocs)


@pytest.mark.parametrize(
    "make_fs,exc",
    [
        (lambda: FeatureSwap("2SA"), ValueError),
        (lambda: FeatureSwap("SA"), ValueError),
        (lambda: FeatureSwap(3), ValueError),
        (lambda: FeatureSwap("ESA", swaps=0), ValueError),
        (lambda: FeatureSwap("ESA", p=1.5), ValueError),
        (lambda: FeatureSwap("ESA", p=-0.1), ValueError),
    ],
)
def test_bad_protocols(make_fs, exc):
    with pytest.raises(exc):
        make_fs()


def test_bad_batches_change_nothing():
    for proto, shape, swaps in [("1SA", (4, 1, 5, 5), 1), ("ESA", (4, 3, 2, 2), 2), ("APA", (4, 3, 1, 3), 2)]:
        x = make(shape, torch.float32, "contiguous")
        before = bits(x).clone()
        with pytest.raises(ValueError):
            FeatureSwap(proto, swaps=swaps).swap_(x)
        assert torch.equal(bits(x), before)
    with pytest.raises(ValueError):
        FeatureSwap("ESA")(torch.zeros(4, 4))  # one (C, H, W) image is a batch of one (a transform); 2-d is not


def test_lowercase_and_repr():
    fs = FeatureSwap("esa")
    assert fs.protocol == "ESA" and "ESA" in repr(fs)
    assert math.isclose(fs.p, 1.0)


@pytest.mark.parametrize("keyed", [False, True])
def test_native_image_choice_over_chunks_equals_torch(device, keyed):
    # draw_cpu scores the images in chunks of 256 (vectorized): the image chosen, the first of equal maxima, and
    # the keys' sum must be torch's argmax and sum for batches on either side of a chunk boundary, step by step.
    for b in (255, 256, 257, 600):
        x = torch.empty(b, 3, 2, 2, device=device)
        indices = torch.randperm(5000)[:b].to(device) if keyed else None
        plans = {}
        for backend in ("native", "torch"):
            with swapkern.use_backend(backend):
                fs = FeatureSwap("1PA", seed=b)
                plans[backend] = [fs.plan(x, indices=indices).clone() for _ in range(20)]
        for n, t in zip(plans["native"], plans["torch"], strict=True):
            for name in ("image", "pairs", "a", "b", "sample"):
                assert torch.equal(getattr(n, name), getattr(t, name)), (b, keyed, name)


@pytest.mark.parametrize("proto", PROTOCOLS)
def test_native_draw_equals_torch_draw(device, proto):
    # csrc/draw.h against draws.py: the same counter-based generator, bit for bit, on every plan field.
    swaps = 2
    for seed, p, with_indices, shape in [
        (0, 1.0, False, (5, 4, 3, 3)),
        (2**64 - 5, 0.5, True, (33, 4, 2, 7)),
        (123456789, 1.0, True, (1, 5, 4, 1)),
        (7, 0.0, True, (8, 6, 3, 3)),
    ]:
        x = torch.empty(shape, device=device)
        indices = torch.randperm(1000)[: shape[0]].to(device) if with_indices else None
        got = {}
        for backend in ("native", "torch"):
            with swapkern.use_backend(backend):
                fs = FeatureSwap(proto, swaps=swaps, p=p, seed=seed)
                fs.step = 41
                plan = fs.plan(x, indices=indices)
            got[backend] = plan
        for name in ("pairs", "at", "image", "active", "a", "b", "sample"):
            n, t = getattr(got["native"], name), getattr(got["torch"], name)
            assert (n is None) == (t is None), name
            if n is not None:
                assert torch.equal(n, t), (proto, seed, name, n, t)
