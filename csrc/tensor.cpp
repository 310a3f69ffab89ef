// The stable-ABI tensor helpers of csrc/tensor.h and the message formatting of csrc/error.h.
#include "tensor.h"

#include <torch/csrc/stable/c/shim.h>
#include <torch/csrc/stable/stableivalue_conversions.h>

#include <array>

namespace swapkern {

namespace detail {

void put(std::ostream& os, IntArrayRef v) {
  os << '[';
  for (size_t i = 0; i < v.size(); ++i) os << (i ? ", " : "") << v[i];
  os << ']';
}

void put(std::ostream& os, const Device& d) {
  switch (d.type()) {
    case DeviceType::CPU: os << "cpu"; break;
    case DeviceType::CUDA: os << "cuda"; break;
    case DeviceType::Meta: os << "meta"; break;
    case DeviceType::XPU: os << "xpu"; break;
    case DeviceType::MPS: os << "mps"; break;
    default: os << "privateuseone"; break;
  }
  if (d.has_index()) os << ':' << static_cast<int>(d.index());
}

void put(std::ostream& os, torch::headeronly::Layout layout) {
  using torch::headeronly::Layout;
  switch (layout) {
    case Layout::Strided: os << "Strided"; break;
    case Layout::Sparse: os << "Sparse"; break;
    case Layout::SparseCsr: os << "SparseCsr"; break;
    case Layout::SparseCsc: os << "SparseCsc"; break;
    case Layout::SparseBsr: os << "SparseBsr"; break;
    case Layout::SparseBsc: os << "SparseBsc"; break;
    case Layout::Mkldnn: os << "Mkldnn"; break;
    case Layout::Jagged: os << "Jagged"; break;
    default: os << "Unknown layout"; break;
  }
}

}  // namespace detail

bool same_tensor(const Tensor& a, const Tensor& b) {
  // No tensor identity in the stable ABI beyond the handle: one geometry over one address is one tensor. Empty
  // tensors (perhaps all with a null data pointer) hold nothing, so two of them are never one.
  return a.get() == b.get() ||
         (a.numel() > 0 && a.data_ptr() == b.data_ptr() && dtype_of(a) == dtype_of(b) && a.device() == b.device() &&
          a.sizes().equals(b.sizes()) && a.strides().equals(b.strides()));
}


ScalarType dtype_of(const Tensor& t) {
  try {
    return t.scalar_type();
  } catch (const std::runtime_error&) {
    int32_t code = 0;
    STABLE_TORCH_ERROR_CODE_CHECK(aoti_torch_get_dtype(t.get(), &code));
    return static_cast<ScalarType>(code);
  }
}

void increment_(const Tensor& t) {
  // -(~c) == c + 1 in two's complement, wrapping as add_ does: two in-place ops the stable ABI can call (add_ takes
  // a Scalar alpha, which cannot cross it). No host sync, no allocation.
  for (const char* name : {"aten::bitwise_not_", "aten::neg_"}) {
    std::array<StableIValue, 1> stack{torch::stable::detail::from(t)};
    STABLE_TORCH_ERROR_CODE_CHECK(torch_call_dispatcher(name, "", stack.data(), TORCH_ABI_VERSION));
    (void)torch::stable::detail::to<Tensor>(stack[0]);  // owns, and so releases, the returned handle
  }
}

}  // namespace swapkern
