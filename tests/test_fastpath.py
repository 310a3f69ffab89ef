"""FeatureSwap's bound call on the compiled backends (csrc/feature.h): feature_bind once per batch shape, then
feature_step_(x, handle) with x's layout checked once per dtype and strides. It must swap exactly what the
reference swaps whatever batches follow one another, refuse what feature_swap_ refuses with nothing touched, and
go with the slot it serves."""

import gc
import os

import pytest
import torch
from conftest import DTYPES, LAYOUTS, assert_bits_equal, bits, make

import swapkern
from swapkern import data as data_mod
from swapkern.data import FeatureSwap, plan_layout

COMPILED = [
    pytest.param("native"),
    pytest.param("cuda-emulated", marks=pytest.mark.emulation),
]


@pytest.fixture(params=COMPILED)
def compiled(request):
    if request.param not in swapkern.backends("cpu"):
        pytest.skip(f"backend {request.param} cannot run on CPU tensors here")
    with swapkern.use_backend(request.param):
        yield request.param


def _ops(backend):
    return torch.ops.swapkern_emu if backend == "cuda-emulated" else torch.ops.swapkern


def _binding(fs, x):
    fast = fs._slots[(x.shape, x.device)].fast
    assert fast is not None and fast.call.binding is not None, "the call did not go through a binding"
    return fast.call.binding


@pytest.mark.parametrize("proto", ["1PA", "1SA", "ESA", "EPA", "AS1", "1P1"])
def test_bound_calls_equal_the_reference_batch_after_batch(compiled, proto):
    # One shape, batches that change address, layout and dtype between calls: each must be swapped as the reference
    # swaps it (the cached geometry is that of the batch in hand, never the previous one's).
    shape = (6, 3, 5, 4)
    fs, want_fs = FeatureSwap(proto, seed=11), FeatureSwap(proto, seed=11)
    sequence = [(torch.float32, "contiguous"), (torch.float32, "contiguous"), (torch.float32, "channels_last")]
    sequence += [(dtype, layout) for dtype in DTYPES for layout in LAYOUTS] + [(torch.float32, "contiguous")]
    for step, (dtype, layout) in enumerate(sequence):
        x = make(shape, dtype, layout)
        want = x.clone()
        fs.swap_(x)
        with swapkern.use_backend("torch"):
            want_fs.swap_(want)
        assert_bits_equal(x, want)
        if step > 0:
            _binding(fs, x)
    assert fs.step == want_fs.step == len(sequence)


def test_a_bound_call_refuses_what_feature_swap_refuses(compiled):
    ops = _ops(compiled)
    proto, shape = "1PA", (1, 1, 1, 2)
    n = plan_layout(proto, 1, 1)["total"]
    storage = torch.zeros(n + 1, dtype=torch.int64)
    buf, counter = storage[:n], storage[n:]
    handle = ops.feature_bind(buf, counter, *shape, 0, 1, True, 1, 5, 2**32)
    try:
        good = torch.arange(2.0).view(shape)
        ops.feature_step_(good, handle)  # the layout is now known: later refusals must not rest on it
        assert int(counter) == 1
        inside_buf = buf[:2].view(shape)
        holder = torch.zeros(2, dtype=torch.int64)
        cases = [
            (inside_buf, "buf must not share memory"),
            (torch.zeros(1, 1, 1, 1).expand(shape), "overlap in memory"),
            (torch.zeros(1, 1, 2, 1), "was bound for batches of shape"),
            (torch.zeros(2), "expected an \\(N, C, H, W\\) batch"),
        ]
        for x, message in cases:
            before, state = bits(x).clone(), storage.clone()
            with pytest.raises(ValueError, match=message):
                ops.feature_step_(x, handle)
            assert torch.equal(bits(x), before) and torch.equal(storage, state)
        # the counter inside x: a binding made over holder's second element
        other = ops.feature_bind(torch.zeros(n, dtype=torch.int64), holder[1:], *shape, 0, 1, True, 1, 5, 2**32)
        try:
            with pytest.raises(ValueError, match="counter must not be inside x"):
                ops.feature_step_(holder.view(shape), other)
            assert torch.equal(holder, torch.zeros(2, dtype=torch.int64))
        finally:
            ops.feature_free(other)
    finally:
        ops.feature_free(handle)
    with pytest.raises(ValueError, match="freed"):
        ops.feature_step_(good, handle)
    with pytest.raises(ValueError, match="nothing to bind"):
        ops.feature_bind(buf, counter, 0, 1, 1, 2, 0, 1, True, 1, 5, 2**32)


