// Validation of draw_feature_plan_ and the CPU implementation (the CUDA one is csrc/cuda/draw_cuda.cu).
#include "draw.h"

#include <ATen/ATen.h>
#include <ATen/Parallel.h>

namespace swapkern {

// Fills the offsets of the plan buffer: [active, image, batch key, at (G), pairs (G, swaps, 2), a (K), b (K),
// sample (K)], as swapkern.data.plan_layout.
DrawParams make_draw(const at::Tensor& buf, const std::optional<at::Tensor>& indices, int64_t B, int64_t C,
                     int64_t HW, int64_t which, int64_t what, bool extent_all, int64_t swaps, int64_t seed,
                     int64_t step, int64_t threshold) {
  constexpr const char* op = "swapkern.draw_feature_plan_";
  TORCH_CHECK_VALUE(which >= 0 && which <= 2 && (what == 0 || what == 1), op, ": bad protocol codes");
  TORCH_CHECK_VALUE(B >= 1 && C >= 1 && HW >= 1 && swaps >= 1 && 2 * swaps <= kMaxDraws, op, ": bad sizes");
  TORCH_CHECK_VALUE(2 * swaps <= (what == 0 ? C : HW), op, ": ", swaps, " swaps need ", 2 * swaps,
                    what == 0 ? " channels" : " pixels");
  DrawParams p;
  const int64_t G = which == 2 ? B : 1;
  p.K = (which == 0 ? 1 : (which == 2 || !extent_all ? B : 1)) * swaps;
  p.at = 3;
  p.pairs = p.at + G;
  p.a = p.pairs + 2 * swaps * G;
  p.b = p.a + p.K;
  p.sample = p.b + p.K;
  TORCH_CHECK_VALUE(buf.scalar_type() == at::kLong && buf.dim() == 1 && buf.is_contiguous() &&
                        buf.numel() == p.sample + p.K,
                    op, ": buf must be a contiguous int64 tensor of ", p.sample + p.K, " entries");
  if (indices.has_value()) {
    TORCH_CHECK_VALUE(indices->scalar_type() == at::kLong && indices->is_contiguous() && indices->numel() == B &&
                          indices->device() == buf.device(),
                      op, ": indices must be a contiguous int64 tensor of ", B, " entries on buf's device");
    p.indices = indices->data_ptr<int64_t>();
  }
  p.buf = buf.data_ptr<int64_t>();
  p.B = B, p.C = C, p.HW = HW;
  p.which = static_cast<int32_t>(which);
  p.what = static_cast<int32_t>(what);
  p.extent_all = extent_all;
  p.swaps = swaps;
  p.seed = static_cast<uint64_t>(seed);
  p.step = static_cast<uint64_t>(step);
  p.threshold = threshold;
  p.device_index = buf.device().has_index() ? buf.device().index() : -1;
  return p;
}

void draw_cpu(const DrawParams& p) {
  uint32_t sum = 0, best = 0;
  int64_t pos = 0;
  const uint32_t image_base = base_key(p.seed, p.step, kImage);
  for (int64_t n = 0; n < p.B; ++n) {
    const uint32_t key = image_key(p, n);
    sum += key;
    const uint32_t score = word32(key, image_base, 0);
    if (n == 0 || score > best) best = score, pos = n;  // the first of equal maxima, as torch.argmax
  }
  const uint32_t bkey = p.indices != nullptr ? sum : kBatchKey;
  p.buf[2] = bkey;
  p.buf[0] = static_cast<int64_t>(word32(bkey, base_key(p.seed, p.step, kCoin), 0)) < p.threshold;
  p.buf[1] = p.which == 0 ? pos : 0;
  const int64_t G = p.which == 2 ? p.B : 1;
  at::parallel_for(0, G, 512, [&](int64_t begin, int64_t end) {
    for (int64_t g = begin; g < end; ++g) draw_group(p, g);
  });
}

}  // namespace swapkern
