// Validation and parameters of the fused loader (device-generic host code).
#include "loader.h"

#include "checks.h"

#include <ATen/ATen.h>

#include <algorithm>

namespace swapkern {
namespace {

constexpr const char* kOp = "swapkern.load_batch_";

// An index-like argument as contiguous int64 on out's device, a copy when it shares memory with out.
at::Tensor int64_on(const at::Tensor& t, const at::Tensor& out, const char* name) {
  TORCH_CHECK_TYPE(at::isIntegralType(t.scalar_type(), /*includeBool=*/true), kOp, ": ", name,
                   " must hold integers, got ", t.scalar_type());
  TORCH_CHECK_VALUE(t.device().is_cpu() || t.device() == out.device(), kOp, ": ", name, " is on ", t.device(),
                    " but out is on ", out.device());
  at::Tensor v = t.to(out.device(), at::kLong).contiguous();
  return memory_intersects(v, out) ? v.clone() : v;
}

void check_range(const at::Tensor& t, int64_t lo, int64_t hi, const char* name) {
  if (t.numel() == 0) return;
  const at::Tensor h = t.to(at::kCPU);
  const int64_t mn = h.min().item<int64_t>(), mx = h.max().item<int64_t>();
  TORCH_CHECK_INDEX(mn >= lo && mx < hi, kOp, ": ", name, " holds values in [", mn, ", ", mx,
                    "], outside [", lo, ", ", hi, ")");
}

}  // namespace

OwnedLoad make_load(const at::Tensor& out, const at::Tensor& data, const at::Tensor& index, const at::Tensor& scale,
                    const at::Tensor& shift, const std::optional<at::Tensor>& pairs,
                    const std::optional<at::Tensor>& fixed, const std::optional<at::Tensor>& image,
                    const std::optional<at::Tensor>& active, const std::optional<at::Tensor>& flip, int64_t which,
                    int64_t what, bool extent_all, bool nhwc, bool validate) {
  TORCH_CHECK_VALUE(out.dim() == 4, kOp, ": out must be (B, C, H, W), got ", out.sizes());
  const auto dt = out.scalar_type();
  TORCH_CHECK_TYPE(dt == at::kFloat || dt == at::kHalf || dt == at::kBFloat16, kOp,
                   ": out must be float32, float16 or bfloat16, got ", dt);
  TORCH_CHECK_TYPE(data.scalar_type() == at::kByte, kOp, ": data must be uint8, got ", data.scalar_type());
  TORCH_CHECK_VALUE(data.dim() == 4 && data.device() == out.device(), kOp,
                    ": data must be a 4-d uint8 tensor on out's device, got ", data.sizes(), " on ", data.device());
  check_swappable(kOp, out, "out");
  TORCH_CHECK_VALUE(!memory_intersects(out, data), kOp, ": out and data overlap in memory");
  const int64_t B = out.size(0), C = out.size(1), H = out.size(2), W = out.size(3);
  const int64_t dC = nhwc ? data.size(3) : data.size(1), dH = nhwc ? data.size(1) : data.size(2),
                dW = nhwc ? data.size(2) : data.size(3);
  TORCH_CHECK_VALUE(dC == C && dH == H && dW == W, kOp, ": data images are (C, H, W) = (", dC, ", ", dH, ", ", dW,
                    ") but out is (", C, ", ", H, ", ", W, ")");
  TORCH_CHECK_VALUE(index.dim() == 1 && index.numel() == B, kOp, ": index must have shape [", B, "]");
  for (const at::Tensor* t : {&scale, &shift}) {
    TORCH_CHECK_VALUE(t->dim() == 1 && t->numel() == C && t->scalar_type() == at::kFloat, kOp,
                      ": scale and shift must be float32 of shape [", C, "]");
  }
  OwnedLoad o;
  LoadParams& p = o.params;
  const at::Device dev = out.device();
  o.index = int64_on(index, out, "index");
  o.scale = scale.to(dev).contiguous();
  o.shift = shift.to(dev).contiguous();
  if (memory_intersects(o.scale, out)) o.scale = o.scale.clone();
  if (memory_intersects(o.shift, out)) o.shift = o.shift.clone();
  const bool swap = pairs.has_value();
  TORCH_CHECK_VALUE(swap == fixed.has_value() && swap == image.has_value() && swap == active.has_value(), kOp,
                    ": give all of pairs, at, image, active (a FeaturePlan) or none");
  TORCH_CHECK_VALUE(valid_codes(which, what), kOp, ": bad protocol codes ", which, ", ", what);
  const int64_t G = which == 2 ? B : 1;
  if (swap) {
    TORCH_CHECK_VALUE(pairs->dim() == 3 && pairs->size(0) == G && pairs->size(2) == 2, kOp, ": pairs must be (", G,
                      ", swaps, 2), got ", pairs->sizes());
    TORCH_CHECK_VALUE(fixed->numel() == G && image->numel() == 1 && active->numel() == 1, kOp,
                      ": at must have ", G, " entries, image and active one each");
    o.pairs = int64_on(*pairs, out, "pairs");
    o.at = int64_on(*fixed, out, "at");
    o.image = int64_on(*image, out, "image");
    o.active = int64_on(*active, out, "active");
  }
  if (flip.has_value()) {
    TORCH_CHECK_VALUE(flip->numel() == B, kOp, ": flip must have ", B, " entries");
    o.flip = int64_on(*flip, out, "flip");
  }
  if (validate) {  // data-dependent: a host copy (and so a sync) for GPU tensors
    check_range(o.index, 0, data.size(0), "index");
    if (swap) {
      check_range(o.pairs, 0, what == 0 ? C : H * W, "pairs");
      if (!extent_all) check_range(o.at, 0, what == 0 ? H * W : C, "at");
      check_range(o.image, 0, std::max<int64_t>(B, 1), "image");
    }
  }
  p.out = out.data_ptr();
  p.out_dtype = dt == at::kFloat ? 0 : (dt == at::kHalf ? 1 : 2);
  for (int d = 0; d < 4; ++d) p.out_strides[d] = out.stride(d);
  p.B = B, p.C = C, p.H = H, p.W = W;
  p.data = data.data_ptr<uint8_t>();
  const int64_t order[4] = {0, nhwc ? 3 : 1, nhwc ? 1 : 2, nhwc ? 2 : 3};
  for (int d = 0; d < 4; ++d) p.data_strides[d] = data.stride(order[d]);
  p.N = data.size(0);
  p.index = o.index.data_ptr<int64_t>();
  p.scale = o.scale.data_ptr<float>();
  p.shift = o.shift.data_ptr<float>();
  if (swap) {
    p.pairs = o.pairs.data_ptr<int64_t>();
    p.at = o.at.data_ptr<int64_t>();
    p.image = o.image.data_ptr<int64_t>();
    p.active = o.active.data_ptr<int64_t>();
    p.swaps = pairs->size(1);
  }
  p.which = static_cast<Which>(which);
  p.what = static_cast<What>(what);
  p.extent_all = extent_all;
  p.flip = flip.has_value() ? o.flip.data_ptr<int64_t>() : nullptr;
  p.channels_last_order = C > 1 && out.stride(1) == 1 && !out.is_contiguous();
  p.device_index = dev.has_index() ? dev.index() : -1;
  return o;
}

}  // namespace swapkern
