"""FeatureSwap in the training stacks people use: the call conventions (fs(x) is a copy, fs.swap_ is in place),
PIL and NumPy images, draws in DataLoader workers that never repeat and always resume, pickling and copies,
torch.export and dynamic shapes."""

import copy
import io
import pickle
import warnings

import numpy as np
import pytest
import torch
from torch import nn
from torch.utils.data import DataLoader, Dataset

from swapkern import FeatureSwap, SwapCollate
from swapkern import data as data_mod

v2 = pytest.importorskip("torchvision.transforms.v2")
tv_tensors = pytest.importorskip("torchvision.tv_tensors")
Image = pytest.importorskip("PIL.Image")


def _image(c=4, h=3, w=3, dtype=torch.float32):
    return (torch.arange(c * h * w) % 251).to(dtype).view(c, h, w)


# -- 1. conventions --------------------------------------------------------------------------------------------------
def test_call_returns_a_copy_and_never_modifies_its_input():
    fs = FeatureSwap("ESA", seed=0)
    cases = {
        "image": _image(),
        "batch": torch.randn(3, 4, 5, 5),
        "tv image": tv_tensors.Image(torch.randn(2, 4, 5, 5)),
        "tv video": tv_tensors.Video(torch.randn(2, 3, 4, 5, 5)),
        "clip": torch.randn(2, 3, 4, 5, 5),
    }
    for name, x in cases.items():
        before = x.clone()
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", FutureWarning)
            out = fs(x)
        assert torch.equal(x, before), name
        assert out.shape == x.shape and type(out) is type(x) and not torch.equal(out, before), name
    sample = (_image(), torch.tensor(3))
    before = sample[0].clone()
    out, label = v2.Compose([fs])(sample)
    assert torch.equal(sample[0], before) and not torch.equal(out, before) and label is sample[1]


def test_swap_is_in_place_and_the_batch_call_warns_once():
    fs, twin = FeatureSwap("1SA", seed=4), FeatureSwap("1SA", seed=4)
    x = torch.randn(6, 3, 4, 4)
    before = x.clone()
    assert fs.swap_(x) is x and not torch.equal(x, before) and fs.step == 1
    with pytest.warns(FutureWarning, match=r"fs\.swap_\(batch\)"):
        y = twin(before)  # the old statement form: a copy now, drawn exactly as swap_ draws
    assert torch.equal(y, x) and twin.step == 1
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # once per FeatureSwap
        twin(before)


def test_pil_images_are_swapped_and_returned_as_pil():
    rgb = Image.fromarray(np.arange(8 * 8 * 3, dtype=np.uint8).reshape(8, 8, 3) * 3)
    before = np.asarray(rgb).copy()
    fs = FeatureSwap("1SA", seed=0)
    out = fs(rgb)
    assert isinstance(out, Image.Image) and out.mode == "RGB" and out.size == rgb.size
    got = np.asarray(out)
    assert np.array_equal(np.asarray(rgb), before) and not np.array_equal(got, before)
    assert np.array_equal(np.sort(got, axis=2), np.sort(before, axis=2))  # channels exchanged, values kept
    # the same draw as the tensor of the image: PIL is converted, not treated differently
    want = FeatureSwap("1SA", seed=0)(torch.from_numpy(before).permute(2, 0, 1))
    assert np.array_equal(got, want.permute(1, 2, 0).numpy())
    pal = rgb.convert("P")  # one channel of palette indices: pixel swaps keep the palette
    out = FeatureSwap("1PA", seed=0)(pal)
    assert out.mode == "P" and out.getpalette() == pal.getpalette()
    assert not np.array_equal(np.asarray(out), np.asarray(pal))
    with pytest.raises(ValueError, match="needs 2 channels"):
        FeatureSwap("1SA", seed=0)(rgb.convert("L"))


def test_a_compose_over_pil_datasets_swaps():
    torchvision = pytest.importorskip("torchvision")
    fs = FeatureSwap("1SA", seed=1)
    plain = torchvision.datasets.FakeData(size=4, image_size=(3, 8, 8), transform=v2.ToImage())
    swapped = torchvision.datasets.FakeData(size=4, image_size=(3, 8, 8), transform=v2.Compose([fs, v2.ToImage()]))
    for i in range(4):
        a, b = plain[i][0], swapped[i][0]
        assert type(b) is tv_tensors.Image and not torch.equal(a, b)
        assert torch.equal(a.sort(0).values, b.sort(0).values)
    assert fs.counts == [4]


