// Device-generic op bodies: validate and build a Plan (or the loader's and the draw's parameters), then run it with
// the device's launcher. csrc/bindings.cpp instantiates them once per device. Arguments are stable-ABI tensors
// (csrc/tensor.h); a mutated tensor is a const Tensor& like the rest (the handle is const, not the data).
#pragma once

#include "checks.h"
#include "draw.h"
#include "engine.h"
#include "feature.h"
#include "loader.h"
#include "swapkern.h"

#include <torch/csrc/stable/ops.h>

namespace swapkern {

using Launcher = void (*)(const Plan&);

template <Launcher launch>
void run(const OwnedPlan& owned) {
  if (owned.plan.K > 0 && owned.plan.slice_numel > 0) launch(owned.plan);
}

template <Launcher launch>
void swap_op(const Tensor& x, int64_t dim, const Tensor& a, const Tensor& b, const std::optional<Tensor>& sample,
             int64_t sample_dim, bool validate) {
  constexpr const char* op = "swapkern.swap_";
  const int64_t ndim = x.dim();
  dim = wrap_dim(op, dim, ndim, "dim");
  if (sample.has_value()) {
    sample_dim = wrap_dim(op, sample_dim, ndim, "sample_dim");
    SK_RULE(sample_dim != dim, rules::kOpSampleDim, op, ": sample_dim and dim are both ", dim);
  }
  run<launch>(make_plan(op, x, x, {dim, dim + 1}, {dim, dim + 1}, a, b, sample, sample_dim, validate));
}

template <Launcher launch>
void swap_pixels_op(const Tensor& x, const Tensor& p, const Tensor& q, const std::optional<Tensor>& sample,
                    bool validate) {
  constexpr const char* op = "swapkern.swap_pixels_";
  SK_RULE(x.dim() == 4, rules::kOpShape, op, ": expected an (N, C, H, W) batch, got shape ", x.sizes());
  run<launch>(make_plan(op, x, x, {2, 4}, {2, 4}, p, q, sample, 0, validate));
}

template <Launcher launch>
void swap_elements_op(const Tensor& x, const Tensor& i, const Tensor& j, bool validate) {
  const DimGroup all{0, x.dim()};
  run<launch>(make_plan("swapkern.swap_elements_", x, x, all, all, i, j, std::nullopt, 0, validate));
}

template <Launcher launch>
void swap_between_op(const Tensor& x, const Tensor& y, const Tensor& i, const Tensor& j,
                     std::optional<int64_t> dim_x, std::optional<int64_t> dim_y, bool validate) {
  constexpr const char* op = "swapkern.swap_between_";
  SK_RULE(dim_x.has_value() == dim_y.has_value(), rules::kOpDims, op,
          ": give both dim_x and dim_y (slices) or neither (elements)");
  DimGroup gx{0, x.dim()}, gy{0, y.dim()};
  if (dim_x.has_value()) {
    const int64_t dx = wrap_dim(op, *dim_x, gx.end, "dim_x"), dy = wrap_dim(op, *dim_y, gy.end, "dim_y");
    SK_RULE(dx == dy || !same_tensor(x, y), rules::kOpDims, op, ": x is y, so dim_x and dim_y must be equal");
    gx = {dx, dx + 1};
    gy = {dy, dy + 1};
  }
  run<launch>(make_plan(op, x, y, gx, gy, i, j, std::nullopt, 0, validate));
}

template <void (*launch)(const LoadParams&)>
void load_batch_op(const Tensor& out, const Tensor& data, const Tensor& index, const Tensor& scale,
                   const Tensor& shift, const std::optional<Tensor>& pairs, const std::optional<Tensor>& fixed,
                   const std::optional<Tensor>& image, const std::optional<Tensor>& active,
                   const std::optional<Tensor>& flip, int64_t which, int64_t what, bool extent_all, bool nhwc,
                   bool validate) {
  const OwnedLoad o = prepare_load(out, data, index, scale, shift, pairs, fixed, image, active, flip, which, what,
                                extent_all, nhwc, validate);
  if (out.numel() > 0) launch(o.params);
}

template <void (*launch)(const DrawParams&)>
void draw_op(const Tensor& buf, const std::optional<Tensor>& indices, int64_t B, int64_t C, int64_t HW,
             int64_t which, int64_t what, bool extent_all, int64_t swaps, int64_t seed, int64_t step,
             int64_t threshold, const std::optional<Tensor>& counter) {
  if (B == 0) {  // an empty batch: an inactive plan, nothing to draw
    SK_CHECK_VALUE(buf.dim() == 1 && dtype_of(buf) == ScalarType::Long,
                   "swapkern.draw_feature_plan_: buf must be int64");
    SK_CHECK_VALUE(!counter.has_value() || (dtype_of(*counter) == ScalarType::Long && counter->numel() == 1 &&
                                            counter->device() == buf.device()),
                   "swapkern.draw_feature_plan_: counter must be one int64 on buf's device");
    Tensor zeroed = buf;
    torch::stable::zero_(zeroed);
    if (counter.has_value()) increment_(*counter);
    return;
  }
  launch(make_draw(buf, indices, B, C, HW, which, what, extent_all, swaps, seed, step, threshold, counter));
}

// The draw of d and the exchange of plan (checked for x), as feature_swap_ and feature_step_ end.
template <Launcher launch, void (*draw)(const DrawParams&)>
void draw_and_exchange(const Tensor& x, const DrawParams& d, const Plan& plan) {
  draw(d);
#ifndef SWAPKERN_CUDA_EMULATION  // the emulated GPU (csrc/cuda/emulation.h) runs them as a GPU does
  if (x.device().type() == DeviceType::CPU && d.buf[0] == 0) return;  // the p-coin said no (a GPU runs identities)
#endif
  if (plan.K > 0 && plan.slice_numel > 0) launch(plan);
}

// Draws a FeaturePlan into buf and applies it to the (B, C, H, W) batch x: one op call per protocol step.
template <Launcher launch, void (*draw)(const DrawParams&)>
void feature_swap_op(const Tensor& x, const Tensor& buf, const std::optional<Tensor>& indices, int64_t which,
                     int64_t what, bool extent_all, int64_t swaps, int64_t seed, int64_t step, int64_t threshold,
                     const std::optional<Tensor>& counter) {
  constexpr const char* op = "swapkern.feature_swap_";
  const IntArrayRef sizes = x.sizes();
  SK_RULE(sizes.size() == 4, rules::kOpShape, op, ": expected an (N, C, H, W) batch, got shape ", sizes);
  const Device buf_device = buf.device(), x_device = x.device();
  SK_CHECK_VALUE(buf_device == x_device, op, ": buf is on ", buf_device, " but x is on ", x_device);
  SK_CHECK_VALUE(!memory_intersects(buf, x) && !(indices.has_value() && memory_intersects(*indices, buf)), op,
                 ": buf must not share memory with x or indices");
  const int64_t B = sizes[0], C = sizes[1], HW = sizes[2] * sizes[3];
  check_swappable(op, x, "x");
  if (B == 0) {
    draw_op<draw>(buf, indices, B, C, HW, which, what, extent_all, swaps, seed, step, threshold, counter);
    return;
  }
  SK_CHECK_VALUE(!(counter.has_value() && memory_intersects(*counter, x)), op, ": counter must not be inside x");
  const DrawParams d =
      make_draw(buf, indices, B, C, HW, which, what, extent_all, swaps, seed, step, threshold, counter);
  // The plan (geometry and pointers into buf) is built, and so checked, before the draw writes buf or the counter.
  const Plan plan = feature_plan(op, x, d, which, what, extent_all);
  draw_and_exchange<launch, draw>(x, d, plan);
}

// feature_swap_ through a binding (csrc/feature.h): the same checks in the same order and the same errors, those
// that depend on x's layout made once per dtype and strides.
template <Launcher launch, void (*draw)(const DrawParams&)>
void feature_step_op(const Tensor& x, int64_t handle) {
  constexpr const char* op = "swapkern.feature_swap_";
  const std::shared_ptr<FeatureBinding> held = feature_at(handle);
  FeatureBinding& f = *held;
  const IntArrayRef sizes = x.sizes();
  SK_RULE(sizes.size() == 4, rules::kOpShape, op, ": expected an (N, C, H, W) batch, got shape ", sizes);
  SK_CHECK_VALUE(sizes.equals(IntArrayRef(f.sizes, 4)), "swapkern.feature_step_: call ", handle,
                 " was bound for batches of shape ", IntArrayRef(f.sizes, 4), ", got ", sizes);
  const Device x_device = x.device();
  SK_CHECK_VALUE(f.device == x_device, op, ": buf is on ", f.device, " but x is on ", x_device);
  SK_CHECK_VALUE(!memory_intersects(f.buf, x), op, ": buf must not share memory with x or indices");
  const DrawParams d = draw_now(f);
  const ScalarType dtype = dtype_of(x);
  const IntArrayRef strides = x.strides();
  std::optional<Plan> known;
  {
    const std::lock_guard<std::mutex> lock(f.mutex);
    if (f.plan.has_value() && dtype == f.dtype && strides.equals(IntArrayRef(f.strides, 4))) known = f.plan;
  }
  if (!known) check_swappable(op, x, "x");
  SK_CHECK_VALUE(!memory_intersects(f.counter, x), op, ": counter must not be inside x");
  Plan plan = known ? *known : feature_plan(op, x, d, f.which, f.what, f.extent_all);
  if (!known) {
    const std::lock_guard<std::mutex> lock(f.mutex);
    f.plan = plan;
    f.dtype = dtype;
    for (int k = 0; k < 4; ++k) f.strides[k] = strides[k];
  }
  // This call's pointers: x's data and buf's slots (a cached plan may hold another call's).
  plan.x.data = plan.y.data = static_cast<char*>(x.data_ptr());
  plan.x.idx = d.buf + d.a;
  plan.y.idx = d.buf + d.b;
  if (plan.x.sample != nullptr) plan.x.sample = plan.y.sample = d.buf + d.sample;
  draw_and_exchange<launch, draw>(x, d, plan);
}

}  // namespace swapkern
