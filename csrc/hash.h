// The counter-based generator of swapkern/draws.py, bit for bit, for host and device code.
// A word is mix(mix(key ^ base) ^ (draw * GOLDEN + 1)) with lowbias32 as mix (uint32 arithmetic wraps mod 2^32
// exactly as the Python version's masked integer arithmetic does).
#pragma once

#include <torch/headeronly/macros/Macros.h>

#include <cstdint>

namespace swapkern {

C10_HOST_DEVICE inline uint32_t mix32(uint32_t h) {
  h ^= h >> 16;
  h *= 0x7FEB352Du;
  h ^= h >> 15;
  h *= 0x846CA68Bu;
  h ^= h >> 16;
  return h;
}

C10_HOST_DEVICE inline uint32_t word32(uint32_t key, uint32_t base, uint32_t draw) {
  return mix32(mix32(key ^ base) ^ (draw * 0x9E3779B9u + 1u));
}

// Uniform in [0, n) from a uniform 32-bit word (multiply-shift: floor(u * n / 2^32), exact for any n < 2^63).
C10_HOST_DEVICE inline int64_t below(uint32_t u, int64_t n) {
  const uint64_t hi = static_cast<uint64_t>(u) * (static_cast<uint64_t>(n) >> 32);
  const uint64_t lo = (static_cast<uint64_t>(u) * (static_cast<uint64_t>(n) & 0xFFFFFFFFull)) >> 32;
  return static_cast<int64_t>(hi + lo);
}

// Stream ids, as draws.STREAMS.
enum Stream : uint32_t { kCoin = 1, kImage = 2, kPairs = 3, kExtent = 4, kFlip = 5, kWeights = 6, kOrder = 7, kAccept = 8 };

// The 32-bit key of (seed, step, stream), as draws.base_key.
C10_HOST_DEVICE inline uint32_t base_key(uint64_t seed, uint64_t step, uint32_t stream) {
  uint32_t h = mix32(static_cast<uint32_t>(seed));
  h = mix32(h ^ static_cast<uint32_t>(seed >> 32));
  h = mix32(h ^ static_cast<uint32_t>(step));
  h = mix32(h ^ static_cast<uint32_t>(step >> 32));
  return mix32(h ^ stream);
}

}  // namespace swapkern