def test_numpy_arrays_are_hwc_images_returned_as_arrays():
    fs, twin = FeatureSwap("EPA", swaps=2, seed=5), FeatureSwap("EPA", swaps=2, seed=5)
    for dtype in (np.uint8, np.float32, np.float64, np.int16):
        a = (np.arange(6 * 7 * 3) % 97).astype(dtype).reshape(6, 7, 3)
        before = a.copy()
        out = fs(a)
        want = twin(torch.from_numpy(a).permute(2, 0, 1)).permute(1, 2, 0).numpy()
        assert out.dtype == a.dtype and out.shape == a.shape and np.array_equal(a, before)
        assert np.array_equal(out, want) and not np.array_equal(out, a)
    gray = np.arange(16, dtype=np.uint8).reshape(4, 4)  # (H, W): one channel
    assert FeatureSwap("1PA", seed=0)(gray).shape == (4, 4)
    video = np.zeros((2, 4, 4, 3), dtype=np.uint8) + np.arange(3, dtype=np.uint8)  # (T, H, W, C)
    out = FeatureSwap("ASA", seed=0)(video)
    assert out.shape == video.shape and (out != video).any()
    with pytest.raises(ValueError, match="NumPy image"):
        fs(np.arange(3.0))
    with pytest.raises(TypeError, match="NumPy array of dtype object"):
        fs(np.empty((4, 4, 3), dtype=object))


# -- 2. draws in DataLoader workers ------------------------------------------------------------------------------------
class _Images(Dataset):
    """16 images of 6 channels, channel c holding c; the image passes through fs (a transform in the worker)."""

    def __init__(self, fs):
        self.fs = fs

    def __len__(self):
        return 16

    def __getitem__(self, i):
        return self.fs(torch.zeros(6, 2, 2) + torch.arange(6.0).view(6, 1, 1)), i


def _orders(loader):
    out = {}
    for imgs, idx in loader:
        for img, i in zip(imgs, idx.tolist(), strict=True):
            out[i] = tuple(int(v) for v in img[:, 0, 0])
    return out


def _run(fs, epochs, *, workers, persistent=False, set_epoch=True, start=0):
    kw = {"persistent_workers": True} if persistent else {}
    loader = DataLoader(_Images(fs), batch_size=4, num_workers=workers, **kw)
    seen = []
    for e in range(start, start + epochs):
        if set_epoch:
            fs.set_epoch(e)
        seen.append(_orders(loader))
    return seen


@pytest.mark.parametrize("workers", [0, 2])
def test_epochs_never_repeat_without_set_epoch(workers):
    a, b, c = _run(FeatureSwap("ESA", seed=3), 3, workers=workers, set_epoch=False)
    assert a != b and b != c and a != c
    assert len({v for ep in (a, b) for v in ep.values()}) > 6


def test_persistent_workers_see_set_epoch():
    plain = _run(FeatureSwap("ESA", seed=3), 3, workers=2)
    persistent = _run(FeatureSwap("ESA", seed=3), 3, workers=2, persistent=True)
    assert persistent == plain and plain[0] != plain[1]
    again = FeatureSwap("ESA", seed=3)
    assert _run(again, 1, workers=2, start=2) == plain[2:]  # set_epoch(e) alone decides epoch e's draws


@pytest.mark.parametrize("persistent", [False, True])
@pytest.mark.parametrize("set_epoch", [True, False])
def test_state_dict_at_an_epoch_end_resumes_the_next_epoch(persistent, set_epoch):
    fs = FeatureSwap("1SA", seed=11)
    kw = {"workers": 2, "persistent": persistent, "set_epoch": set_epoch}
    first = _run(fs, 2, **kw)
    buf = io.BytesIO()
    torch.save(fs.state_dict(), buf)  # the end of epoch 1
    rest = _run(fs, 1, start=2, **kw)
    resumed = FeatureSwap("1SA", seed=0)
    resumed.load_state_dict(torch.load(io.BytesIO(buf.getvalue())))
    assert _run(resumed, 1, start=2, **kw) == rest  # a fresh FeatureSwap and a fresh DataLoader
    assert rest[0] not in first


def test_collate_without_indices_does_not_repeat_epochs():
    fs = FeatureSwap("EPA", seed=2)
    data = [(torch.arange(12.0).view(3, 2, 2), 0) for _ in range(8)]
    loader = DataLoader(data, batch_size=4, num_workers=2, collate_fn=SwapCollate(fs, indexed=False))
    epochs = [torch.cat([x for x, _ in loader]) for _ in range(2)]
    assert not torch.equal(epochs[0], epochs[1])


# -- 3. pickling, copies, workers --------------------------------------------------------------------------------------
def _used():
    fs = FeatureSwap("1PA", swaps=2, seed=8)
    fs.swap_(torch.randn(2, 3, 4, 4))
    fs(_image(3))
    fs(np.zeros((4, 4, 3), np.uint8))
    return fs


def test_a_used_feature_swap_pickles_and_saves_with_its_module():
    fs = _used()
    twin = pickle.loads(pickle.dumps(fs))
    x = torch.randn(2, 3, 4, 4)
    assert twin.get_extra_state() == fs.get_extra_state() and twin.counts == [2]
    assert torch.equal(twin.swap_(x.clone()), fs.swap_(x.clone()))
    assert torch.equal(twin(_image(3)), fs(_image(3)))
    model = nn.Sequential(_used(), nn.Flatten())
    buf = io.BytesIO()
    torch.save(model, buf)
    loaded = torch.load(io.BytesIO(buf.getvalue()), weights_only=False)
    assert loaded[0].step == 1 and loaded[0].counts == [2]
    assert torch.equal(loaded[0].swap_(x.clone()), model[0].swap_(x.clone()))


