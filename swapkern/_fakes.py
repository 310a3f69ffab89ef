"""Fake (meta) kernels of the compiled ops, for torch.compile, torch.export and FakeTensorMode: a mutating op
computes nothing on fake tensors; a real tensor with an argument on the meta device is refused as the kernels would
refuse it (the Python twin of the op's checks)."""

from __future__ import annotations

import torch

from . import _checks
from ._codes import refuse

MUTATING = (  # the mutating ops with a fake kernel (and a checked twin, swapkern._native)
    "swap_",
    "swap_pixels_",
    "swap_elements_",
    "swap_between_",
    "load_batch_",
    "draw_feature_plan_",
    "feature_swap_",
)


# The Python twin of each swap op's checks, called with the op's own arguments (the same order).
_TWINS = {
    "swap_": "prepare_swap",
    "swap_pixels_": "prepare_pixels",
    "swap_elements_": "prepare_elements",
    "swap_between_": "prepare_between",
}


def _fake_mutating(qualname: str, names: list[str], defaults: list):
    """A mutating op on fake or meta tensors: nothing to compute (it returns nothing). A real tensor with an
    argument on the meta device (indices, say) is refused as the kernels would: by the Python twin of a swap op's
    checks (the first rule that refuses the call, index.device or an earlier one), else like any index on another
    device."""
    twin = _TWINS.get(qualname.split("::")[-1])

    def fake(*args, **kwargs):
        x = args[0]
        if x.device.type != "meta":
            for name, v in (*zip(names[1:], args[1:], strict=False), *kwargs.items()):
                if isinstance(v, torch.Tensor) and v.device.type == "meta":
                    if twin is not None:  # the op's arguments in full, in schema order
                        full = [*args, *defaults[len(args) :]]
                        for k, value in kwargs.items():
                            full[names.index(k)] = value
                        getattr(_checks, twin)(*full)
                    raise refuse(
                        "index.device",
                        f"{qualname}: {name} is on meta but the tensor is on {x.device}; indices must be on the CPU "
                        "or on the tensor's device",
                    )

    return fake


def _fake_engine_step(index, handle, seed, step, mode):
    # 0 or 1, known only when it runs (the engine checks its tensors then): an unbacked value under FakeTensorMode.
    return torch.library.get_ctx().new_dynamic_size(min=0, max=1)


def register_fakes(ops, engine: bool = True) -> None:
    """Registers the fake kernels of the ops of a namespace (torch.ops.swapkern, or swapkern_emu for the CUDA
    emulation; swapkern._backend calls it once the library is loaded; engine=False: the checked twins of the
    mutating ops, swapkern._native.register_checked). engine_new, engine_free, feature_bind, feature_step_ and
    feature_free stay without: they manage objects in a C++ registry, which no trace can stand for."""
    for name in MUTATING:
        qualname = f"{ops.name}::{name}"
        schema = getattr(ops, name).default._schema.arguments
        names = [a.name for a in schema]
        defaults = [a.default_value if a.has_default_value() else None for a in schema]
        torch.library.register_fake(qualname, _fake_mutating(qualname, names, defaults))
    if engine:
        torch.library.register_fake(f"{ops.name}::engine_step_", _fake_engine_step)
