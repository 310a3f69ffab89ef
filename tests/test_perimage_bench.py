"""bench.overhead.perimage: the per-image row's candidates each return a new image holding the input's values (so
the timings compare like with like), and the table has every candidate and ratio (no timing is checked here)."""

import numpy as np
import pytest
import torch

pytest.importorskip("torchvision")
from bench.overhead.perimage import candidates, per_image_rows  # noqa: E402


@pytest.mark.parametrize("dtype", [torch.float32, torch.uint8])
def test_every_candidate_returns_a_new_image_of_the_same_values(dtype):
    cands = candidates(dtype)
    assert "swapkern FeatureSwap('1SA')(img)" in cands and "torchvision RandomChannelPermutation" in cands
    assert "plain clone-and-swap" in cands
    for name, f in cands.items():
        a, b = f(), f()
        a = torch.as_tensor(np.asarray(a)) if not isinstance(a, torch.Tensor) else a
        b = torch.as_tensor(np.asarray(b)) if not isinstance(b, torch.Tensor) else b
        assert a.dtype == dtype and a.numel() == 3 * 32 * 32, name
        assert a.data_ptr() != b.data_ptr(), name  # a new image each call
        flat = a.reshape(-1).sort().values
        assert torch.equal(flat, b.reshape(-1).sort().values), name  # channels moved, values kept


def test_the_table_has_every_candidate_and_ratio():
    rows = per_image_rows(rounds=1, calls=3)
    assert {r["dtype"] for r in rows} == {"float32", "uint8"}
    ours = [r for r in rows if r["case"] == "swapkern FeatureSwap('1SA')(img)"]
    assert len(ours) == 2 and all(r["vs_swapkern"] == 1.0 and r["vs_torchvision"] > 0 for r in ours)
    assert torch.get_num_threads() >= 1
