// Validation and parameters of the fused loader (device-generic host code).
#include "loader.h"

#include "checks.h"

#include <algorithm>
#include <vector>

namespace swapkern {
namespace {

constexpr const char* kOp = "swapkern.load_batch_";

// A float32 argument on out's device, contiguous, a copy when it shares memory with out.
Tensor float_on(const Tensor& t, const Tensor& out) {
  const Device out_device = out.device();
  Tensor v = t;
  if (t.device() != out_device || !t.is_contiguous()) {
    v = torch::stable::contiguous(torch::stable::to(t, out_device));
  }
  return memory_intersects(v, out) ? torch::stable::clone(v) : v;
}

bool from_uint64(const Tensor& t) { return dtype_of(t) == ScalarType::UInt64; }

// check_range over an index-like tensor (prepare_index's result): values in [0, n).
void check_values(const Tensor& v, bool from_unsigned, int64_t n, const char* name, const char* what) {
  std::vector<int64_t> buf;
  check_range(kOp, host_values(v, buf), v.numel(), n, /*wrap=*/false, from_unsigned, name, what);
}

}  // namespace

OwnedLoad prepare_load(const Tensor& out, const Tensor& data, const Tensor& index, const Tensor& scale,
                       const Tensor& shift, const std::optional<Tensor>& pairs, const std::optional<Tensor>& fixed,
                       const std::optional<Tensor>& image, const std::optional<Tensor>& active,
                       const std::optional<Tensor>& flip, int64_t which, int64_t what, bool extent_all, bool nhwc,
                       bool validate) {
  SK_RULE(out.dim() == 4, rules::kLoadShape, kOp, ": out must be (B, C, H, W), got ", out.sizes());
  const ScalarType dt = dtype_of(out), data_dt = dtype_of(data);
  SK_RULE(dt == ScalarType::Float || dt == ScalarType::Half || dt == ScalarType::BFloat16, rules::kLoadDtype, kOp,
          ": out must be float32, float16 or bfloat16, got ", dt);
  SK_RULE(data_dt == ScalarType::Byte, rules::kLoadDtype, kOp, ": data must be uint8, got ", data_dt);
  const Device dev = out.device(), data_dev = data.device();
  SK_RULE(data.dim() == 4 && data_dev == dev, rules::kLoadShape, kOp,
          ": data must be a 4-d uint8 tensor on out's device, got ", data.sizes(), " on ", data_dev);
  check_swappable(kOp, out, "out");
  SK_RULE(data.layout() == torch::headeronly::Layout::Strided, rules::kTensorLayout, kOp,
          ": data must be a strided tensor, got layout ", data.layout());
  SK_RULE(!memory_intersects(out, data), rules::kTensorsOverlap, kOp, ": out and data overlap in memory");
  const IntArrayRef out_sizes = out.sizes(), data_sizes = data.sizes();
  const int64_t B = out_sizes[0], C = out_sizes[1], H = out_sizes[2], W = out_sizes[3];
  const int64_t dC = nhwc ? data_sizes[3] : data_sizes[1], dH = nhwc ? data_sizes[1] : data_sizes[2],
                dW = nhwc ? data_sizes[2] : data_sizes[3];
  SK_RULE(dC == C && dH == H && dW == W, rules::kLoadShape, kOp, ": data images are (C, H, W) = (", dC, ", ", dH,
          ", ", dW, ") but out is (", C, ", ", H, ", ", W, ")");
  SK_RULE(index.dim() == 1 && index.numel() == B, rules::kLoadShape, kOp, ": index must have shape [", B, "]");
  for (const Tensor* t : {&scale, &shift}) {
    SK_RULE(t->dim() == 1 && t->numel() == C && dtype_of(*t) == ScalarType::Float, rules::kLoadShape, kOp,
            ": scale and shift must be float32 of shape [", C, "]");
  }
  OwnedLoad o;
  LoadParams& p = o.params;
  o.index = prepare_index(kOp, index, "index", out, out);
  o.scale = float_on(scale, out);
  o.shift = float_on(shift, out);
  const bool swap = pairs.has_value();
  SK_RULE(swap == fixed.has_value() && swap == image.has_value() && swap == active.has_value(), rules::kLoadPlan, kOp,
          ": give all of pairs, at, image, active (a FeaturePlan) or none");
  SK_RULE(valid_codes(which, what), rules::kLoadPlan, kOp, ": bad protocol codes ", which, ", ", what);
  const int64_t G = which == 2 ? B : 1;
  if (swap) {
    SK_RULE(pairs->dim() == 3 && pairs->size(0) == G && pairs->size(2) == 2, rules::kLoadPlan, kOp,
            ": pairs must be (", G, ", swaps, 2), got ", pairs->sizes());
    SK_RULE(fixed->numel() == G && image->numel() == 1 && active->numel() == 1, rules::kLoadPlan, kOp,
            ": at must have ", G, " entries, image and active one each");
    o.pairs = prepare_index(kOp, *pairs, "pairs", out, out, IndexArg::Any);
    o.at = prepare_index(kOp, *fixed, "at", out, out, IndexArg::Any);
    o.image = prepare_index(kOp, *image, "image", out, out, IndexArg::Any);
    o.active = prepare_index(kOp, *active, "active", out, out, IndexArg::Flags);
  }
  if (flip.has_value()) {
    SK_RULE(flip->numel() == B, rules::kLoadShape, kOp, ": flip must have ", B, " entries");
    o.flip = prepare_index(kOp, *flip, "flip", out, out, IndexArg::Flags);
  }
  if (validate) {  // data-dependent: a host copy (and so a sync) for GPU tensors
    check_values(*o.index, from_uint64(index), data_sizes[0], "index", "data");
    if (swap) {
      const char* channels = "the channels";
      const char* pixels = "the pixels";
      check_values(*o.pairs, from_uint64(*pairs), what == 0 ? C : H * W, "pairs", what == 0 ? channels : pixels);
      if (!extent_all) {
        check_values(*o.at, from_uint64(*fixed), what == 0 ? H * W : C, "at", what == 0 ? pixels : channels);
      }
      check_values(*o.image, from_uint64(*image), std::max<int64_t>(B, 1), "image", "the batch");
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
