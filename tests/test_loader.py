"""The fused loader against its reference, the GPU-resident DeviceLoader, and DataLoader integration."""

import pytest
import torch
from conftest import bits, usable_backends

import swapkern
from swapkern import reference as ref
from swapkern.data import FeatureSwap

MEAN, STD = [0.491, 0.482, 0.447], [0.247, 0.243, 0.262]


def _ulps(got, want):
    """Largest distance in units of the last place between two float tensors of one dtype."""
    ints = {torch.float32: torch.int32, torch.float16: torch.int16, torch.bfloat16: torch.int16}[got.dtype]
    g, w = got.detach().cpu().contiguous().view(ints).long(), want.detach().cpu().contiguous().view(ints).long()
    return int((g - w).abs().max()) if g.numel() else 0


def _data(n, c, h, w, nhwc, device):
    shape = (n, h, w, c) if nhwc else (n, c, h, w)
    return torch.randint(0, 256, shape, dtype=torch.uint8).to(device)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float16, torch.bfloat16])
@pytest.mark.parametrize("channels_last", [False, True])
@pytest.mark.parametrize("nhwc", [True, False])
@pytest.mark.parametrize("proto", ["none", "1SA", "ESA", "ES1", "APA", "EPA", "1PA", "EP1", "1P1", "AS1"])
def test_load_batch_matches_reference(backend, device, dtype, channels_last, nhwc, proto):
    data = _data(40, 3, 7, 6, nhwc, device)
    stored = data.clone()
    scale, shift = swapkern.normalization(MEAN, STD)
    index = torch.randint(0, 40, (9,), device=device)
    flip = torch.randint(0, 2, (9,), device=device)
    out = torch.empty(9, 3, 7, 6, dtype=dtype, device=device)
    if channels_last:
        out = out.contiguous(memory_format=torch.channels_last)
    plan = None if proto == "none" else FeatureSwap(proto, swaps=1, seed=5).plan(out, indices=index)
    want = torch.empty_like(out)
    ref.load_batch_(want, data, index, scale, shift, plan=plan, flip=flip, nhwc=nhwc)
    got = swapkern.load_batch_(out, data, index, scale, shift, plan=plan, flip=flip, nhwc=nhwc)
    assert got is out and out.stride() == want.stride()
    # Same arithmetic (byte * scale, then + shift, then one rounding): exact on the CPU and in the Triton
    # interpreter; a GPU may contract the two float32 steps into one fused multiply-add, 1 ulp away.
    assert _ulps(out, want) <= (0 if device.type == "cpu" else 1)
    assert torch.equal(data, stored), "the stored data must never change"


def test_load_batch_swaps_and_flips_what_the_reference_says():
    # By hand, on a 1x2x1x3 image: channels swapped (ASA), then the image flipped.
    data = torch.tensor([[[[10, 20, 30]], [[40, 50, 60]]]], dtype=torch.uint8)  # (N, C, H, W)
    plan = FeatureSwap("ASA", seed=0).plan(torch.empty(1, 2, 1, 3))
    out = torch.empty(1, 2, 1, 3)
    one, zero = torch.ones(2), torch.zeros(2)
    swapkern.load_batch_(out, data, [0], one, zero, plan=plan, flip=[1], nhwc=False)
    assert out.tolist() == [[[[60.0, 50.0, 40.0]], [[30.0, 20.0, 10.0]]]]


def test_load_batch_errors_write_nothing():
    data = _data(10, 3, 4, 4, True, "cpu")
    scale, shift = swapkern.normalization(MEAN, STD)
    out = torch.zeros(4, 3, 4, 4)
    cases = [
        (IndexError, dict(index=[0, 1, 2, 10])),
        (ValueError, dict(index=[0, 1, 2])),
        (TypeError, dict(out=torch.zeros(4, 3, 4, 4, dtype=torch.float64))),
        (TypeError, dict(data=data.float())),
        (ValueError, dict(out=torch.zeros(4, 2, 4, 4))),
        (ValueError, dict(scale=scale[:2])),
        (ValueError, dict(flip=[0, 1])),
        (TypeError, dict(index=[0.0, 1.0, 2.0, 3.0])),
    ]
    for backend in usable_backends("cpu"):
        with swapkern.use_backend(backend):
            for exc, kw in cases:
                args = dict(out=out, data=data, index=[0, 1, 2, 3], scale=scale, shift=shift)
                args.update(kw)
                flip = args.pop("flip", None)
                before = bits(args["out"]).clone()
                with pytest.raises(exc):
                    swapkern.load_batch_(
                        args["out"], args["data"], args["index"], args["scale"], args["shift"], flip=flip
                    )
                assert torch.equal(bits(args["out"]), before), (backend, kw)


def test_load_batch_opcheck():
    data = _data(10, 3, 4, 5, True, "cpu")
    scale, shift = swapkern.normalization(MEAN, STD)
    out = torch.empty(4, 3, 4, 5)
    plan = FeatureSwap("EPA", swaps=2, seed=1).plan(out)
    args = (
        out,
        data,
        torch.tensor([0, 3, 9, 3]),
        scale,
        shift,
        plan.pairs,
        plan.at,
        plan.image,
        plan.active,
        torch.tensor([0, 1, 1, 0]),
        2,
        1,
        True,
        True,
        True,
    )
    torch.library.opcheck(torch.ops.swapkern.load_batch_.default, args)


