// Drawing a FeaturePlan in one launch: the counter-based generator of swapkern/draws.py (csrc/hash.h), bit for bit.
#pragma once

#include "codes.h"
#include "hash.h"

#include "tensor.h"

#include <torch/headeronly/macros/Macros.h>

#include <cstdint>
#include <optional>

namespace swapkern {

constexpr uint32_t kBatchKey = 0xB5297A4Du;
constexpr int kMaxDraws = 64;  // 2 * swaps

// m distinct values of [0, n), uniform over ordered m-tuples, as draws.distinct_: draw t takes the r-th smallest
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
  Which which = Which::One;
  What what = What::Channels;
  bool extent_all = true;
  int64_t swaps = 1;
  uint64_t seed = 0, step = 0;
  int64_t* counter = nullptr;  // if set, the step is read from it (on the device) and it is incremented after
  uint32_t key_pairs = 0, key_extent = 0;  // base_key(seed, step, stream) of the group draws: with_step() fills them
  int64_t threshold = 0;       // a step swaps when its coin word < threshold (p * 2^32)
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
  const uint32_t gkey = p.which == Which::Every ? image_key(p, g) : static_cast<uint32_t>(buf[2]);
  const int64_t n = p.what == What::Channels ? p.C : p.HW;
  const int m = static_cast<int>(2 * p.swaps);
  int64_t flat[kMaxDraws];
  distinct(flat, m, n, gkey, p.key_pairs);
  const bool active = buf[0] != 0;
  int64_t* pairs = buf + p.pairs + g * m;
  for (int j = 0; j < m; j += 2) {
    pairs[j] = flat[j];
    pairs[j + 1] = active ? flat[j + 1] : flat[j];  // an identity pair moves nothing
  }
  const int64_t at = p.extent_all ? 0 : below(word32(gkey, p.key_extent, 0), p.what == What::Channels ? p.HW : p.C);
  buf[p.at + g] = at;
  if (p.extent_all) {
    for (int64_t j = 0; j < p.swaps; ++j) {
      buf[p.a + g * p.swaps + j] = pairs[2 * j];
      buf[p.b + g * p.swaps + j] = pairs[2 * j + 1];
      buf[p.sample + g * p.swaps + j] = p.which == Which::One ? buf[1] : g;
    }
    return;
  }
  // Extent 1: flat element indices n*C*HW + channel*HW + pixel, for each image this group covers.
  const int64_t first = p.which == Which::All ? 0 : (p.which == Which::One ? buf[1] : g);
  const int64_t count = p.which == Which::All ? p.B : 1;
  for (int64_t i = 0; i < count; ++i) {
    const int64_t img = first + i, slot = (p.which == Which::One ? 0 : img) * p.swaps;
    for (int64_t j = 0; j < p.swaps; ++j) {
      const int64_t u = pairs[2 * j], v = pairs[2 * j + 1], base = img * p.C * p.HW;
      buf[p.a + slot + j] = base + (p.what == What::Channels ? u * p.HW + at : at * p.HW + u);
      buf[p.b + slot + j] = base + (p.what == What::Channels ? v * p.HW + at : at * p.HW + v);
    }
  }
}

// The parameters with their step fixed (from the counter when there is one) and the step's stream keys computed.
C10_HOST_DEVICE inline DrawParams with_step(const DrawParams& params, uint64_t step) {
  DrawParams p = params;
  p.step = step;
  p.key_pairs = base_key(p.seed, step, kPairs);
  p.key_extent = base_key(p.seed, step, kExtent);
  return p;
}

DrawParams make_draw(const Tensor& buf, const std::optional<Tensor>& indices, int64_t B, int64_t C, int64_t HW,
                     int64_t which, int64_t what, bool extent_all, int64_t swaps, int64_t seed, int64_t step,
                     int64_t threshold, const std::optional<Tensor>& counter);

}  // namespace swapkern
