"""What a competent user writes without swapkern, timed beside it: plain PyTorch indexing for every op case, every
feature protocol (drawing its own random pairs, as the protocol does), and a per-parameter loop for weight swaps.
Each returns a callable doing the same exchange in place (a copy of the moved slices, then two indexed writes)."""

from __future__ import annotations

import random

import torch


def _t(v, device):
    return v if isinstance(v, torch.Tensor) else torch.tensor(v, dtype=torch.int64, device=device)


def op(name, args, kwargs):
    """The plain-PyTorch twin of one planned op call (swapkern.<name>(*args, **kwargs)), or None."""
    x, dev = args[0], args[0].device
    if name == "swap_channels_":
        a, b = _t(args[1], dev), _t(args[2], dev)
        s = kwargs.get("sample")
        if s is None:
            return lambda: _exchange(x, (slice(None), a), (slice(None), b))
        s = _t(s, dev)
        return lambda: _exchange(x, (s, a), (s, b))
    if name == "swap_pixels_":
        w = x.shape[3]
        p, q = _t(args[1], dev), _t(args[2], dev)
        hp, wp, hq, wq = p // w, p % w, q // w, q % w
        s = kwargs.get("sample")
        s = slice(None) if s is None else _t(s, dev)
        return lambda: _exchange(x, (s, slice(None), hp, wp), (s, slice(None), hq, wq))
    if name in ("swap_rows_", "swap_cols_", "swap_elements_"):
        a, b = _t(args[1], dev), _t(args[2], dev)
        ii, jj = torch.cat([a, b]), torch.cat([b, a])  # one gather and one scatter: the shortest plain form
        if name == "swap_rows_":
            return lambda: x.__setitem__(ii, x[jj])
        if name == "swap_cols_":
            return lambda: x.__setitem__((slice(None), ii), x[:, jj])
        flat = x.view(-1)
        return lambda: flat.__setitem__(ii, flat[jj])
    if name == "swap_between_":
        y, i, j = args[1], _t(args[2], dev), _t(args[3], dev)

        def between():
            t = x[i].clone()
            x[i] = y[j]
            y[j] = t

        return between
    return None


def _exchange(x, ia, ib):
    t = x[ia].clone()
    x[ia] = x[ib]
    x[ib] = t


def protocol(proto, shape, device):
    """A callable(x) doing protocol `proto` in plain PyTorch on a batch of this shape, drawing its pairs per call
    (Python's random for a handful of scalars, torch.randint on the device for one pair per image)."""
    b, c, h, w = shape
    hw = h * w
    which, what, extent = proto
    n = torch.arange(b, device=device)
    rr = random.randrange

    def pair(size):
        u = rr(size)
        return u, (u + 1 + rr(size - 1)) % size

    def per_image(size):
        u = torch.randint(0, size, (b,), device=device)
        return u, (u + torch.randint(1, size, (b,), device=device)) % size

    def one(x):
        i = rr(b)
        if what == "S":
            u, v = pair(c)
            at = (rr(h), rr(w)) if extent == "1" else (slice(None), slice(None))
            _exchange(x, (i, u, *at), (i, v, *at))
        else:
            p, q = pair(hw)
            ch = rr(c) if extent == "1" else slice(None)
            _exchange(x, (i, ch, p // w, p % w), (i, ch, q // w, q % w))

    def all_(x):
        if what == "S":
            u, v = pair(c)
            at = (rr(h), rr(w)) if extent == "1" else (slice(None), slice(None))
            _exchange(x, (slice(None), u, *at), (slice(None), v, *at))
        else:
            p, q = pair(hw)
            ch = rr(c) if extent == "1" else slice(None)
            _exchange(x, (slice(None), ch, p // w, p % w), (slice(None), ch, q // w, q % w))

    def every(x):
        if what == "S":
            u, v = per_image(c)
            if extent == "1":
                hh, ww = torch.randint(0, h, (b,), device=device), torch.randint(0, w, (b,), device=device)
                _exchange(x, (n, u, hh, ww), (n, v, hh, ww))
            else:
                _exchange(x, (n, u), (n, v))
        else:
            p, q = per_image(hw)
            if extent == "1":
                ch = torch.randint(0, c, (b,), device=device)
                _exchange(x, (n, ch, p // w, p % w), (n, ch, q // w, q % w))
            else:
                _exchange(x, (n, slice(None), p // w, p % w), (n, slice(None), q // w, q % w))

    return {"1": one, "A": all_, "E": every}[which]


def weight_loop(model, protocol, opt=None):
    """One weight-swap step as a per-parameter loop: for each weight of 2 or more dims, one random pair of rows (or of
    elements, "mixed") exchanged with clone and two indexed writes, and the same in each optimizer state tensor of
    its shape when opt is given."""
    params = [p for p in model.parameters() if p.dim() >= 2]

    def step():
        with torch.no_grad():
            for p in params:
                tensors = [p] + (
                    [t for t in opt.state.get(p, {}).values() if torch.is_tensor(t) and t.shape == p.shape]
                    if opt is not None
                    else []
                )
                if protocol == "rows":
                    i, j = random.sample(range(p.shape[0]), 2)
                    for t in tensors:
                        _exchange(t, i, j)
                else:
                    i, j = random.sample(range(p.numel()), 2)
                    for t in tensors:
                        _exchange(t.view(-1), i, j)

    return step
