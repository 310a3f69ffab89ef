"""swapkern in the user's own training code: FeatureSwap as a torchvision v2 transform and an nn.Module, per-sample
draws in DataLoader workers, torch.compile over a call, WeightSwap on any model."""

import numpy as np
import pytest
import torch
from torch import nn
from torch.utils.data import DataLoader, Dataset

import swapkern
from swapkern import FeatureSwap, WeightSwap

v2 = pytest.importorskip("torchvision.transforms.v2")
tv_tensors = pytest.importorskip("torchvision.tv_tensors")


def _image(seed=0):
    return torch.arange(3 * 8 * 8, dtype=torch.float32).view(3, 8, 8) + 1000 * seed


def test_in_a_torchvision_pipeline_on_one_image():
    fs = FeatureSwap("1SA", seed=0)
    pipeline = v2.Compose([v2.RandomHorizontalFlip(p=1.0), fs])
    img = _image()
    out = pipeline(img)
    assert out.shape == img.shape and not torch.equal(out, img.flip(-1))
    assert torch.equal(img, _image())  # the input is not modified: the transform returns a copy
    assert torch.equal(out.sort(0).values, img.flip(-1).sort(0).values)  # channels exchanged, values kept


def test_tv_tensors_keep_their_type_and_other_entries_pass_through():
    fs = FeatureSwap("EPA", swaps=3, seed=1)
    img = tv_tensors.Image(_image())
    boxes = tv_tensors.BoundingBoxes([[0, 0, 4, 4]], format="XYXY", canvas_size=(8, 8))
    label = torch.tensor(3)
    out_img, out_boxes, out_label = fs(img, boxes, label)
    assert type(out_img) is tv_tensors.Image and out_img.shape == img.shape and not torch.equal(out_img, img)
    assert out_boxes is boxes and out_label is label
    video = tv_tensors.Video(torch.stack([_image(), _image(1)]))
    out = fs({"video": video, "label": 5})
    assert type(out["video"]) is tv_tensors.Video and out["label"] == 5 and not torch.equal(out["video"], video)


def test_a_module_in_a_pipeline_returns_a_swapped_copy():
    fs = FeatureSwap("ESA", seed=0)
    model = nn.Sequential(fs, nn.Flatten())
    x = torch.randn(5, 3, 4, 4)
    before = x.clone()
    with pytest.warns(FutureWarning, match="fs.swap_"):
        out = model(x)
    assert torch.equal(x, before) and not torch.equal(out, before.flatten(1)) and fs.step == 1
    assert torch.equal(out, FeatureSwap("ESA", seed=0).swap_(before.clone()).flatten(1))  # drawn as swap_ draws
    assert isinstance(fs, nn.Module) and "FeatureSwap('ESA'" in repr(fs)
    state = model.state_dict()  # its state is checkpointed with the model's
    fresh = nn.Sequential(FeatureSwap("ESA", seed=9), nn.Flatten())
    fresh.load_state_dict(state)
    assert fresh[0].step == 1 and fresh[0].seed == fs.seed


def test_torch_compile_traces_a_call_and_matches_eager():
    torch._dynamo.reset()
    compiled_fs, eager_fs = FeatureSwap("EPA", swaps=2, seed=7), FeatureSwap("EPA", swaps=2, seed=7)

    def step(fs, x):
        fs.swap_(x)
        return x * 2

    f = torch.compile(lambda x: step(compiled_fs, x), fullgraph=True)
    for i in range(4):
        x = torch.randn(6, 3, 5, 5, generator=torch.Generator().manual_seed(i))
        want = step(eager_fs, x.clone())
        got = f(x)
        assert torch.equal(got, want), i
    assert compiled_fs.step == eager_fs.step == 4


class _Images(Dataset):
    def __len__(self):
        return 16

    def __getitem__(self, i):
        return torch.zeros(4, 2, 2) + torch.arange(4.0).view(4, 1, 1), i  # channel c holds the value c


