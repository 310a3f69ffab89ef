"""Unit spaces and the union-find that ties them: a residual add, a module called twice or a cat along another dim
makes two spaces one (their scope the gcd of both; of different sizes, both stay)."""

from __future__ import annotations

import math
from dataclasses import dataclass, field


@dataclass
class Seg:
    """Channels [offset, offset + n) of a value belong to unit space `space`; after a flatten each unit owns `block`
    consecutive features (None: not yet known, resolved by the consuming linear layer)."""

    space: int
    n: int
    block: int | None = 1


@dataclass
class Space:
    n: int
    scope: int  # exchanges stay inside aligned blocks of `scope` channels (GroupNorm, grouped conv); n when free
    producers: list = field(default_factory=list)  # (order, layer name, weight)
    observable: str | None = None  # why this space may not move


class Spaces:
    """Every unit space made so far (`items`, indexed by the number new() returns), with union-find over them: an
    index's space is the one find() gives."""

    def __init__(self):
        self.items: list[Space] = []
        self.parent: list[int] = []

    def __getitem__(self, s) -> Space:
        return self.items[s]

    def __len__(self):
        return len(self.items)

    def find(self, s):
        while self.parent[s] != s:
            self.parent[s] = self.parent[self.parent[s]]
            s = self.parent[s]
        return s

    def new(self, n, scope=None):
        self.items.append(Space(n, scope or n))
        self.parent.append(len(self.parent))
        return len(self.items) - 1

    def union(self, a, b):
        a, b = self.find(a), self.find(b)
        if a == b:
            return a
        sa, sb = self.items[a], self.items[b]
        if sa.n != sb.n:
            self.observe(a, "tied to a space of another size")
            self.observe(b, "tied to a space of another size")
            return a
        self.parent[b] = a
        sa.scope = math.gcd(sa.scope, sb.scope)
        sa.producers += sb.producers
        sa.observable = sa.observable or sb.observable
        return a

    def observe(self, s, why):
        s = self.find(s)
        self.items[s].observable = self.items[s].observable or why

    def observe_value(self, v, why):
        for seg in v or ():
            self.observe(seg.space, why)
