// A FeatureSwap's bound call (csrc/feature.h): the binding's registry and the plan of a feature swap.
#include "feature.h"

#include "checks.h"
#include "registry.h"

#include <memory>

namespace swapkern {

Plan feature_plan(const char* op, const Tensor& x, const DrawParams& d, int64_t which, int64_t what,
                  bool extent_all) {
  const bool sampled = extent_all && static_cast<Which>(which) != Which::All;
  const DimGroup g = !extent_all ? DimGroup{0, 4} : (static_cast<What>(what) == What::Channels ? DimGroup{1, 2}
                                                                                                 : DimGroup{2, 4});
  check_tensors(op, x, x);
  Plan plan = plan_geometry(op, x, x, g, g, sampled, 0, d.K);
  plan.x.idx = d.buf + d.a;
  plan.y.idx = d.buf + d.b;
  if (sampled) plan.x.sample = plan.y.sample = d.buf + d.sample;
  return plan;
}

int64_t feature_bind(const Tensor& buf, const Tensor& counter, int64_t B, int64_t C, int64_t H, int64_t W,
                     int64_t which, int64_t what, bool extent_all, int64_t swaps, int64_t seed, int64_t threshold) {
  SK_CHECK_VALUE(B >= 1 && H >= 1 && W >= 1, "swapkern.feature_bind: a batch of shape (", B, ", ", C, ", ", H, ", ",
                 W, ") has nothing to bind");
  auto f = std::make_unique<FeatureBinding>(buf, counter);
  f->draw = make_draw(buf, std::nullopt, B, C, H * W, which, what, extent_all, swaps, seed, 0, threshold, counter);
  f->which = which, f->what = what, f->extent_all = extent_all;
  f->sizes[0] = B, f->sizes[1] = C, f->sizes[2] = H, f->sizes[3] = W;
  f->device = buf.device();
  return registry_of<FeatureBinding>().add(std::move(f));
}

void feature_free(int64_t handle) { registry_of<FeatureBinding>().take(handle); }

std::shared_ptr<FeatureBinding> feature_at(int64_t handle) {
  std::shared_ptr<FeatureBinding> f = registry_of<FeatureBinding>().find(handle);
  SK_CHECK_VALUE(f != nullptr, "swapkern.feature_step_: no bound call ", handle, " (freed?)");
  return f;
}

DrawParams draw_now(const FeatureBinding& f) {
  DrawParams d = f.draw;
  d.buf = data_of<int64_t>(f.buf);
  d.counter = data_of<int64_t>(f.counter);
  return d;
}

}  // namespace swapkern
