"""CUDA-only properties of the GPU backends: graph capture, no host sync, no allocation, 64-bit offsets,
devices, and the two GPU backends checking each other. Every test skips without a GPU (the op-by-op matrix
against the reference runs on CUDA too: see the `device` fixture of test_ops.py)."""

import copy

import pytest
import torch
from conftest import DTYPES, assert_bits_equal, bits, disjoint_pairs, make, sampled_pairs

import swapkern
from swapkern import reference as ref

pytestmark = pytest.mark.gpu

GPU_BACKENDS = ["native", pytest.param("triton", marks=pytest.mark.triton)]


@pytest.fixture(params=GPU_BACKENDS)
def gpu_backend(request):
    if not swapkern._backend.triton_available("cuda") and request.param == "triton":
        pytest.skip("triton unavailable")
    with swapkern.use_backend(request.param):
        yield request.param


def test_cuda_graph_capture_and_replay():
    x = torch.randn(64, 3, 32, 32, device="cuda")
    original = x.clone()
    sample, a, b = (t.cuda() for t in sampled_pairs(64, 1024, 200))
    c, d = (t.cuda() for t in disjoint_pairs(3, 1))
    want = original.clone()
    ref.swap_pixels_(want, a, b, sample=sample)
    ref.swap_channels_(want, c, d)
    stream = torch.cuda.Stream()
    stream.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(stream):  # warm-up outside capture
        swapkern.swap_pixels_(x, a, b, sample=sample, validate=False)
        swapkern.swap_channels_(x, c, d, validate=False)
        swapkern.swap_channels_(x, c, d, validate=False)
        swapkern.swap_pixels_(x, a, b, sample=sample, validate=False)
    torch.cuda.current_stream().wait_stream(stream)
    assert torch.equal(x, original)
    graph = torch.cuda.CUDAGraph()
    with torch.cuda.graph(graph):
        swapkern.swap_pixels_(x, a, b, sample=sample, validate=False)
        swapkern.swap_channels_(x, c, d, validate=False)
    torch.cuda.synchronize()
    assert torch.equal(x, original), "capture must not run the kernels"
    graph.replay()
    torch.cuda.synchronize()
    assert torch.equal(x, want)


def test_validate_false_is_sync_free_and_allocation_free():
    x = torch.randn(256, 3, 32, 32, device="cuda")
    sample, a, b = (t.cuda() for t in sampled_pairs(256, 3, 256))
    swapkern.swap_channels_(x, a, b, sample=sample, validate=False)
    torch.cuda.synchronize()
    before = torch.cuda.memory_allocated()
    torch.cuda.reset_peak_memory_stats()
    torch.cuda.set_sync_debug_mode("error")
    try:
        swapkern.swap_channels_(x, a, b, sample=sample, validate=False)
    finally:
        torch.cuda.set_sync_debug_mode("default")
    torch.cuda.synchronize()
    assert torch.cuda.max_memory_allocated() == before


@pytest.mark.parametrize("dtype", DTYPES)
def test_backends_agree(dtype):
    if not swapkern._backend.triton_available("cuda"):
        pytest.skip("triton unavailable")
    base = make((33, 5, 17, 9), dtype, "channels_last", device="cuda")
    outs = []
    for name in ("native", "triton"):
        x = base.clone()
        with swapkern.use_backend(name):
            sample, a, b = sampled_pairs(33, 17 * 9, 300)
            swapkern.swap_pixels_(x, a, b, sample=sample)
            swapkern.swap_(x, 0, *disjoint_pairs(33, 16))
            swapkern.swap_elements_(x, *disjoint_pairs(x.numel(), 5000))
        outs.append(x)
    assert_bits_equal(outs[0], outs[1])


