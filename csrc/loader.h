// The fused batch loader: out[n] = flip(swap(normalise(data[index[n]]))), one kernel per batch.
// Defined as: gather, then normalise (v * scale[c] + shift[c] in fp32), then swap (a FeaturePlan), then an
// optional horizontal flip, then one rounding to the output dtype. A kernel computes each output element by
// walking that chain backwards (flip, then the swap involution) to the one stored byte it comes from.
#pragma once

#include "codes.h"

#include "tensor.h"

#include <torch/headeronly/macros/Macros.h>

#include <cstdint>
#include <optional>

namespace swapkern {

struct LoadParams {
  void* out = nullptr;
  int32_t out_dtype = 0;        // 0 float32, 1 float16, 2 bfloat16
  int64_t out_strides[4] = {};  // logical (B, C, H, W)
  int64_t B = 0, C = 0, H = 0, W = 0;
  const uint8_t* data = nullptr;
  int64_t data_strides[4] = {};  // logical (N, C, H, W), whatever the storage order
  int64_t N = 0;
  const int64_t* index = nullptr;  // [B] samples of data
  const float* scale = nullptr;    // [C]
  const float* shift = nullptr;    // [C]
  // FeaturePlan, compact form (pairs == nullptr: no swap).
  const int64_t* pairs = nullptr;  // [G, swaps, 2]
  const int64_t* at = nullptr;     // [G] fixed pixel (S, extent 1) or channel (P, extent 1)
  const int64_t* image = nullptr;  // [1] the image of a `1` protocol
  const int64_t* active = nullptr; // [1] 0: this step swaps nothing
  int64_t swaps = 0;
  Which which = Which::All;
  What what = What::Channels;
  bool extent_all = true;
  const int64_t* flip = nullptr;  // [B] 0/1, or nullptr
  bool channels_last_order = false;  // walk the output as (B, H, W, C), its memory order
  int32_t device_index = -1;
};

// Logical (n, c, h, w) of the t-th output element in the output's memory order. I: the index type (int32_t
// where the whole batch has fewer than 2^31 elements: far cheaper divisions on a GPU).
template <typename I>
C10_HOST_DEVICE inline void output_coords(const LoadParams& p, I t, I& n, I& c, I& h, I& w) {
  const I C = static_cast<I>(p.C), H = static_cast<I>(p.H), W = static_cast<I>(p.W);
  if (p.channels_last_order) {
    c = t % C;
    t /= C;
    w = t % W;
    t /= W;
    h = t % H;
    n = t / H;
  } else {
    w = t % W;
    t /= W;
    h = t % H;
    t /= H;
    c = t % C;
    n = t / C;
  }
}

// Offset in data of the byte that output element (n, c, h, w) comes from; c becomes its source channel.
template <typename I>
C10_HOST_DEVICE inline int64_t source_offset(const LoadParams& p, I n, I& c, I h, I w) {
  const I W = static_cast<I>(p.W);
  if (p.flip != nullptr && p.flip[n] != 0) w = W - 1 - w;
  I pix = h * W + w;
  if (p.pairs != nullptr && p.active[0] != 0 && (p.which != Which::One || n == p.image[0])) {
    const int64_t g = p.which == Which::Every ? n : 0;
    const bool channels = p.what == What::Channels;
    if (p.extent_all || (channels ? pix == p.at[g] : c == p.at[g])) {
      I q = channels ? c : pix;
      const int64_t* pr = p.pairs + g * p.swaps * 2;
      for (int64_t j = 0; j < p.swaps; ++j) {  // disjoint pairs: at most one matches
        if (q == pr[2 * j]) {
          q = static_cast<I>(pr[2 * j + 1]);
          break;
        }
        if (q == pr[2 * j + 1]) {
          q = static_cast<I>(pr[2 * j]);
          break;
        }
      }
      if (channels) {
        c = q;
      } else {
        pix = q;
      }
    }
  }
  return p.index[n] * p.data_strides[0] + c * p.data_strides[1] + static_cast<int64_t>(pix / W) * p.data_strides[2] +
         static_cast<int64_t>(pix % W) * p.data_strides[3];
}

// Validates (ValueError / IndexError / TypeError, each naming its rule, before anything is written) and fills
// LoadParams; swapkern/_checks.py prepare_load is its Python twin, check for check.
struct OwnedLoad {
  LoadParams params;
  std::optional<Tensor> index, scale, shift, pairs, at, image, active, flip;
};
OwnedLoad prepare_load(const Tensor& out, const Tensor& data, const Tensor& index, const Tensor& scale,
                       const Tensor& shift, const std::optional<Tensor>& pairs, const std::optional<Tensor>& fixed,
                       const std::optional<Tensor>& image, const std::optional<Tensor>& active,
                       const std::optional<Tensor>& flip, int64_t which, int64_t what, bool extent_all, bool nhwc,
                       bool validate);


}  // namespace swapkern
