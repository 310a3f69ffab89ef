// Autograd behaviour of the in-place ops, device-independent and boxed, so one kernel serves every op:
// - Autograd: swaps are not differentiable; with grad mode on, mutating a tensor that requires grad raises.
// - ADInplaceOrView: bump the version counter of every mutated tensor, so autograd notices when a tensor it
//   saved for backward was swapped afterwards (as it does for PyTorch's own in-place ops).
#include <ATen/core/dispatch/Dispatcher.h>
#include <c10/core/GradMode.h>
#include <torch/csrc/autograd/variable.h>
#include <torch/library.h>

#include <vector>

namespace swapkern {
namespace {

// Indices (into the stack) of the arguments the schema marks as written to.
std::vector<size_t> mutated_args(const c10::OperatorHandle& op, const torch::jit::Stack* stack) {
  const auto& args = op.schema().arguments();
  std::vector<size_t> out;
  const size_t start = stack->size() - args.size();
  for (size_t i = 0; i < args.size(); ++i)
    if (args[i].alias_info() != nullptr && args[i].alias_info()->isWrite()) out.push_back(start + i);
  return out;
}

void autograd_kernel(const c10::OperatorHandle& op, c10::DispatchKeySet ks, torch::jit::Stack* stack) {
  if (c10::GradMode::is_enabled()) {
    for (size_t i : mutated_args(op, stack)) {
      TORCH_CHECK((*stack)[i].isNone() || !(*stack)[i].toTensor().requires_grad(), op.schema().name(),
                  ": swaps are not differentiable; call it under torch.no_grad() on a tensor that requires grad");
    }
  }
  op.redispatchBoxed(ks & c10::after_autograd_keyset, stack);
}

void inplace_or_view_kernel(const c10::OperatorHandle& op, c10::DispatchKeySet ks, torch::jit::Stack* stack) {
  std::vector<at::Tensor> mutated;
  for (size_t i : mutated_args(op, stack)) mutated.push_back((*stack)[i].toTensor());
  op.redispatchBoxed(ks & c10::after_ADInplaceOrView_keyset, stack);
  for (const at::Tensor& t : mutated) torch::autograd::impl::bump_version(t);
}

constexpr const char* kOps[] = {"swap_", "swap_pixels_", "swap_elements_", "swap_between_", "load_batch_",
                                "draw_feature_plan_"};

}  // namespace

TORCH_LIBRARY_IMPL(swapkern, Autograd, m) {
  for (const char* name : kOps) m.impl(name, torch::CppFunction::makeFromBoxedFunction<&autograd_kernel>());
}

TORCH_LIBRARY_IMPL(swapkern, ADInplaceOrView, m) {
  for (const char* name : kOps) m.impl(name, torch::CppFunction::makeFromBoxedFunction<&inplace_or_view_kernel>());
}

}  // namespace swapkern
