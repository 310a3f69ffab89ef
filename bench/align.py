"""Aligning two models with swapkern.align_ (git re-basin weight matching): how long it takes, and what it does to
the loss barrier of the linear interpolation between two independently trained networks.

    python -m bench.align [--timing] [--barrier] [--models resnet18 resnet50 vit_b_16] [--data builtin|cifar10|PATH]
                          [--widths 16 64 256] [--cnn-widths 8 32] [--epochs N] [--threads N] [--device D]
                          [--out FILE] [--quick]

Timing: two independently initialised instances of each torchvision model (and a randomly permuted copy, which
must come back exactly): the spec's extraction and weight matching, in seconds, with the passes over the groups.
Barrier: two networks trained from different seeds (and batch orders) on the same data; the train-loss barrier
max over alpha of L((1 - alpha) a + alpha b) - ((1 - alpha) L(a) + alpha L(b)) over 11 alphas, before and after
aligning b to a (weights, and activations on 4 training batches); BatchNorm statistics of every interpolated
network are re-estimated on training batches (as the git re-basin paper does for its BN networks). Data: the
built-in synthetic set by default; --data (or SWAPKERN_DATA) selects a tree of images such as CIFAR-10.
Keep the machine's share small: `nice -n 19 python -m bench.align --threads 1`.
"""

from __future__ import annotations

import argparse
import copy
import json
import os
import time

import torch
from torch import nn
from torch.nn import functional as F

import swapkern

from .common.provenance import machine_info
from .training import datasets
from .training.models import small_cnn


# -- timing -----------------------------------------------------------------------------------------------------------
def _distance(a, b, spec):
    keys = {m[0] for g in spec.groups for m in g["members"]}
    sa, sb = a.state_dict(), b.state_dict()
    return sum(float((sa[k].double() - sb[k].double()).pow(2).sum()) for k in keys)


def time_model(name: str, device: str) -> dict:
    import torchvision

    make = getattr(torchvision.models, name)
    torch.manual_seed(0)
    a = make().to(device).eval()
    torch.manual_seed(1)
    b = make().to(device).eval()
    t0 = time.perf_counter()
    spec = swapkern.permutation_groups(b)
    t_spec = time.perf_counter() - t0
    d0 = _distance(a, b, spec)
    t0, c0 = time.perf_counter(), time.process_time()
    res = swapkern.align_(b, a, spec=spec)
    _sync(device)
    t_align, c_align = time.perf_counter() - t0, time.process_time() - c0
    d1 = _distance(a, b, spec)
    # a randomly permuted copy of a must come back exactly
    c = copy.deepcopy(a)
    gen = torch.Generator().manual_seed(2)
    truth = [swapkern.permutation.random_permutation(g, gen) for g in spec.groups]
    swapkern.apply_permutation_(c, truth, spec=spec)
    t0 = time.perf_counter()
    res_c = swapkern.align_(c, a, spec=spec)
    _sync(device)
    t_copy = time.perf_counter() - t0
    exact = all(torch.equal(q, torch.argsort(p)) for p, q in zip(truth, res_c.perms, strict=True))
    return {
        "model": name,
        "groups": len(spec.groups),
        "units": sum(g["size"] for g in spec.groups),
        "left_out": len(spec.left_out),
        "spec_s": t_spec,
        "align_s": t_align,
        "align_cpu_s": c_align,  # the process's CPU time: what the wall-clock is on an unloaded machine, roughly
        "passes": res.iterations,
        "distance_before": d0,
        "distance_after": d1,
        "copy_align_s": t_copy,
        "copy_passes": res_c.iterations,
        "copy_recovered_exactly": exact,
        "copy_distance_after": _distance(a, c, spec),
    }


def _sync(device):
    if str(device).startswith("cuda"):
        torch.cuda.synchronize()


