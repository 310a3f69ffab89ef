// Kernels move bits, so only an element's width matters: one type per width, and the one switch over widths.
#pragma once

#include <c10/util/Exception.h>

#include <cstdint>

namespace swapkern {

struct alignas(16) Bytes16 {
  uint64_t lo, hi;
};

// Calls f(T{}) with the unsigned type of `size` bytes (Bytes16 for 16).
template <typename F>
decltype(auto) by_width(int64_t size, F&& f) {
  switch (size) {
    case 1: return f(uint8_t{});
    case 2: return f(uint16_t{});
    case 4: return f(uint32_t{});
    case 8: return f(uint64_t{});
    case 16: return f(Bytes16{});
    default: TORCH_CHECK_TYPE(false, "swapkern: unsupported element size ", size);
  }
}

}  // namespace swapkern
