// A FeatureSwap's bound call: the fast path of FeatureSwap.swap_ for a batch shape it has seen.
//
// feature_bind registers, once per (FeatureSwap, batch shape), the plan buffer, the step counter and the protocol's
// draw parameters (checked as draw_feature_plan_ checks them) and returns a handle. feature_step_(x, handle) then
// draws the counter's step into the buffer and applies it to x: two arguments cross the dispatcher instead of
// eleven, and the checks that depend only on x's layout (check_swappable, check_tensors, plan_geometry) run once per
// layout: a batch with the dtype and strides of the previous call reuses its plan, and only what depends on x's
// address (x apart from the buffer and the counter) is checked again. feature_free lets the binding go.
#pragma once

#include "draw.h"
#include "swapkern.h"

#include "tensor.h"

#include <cstdint>
#include <memory>
#include <mutex>
#include <optional>

namespace swapkern {

struct FeatureBinding {
  FeatureBinding(Tensor buf_, Tensor counter_) : buf(std::move(buf_)), counter(std::move(counter_)) {}
  Tensor buf, counter;  // held; their data pointers are read on every call (share_memory_ moves a storage)
  DrawParams draw;      // checked at bind; its buf and counter pointers are set per call
  int64_t which = 0, what = 0;
  bool extent_all = true;
  int64_t sizes[4] = {};  // the batch shape it was bound for
  Device device{DeviceType::CPU};
  // The plan of the last batch checked, for a batch of this dtype and these strides (a call copies it and sets its
  // pointers: x's data, buf's slots), under the mutex: calls from several threads may share a binding.
  std::mutex mutex;
  std::optional<Plan> plan;
  ScalarType dtype = ScalarType::Undefined;
  int64_t strides[4] = {};
};

// The plan of a feature swap of the (B, C, H, W) batch x drawn by d (its a, b, sample point into d's buffer):
// x's dtype, layout and geometry checked (check_tensors, plan_geometry).
Plan feature_plan(const char* op, const Tensor& x, const DrawParams& d, int64_t which, int64_t what, bool extent_all);

// The binding's draw with its buffer and counter pointers as they are now.
DrawParams draw_now(const FeatureBinding& f);

// Op bodies (csrc/bindings.cpp registers them; feature_step_op is in csrc/ops.h).
int64_t feature_bind(const Tensor& buf, const Tensor& counter, int64_t B, int64_t C, int64_t H, int64_t W,
                     int64_t which, int64_t what, bool extent_all, int64_t swaps, int64_t seed, int64_t threshold);
void feature_free(int64_t handle);
std::shared_ptr<FeatureBinding> feature_at(int64_t handle);

}  // namespace swapkern