# -- the loss barrier -------------------------------------------------------------------------------------------------
def mlp(inputs, width, classes):
    return nn.Sequential(
        nn.Flatten(), nn.Linear(inputs, width), nn.ReLU(), nn.Linear(width, width), nn.ReLU(), nn.Linear(width, classes)
    )


def _tensors(data, n_train, n_test):
    d = data.subset(n_train, n_test)
    mean, std = d.stats()
    mean, std = torch.tensor(mean)[:, None, None], torch.tensor(std)[:, None, None]
    norm = lambda x: (x.permute(0, 3, 1, 2).float() / 255 - mean) / std  # noqa: E731
    return norm(d.train_x), d.train_y, norm(d.test_x), d.test_y, d.classes


def train(model, x, y, epochs, seed, batch=128, lr=0.05):
    g = torch.Generator().manual_seed(seed)
    opt = torch.optim.SGD(model.parameters(), lr=lr, momentum=0.9, weight_decay=5e-4)
    steps = epochs * ((len(y) + batch - 1) // batch)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, lr, total_steps=steps, pct_start=0.2)
    model.train()
    for _ in range(epochs):
        order = torch.randperm(len(y), generator=g)
        for i in range(0, len(y), batch):
            idx = order[i : i + batch]
            opt.zero_grad(set_to_none=True)
            F.cross_entropy(model(x[idx]), y[idx]).backward()
            opt.step()
            sched.step()
    return model.eval()


@torch.no_grad()
def evaluate(model, x, y, batch=1000):
    model.eval()
    loss, correct = 0.0, 0
    for i in range(0, len(y), batch):
        out = model(x[i : i + batch])
        loss += float(F.cross_entropy(out, y[i : i + batch], reduction="sum"))
        correct += int((out.argmax(1) == y[i : i + batch]).sum())
    return loss / len(y), correct / len(y)


@torch.no_grad()
def _reset_bn(model, x, batches=10, batch=256):
    bns = [m for m in model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
    if not bns:
        return
    for m in bns:
        m.reset_running_stats()
        m.momentum = None  # a cumulative average over the batches
    model.train()
    g = torch.Generator().manual_seed(123)
    for _ in range(batches):
        model(x[torch.randint(0, len(x), (batch,), generator=g)])
    model.eval()


def interpolate(a, b, alpha):
    m = copy.deepcopy(a)
    sa, sb = a.state_dict(), b.state_dict()
    m.load_state_dict(
        {k: (1 - alpha) * v + alpha * sb[k] if v.is_floating_point() else v for k, v in sa.items()}, strict=True
    )
    return m


def barrier(a, b, x, y, xt, yt, alphas):
    losses, accs = [], []
    for al in alphas:
        m = interpolate(a, b, al)
        _reset_bn(m, x)
        losses.append(evaluate(m, x, y)[0])
        accs.append(evaluate(m, xt, yt)[1])
    l0, l1 = losses[0], losses[-1]
    excess = [lo - ((1 - al) * l0 + al * l1) for al, lo in zip(alphas, losses, strict=True)]
    return {"barrier": max(excess), "train_loss": losses, "test_acc": accs}


def barrier_case(kind, width, tensors, epochs, points=11):
    x, y, xt, yt, classes = tensors
    if kind == "mlp":
        make = lambda: mlp(x[0].numel(), width, classes)  # noqa: E731
    else:
        make = lambda: small_cnn(x.shape[1], classes, width)  # noqa: E731
    torch.manual_seed(10)
    a = train(make(), x, y, epochs, seed=10)
    torch.manual_seed(20)
    b = train(make(), x, y, epochs, seed=20)
    alphas = [i / (points - 1) for i in range(points)]
    out = {"model": kind, "width": width, "acc_a": evaluate(a, xt, yt)[1], "acc_b": evaluate(b, xt, yt)[1]}
    out["naive"] = barrier(a, b, x, y, xt, yt, alphas)
    with torch.no_grad():
        before = b(xt[:500])
    for method in ("weights", "activations"):
        bb = copy.deepcopy(b)
        t0 = time.perf_counter()
        batches = [x[i * 256 : (i + 1) * 256] for i in range(4)]
        swapkern.align_(bb, a, method, batches=batches)
        dt = time.perf_counter() - t0
        with torch.no_grad():
            same = float((bb(xt[:500]) - before).abs().max())
        out[method] = barrier(a, bb, x, y, xt, yt, alphas) | {"align_s": dt, "max_output_change": same}
    return out


# -- the command line -------------------------------------------------------------------------------------------------
def main(argv=None):
    ap = argparse.ArgumentParser(prog="python -m bench.align", description=__doc__.split("\n\n")[0])
    ap.add_argument("--timing", action="store_true", help="time the alignment of torchvision models")
    ap.add_argument("--barrier", action="store_true", help="the loss barrier before and after alignment")
    ap.add_argument("--models", nargs="+", default=["resnet18", "resnet50", "vit_b_16"])
    ap.add_argument("--data", default=os.environ.get("SWAPKERN_DATA", "builtin"))
    ap.add_argument("--n-train", type=int, default=5000)
    ap.add_argument("--n-test", type=int, default=1000)
    ap.add_argument("--widths", type=int, nargs="+", default=[16, 64, 256])
    ap.add_argument("--cnn-widths", type=int, nargs="*", default=[8, 32])
    ap.add_argument("--epochs", type=int, default=10)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--out", default=None, help="write the results as JSON here")
    ap.add_argument("--quick", action="store_true", help="resnet18 only; widths 8 32; 2 epochs on 512 images")
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    if not (args.timing or args.barrier):
        args.timing = args.barrier = True
    if args.quick:
        args.models, args.widths, args.cnn_widths, args.epochs = ["resnet18"], [8, 32], [8], 2
        args.n_train, args.n_test = 512, 256
    result = {"machine": machine_info(), "args": vars(args), "timing": [], "barrier": []}
    if args.timing:
        print("| model | groups | units | spec s | align s, CPU s (passes) | distance | copy s, exact |")
        print("|---|---|---|---|---|---|---|")
        for name in args.models:
            r = time_model(name, args.device)
            result["timing"].append(r)
            print(
                f"| {name} | {r['groups']} | {r['units']} | {r['spec_s']:.2f} | {r['align_s']:.1f}, "
                f"{r['align_cpu_s']:.1f} ({r['passes']}) | "
                f"{r['distance_before']:.4g} -> {r['distance_after']:.4g} | {r['copy_align_s']:.1f}, "
                f"{r['copy_recovered_exactly']} |",
                flush=True,
            )
    if args.barrier:
        data = datasets.load(args.data, quiet=True)
        tensors = _tensors(data, args.n_train, args.n_test)
        result["data"] = data.name
        print(f"\ndata {data.name}: {args.n_train} train, {args.n_test} test, {args.epochs} epochs")
        print("| net | width | test acc a / b | barrier naive | weights | activations | mid test acc naive/w/act |")
        print("|---|---|---|---|---|---|---|")
        cases = [("mlp", w) for w in args.widths] + [("cnn", w) for w in args.cnn_widths]
        for kind, width in cases:
            r = barrier_case(kind, width, tensors, args.epochs)
            result["barrier"].append(r)
            mid = [r[k]["test_acc"][len(r[k]["test_acc"]) // 2] for k in ("naive", "weights", "activations")]
            print(
                f"| {kind} | {width} | {r['acc_a']:.3f} / {r['acc_b']:.3f} | {r['naive']['barrier']:.3f} | "
                f"{r['weights']['barrier']:.3f} | {r['activations']['barrier']:.3f} | "
                f"{mid[0]:.3f} / {mid[1]:.3f} / {mid[2]:.3f} |",
                flush=True,
            )
    if args.out:
        os.makedirs(os.path.dirname(os.path.abspath(args.out)), exist_ok=True)
        with open(args.out, "w") as f:
            json.dump(result, f, indent=1)
    return result


if __name__ == "__main__":
    main()
