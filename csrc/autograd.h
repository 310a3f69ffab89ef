// Autograd behaviour of the mutating ops, device-independent and boxed, so one kernel serves every op:
// - Autograd: swaps are not differentiable; with grad mode on, mutating a tensor that requires grad raises.
// - ADInplaceOrView: an inference tensor outside inference mode is refused before anything moves; afterwards the
//   version counter of every mutated tensor is bumped, so autograd notices when a tensor it saved for backward was
//   swapped (as it does for PyTorch's own in-place ops).
// - Meta: a meta x is a no-op; a real x with indices on the meta device is refused like any index on another device.
#pragma once

#include <torch/library.h>

namespace swapkern {

constexpr const char* kMutatingOps[] = {"swap_",         "swap_pixels_", "swap_elements_",     "swap_between_",
                                        "load_batch_",   "feature_swap_", "draw_feature_plan_", "engine_step_"};

torch::CppFunction autograd_kernel();
torch::CppFunction inplace_or_view_kernel();
torch::CppFunction meta_kernel();

}  // namespace swapkern
