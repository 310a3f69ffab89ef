"""max_gap: after a draw, pairs whose values are far apart are marked not to move.

Elements compare by |x - y| in float32 (as the values compare); slices by the RMS of their difference, in float32.
"""

from __future__ import annotations

import torch

from ._groups import INTER


def keep_close(engine, groups, max_gap):
    """Sets the keep flags of the engine's last draw: 0 for pairs that differ by max_gap or more."""
    with torch.no_grad():
        for gi, g in enumerate(groups):
            pick = int(engine.pick_slot(gi)) if g.kind == INTER else 0
            job = g.jobs[pick]
            a, b, keep = engine.slices(gi)
            x, y = job.view(job.x), job.view(job.y)
            if job.dx is None:
                xa, yb = x.reshape(-1)[a], y.reshape(-1)[b]
                keep.copy_((xa.float() - yb.float()).abs() < max_gap)
            else:
                xa, yb = x.index_select(job.dx, a).movedim(job.dx, 0), y.index_select(job.dy, b).movedim(job.dy, 0)
                rms = (xa.float() - yb.float()).pow(2).flatten(1).mean(1).sqrt()
                keep.copy_(rms < max_gap)
