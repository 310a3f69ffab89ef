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

// The tensors of the arguments the schema marks as written to (tensor lists expanded).
std::vector<at::Tensor> mutated_args(const c10::OperatorHandle& op, const torch::jit::Stack* stack) {
  const auto& args = op.schema().arguments();
  std::vector<at::Tensor> out;
  const size_t start = stack->size() - args.size();
  for (size_t i = 0; i < args.size(); ++i) {
    if (args[i].alias_info() == nullptr || !args[i].alias_info()->isWrite()) continue;
    const c10::IValue& v = (*stack)[start + i];
    if (v.isTensor()) {
      out.push_back(v.toTensor());
    } else if (v.isTensorList()) {
      for (const at::Tensor& t : v.toTensorVector()) out.push_back(t);
    }
  }
  return out;
}

void autograd_kernel(const c10::OperatorHandle& op, c10::DispatchKeySet ks, torch::jit::Stack* stack) {
  if (c10::GradMode::is_enabled()) {
    for (const at::Tensor& t : mutated_args(op, stack)) {
      TORCH_CHECK(!t.requires_grad(), op.schema().name(),
                  ": swaps are not differentiable; call it under torch.no_grad() on a tensor that requires grad");
    }
  }
  op.redispatchBoxed(ks & c10::after_autograd_keyset, stack);
}

void inplace_or_view_kernel(const c10::OperatorHandle& op, c10::DispatchKeySet ks, torch::jit::Stack* stack) {
  const std::vector<at::Tensor> mutated = mutated_args(op, stack);
  op.redispatchBoxed(ks & c10::after_ADInplaceOrView_keyset, stack);
  for (const at::Tensor& t : mutated) torch::autograd::impl::bump_version(t);
}

constexpr const char* kOps[] = {"swap_", "swap_pixels_", "swap_elements_", "swap_between_", "load_batch_",
                                "draw_feature_plan_", "swap_packed_"};

}  // namespace

TORCH_LIBRARY_IMPL(swapkern, Autograd, m) {
  for (const char* name : kOps) m.impl(name, torch::CppFunction::makeFromBoxedFunction<&autograd_kernel>());
}

TORCH_LIBRARY_IMPL(swapkern, ADInplaceOrView, m) {
  for (const char* name : kOps) m.impl(name, torch::CppFunction::makeFromBoxedFunction<&inplace_or_view_kernel>());
}

}  // namespace swapkern
