"""The README's Python examples run as written, in order, against the installed package: the tour cannot drift
from the API."""

import os
import re

import torch
from conftest import ROOT
from torch import nn


def _blocks():
    with open(os.path.join(ROOT, "README.md")) as f:
        return re.findall(r"```python\n(.*?)```", f.read(), flags=re.S)


def test_readme_python_examples_run():
    blocks = _blocks()
    assert len(blocks) >= 3
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(8, 16), nn.ReLU(), nn.Linear(16, 4))
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    data, target = torch.randn(32, 8), torch.randint(0, 4, (32,))
    scope = {  # what the weight-swap example takes from the user's own training loop
        "model": model,
        "optimizer": optimizer,
        "closure": lambda: nn.functional.cross_entropy(model(data), target),
    }
    for block in blocks:
        exec(compile(block, "README.md", "exec"), scope)
    x, w = scope["x"], scope["w"]
    assert x.shape == (256, 3, 32, 32) and w.shape == (512, 256)
    ws = scope["ws"]
    assert ws.stats["proposals"] >= 1  # the Metropolis step ran and was counted
