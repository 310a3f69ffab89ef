"""The one table of feature-swap protocol codes (the characters of a protocol name and the ints the kernels take),
and of the keys of the rules that refuse an input; csrc/codes.h holds the same numbers as enums and the same
rule keys."""

from __future__ import annotations

WHICH = "1AE"  # one random image, all images (one draw), every image (its own draw)
WHAT = "SP"  # two channels, two pixels
EXTENT = "1A"  # at one position, at all
PROTOCOLS = tuple(w + s + e for w in WHICH for s in WHAT for e in EXTENT)


_CODES = {p: (WHICH.index(p[0]), WHAT.index(p[1]), p[2] == "A") for p in PROTOCOLS}


def protocol_codes(protocol: str) -> tuple[int, int, bool]:
    """(which, what, extent_all) of a protocol name such as "1SA": which 0/1/2 for 1/A/E, what 0/1 for S/P."""
    return _CODES[protocol]


# -- the rules that refuse an input -----------------------------------------------------------------------------------
# Every check that refuses an input has a short stable key, carried by the exception on every backend as err.rule
# (the compiled ops put "[key] " in front of the message and swapkern/_native.py moves it there), and one exception
# type. The keys below "the compiled validator" are csrc/codes.h's rules::k... table, the same pairs (held equal by
# tests/test_rules.py); the first ones are checked in Python only, before any backend.
RULES: dict[str, type] = {
    # the arguments (swapkern/_index.py, the ops' wrappers), in Python for every backend
    "arg.type": TypeError,  # a tensor, dim, index or flag argument of the wrong Python type
    "index.int64": IndexError,  # an int index no int64 holds
    # the autograd rules (swapkern/_checks.py check_mutable), in Python for every backend
    "mutable.grad": RuntimeError,  # a tensor that requires grad, in grad mode
    "mutable.inference": RuntimeError,  # an inference tensor outside inference mode
    # the compiled validator (csrc/codes.h) and its Python twin (swapkern/_checks.py)
    "op.dim": ValueError,  # a dim out of range
    "op.sample_dim": ValueError,  # sample_dim == dim
    "op.shape": ValueError,  # the op's shape needs (a 4-d batch; 2 dims for rows and cols)
    "op.dims": ValueError,  # swap_between_: both dim_x and dim_y or neither; equal when x is y
    "tensor.dtype": TypeError,  # elements not of 1, 2, 4, 8 or 16 bytes, or a quantized dtype
    "tensor.layout": ValueError,  # not strided
    "tensor.meta": ValueError,  # on the meta device
    "tensor.overlap": ValueError,  # not provably free of self-overlap
    "tensors.dtype": ValueError,  # x and y of different dtypes
    "tensors.device": ValueError,  # x and y on different devices
    "tensors.overlap": ValueError,  # x and y (out and data) share memory
    "index.dtype": TypeError,  # an index that does not hold integers (bools: flags only)
    "index.layout": ValueError,  # an index tensor that is not strided
    "index.shape": ValueError,  # an index of more than one dim
    "index.device": ValueError,  # an index neither on the CPU nor on the tensor's device
    "index.length": ValueError,  # a, b, sample of different lengths
    "geometry.slice": ValueError,  # slices of x and y of different shapes
    "geometry.dims": ValueError,  # more than MAX_DIMS dims after coalescing
    "geometry.empty": IndexError,  # pairs into a dim (or sample dim) of size 0
    "index.range": IndexError,  # validate: an index out of range
    "size.keyspace": ValueError,  # validate: samples x positions of MAX_POSITIONS or more
    "pair.self": ValueError,  # validate: a[k] == b[k] in one tensor
    "pair.repeat": ValueError,  # validate: an index twice in one scope
    "load.dtype": TypeError,  # the loader's out not float32/16/bf16, data not uint8
    "load.shape": ValueError,  # the loader's out, data, index, scale, shift or flip of the wrong shape
    "load.plan": ValueError,  # a FeaturePlan drawn for another shape, or of the wrong form
}


def refuse(rule: str, message: str) -> Exception:
    """The exception of a rule: RULES[rule](message), carrying the key as .rule. Raise it: `raise refuse(...)`."""
    e = RULES[rule](message)
    e.rule = rule
    return e
