// The tensor plumbing of the host code, on the LibTorch stable ABI only (torch/csrc/stable, torch/headeronly):
// built with TORCH_TARGET_VERSION = 2.10, any other torch header is a compile error, so one binary serves every
// torch from 2.10 on. The kernels never see a tensor: they take raw pointers and geometry (Plan, LoadParams,
// DrawParams), filled here from the stable Tensor's metadata.
#pragma once

#include "error.h"

#include <torch/csrc/stable/ops.h>
#include <torch/csrc/stable/tensor.h>
#include <torch/headeronly/core/ScalarType.h>

#include <cstdint>

namespace swapkern {

using torch::stable::Device;
using torch::stable::Tensor;
using ScalarType = torch::headeronly::ScalarType;
using DeviceType = torch::headeronly::DeviceType;
using IntArrayRef = torch::headeronly::IntHeaderOnlyArrayRef;

// t's dtype, any dtype: Tensor::scalar_type() knows the dtypes of the target version (2.10) and raises on the rest
// (quantized ones, and those added later such as float8_e8m0fnu); those are taken by their shim code, which is
// ScalarType's value, so that a swap of float8_e8m0fnu still runs and a quantized tensor is refused by name.
ScalarType dtype_of(const Tensor& t);

inline bool is_meta(const Tensor& t) { return t.device().type() == DeviceType::Meta; }

// at::isIntegralType(t, includeBool).
inline bool is_integral(ScalarType t, bool include_bool) {
  switch (t) {
    case ScalarType::Byte:
    case ScalarType::Char:
    case ScalarType::Short:
    case ScalarType::Int:
    case ScalarType::Long:
    case ScalarType::UInt16:
    case ScalarType::UInt32:
    case ScalarType::UInt64:
      return true;
    case ScalarType::Bool:
      return include_bool;
    default:
      return false;
  }
}

// Whether a and b are one tensor as far as an exchange can tell: the same elements in the same order (data
// pointer, dtype, device, sizes, strides). The stable ABI hands a kernel a new handle per argument and has no
// TensorImpl identity, so two distinct views with this same geometry count as one tensor here (the Python
// wrapper of swap_between_, which knows identity, refuses them as overlapping first: swapkern/_native.py).
bool same_tensor(const Tensor& a, const Tensor& b);

// t += 1 in place, on any device, without a host sync (an integer tensor: the FeatureSwap step counter).
void increment_(const Tensor& t);

// The typed data pointer of a tensor whose dtype the caller has checked (no second check, no shim call for it).
template <typename T>
T* data_of(const Tensor& t) {
  return static_cast<T*>(t.data_ptr());
}

}  // namespace swapkern
