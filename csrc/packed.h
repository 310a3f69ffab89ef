// Many plans in one launch: the byte layout a device kernel reads them from, [int64 n][n Plans][int64 prefix[n+1]],
// prefix = cumulative work (pairs x slice elements) of the plans.
#pragma once

#include "swapkern.h"

#include <torch/headeronly/macros/Macros.h>

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

}  // namespace swapkern