def test_the_binding_goes_with_its_slot(compiled, monkeypatch):
    monkeypatch.setattr(data_mod, "SLOTS", 2)
    fs = FeatureSwap("1PA", seed=3)
    first = torch.randn(2, 3, 4, 4)
    fs.swap_(first)
    fs.swap_(first)
    handle = _binding(fs, first).handle
    for b in (3, 4, 5):  # three more shapes: the first slot, and its bound call, go
        fs.swap_(torch.randn(b, 3, 4, 4))
    gc.collect()
    with pytest.raises(ValueError, match="freed"):
        _ops(compiled).feature_step_(first, handle)
    before = first.clone()
    fs.swap_(first)  # a new slot and, on the next call, a new binding
    fs.swap_(first)
    assert not torch.equal(first, before) or fs.p == 0
    assert _binding(fs, first).handle != handle


def test_bound_calls_keep_the_autograd_rules(compiled):
    fs = FeatureSwap("1SA", seed=1)
    x = torch.randn(4, 3, 2, 2)
    fs.swap_(x)
    fs.swap_(x)
    _binding(fs, x)
    leaf = torch.randn(4, 3, 2, 2, requires_grad=True)
    with pytest.raises(RuntimeError, match="not differentiable"):
        fs.swap_(leaf)
    version = x._version
    fs.swap_(x)
    assert x._version == version + 1
    with torch.inference_mode():
        inf = torch.randn(4, 3, 2, 2)
    with pytest.raises(RuntimeError, match="inference"):
        fs.swap_(inf)


def _outcome(fn):
    try:
        fn()
    except (ValueError, IndexError, TypeError) as e:
        return type(e).__name__, getattr(e, "rule", None), str(e)
    return None


@pytest.mark.parametrize("k", [1023, 1024, 1025, 3000])
def test_pair_checks_split_over_threads_report_the_first_failure(compiled, k):
    # The native pair check first asks only whether every check passes (from 1024 pairs on two threads, its keys
    # split by a hash bit), then, when one fails, finds the first failure in order: the failure it reports must be
    # the one the single pass of the Python twin reports (same rule, same pair, same side, same message), and
    # nothing moves. Negative (wrapped) indices, uint64 indices and out-of-range indices and samples among them.
    g = torch.Generator().manual_seed(k)
    n = 4 * k
    for trial in range(36):
        perm = torch.randperm(n, generator=g)
        a, b = perm[:k].clone(), perm[k : 2 * k].clone()
        sample = torch.randint(0, 3, (k,), generator=g)
        if trial % 4 == 1:  # some indices counted from the end: the same positions, so no failure by themselves
            flip = torch.rand(k, generator=g) < 0.5
            a[flip] -= n
        for _ in range(trial % 3 + (trial % 6 == 5)):  # none to three corruptions at random pairs
            i, j = torch.randint(0, k, (2,), generator=g).tolist()
            kind = int(torch.randint(0, 7, (1,), generator=g))
            if kind == 0:
                a[i] = b[i]  # a pair with itself
            elif kind == 1:
                a[i] = a[j] if i != j else b[j]
            elif kind == 2:
                b[i] = a[j]
            elif kind == 3:
                b[i] = b[j] if i != j else a[j]
            elif kind == 4:
                b[i] = a[j] - n if a[j] >= 0 else a[j] + n  # a repeat written the other way round
            elif kind == 5:
                a[i] = n if i % 2 else -n - 1  # out of range
            else:
                sample[i] = 3  # a sample out of range (the pixels call)
        if trial % 4 == 3 and bool((a >= 0).all()):
            a, b = a.to(torch.uint64), b.to(torch.uint64)
        x, y = torch.arange(float(n)), torch.arange(float(n)) + n
        img = torch.arange(3.0 * 2 * n).view(3, 2, n, 1)
        calls = {
            "elements": lambda: swapkern.swap_elements_(x, a, b),
            "between": lambda: swapkern.swap_between_(x, y, a, b),
            "pixels": lambda: swapkern.swap_pixels_(img, a, b, sample=sample),
        }
        for name, call in calls.items():
            before = [t.clone() for t in (x, y, img)]
            got = _outcome(call)
            with swapkern.use_backend("torch"):
                want = _outcome(call)
            assert got == want, (name, trial, got, want)
            for t, t0 in zip((x, y, img), before, strict=True):
                if got is not None:
                    assert torch.equal(t, t0), (name, trial)
                else:
                    t.copy_(t0)