@pytest.mark.slow
def test_more_than_2_31_elements(gpu_backend):
    n = 2**31 + 4099
    free, _ = torch.cuda.mem_get_info()
    if free < 3 * n:
        pytest.skip("not enough GPU memory")
    x = torch.zeros(n, dtype=torch.int8, device="cuda")
    x[-3:] = torch.tensor([1, 2, 3], dtype=torch.int8, device="cuda")
    swapkern.swap_elements_(x, [0, 1, n - 1], [n - 3, 5, 7])
    assert x[0].item() == 1 and x[n - 3].item() == 0 and x[7].item() == 3 and x[n - 1].item() == 0
    rows = x[: (2**31 // 4096 + 3) * 4096].view(-1, 4096)  # rows past the 2^31-th element
    last = rows.shape[0] - 1
    rows[last].fill_(9)
    swapkern.swap_rows_(rows, [last], [2])
    assert bool((rows[2] == 9).all()) and not bool((rows[last] == 9).any())
    del x, rows


def test_errors_on_gpu_tensors_leave_data_untouched(gpu_backend):
    x = torch.randn(4, 3, 8, 8, device="cuda")
    before = bits(x).clone()
    cases = [
        (IndexError, lambda: swapkern.swap_channels_(x, torch.tensor([0], device="cuda"), [3])),
        (ValueError, lambda: swapkern.swap_channels_(x, torch.tensor([0, 1], device="cuda"), [1, 2])),
        (ValueError, lambda: swapkern.swap_pixels_(x, [0], [0])),
        (TypeError, lambda: swapkern.swap_rows_(x, torch.tensor([0.0], device="cuda"), [1])),
    ]
    for exc, call in cases:
        with pytest.raises(exc):
            call()
    assert torch.equal(bits(x), before)


@pytest.mark.skipif(torch.cuda.device_count() < 2, reason="needs two GPUs")
def test_indices_on_another_gpu(gpu_backend):
    x = torch.randn(4, 4, device="cuda:0")
    with pytest.raises(ValueError):
        swapkern.swap_rows_(x, torch.tensor([0], device="cuda:1"), [1])


def test_second_device_and_current_stream():
    x = torch.randn(128, 256, device="cuda")
    want = x.clone()
    ref.swap_rows_(want, [0, 1], [5, 9])
    s = torch.cuda.Stream()
    with torch.cuda.stream(s):
        swapkern.swap_rows_(x, [0, 1], [5, 9])
    s.synchronize()
    assert torch.equal(x, want)


def test_feature_plans_same_on_cpu_and_gpu_without_sync():
    from swapkern.data import PROTOCOLS, FeatureSwap

    for proto in PROTOCOLS:
        cpu = FeatureSwap(proto, swaps=2, seed=77)
        gpu = FeatureSwap(proto, swaps=2, seed=77)
        idx, xg = torch.arange(1000, 1064), torch.empty(64, 4, 8, 8, device="cuda")
        pc = cpu.plan(torch.empty(64, 4, 8, 8), indices=idx)
        idx_gpu = idx.cuda()
        gpu.plan(xg, indices=idx_gpu)  # buffers made
        gpu.step = 0
        torch.cuda.synchronize()
        before = torch.cuda.memory_allocated()
        torch.cuda.set_sync_debug_mode("error")
        try:
            pg = gpu.plan(xg, indices=idx_gpu)
        finally:
            torch.cuda.set_sync_debug_mode("default")
        torch.cuda.synchronize()
        assert torch.cuda.memory_allocated() == before, "a refill must not allocate"
        for name in ("pairs", "at", "image", "active", "a", "b"):
            assert torch.equal(getattr(pc, name), getattr(pg, name).cpu()), (proto, name)


def test_weight_swap_step_captured_in_a_cuda_graph():
    from torch import nn

    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(32, 64), nn.ReLU(), nn.Linear(64, 8)).cuda()
    twin = copy.deepcopy(model)
    opt = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    opt_twin = torch.optim.SGD(twin.parameters(), lr=0.1, momentum=0.9)
    for m, o in ((model, opt), (twin, opt_twin)):  # momentum buffers exist
        m(torch.randn(4, 32, device="cuda")).sum().backward()
        o.step()
    ws = swapkern.WeightSwap(model, "rows", swaps=3, state=True, seed=7)
    eager = swapkern.WeightSwap(twin, "rows", swaps=3, state=True, seed=7)
    drawn = ws.draw()
    ws.apply(drawn, optimizer=opt)  # warm-up: packs the geometry
    eager.step(optimizer=opt_twin)
    graph = torch.cuda.CUDAGraph()
    s = torch.cuda.Stream()
    s.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(s), torch.cuda.graph(graph):
        ws.apply(drawn, optimizer=opt)
    torch.cuda.current_stream().wait_stream(s)
    for _ in range(4):
        ws.draw()
        graph.replay()
        eager.step(optimizer=opt_twin)
    torch.cuda.synchronize()
    for p, q in zip(model.parameters(), twin.parameters(), strict=True):
        assert torch.equal(p, q)
        assert torch.equal(opt.state[p]["momentum_buffer"], opt_twin.state[q]["momentum_buffer"])
