// CPU fused loader: a parallel loop (csrc/cpu/parallel.h) over the output in its memory order.
#include "launchers.h"
#include "parallel.h"

#include <torch/headeronly/util/BFloat16.h>
#include <torch/headeronly/util/Half.h>

#include <algorithm>
#include <utility>
#include <vector>

namespace swapkern {
namespace {

// Writes output element (n, c, h, w) from its source byte (generic: flip, swap, gather, normalise).
template <typename Out>
inline void write_one(const LoadParams& p, Out* out, int64_t n, int64_t c, int64_t h, int64_t w) {
  int64_t src_c = c;
  const int64_t src = source_offset<int64_t>(p, n, src_c, h, w);
  // Two roundings, as the reference computes it: no fused multiply-add.
  const float scaled = static_cast<float>(p.data[src]) * p.scale[src_c];
  out[n * p.out_strides[0] + c * p.out_strides[1] + h * p.out_strides[2] + w * p.out_strides[3]] =
      static_cast<Out>(scaled + p.shift[src_c]);
}

// Parallel over image rows (n, h). A row is written in a fast pass that applies the flip and any channel swap at
// all pixels through a per-image channel map; the few pixels a pixel swap (or a channel swap at one pixel)
// touches are then rewritten by the generic path. Same result as write_one everywhere, fewer divisions.
template <typename Out>
void load(const LoadParams& p) {
  parallel_for(0, p.B * p.H, std::max<int64_t>(1, 8192 / (p.C * p.W)), [&](int64_t begin, int64_t end) {
    Out* out = static_cast<Out*>(p.out);
    std::vector<int64_t> cmap(p.C);
    for (int64_t row = begin; row < end; ++row) {
      const int64_t n = row / p.H, h = row % p.H;
      const bool flip = p.flip != nullptr && p.flip[n] != 0;
      const bool mine = p.pairs != nullptr && p.active[0] != 0 && (p.which != Which::One || n == p.image[0]);
      const int64_t g = p.which == Which::Every ? n : 0;
      const int64_t* pr = mine ? p.pairs + g * p.swaps * 2 : nullptr;
      for (int64_t c = 0; c < p.C; ++c) cmap[c] = c;
      if (mine && p.what == What::Channels && p.extent_all) {
        for (int64_t j = 0; j < p.swaps; ++j) std::swap(cmap[pr[2 * j]], cmap[pr[2 * j + 1]]);
      }
      const uint8_t* src_row = p.data + p.index[n] * p.data_strides[0] + h * p.data_strides[2];
      Out* out_row = out + n * p.out_strides[0] + h * p.out_strides[2];
      for (int64_t c = 0; c < p.C; ++c) {
        const int64_t sc = cmap[c];
        const uint8_t* src = src_row + sc * p.data_strides[1];
        const float scale = p.scale[sc], shift = p.shift[sc];
        for (int64_t w = 0; w < p.W; ++w) {
          const float scaled = static_cast<float>(src[(flip ? p.W - 1 - w : w) * p.data_strides[3]]) * scale;
          out_row[c * p.out_strides[1] + w * p.out_strides[3]] = static_cast<Out>(scaled + shift);
        }
      }
      if (!mine || (p.what == What::Channels && p.extent_all)) continue;
      // Source pixels the plan moves: `at` (channels at one pixel) or both pixels of every pair.
      auto fix = [&](int64_t pixel) {
        if (pixel / p.W != h) return;
        const int64_t w = flip ? p.W - 1 - pixel % p.W : pixel % p.W;
        for (int64_t c = 0; c < p.C; ++c) write_one(p, out, n, c, h, w);
      };
      if (p.what == What::Channels) {
        fix(p.at[g]);
      } else {
        for (int64_t j = 0; j < 2 * p.swaps; ++j) fix(pr[j]);
      }
    }
  });
}

}  // namespace

void load_cpu(const LoadParams& p) {
  switch (p.out_dtype) {
    case 0: return load<float>(p);
    case 1: return load<torch::headeronly::Half>(p);
    default: return load<torch::headeronly::BFloat16>(p);
  }
}

}  // namespace swapkern