def _edge_cases():
    """(name, call) pairs at the edges of the pair check's first pass (from a review): uint64 bits of 2^63 and
    more, negative and uint64 samples, an odd K on two threads, x and y of different lengths, int64 extremes, and
    keys at the top of the 32-bit sets and in the 64-bit ones (zero-size slices: no memory behind 2^31 positions)."""
    k, n = 1100, 4096
    a, b = torch.arange(k), torch.arange(k, 2 * k)
    cases = []

    def case(name, fn):
        cases.append((name, fn))

    ua, ub = a.to(torch.uint64), b.to(torch.uint64)
    big = ua.clone()
    big[900] = 2**64 - 1  # read as int64 it would be -1, a valid index from the end
    case("uint64 2^64-1", lambda: swapkern.swap_elements_(torch.zeros(n), big, ub))
    img = torch.zeros(3, 2, n, 1)
    s = torch.randint(0, 3, (k,), generator=torch.Generator().manual_seed(1))
    s_neg = s - 3  # the same samples counted from the end
    case("negative samples", lambda: swapkern.swap_pixels_(img, a, b, sample=s_neg))
    s_rep, a_rep = s.clone(), a.clone()
    s_rep[40], s_rep[700], a_rep[700] = 2, -1, a[40]  # one position twice, seen only once the sample wraps
    case("repeat after the sample wraps", lambda: swapkern.swap_pixels_(img, a_rep, b, sample=s_rep))
    s_u = s.to(torch.uint64)
    s_u[500] = 2**64 - 1
    case("uint64 sample out of range", lambda: swapkern.swap_pixels_(img, a, b, sample=s_u))
    x, y = torch.zeros(n), torch.zeros(3 * n)
    b_far = b + 2 * n  # indices of y beyond x's length
    b_far[800] = b_far[100] - 3 * n  # the same index of y, written from the end
    case("x and y of different lengths, a repeat in y", lambda: swapkern.swap_between_(x, y, a, b_far))
    case("x and y of different lengths, no repeat", lambda: swapkern.swap_between_(x, y, a, b + 2 * n))
    lo, hi = a.clone(), b.clone()
    lo[3], hi[3] = -(2**63), 2**63 - 1
    case("int64 extremes", lambda: swapkern.swap_elements_(torch.zeros(n), lo, hi))
    top = 2**31 - 1  # positions; the last key, 2 * (2^31 - 2) + 1 = 2^32 - 3, is the largest 32-bit one
    xs, ys = torch.zeros(top, 0), torch.zeros(top, 0)
    b_top = top - 1 - torch.arange(k)
    b_top[1000] = b_top[0] - top
    case("32-bit keys at the top, a repeat", lambda: swapkern.swap_between_(xs, ys, a, b_top, dim_x=0, dim_y=0))
    case("32-bit keys at the top", lambda: swapkern.swap_between_(xs, ys, a, top - 1 - torch.arange(k), dim_x=0,
                                                                   dim_y=0))  # fmt: skip
    wide = torch.zeros(2**31, 0)  # 2^32 keys: the 64-bit sets
    b_wide = 2**31 - 1 - torch.arange(k)
    b_wide[1000] = a[10] - 2**31
    case("64-bit keys, a repeat", lambda: swapkern.swap_(wide, 0, a, b_wide))
    case("64-bit keys", lambda: swapkern.swap_(wide, 0, a, 2**31 - 1 - torch.arange(k)))
    return cases


def test_pair_check_edges_refuse_what_the_reference_refuses(compiled):
    # The first pass must never say "all pass" where the reference refuses (a silent overlap), and the error
    # reported must be the reference's.
    outcomes = []
    for name, call in _edge_cases():
        got = _outcome(call)
        with swapkern.use_backend("torch"):
            want = _outcome(call)
        assert got == want, (name, got, want)
        outcomes.append(got is None)
    assert 0 < sum(outcomes) < len(outcomes)  # both kinds of case: passes and refusals


