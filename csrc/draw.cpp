// Validation of draw_feature_plan_ (the kernels: csrc/cpu/draw_cpu.cpp, csrc/cuda/draw_cuda.cu).
#include "draw.h"

#include "checks.h"

namespace swapkern {

// Fills the offsets of the plan buffer: [active, image, batch key, at (G), pairs (G, swaps, 2), a (K), b (K),
// sample (K)], as swapkern.data.plan_layout.
DrawParams make_draw(const Tensor& buf, const std::optional<Tensor>& indices, int64_t B, int64_t C, int64_t HW,
                     int64_t which, int64_t what, bool extent_all, int64_t swaps, int64_t seed, int64_t step,
                     int64_t threshold, const std::optional<Tensor>& counter) {
  constexpr const char* op = "swapkern.draw_feature_plan_";
  SK_CHECK_VALUE(valid_codes(which, what), op, ": bad protocol codes ", which, ", ", what);
  SK_CHECK_VALUE(B >= 1 && C >= 1 && HW >= 1 && swaps >= 1 && 2 * swaps <= kMaxDraws, op, ": bad sizes");
  SK_CHECK_VALUE(2 * swaps <= (what == 0 ? C : HW), op, ": ", swaps, " swaps need ", 2 * swaps,
                 what == 0 ? " channels" : " pixels");
  DrawParams p;
  const int64_t G = which == 2 ? B : 1;
  p.K = (which == 0 ? 1 : (which == 2 || !extent_all ? B : 1)) * swaps;
  p.at = 3;
  p.pairs = p.at + G;
  p.a = p.pairs + 2 * swaps * G;
  p.b = p.a + p.K;
  p.sample = p.b + p.K;
  SK_CHECK_VALUE(dtype_of(buf) == ScalarType::Long && buf.dim() == 1 && buf.is_contiguous() &&
                     buf.numel() == p.sample + p.K,
                 op, ": buf must be a contiguous int64 tensor of ", p.sample + p.K, " entries");
  const Device device = buf.device();
  if (indices.has_value()) {
    SK_CHECK_VALUE(dtype_of(*indices) == ScalarType::Long && indices->is_contiguous() && indices->numel() == B &&
                       indices->device() == device && !memory_intersects(*indices, buf),
                   op, ": indices must be a contiguous int64 tensor of ", B, " entries on buf's device, apart "
                   "from buf");
    p.indices = data_of<const int64_t>(*indices);
  }
  if (counter.has_value()) {
    SK_CHECK_VALUE(dtype_of(*counter) == ScalarType::Long && counter->numel() == 1 && counter->device() == device &&
                       !memory_intersects(*counter, buf) &&
                       !(indices.has_value() && memory_intersects(*counter, *indices)),
                   op, ": counter must be one int64 on buf's device, apart from buf and indices");
    p.counter = data_of<int64_t>(*counter);
  }
  p.buf = data_of<int64_t>(buf);
  p.B = B, p.C = C, p.HW = HW;
  p.which = static_cast<Which>(which);
  p.what = static_cast<What>(what);
  p.extent_all = extent_all;
  p.swaps = swaps;
  p.seed = static_cast<uint64_t>(seed);
  p.step = static_cast<uint64_t>(step);
  p.threshold = threshold;
  p.device_index = device.index();
  return p;
}

}  // namespace swapkern