def test_a_deepcopy_owns_its_counters():
    fs = _used()
    state = fs.get_extra_state()
    dup = copy.deepcopy(fs)
    for _ in range(3):
        dup.swap_(torch.randn(2, 3, 4, 4))
        dup(_image(3))
    dup.set_epoch(5)
    assert fs.get_extra_state() == state and dup.step == 4 and dup.epoch == 5
    model = nn.Sequential(fs, nn.Flatten())
    ema = torch.optim.swa_utils.AveragedModel(model)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)
        ema(torch.randn(2, 3, 4, 4))
    ema.update_parameters(model)
    assert fs.get_extra_state() == state


def test_spawned_workers_share_the_counts():
    torchvision = pytest.importorskip("torchvision")

    def epoch(context):
        fs = FeatureSwap("1SA", seed=6)
        data = torchvision.datasets.FakeData(size=6, image_size=(3, 4, 4), transform=v2.Compose([fs, v2.ToImage()]))
        loader = DataLoader(data, batch_size=3, num_workers=1, multiprocessing_context=context)
        return torch.cat([x for x, _ in loader]), fs.counts

    fork, spawn = epoch("fork"), epoch("spawn")
    assert torch.equal(fork[0], spawn[0]) and fork[1] == spawn[1] == [6]


# -- 4. export and dynamic shapes --------------------------------------------------------------------------------------
class _Net(nn.Module):
    def __init__(self):
        super().__init__()
        self.fs = FeatureSwap("EPA", swaps=2, seed=3)

    def forward(self, x):
        return self.fs.swap_(x.clone()) * 2 + self.fs(x)


@pytest.mark.parametrize("dynamic", [False, True])
def test_torch_export_default_mode(dynamic):
    x = torch.randn(4, 3, 5, 5)
    shapes = {"x": {0: torch.export.Dim("batch", min=1, max=64)}} if dynamic else None
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)
        ep = torch.export.export(_Net(), (x,), dynamic_shapes=shapes)
        exported, eager = ep.module(), _Net()
        for n in (7, 3, 4) if dynamic else (4, 4):
            y = torch.randn(n, 3, 5, 5)
            assert torch.equal(exported(y), eager(y)), n


def test_compile_dynamic_does_not_recompile_per_batch_size():
    from torch._dynamo.utils import counters

    torch._dynamo.reset()
    counters.clear()
    fs, eager = FeatureSwap("EPA", swaps=2, seed=3), FeatureSwap("EPA", swaps=2, seed=3)
    f = torch.compile(lambda x: fs.swap_(x) * 2 + fs(x), dynamic=True, fullgraph=True)
    for n in (2, 3, 5, 8, 13, 21):
        x = torch.randn(n, 3, 6, 6)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", FutureWarning)
            y = eager.swap_(x.clone())  # the compiled call swaps x in place, then copies the swapped x
            want = y * 2 + eager(y)
        assert torch.equal(f(x), want), n
    assert counters["stats"]["unique_graphs"] == 1
    torch._dynamo.reset()


def test_the_per_shape_cache_is_bounded():
    fs = FeatureSwap("1SA", seed=0)
    batch = torch.zeros(2, 3, 2, 2)
    for h in range(1, 3 * data_mod.SLOTS):
        fs(torch.zeros(3, h, 2))
        fs.swap_(batch)  # used all along: kept
    assert len(fs._slots) == data_mod.SLOTS
    assert (torch.Size([1, 3, 1, 2]), torch.device("cpu")) not in fs._slots  # least recently used: gone
    assert (batch.shape, batch.device) in fs._slots


def test_weight_swap_state_saves_loads_and_copies():
    from swapkern import WeightSwap

    def net():
        torch.manual_seed(0)
        return nn.Sequential(nn.Linear(6, 8), nn.ReLU(), nn.Linear(8, 8), nn.ReLU(), nn.Linear(8, 3))

    a, b = net(), net()
    ws = WeightSwap(a, "rows", swaps=2, seed=9)
    for _ in range(3):
        ws.step()
    buf = io.BytesIO()
    torch.save(ws.state_dict(), buf)
    state = torch.load(io.BytesIO(buf.getvalue()))  # weights_only: plain data
    dup = copy.deepcopy(state)
    resumed = WeightSwap(b, "rows", swaps=2, seed=0)
    resumed.load_state_dict(pickle.loads(pickle.dumps(state)))
    for p, q in zip(a.parameters(), b.parameters(), strict=True):
        q.data.copy_(p.data)
    for _ in range(2):
        ws.step()
        resumed.step()
    assert all(torch.equal(p, q) for p, q in zip(a.parameters(), b.parameters(), strict=True))
    assert dup == state and dup["draws"] == 3 and ws.draws == resumed.draws == 5
