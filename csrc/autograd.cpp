// The boxed kernels of csrc/autograd.h.
#include "autograd.h"

#include <ATen/core/dispatch/Dispatcher.h>
#include <c10/core/GradMode.h>
#include <c10/core/InferenceMode.h>
#include <torch/csrc/autograd/variable.h>
#include <torch/library.h>

#include <c10/util/SmallVector.h>

namespace swapkern {
namespace {

// The tensors of the arguments the schema marks as written to (tensor lists expanded).
using Tensors = c10::SmallVector<at::Tensor, 4>;

Tensors mutated_args(const c10::OperatorHandle& op, const torch::jit::Stack* stack) {
  const auto& args = op.schema().arguments();
  Tensors out;
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

void autograd_boxed(const c10::OperatorHandle& op, c10::DispatchKeySet ks, torch::jit::Stack* stack) {
  if (c10::GradMode::is_enabled()) {
    for (const at::Tensor& t : mutated_args(op, stack)) {
      TORCH_CHECK(!t.requires_grad(), op.schema().name(),
                  ": swaps are not differentiable; call it under torch.no_grad() on a tensor that requires grad");
    }
  }
  op.redispatchBoxed(ks & c10::after_autograd_keyset, stack);
}

void inplace_or_view_boxed(const c10::OperatorHandle& op, c10::DispatchKeySet ks, torch::jit::Stack* stack) {
  const Tensors mutated = mutated_args(op, stack);
  // Outside InferenceMode an inference tensor cannot be updated in place: refuse before the kernel moves anything,
  // as PyTorch's own in-place ops do. (This kernel also runs inside InferenceMode when another argument, an index
  // tensor made outside it, carries the key; there the update is allowed.)
  const bool inference_mode = c10::InferenceMode::is_enabled();
  for (const at::Tensor& t : mutated) {
    TORCH_CHECK(inference_mode || !t.is_inference(), op.schema().name(),
                ": Inplace update to inference tensor outside InferenceMode is not allowed; swap a clone, or call it "
                "inside torch.inference_mode()");
  }
  op.redispatchBoxed(ks & c10::after_ADInplaceOrView_keyset, stack);
  for (const at::Tensor& t : mutated) {
    if (!t.is_inference()) torch::autograd::impl::bump_version(t);  // inference tensors have no version counter
  }
}

// Meta: a meta x is a no-op (what mutating a tensor without data means); a real x with a meta argument (indices on
// the meta device) is refused like any index on another device.
void meta_boxed(const c10::OperatorHandle& op, c10::DispatchKeySet, torch::jit::Stack* stack) {
  const auto& args = op.schema().arguments();
  const size_t start = stack->size() - args.size();
  const c10::IValue& first = (*stack)[start];
  const bool x_is_meta = first.isTensor() ? first.toTensor().is_meta()
                                          : (first.isTensorList() && !first.toTensorVector().empty() &&
                                             first.toTensorVector()[0].is_meta());
  if (!x_is_meta) {
    const at::Tensor x = first.isTensor() ? first.toTensor() : first.toTensorVector()[0];
    for (size_t i = 1; i < args.size(); ++i) {
      const c10::IValue& v = (*stack)[start + i];
      TORCH_CHECK_VALUE(!(v.isTensor() && v.toTensor().is_meta()), op.schema().name(), ": ", args[i].name(),
                        " is on meta but the tensor is on ", x.device(),
                        "; indices must be on the CPU or on the tensor's device");
    }
  }
  torch::jit::drop(*stack, args.size());
}

}  // namespace

torch::CppFunction autograd_kernel() { return torch::CppFunction::makeFromBoxedFunction<&autograd_boxed>(); }
torch::CppFunction inplace_or_view_kernel() {
  return torch::CppFunction::makeFromBoxedFunction<&inplace_or_view_boxed>();
}
torch::CppFunction meta_kernel() { return torch::CppFunction::makeFromBoxedFunction<&meta_boxed>(); }

}  // namespace swapkern
