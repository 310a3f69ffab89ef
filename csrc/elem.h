// Kernels move bits, so only an element's width matters: one type per width, and the one switch over widths.
#pragma once

#include "error.h"

#include <torch/headeronly/macros/Macros.h>

#include <cstdint>

namespace swapkern {

// 8-byte aligned on purpose: a complex128 tensor may start at any 8-byte boundary (a byte-offset view of a
// storage), so 16-byte elements move as two 8-byte words; the aligned 16-byte path is a separate, checked choice.
struct Bytes16 {
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
    default: SK_CHECK_TYPE(false, "swapkern: unsupported element size ", size);
  }
}

// Exchanges one element of `size` bytes at a and b (device code: the plans of a packed launch differ in width).
C10_HOST_DEVICE inline void swap_width(char* a, char* b, int64_t size) {
  const auto one = [](auto* p, auto* q) {
    const auto t = *p;
    *p = *q;
    *q = t;
  };
  switch (size) {
    case 1: return one(reinterpret_cast<uint8_t*>(a), reinterpret_cast<uint8_t*>(b));
    case 2: return one(reinterpret_cast<uint16_t*>(a), reinterpret_cast<uint16_t*>(b));
    case 4: return one(reinterpret_cast<uint32_t*>(a), reinterpret_cast<uint32_t*>(b));
    case 8: return one(reinterpret_cast<uint64_t*>(a), reinterpret_cast<uint64_t*>(b));
    default: return one(reinterpret_cast<Bytes16*>(a), reinterpret_cast<Bytes16*>(b));
  }
}

}  // namespace swapkern