def _channel_orders(num_workers, epoch=0, seed=3):
    fs = FeatureSwap("1SA", seed=seed)
    fs.set_epoch(epoch)

    class Swapped(_Images):
        def __getitem__(self, i):
            img, idx = super().__getitem__(i)
            return fs(img), idx

    loader = DataLoader(Swapped(), batch_size=4, num_workers=num_workers, shuffle=False)
    out = {}
    for imgs, idx in loader:
        for img, i in zip(imgs, idx.tolist(), strict=True):
            out[i] = tuple(int(v) for v in img[:, 0, 0])
    return out


def test_workers_draw_independently_and_reruns_repeat():
    orders = _channel_orders(num_workers=2)
    assert len(set(orders.values())) > 3  # not every image got the same swap
    # worker 0 serves batches 0, 2; worker 1 batches 1, 3: their k-th images differ although the copies start alike
    assert any(orders[k] != orders[4 + k] for k in range(4))
    assert _channel_orders(num_workers=2) == orders  # same seed, same workers: the same swaps
    assert _channel_orders(num_workers=2, epoch=1) != orders  # set_epoch changes them


def test_weight_swap_leaves_out_what_cannot_take_the_protocol():
    net = nn.Sequential(nn.Conv2d(1, 4, 3), nn.ReLU(), nn.Flatten(), nn.Linear(4 * 2 * 2, 3))
    ws = WeightSwap(net, "cols", seed=0, layers="all")  # conv 0 has one input channel: one column
    assert ws.layers == ["3.weight"] and "1 cols" in ws.left_out["0.weight"]
    assert "layers=1, left out 1" in repr(ws)
    with pytest.raises(ValueError, match="0.weight has 1 cols"):
        WeightSwap(net, "cols", layers=["0.weight", "3.weight"])
    with pytest.raises(ValueError, match="output layer.*layers='all'"):
        WeightSwap(net, "cols")  # by default the output layer is left out, and nothing else can take cols
    with pytest.raises(ValueError, match="nothing to swap"):
        WeightSwap(nn.Sequential(nn.Conv2d(1, 4, 3)), "cols", layers="all")


def test_weight_swap_leaves_out_the_output_layer_by_default():
    net = nn.Sequential(nn.Conv2d(3, 4, 3), nn.ReLU(), nn.Flatten(), nn.Linear(16, 8), nn.ReLU(), nn.Linear(8, 3))
    ws = WeightSwap(net, "rows", seed=0)
    assert ws.layers == ["0.weight", "3.weight"] and "traced graph" in ws.left_out["5.weight"]
    assert WeightSwap(net, "rows", seed=0, layers="all").layers == ["0.weight", "3.weight", "5.weight"]

    class Branchy(nn.Module):  # registered out of order, and a control flow fx cannot trace: found by name
        def __init__(self):
            super().__init__()
            self.fc = nn.Linear(8, 3)
            self.body = nn.Linear(4, 8)

        def forward(self, x):
            if x.sum() > 0:
                return self.fc(self.body(x))
            return self.fc(-self.body(x))

    ws = WeightSwap(Branchy(), "cols", seed=0)
    assert ws.layers == ["body.weight"] and "classifier by name, 'fc'" in ws.left_out["fc.weight"]

    class TwoHeads(nn.Module):  # traced: the last layer on each path to the output
        def __init__(self):
            super().__init__()
            self.body, self.a, self.b = nn.Linear(4, 8), nn.Linear(8, 2), nn.Linear(8, 5)

        def forward(self, x):
            h = self.body(x).relu()
            return self.a(h), self.b(h)

    class Counting(TwoHeads):  # forward's side effects: the trace runs on a copy that shares the tensors
        def __init__(self):
            super().__init__()
            self.calls, self.seen = 0, []

        def forward(self, x):
            self.calls += 1
            self.seen.append(x)
            return super().forward(x)

    model = Counting()
    ws = WeightSwap(model, "rows", seed=0)
    assert ws.layers == ["body.weight"] and set(ws.left_out) == {"a.weight", "b.weight"}
    assert model.calls == 0 and model.seen == []
    assert WeightSwap(net, "neuron", seed=0).layers  # neuron finds the outputs itself (its rows never move)


def test_indices_as_numpy_arrays_and_tuples():
    x = torch.arange(10)
    swapkern.swap_elements_(x, np.array([0, 1]), (9, 8))
    assert x.tolist() == [9, 8, 2, 3, 4, 5, 6, 7, 1, 0]
