// CPU fused loader: at::parallel_for over the output in its memory order.
#include "../loader.h"

#include <ATen/Parallel.h>
#include <c10/util/BFloat16.h>
#include <c10/util/Half.h>

namespace swapkern {
namespace {

template <typename Out>
void load(const LoadParams& p) {
  const int64_t total = p.B * p.C * p.H * p.W;
  at::parallel_for(0, total, 8192, [&](int64_t begin, int64_t end) {
    Out* out = static_cast<Out*>(p.out);
    for (int64_t t = begin; t < end; ++t) {
      int64_t n, c, h, w;
      output_coords(p, t, n, c, h, w);
      int64_t src_c = c;
      const int64_t src = source_offset(p, n, src_c, h, w);
      // Two roundings, as the reference computes it: no fused multiply-add.
      const float scaled = static_cast<float>(p.data[src]) * p.scale[src_c];
      const float v = scaled + p.shift[src_c];
      out[n * p.out_strides[0] + c * p.out_strides[1] + h * p.out_strides[2] + w * p.out_strides[3]] =
          static_cast<Out>(v);
    }
  });
}

}  // namespace

void load_cpu(const LoadParams& p) {
  switch (p.out_dtype) {
    case 0: return load<float>(p);
    case 1: return load<c10::Half>(p);
    default: return load<c10::BFloat16>(p);
  }
}

}  // namespace swapkern
