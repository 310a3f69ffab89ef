"""The one table of feature-swap protocol codes: the characters of a protocol name and the ints the kernels take
(csrc/codes.h holds the same numbers as enums)."""

from __future__ import annotations

WHICH = "1AE"  # one random image, all images (one draw), every image (its own draw)
WHAT = "SP"  # two channels, two pixels
EXTENT = "1A"  # at one position, at all
PROTOCOLS = tuple(w + s + e for w in WHICH for s in WHAT for e in EXTENT)


_CODES = {p: (WHICH.index(p[0]), WHAT.index(p[1]), p[2] == "A") for p in PROTOCOLS}


def protocol_codes(protocol: str) -> tuple[int, int, bool]:
    """(which, what, extent_all) of a protocol name such as "1SA": which 0/1/2 for 1/A/E, what 0/1 for S/P."""
    return _CODES[protocol]
