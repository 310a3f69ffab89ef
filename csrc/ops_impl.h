// Device-generic op bodies: validate and build a Plan, then run it with the backend's launcher.
// Included by the CPU and CUDA registration files, which instantiate them with their launcher.
#pragma once

#include "draw.h"
#include "loader.h"
#include "packed.h"
#include "swapkern.h"

#include <torch/library.h>

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
             int64_t threshold) {
  launch(make_draw(buf, indices, B, C, HW, which, what, extent_all, swaps, seed, step, threshold));
}

template <void (*launch)(const Plan*, const int64_t*, int64_t)>
void swap_packed_op(at::TensorList tensors, const at::Tensor& meta, const at::Tensor& meta_cpu) {
  const Plan* plans = check_packed(tensors, meta, meta_cpu);
  const int64_t n = reinterpret_cast<const int64_t*>(meta_cpu.data_ptr<uint8_t>())[0];
  const int64_t* prefix = packed_prefix(meta_cpu.data_ptr<uint8_t>(), n);
  if (prefix[n] > 0) launch(plans, prefix, n);
}

// Registers every op for one dispatch key with its launchers.
template <Launcher launch, void (*load)(const LoadParams&), void (*draw)(const DrawParams&)>
void register_all(torch::Library& m) {
  m.impl("draw_feature_plan_", &draw_op<draw>);
  m.impl("load_batch_", &load_batch_op<load>);
  m.impl("swap_", &swap_op<launch>);
  m.impl("swap_pixels_", &swap_pixels_op<launch>);
  m.impl("swap_elements_", &swap_elements_op<launch>);
  m.impl("swap_between_", &swap_between_op<launch>);
}

}  // namespace swapkern