def test_device_loader_epoch_is_a_permutation_and_repeats(device):
    images = _data(103, 3, 8, 8, True, device)
    labels = torch.arange(103, device=device)

    def batches(seed):
        dl = swapkern.DeviceLoader(
            images,
            labels,
            batch_size=10,
            mean=MEAN,
            std=STD,
            seed=seed,
            flip=True,
            feature_swap=FeatureSwap("ESA", seed=seed),
            drop_last=False,
        )
        return [(x.clone(), y.clone()) for x, y in dl]

    a, b, c = batches(1), batches(1), batches(2)
    assert len(a) == 11 and a[-1][0].shape[0] == 3
    seen = torch.cat([y for _, y in a]).sort().values
    assert torch.equal(seen.cpu(), torch.arange(103))
    assert all(torch.equal(x1, x2) and torch.equal(y1, y2) for (x1, y1), (x2, y2) in zip(a, b, strict=True))
    assert not all(torch.equal(y1, y2) for (_, y1), (_, y2) in zip(a, c, strict=True))


def test_device_loader_batch_equals_reference():
    images = _data(50, 3, 6, 6, True, "cpu")
    labels = torch.randint(0, 10, (50,))
    fs = FeatureSwap("EP1", swaps=2, seed=3)
    dl = swapkern.DeviceLoader(
        images,
        labels,
        batch_size=16,
        mean=MEAN,
        std=STD,
        feature_swap=fs,
        flip=True,
        dtype=torch.bfloat16,
        channels_last=True,
        seed=4,
    )
    order = dl._order().clone()
    x, y = next(iter(dl))
    index = order[:16]
    assert torch.equal(y, labels[index])
    replay = FeatureSwap("EP1", swaps=2, seed=3)
    plan = replay.plan(x, indices=index)
    dl.epoch = 0
    flip = dl._flips(index).clone()
    assert 0 < int(flip.sum()) < 16
    want = torch.empty_like(x)
    ref.load_batch_(want, images, index, dl.scale, dl.shift, plan=plan, flip=flip)
    assert torch.equal(x, want)


def test_device_loader_errors():
    images, labels = _data(8, 3, 4, 4, True, "cpu"), torch.zeros(8, dtype=torch.int64)
    with pytest.raises(ValueError):
        swapkern.DeviceLoader(images, labels, batch_size=4, mean=MEAN, std=STD, layout="HWC")
    with pytest.raises(ValueError):
        swapkern.DeviceLoader(images, labels[:5], batch_size=4, mean=MEAN, std=STD)
    with pytest.raises(ValueError):  # 2 channel pairs need 4 channels
        swapkern.DeviceLoader(
            images, labels, batch_size=4, mean=MEAN, std=STD, feature_swap=FeatureSwap("ESA", swaps=2)
        )


class _Images(torch.utils.data.Dataset):
    def __init__(self, n=64):
        g = torch.Generator().manual_seed(0)
        self.x = torch.randn(n, 3, 8, 8, generator=g)
        self.y = torch.randint(0, 4, (n,), generator=g)

    def __len__(self):
        return len(self.x)

    def __getitem__(self, i):
        return self.x[i], self.y[i]


def _epoch(num_workers, fs, shuffle_seed=0):
    ds = swapkern.WithIndex(_Images())
    loader = torch.utils.data.DataLoader(
        ds,
        batch_size=8,
        shuffle=True,
        num_workers=num_workers,
        generator=torch.Generator().manual_seed(shuffle_seed),
        collate_fn=swapkern.SwapCollate(fs),
    )
    return [(x.clone(), y.clone()) for x, y in loader]


def test_collate_swaps_in_workers_independent_of_worker_count():
    fs = FeatureSwap("EPA", swaps=2, seed=9)
    fs.set_epoch(3)
    zero, two = _epoch(0, fs), _epoch(2, fs)
    assert all(torch.equal(a[0], b[0]) and torch.equal(a[1], b[1]) for a, b in zip(zero, two, strict=True))
    plain = _epoch(0, FeatureSwap("EPA", p=0.0, seed=9))
    assert not all(torch.equal(a[0], b[0]) for a, b in zip(zero, plain, strict=True))
    # Each image's swap depends on (seed, epoch, dataset index) only: another batch order, same swapped images.
    images = {tuple(x.flatten()[:4].tolist()) for xs, _ in zero for x in xs}
    images_other = {tuple(x.flatten()[:4].tolist()) for xs, _ in _epoch(0, fs, shuffle_seed=1) for x in xs}
    assert images == images_other


def test_short_training_loop_with_collate():
    torch.manual_seed(0)
    model = torch.nn.Sequential(
        torch.nn.Conv2d(3, 8, 3, padding=1), torch.nn.ReLU(), torch.nn.Flatten(), torch.nn.Linear(8 * 64, 4)
    )
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    fs = FeatureSwap("1SA", seed=1)
    losses = []
    for epoch in range(3):
        fs.set_epoch(epoch)
        for x, y in _epoch(0, fs, shuffle_seed=epoch):
            loss = torch.nn.functional.cross_entropy(model(x), y)
            opt.zero_grad()
            loss.backward()
            opt.step()
            losses.append(loss.item())
    assert all(torch.isfinite(torch.tensor(losses))) and losses[-1] < losses[0]
