// Drawing a FeaturePlan in one launch: the counter-based generator of swapkern/plans.py, bit for bit.
// A word is mix(mix(key ^ base) ^ (draw * GOLDEN + 1)) with lowbias32 as mix (uint32 arithmetic wraps mod 2^32
// exactly as the Python version's masked int64 arithmetic does).
#pragma once

#include <ATen/core/Tensor.h>
#include <c10/macros/Macros.h>

#include <cstdint>
#include <optional>

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

// Uniform in [0, n) from a uniform 32-bit word (multiply-shift).
C10_HOST_DEVICE inline int64_t below(uint32_t u, int64_t n) {
  return static_cast<int64_t>((static_cast<uint64_t>(u) * static_cast<uint64_t>(n)) >> 32);
}

constexpr uint32_t kBatchKey = 0xB5297A4Du;
constexpr int kMaxDraws = 64;  // 2 * swaps

// Stream ids, as plans.STREAMS.
enum Stream : uint32_t { kCoin = 1, kImage = 2, kPairs = 3, kExtent = 4 };

// The 32-bit key of (seed, step, stream), as plans.base_key.
C10_HOST_DEVICE inline uint32_t base_key(uint64_t seed, uint64_t step, uint32_t stream) {
  uint32_t h = mix32(static_cast<uint32_t>(seed));
  h = mix32(h ^ static_cast<uint32_t>(seed >> 32));
  h = mix32(h ^ static_cast<uint32_t>(step));
  h = mix32(h ^ static_cast<uint32_t>(step >> 32));
  return mix32(h ^ stream);
}

// m distinct values of [0, n), uniform over ordered m-tuples, as plans.distinct_: draw t takes the r-th smallest
// value not yet taken (r uniform in [0, n - t)), the fixed point of e = r + #{taken <= e}.
C10_HOST_DEVICE inline void distinct(int64_t* out, int m, int64_t n, uint32_t key, uint32_t base) {
  for (int t = 0; t < m; ++t) {
    const int64_t r = below(word32(key, base, static_cast<uint32_t>(t)), n - t);
    int64_t e = r;
    for (int it = 0; it < t; ++it) {
      int64_t taken = 0;
      for (int t2 = 0; t2 < t; ++t2) taken += out[t2] <= e;
      e = r + taken;
    }
    out[t] = e;
  }
}

// What one draw fills: a flat int64 buffer, laid out as swapkern.data._layout says.
struct DrawParams {
  int64_t* buf = nullptr;
  const int64_t* indices = nullptr;  // [B] dataset indices, or nullptr for batch positions
  int64_t B = 0, C = 0, HW = 0;
  int32_t which = 0;  // 0: 1, 1: A, 2: E
  int32_t what = 0;   // 0: S, 1: P
  bool extent_all = true;
  int64_t swaps = 1;
  uint64_t seed = 0, step = 0;
  int64_t threshold = 0;  // a step swaps when its coin word < threshold (p * 2^32)
  int32_t device_index = -1;
  // Offsets into buf.
  int64_t at = 0, pairs = 0, a = 0, b = 0, sample = 0, K = 0;
};

C10_HOST_DEVICE inline uint32_t image_key(const DrawParams& p, int64_t n) {
  return mix32(static_cast<uint32_t>(p.indices != nullptr ? p.indices[n] : n));
}

// Everything of one group g once active, image and the batch key are in buf[0..2]: its pairs, its `at`, and
// its share of the op form (a, b, sample).
C10_HOST_DEVICE inline void draw_group(const DrawParams& p, int64_t g) {
  int64_t* buf = p.buf;
  const uint32_t gkey = p.which == 2 ? image_key(p, g) : static_cast<uint32_t>(buf[2]);
  const int64_t n = p.what == 0 ? p.C : p.HW;
  const int m = static_cast<int>(2 * p.swaps);
  int64_t flat[kMaxDraws];
  distinct(flat, m, n, gkey, base_key(p.seed, p.step, kPairs));
  const bool active = buf[0] != 0;
  int64_t* pairs = buf + p.pairs + g * m;
  for (int j = 0; j < m; j += 2) {
    pairs[j] = flat[j];
    pairs[j + 1] = active ? flat[j + 1] : flat[j];  // an identity pair moves nothing
  }
  const int64_t at = p.extent_all ? 0 : below(word32(gkey, base_key(p.seed, p.step, kExtent), 0), p.what == 0 ? p.HW : p.C);
  buf[p.at + g] = at;
  if (p.extent_all) {
    for (int64_t j = 0; j < p.swaps; ++j) {
      buf[p.a + g * p.swaps + j] = pairs[2 * j];
      buf[p.b + g * p.swaps + j] = pairs[2 * j + 1];
      buf[p.sample + g * p.swaps + j] = p.which == 0 ? buf[1] : g;
    }
    return;
  }
  // Extent 1: flat element indices n*C*HW + channel*HW + pixel, for each image this group covers.
  const int64_t first = p.which == 1 ? 0 : (p.which == 0 ? buf[1] : g);
  const int64_t count = p.which == 1 ? p.B : 1;
  for (int64_t i = 0; i < count; ++i) {
    const int64_t img = first + i, slot = (p.which == 0 ? 0 : img) * p.swaps;
    for (int64_t j = 0; j < p.swaps; ++j) {
      const int64_t u = pairs[2 * j], v = pairs[2 * j + 1], base = img * p.C * p.HW;
      buf[p.a + slot + j] = base + (p.what == 0 ? u * p.HW + at : at * p.HW + u);
      buf[p.b + slot + j] = base + (p.what == 0 ? v * p.HW + at : at * p.HW + v);
    }
  }
}

DrawParams make_draw(const at::Tensor& buf, const std::optional<at::Tensor>& indices, int64_t B, int64_t C,
                     int64_t HW, int64_t which, int64_t what, bool extent_all, int64_t swaps, int64_t seed,
                     int64_t step, int64_t threshold);
void draw_cpu(const DrawParams& p);
#ifdef SWAPKERN_WITH_CUDA
void draw_cuda(const DrawParams& p);
#endif

}  // namespace swapkern
