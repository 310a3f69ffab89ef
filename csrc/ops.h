// Device-generic op bodies: validate and build a Plan (or the loader's and the draw's parameters), then run it with
// the device's launcher. csrc/bindings.cpp instantiates them once per device.
#pragma once

#include "checks.h"
#include "draw.h"
#include "engine.h"
#include "loader.h"
#include "swapkern.h"

#include <ATen/ATen.h>

namespace swapkern {

using Launcher = void (*)(const Plan&);

template <Launcher launch>
void run(const OwnedPlan& owned) {
  if (owned.plan.K > 0 && owned.plan.slice_numel > 0) launch(owned.plan);
}

template <Launcher launch>
void swap_op(at::Tensor x, int64_t dim, const at::Tensor& a, const at::Tensor& b,
             const std::optional<at::Tensor>& sample, int64_t sample_dim, bool validate) {
  constexpr const char* op = "swapkern.swap_";
  dim = wrap_dim(op, dim, x.dim(), "dim");
  if (sample.has_value()) {
    sample_dim = wrap_dim(op, sample_dim, x.dim(), "sample_dim");
    TORCH_CHECK_VALUE(sample_dim != dim, op, ": sample_dim and dim are both ", dim);
  }
  run<launch>(make_plan(op, x, x, {dim, dim + 1}, {dim, dim + 1}, a, b, sample, sample_dim, validate));
}

template <Launcher launch>
void swap_pixels_op(at::Tensor x, const at::Tensor& p, const at::Tensor& q, const std::optional<at::Tensor>& sample,
                    bool validate) {
  constexpr const char* op = "swapkern.swap_pixels_";
  TORCH_CHECK_VALUE(x.dim() == 4, op, ": expected an (N, C, H, W) batch, got shape ", x.sizes());
  run<launch>(make_plan(op, x, x, {2, 4}, {2, 4}, p, q, sample, 0, validate));
}

template <Launcher launch>
void swap_elements_op(at::Tensor x, const at::Tensor& i, const at::Tensor& j, bool validate) {
  const DimGroup all{0, x.dim()};
  run<launch>(make_plan("swapkern.swap_elements_", x, x, all, all, i, j, std::nullopt, 0, validate));
}

template <Launcher launch>
void swap_between_op(at::Tensor x, at::Tensor y, const at::Tensor& i, const at::Tensor& j,
                     std::optional<int64_t> dim_x, std::optional<int64_t> dim_y, bool validate) {
  constexpr const char* op = "swapkern.swap_between_";
  TORCH_CHECK_VALUE(dim_x.has_value() == dim_y.has_value(), op,
                    ": give both dim_x and dim_y (slices) or neither (elements)");
  DimGroup gx{0, x.dim()}, gy{0, y.dim()};
  if (dim_x.has_value()) {
    const int64_t dx = wrap_dim(op, *dim_x, x.dim(), "dim_x"), dy = wrap_dim(op, *dim_y, y.dim(), "dim_y");
    TORCH_CHECK_VALUE(!x.is_same(y) || dx == dy, op, ": x is y, so dim_x and dim_y must be equal");
    gx = {dx, dx + 1};
    gy = {dy, dy + 1};
  }
  run<launch>(make_plan(op, x, y, gx, gy, i, j, std::nullopt, 0, validate));
}

template <void (*launch)(const LoadParams&)>
void load_batch_op(at::Tensor out, const at::Tensor& data, const at::Tensor& index, const at::Tensor& scale,
                   const at::Tensor& shift, const std::optional<at::Tensor>& pairs,
                   const std::optional<at::Tensor>& fixed, const std::optional<at::Tensor>& image,
                   const std::optional<at::Tensor>& active, const std::optional<at::Tensor>& flip, int64_t which,
                   int64_t what, bool extent_all, bool nhwc, bool validate) {
  const OwnedLoad o = make_load(out, data, index, scale, shift, pairs, fixed, image, active, flip, which, what,
                                extent_all, nhwc, validate);
  if (out.numel() > 0) launch(o.params);
}

template <void (*launch)(const DrawParams&)>
void draw_op(at::Tensor buf, const std::optional<at::Tensor>& indices, int64_t B, int64_t C, int64_t HW,
             int64_t which, int64_t what, bool extent_all, int64_t swaps, int64_t seed, int64_t step,
             int64_t threshold, const std::optional<at::Tensor>& counter) {
  if (B == 0) {  // an empty batch: an inactive plan, nothing to draw
    TORCH_CHECK_VALUE(buf.dim() == 1 && buf.scalar_type() == at::kLong, "swapkern.draw_feature_plan_: buf must be int64");
    TORCH_CHECK_VALUE(!counter.has_value() || (counter->scalar_type() == at::kLong && counter->numel() == 1 &&
                                                counter->device() == buf.device()),
                      "swapkern.draw_feature_plan_: counter must be one int64 on buf's device");
    buf.zero_();
    if (counter.has_value()) counter->add_(1);
    return;
  }
  launch(make_draw(buf, indices, B, C, HW, which, what, extent_all, swaps, seed, step, threshold, counter));
}

// Draws a FeaturePlan into buf and applies it to the (B, C, H, W) batch x: one op call per protocol step.
template <Launcher launch, void (*draw)(const DrawParams&)>
void feature_swap_op(at::Tensor x, at::Tensor buf, const std::optional<at::Tensor>& indices, int64_t which,
                     int64_t what, bool extent_all, int64_t swaps, int64_t seed, int64_t step, int64_t threshold,
                     const std::optional<at::Tensor>& counter) {
  constexpr const char* op = "swapkern.feature_swap_";
  TORCH_CHECK_VALUE(x.dim() == 4, op, ": expected an (N, C, H, W) batch, got shape ", x.sizes());
  TORCH_CHECK_VALUE(buf.device() == x.device(), op, ": buf is on ", buf.device(), " but x is on ", x.device());
  TORCH_CHECK_VALUE(!memory_intersects(buf, x) && !(indices.has_value() && memory_intersects(*indices, buf)), op,
                    ": buf must not share memory with x or indices");
  const int64_t B = x.size(0), C = x.size(1), HW = x.size(2) * x.size(3);
  check_swappable(op, x, "x");
  if (B == 0) {
    draw_op<draw>(buf, indices, B, C, HW, which, what, extent_all, swaps, seed, step, threshold, counter);
    return;
  }
  TORCH_CHECK_VALUE(!(counter.has_value() && memory_intersects(*counter, x)), op, ": counter must not be inside x");
  const DrawParams d =
      make_draw(buf, indices, B, C, HW, which, what, extent_all, swaps, seed, step, threshold, counter);
  // The plan (geometry and pointers into buf) is built, and so checked, before the draw writes buf or the counter.
  const bool sampled = extent_all && static_cast<Which>(which) != Which::All;
  const DimGroup g = !extent_all ? DimGroup{0, 4} : (static_cast<What>(what) == What::Channels ? DimGroup{1, 2}
                                                                                                 : DimGroup{2, 4});
  check_tensors(op, x, x);
  Plan plan = plan_geometry(op, x, x, g, g, sampled, 0, d.K);
  int64_t* slots = buf.data_ptr<int64_t>();
  plan.x.idx = slots + d.a;
  plan.y.idx = slots + d.b;
  if (sampled) plan.x.sample = plan.y.sample = slots + d.sample;
  draw(d);
  if (x.device().is_cpu() && slots[0] == 0) return;  // the p-coin said no (a GPU runs identities)
  if (plan.K > 0 && plan.slice_numel > 0) launch(plan);
}

}  // namespace swapkern
