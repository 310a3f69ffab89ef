// Validation and parameters of the fused loader (device-generic host code).
#include "loader.h"

#include "checks.h"

#include <algorithm>
#include <vector>

namespace swapkern {
namespace {

constexpr const char* kOp = "swapkern.load_batch_";

// An index-like argument as contiguous int64 on out's device, a copy when it shares memory with out.
Tensor int64_on(const Tensor& t, const Tensor& out, const char* name) {
  const ScalarType dtype = dtype_of(t);
  SK_CHECK_TYPE(is_integral(dtype, /*include_bool=*/true), kOp, ": ", name, " must hold integers, got ", dtype);
  const Device device = t.device(), out_device = out.device();
  SK_CHECK_VALUE(device.type() == DeviceType::CPU || device == out_device, kOp, ": ", name, " is on ", device,
                 " but out is on ", out_device);
  Tensor v = t;
  if (dtype != ScalarType::Long || device != out_device || !t.is_contiguous()) {
    v = torch::stable::contiguous(torch::stable::to(t, ScalarType::Long, std::nullopt, out_device));
  }
  return memory_intersects(v, out) ? torch::stable::clone(v) : v;
}

// A float32 argument on out's device, contiguous, a copy when it shares memory with out.
Tensor float_on(const Tensor& t, const Tensor& out) {
  const Device out_device = out.device();
  Tensor v = t;
  if (t.device() != out_device || !t.is_contiguous()) {
    v = torch::stable::contiguous(torch::stable::to(t, out_device));
  }
  return memory_intersects(v, out) ? torch::stable::clone(v) : v;
}

void check_range(const Tensor& t, int64_t lo, int64_t hi, const char* name) {
  const int64_t n = t.numel();
  if (n == 0) return;
  std::vector<int64_t> buf;
  const int64_t* v = host_values(t, buf);
  const auto [mn, mx] = std::minmax_element(v, v + n);
  SK_CHECK_INDEX(*mn >= lo && *mx < hi, kOp, ": ", name, " holds values in [", *mn, ", ", *mx, "], outside [", lo,
                 ", ", hi, ")");
}

}  // namespace

OwnedLoad make_load(const Tensor& out, const Tensor& data, const Tensor& index, const Tensor& scale,
                    const Tensor& shift, const std::optional<Tensor>& pairs, const std::optional<Tensor>& fixed,
                    const std::optional<Tensor>& image, const std::optional<Tensor>& active,
                    const std::optional<Tensor>& flip, int64_t which, int64_t what, bool extent_all, bool nhwc,
                    bool validate) {
  SK_CHECK_VALUE(out.dim() == 4, kOp, ": out must be (B, C, H, W), got ", out.sizes());
  const ScalarType dt = dtype_of(out), data_dt = dtype_of(data);
  SK_CHECK_TYPE(dt == ScalarType::Float || dt == ScalarType::Half || dt == ScalarType::BFloat16, kOp,
                ": out must be float32, float16 or bfloat16, got ", dt);
  SK_CHECK_TYPE(data_dt == ScalarType::Byte, kOp, ": data must be uint8, got ", data_dt);
  const Device dev = out.device(), data_dev = data.device();
  SK_CHECK_VALUE(data.dim() == 4 && data_dev == dev, kOp, ": data must be a 4-d uint8 tensor on out's device, got ",
                 data.sizes(), " on ", data_dev);
  check_swappable(kOp, out, "out");
  SK_CHECK_VALUE(!memory_intersects(out, data), kOp, ": out and data overlap in memory");
  const IntArrayRef out_sizes = out.sizes(), data_sizes = data.sizes();
  const int64_t B = out_sizes[0], C = out_sizes[1], H = out_sizes[2], W = out_sizes[3];
  const int64_t dC = nhwc ? data_sizes[3] : data_sizes[1], dH = nhwc ? data_sizes[1] : data_sizes[2],
                dW = nhwc ? data_sizes[2] : data_sizes[3];
  SK_CHECK_VALUE(dC == C && dH == H && dW == W, kOp, ": data images are (C, H, W) = (", dC, ", ", dH, ", ", dW,
                 ") but out is (", C, ", ", H, ", ", W, ")");
  SK_CHECK_VALUE(index.dim() == 1 && index.numel() == B, kOp, ": index must have shape [", B, "]");
  for (const Tensor* t : {&scale, &shift}) {
    SK_CHECK_VALUE(t->dim() == 1 && t->numel() == C && dtype_of(*t) == ScalarType::Float, kOp,
                   ": scale and shift must be float32 of shape [", C, "]");
  }
  OwnedLoad o;
  LoadParams& p = o.params;
  o.index = int64_on(index, out, "index");
  o.scale = float_on(scale, out);
  o.shift = float_on(shift, out);
  const bool swap = pairs.has_value();
  SK_CHECK_VALUE(swap == fixed.has_value() && swap == image.has_value() && swap == active.has_value(), kOp,
                 ": give all of pairs, at, image, active (a FeaturePlan) or none");
  SK_CHECK_VALUE(valid_codes(which, what), kOp, ": bad protocol codes ", which, ", ", what);
  const int64_t G = which == 2 ? B : 1;
  if (swap) {
    SK_CHECK_VALUE(pairs->dim() == 3 && pairs->size(0) == G && pairs->size(2) == 2, kOp, ": pairs must be (", G,
                   ", swaps, 2), got ", pairs->sizes());
    SK_CHECK_VALUE(fixed->numel() == G && image->numel() == 1 && active->numel() == 1, kOp, ": at must have ", G,
                   " entries, image and active one each");
    o.pairs = int64_on(*pairs, out, "pairs");
    o.at = int64_on(*fixed, out, "at");
    o.image = int64_on(*image, out, "image");
    o.active = int64_on(*active, out, "active");
  }
  if (flip.has_value()) {
    SK_CHECK_VALUE(flip->numel() == B, kOp, ": flip must have ", B, " entries");
    o.flip = int64_on(*flip, out, "flip");
  }
  if (validate) {  // data-dependent: a host copy (and so a sync) for GPU tensors
    check_range(*o.index, 0, data_sizes[0], "index");
    if (swap) {
      check_range(*o.pairs, 0, what == 0 ? C : H * W, "pairs");
      if (!extent_all) check_range(*o.at, 0, what == 0 ? H * W : C, "at");
      check_range(*o.image, 0, std::max<int64_t>(B, 1), "image");
    }
  }
  p.out = out.data_ptr();
  p.out_dtype = dt == ScalarType::Float ? 0 : (dt == ScalarType::Half ? 1 : 2);
  const IntArrayRef out_strides = out.strides(), data_strides = data.strides();
  for (int d = 0; d < 4; ++d) p.out_strides[d] = out_strides[d];
  p.B = B, p.C = C, p.H = H, p.W = W;
  p.data = data_of<const uint8_t>(data);
  const int64_t order[4] = {0, nhwc ? 3 : 1, nhwc ? 1 : 2, nhwc ? 2 : 3};
  for (int d = 0; d < 4; ++d) p.data_strides[d] = data_strides[order[d]];
  p.N = data_sizes[0];
  p.index = data_of<const int64_t>(*o.index);
  p.scale = data_of<const float>(*o.scale);
  p.shift = data_of<const float>(*o.shift);
  if (swap) {
    p.pairs = data_of<const int64_t>(*o.pairs);
    p.at = data_of<const int64_t>(*o.at);
    p.image = data_of<const int64_t>(*o.image);
    p.active = data_of<const int64_t>(*o.active);
    p.swaps = pairs->size(1);
  }
  p.which = static_cast<Which>(which);
  p.what = static_cast<What>(what);
  p.extent_all = extent_all;
  p.flip = flip.has_value() ? data_of<const int64_t>(*o.flip) : nullptr;
  p.channels_last_order = C > 1 && out_strides[1] == 1 && !out.is_contiguous();
  p.device_index = dev.index();
  return o;
}

}  // namespace swapkern