def test_the_last_fast_call_serves_only_its_own_batches(compiled):
    # FeatureSwap.swap_ keeps its last fast call aside (one comparison of shape and device instead of a lookup):
    # batches of another shape, another device, a new seed or p, another backend must not take it.
    fs, want_fs = FeatureSwap("1PA", seed=5), FeatureSwap("1PA", seed=5)
    shapes = [(4, 3, 5, 5), (4, 3, 5, 5), (6, 3, 5, 5), (4, 3, 5, 5), (4, 3, 5, 5), (6, 3, 5, 5), (6, 3, 5, 5)]
    for step, shape in enumerate(shapes):
        if step == 4:
            fs.seed = want_fs.seed = 6
        if step == 5:
            fs.p = want_fs.p = 0.5
        x = torch.randn(shape)
        want = x.clone()
        fs.swap_(x)
        with swapkern.use_backend("torch"):
            want_fs.swap_(want)
        assert torch.equal(x, want), step
    with pytest.raises(ValueError, match="meta"):
        fs.swap_(torch.empty(shapes[-1], device="meta"))
    x = torch.randn(shapes[-1])
    want = x.clone()
    with swapkern.use_backend("torch"):
        fs.swap_(x)
        want_fs.swap_(want)
    assert torch.equal(x, want)


def test_a_bound_call_follows_its_counter_through_share_memory(compiled):
    # share_memory_() gives the step counter a new storage under the same tensor: the bound call must draw from and
    # advance that one (it read the old address before: the steps stopped counting).
    fs, want_fs = FeatureSwap("1SA", seed=1), FeatureSwap("1SA", seed=1)
    for step in range(6):
        if step == 3:
            fs.share_memory()
        x = torch.randn(4, 3, 8, 8)
        want = x.clone()
        fs.swap_(x)
        with swapkern.use_backend("torch"):
            want_fs.swap_(want)
        assert torch.equal(x, want), step
    assert fs.step == 6


def test_threads_sharing_a_binding_swap_only_their_own_batch(compiled):
    # Two threads call one FeatureSwap with batches of one shape and different strides: each call must use the plan
    # of its own batch (a shared cached plan let one thread write past its tensor). Guards around one batch stay 0.
    import threading

    fs = FeatureSwap("1PA", seed=2)
    n = 4 * 3 * 8 * 8
    guard = torch.zeros(3 * n)
    inside = guard[n : 2 * n].view(4, 3, 8, 8)
    inside.copy_(torch.arange(1.0, n + 1).view(4, 3, 8, 8))
    strided = torch.randn(4, 3, 8, 32)[..., ::4]
    errors = []

    def run(t):
        try:
            for _ in range(2000):
                fs.swap_(t)
        except Exception as e:  # noqa: BLE001 (reported below)
            errors.append(e)

    threads = [threading.Thread(target=run, args=(t,)) for t in (inside, strided)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors, errors
    assert bool((guard[:n] == 0).all()) and bool((guard[2 * n :] == 0).all())
    assert sorted(inside.flatten().tolist()) == list(range(1, n + 1))  # a permutation of its own values


def _rss_bytes():
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


@pytest.mark.skipif(not os.path.exists("/proc/self/statm"), reason="reads the resident set size from /proc")
@pytest.mark.parametrize("threads", [1, 2])
def test_a_huge_validated_call_does_not_keep_its_scratch(compiled, threads):
    # The pair check keeps its buffers between calls (no allocation once a thread has seen its largest K), but not
    # without bound: after a call of 8M pairs (hundreds of MiB of keys and sets) the memory goes back. On one
    # thread both parts of the check run one after the other there, and the first gives its set back before the
    # second reads the buckets they share.
    saved = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        _huge_call_gives_back()
    finally:
        torch.set_num_threads(saved)


def _huge_call_gives_back():
    n = 1 << 24
    x = torch.zeros(n)
    perm = torch.randperm(n, generator=torch.Generator().manual_seed(0))
    a, b = perm[: n // 2].clone(), perm[n // 2 :].clone()
    del perm
    swapkern.swap_elements_(x, a[:4096], b[:4096])  # the threads and their small buffers exist before the baseline
    want = x.clone()
    want[torch.cat([a, b])] = want[torch.cat([b, a])]
    gc.collect()
    before = _rss_bytes()
    swapkern.swap_elements_(x, a, b)
    grown = _rss_bytes() - before
    assert grown < (64 << 20), f"the resident set grew by {grown >> 20} MiB and stayed"
    assert torch.equal(x, want)
    bad = b.clone()
    bad[-1] = a[0]  # a repeat found by pass 2, after pass 1 gave its sets back
    with pytest.raises(ValueError, match="appears more than once"):
        swapkern.swap_elements_(x, a, bad)
    assert torch.equal(x, want)
