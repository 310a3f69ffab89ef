// Many plans in one launch: packing (host) and the launchers' shared checks.
#pragma once

#include "swapkern.h"

#include <ATen/core/Tensor.h>
#include <c10/macros/Macros.h>

namespace swapkern {

C10_HOST_DEVICE inline int64_t packed_bytes(int64_t n) {
  return static_cast<int64_t>(sizeof(int64_t) + n * sizeof(Plan) + (n + 1) * sizeof(int64_t));
}
C10_HOST_DEVICE inline int64_t* packed_prefix(uint8_t* base, int64_t n) {
  return reinterpret_cast<int64_t*>(base + sizeof(int64_t) + n * sizeof(Plan));
}
C10_HOST_DEVICE inline const int64_t* packed_prefix(const uint8_t* base, int64_t n) {
  return reinterpret_cast<const int64_t*>(base + sizeof(int64_t) + n * sizeof(Plan));
}

at::Tensor pack_plans(at::TensorList xs, at::TensorList ys, at::TensorList a, at::TensorList b,
                      at::IntArrayRef dim_x, at::IntArrayRef dim_y);

// Checks that tensors are those meta_cpu was packed for (no sync: host pointers only); returns the host plans.
const Plan* check_packed(at::TensorList tensors, const at::Tensor& meta, const at::Tensor& meta_cpu);

void exchange_packed_cpu(const Plan* plans, const int64_t* prefix, int64_t n);
#ifdef SWAPKERN_WITH_CUDA
// plans and prefix in device memory; total work from the host copy.
void exchange_packed_cuda(const uint8_t* meta_device, int64_t n, int64_t total, int device);
#endif

}  // namespace swapkern
