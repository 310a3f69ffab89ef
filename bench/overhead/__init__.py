"""The overhead harness, `python -m bench.overhead`: what a swap costs, for every op, protocol and backend, against
the reference and the device's copy bandwidth measured in the same run.

    cli         the command: flags, the run per device, the JSON
    cases       the op cases (image and weight swaps), timed on every backend
    protocols   the feature protocols beside their out-of-place peers; the swap's share of the fused loader
    weights     weight swaps against the model's own training step
    rows        one row timed (the helper every part uses); the backends of a device; its copy bandwidth
    report      the printed table
    test_micro  a few of the same calls under pytest-benchmark
    dispatch    the host cost of dispatch-bound calls, run as a script (bench.compare_builds --dispatch)
"""

from .cli import main

__all__ = ["main"]
