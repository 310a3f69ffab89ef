// The multi-tensor engine's host side: packing the jobs into waves of plans, the registry of engines, the check
// that the registered tensors are still those the plans were packed for.
#include "engine.h"

#include "checks.h"
#include "packed.h"
#include "registry.h"

#ifdef SWAPKERN_WITH_CUDA
#include "cuda/launchers.h"
#endif

#include <torch/csrc/stable/ops.h>

#include <algorithm>
#include <cstring>
#include <memory>

namespace swapkern {
namespace {

constexpr const char* kOp = "swapkern.engine_new";

DimGroup dim_group(const Tensor& t, int64_t d) {
  if (d < 0) return {0, t.dim()};
  const int64_t w = wrap_dim(kOp, d, t.dim(), "dim");
  return {w, w + 1};
}

void check_table(const Tensor& index, const Tensor& table, int64_t groups) {
  SK_CHECK_VALUE(dtype_of(index) == ScalarType::Long && index.dim() == 1 && index.is_contiguous(), kOp,
                 ": index must be a contiguous 1-d int64 tensor");
  SK_CHECK_VALUE(table.is_cpu() && dtype_of(table) == ScalarType::Long && table.dim() == 1 &&
                     table.is_contiguous() && groups >= 0 && table.numel() >= groups * kWeightDrawFields,
                 kOp, ": table must be a contiguous int64 CPU tensor of ", groups, " WeightDraw rows");
  const int64_t* t = data_of<const int64_t>(table);
  const auto* rows = reinterpret_cast<const WeightDraw*>(t);
  for (int64_t g = 0; g < groups; ++g) {
    const WeightDraw& r = rows[g];
    SK_CHECK_VALUE(r.kind >= kWPairs && r.kind <= kWInter && r.k >= 1 && r.n >= 1 && r.L >= 1 && r.C >= 1 &&
                       r.R >= 1 && r.index >= 0 && r.index + group_slots(r.k) <= index.numel(),
                   kOp, ": draw table row ", g, " is malformed");
    const int64_t need = r.kind == kWBias ? r.k : 2 * r.k;  // distinct draws from a range of this size
    const int64_t range = r.kind == kWInRow ? r.L : r.n;
    SK_CHECK_VALUE(r.kind == kWInter || need <= range, kOp, ": group ", g, " draws ", need, " of ", range);
    if (r.kind == kWInter) {
      SK_CHECK_VALUE(r.ncand >= 1 && r.cand >= groups * kWeightDrawFields && r.cand + 4 * r.ncand <= table.numel(),
                     kOp, ": group ", g, " has malformed candidates");
      for (int64_t c = 0; c < r.ncand; ++c) {
        const int64_t* cand = t + r.cand + 4 * c;
        SK_CHECK_VALUE(cand[2] >= r.k && cand[3] >= r.k, kOp, ": candidate ", c, " has fewer than ", r.k,
                       " rows");
      }
    }
  }
}

}  // namespace

Engine::~Engine() {
#ifdef SWAPKERN_WITH_CUDA
  engine_release_cuda(*this);
#endif
}

int64_t engine_new(const Tensor& index, const std::vector<Tensor>& xs, const std::vector<Tensor>& ys,
                   const std::vector<int64_t>& dim_x, const std::vector<int64_t>& dim_y,
                   const std::vector<int64_t>& group, const std::vector<int64_t>& job,
                   const std::vector<int64_t>& wave, const Tensor& table, int64_t groups,
                   const std::vector<Tensor>& watched) {
  const size_t n = xs.size();
  SK_CHECK_VALUE(ys.size() == n && dim_x.size() == n && dim_y.size() == n && group.size() == n &&
                     job.size() == n && wave.size() == n,
                 kOp, ": xs, ys, dim_x, dim_y, group, job and wave need one entry per job");
  check_table(index, table, groups);
  const Device device = index.device();
  auto e = std::make_unique<Engine>(index, table, torch::stable::to(table, device));
  e->groups = groups;
  const int64_t* table_data = data_of<const int64_t>(table);
  const auto* rows = reinterpret_cast<const WeightDraw*>(table_data);
  int64_t* slots = data_of<int64_t>(index);
  Tensor slots_view = index;  // narrow() takes a non-const handle
  const int64_t nwaves = n ? *std::max_element(wave.begin(), wave.end()) + 1 : 0;
  SK_CHECK_VALUE(n == 0 || *std::min_element(wave.begin(), wave.end()) >= 0, kOp, ": waves are numbered from 0");
  e->waves.resize(static_cast<size_t>(nwaves));
  for (size_t j = 0; j < n; ++j) {
    SK_CHECK_VALUE(group[j] >= 0 && group[j] < groups, kOp, ": job ", j, " names group ", group[j]);
    const WeightDraw& g = rows[group[j]];
    // The plans keep raw pointers into index: it must not be a copy, nor share memory with what it moves.
    SK_CHECK_VALUE(!memory_intersects(index, xs[j]) && !memory_intersects(index, ys[j]), kOp,
                   ": the index buffer must not share memory with the tensors it moves");
    const Tensor a = torch::stable::narrow(slots_view, 0, g.index, g.k);
    const Tensor b = torch::stable::narrow(slots_view, 0, g.index + g.k, g.k);
    const OwnedPlan owned = make_plan(kOp, xs[j], ys[j], dim_group(xs[j], dim_x[j]), dim_group(ys[j], dim_y[j]), a, b,
                                      std::nullopt, 0, /*validate=*/false);
    SK_CHECK_VALUE(owned.plan.x.idx == slots + g.index && owned.plan.y.idx == slots + g.index + g.k, kOp,
                   ": index must be int64 on the tensors' device");
    Plan p = owned.plan;
    // Every value the group can draw must index both tensors: the draws are unchecked at run time.
    int64_t top_a = g.n, top_b = g.n;
    if (g.kind == kWInRow) top_a = top_b = g.n * g.L;
    if (g.kind == kWInCol) top_a = top_b = g.n * g.C;
    if (g.kind == kWBias) top_a = g.n * g.L;
    if (g.kind == kWInter) {
      SK_CHECK_VALUE(job[j] >= 0 && job[j] < g.ncand, kOp, ": job ", j, " names candidate ", job[j]);
      top_a = table_data[g.cand + 4 * job[j] + 2];
      top_b = table_data[g.cand + 4 * job[j] + 3];
    }
    SK_CHECK_VALUE(top_a <= p.x.idx_numel && top_b <= p.y.idx_numel, kOp, ": job ", j, " of group ", group[j],
                   " draws up to ", top_a, " / ", top_b, " positions but its tensors have ", p.x.idx_numel, " / ",
                   p.y.idx_numel);
    p.keep = slots + g.index + 2 * g.k;
    if (g.kind == kWInter) {
      p.select = slots + g.index + 3 * g.k;
      p.select_value = job[j];
    }
    e->waves[static_cast<size_t>(wave[j])].plans.push_back(p);
  }
  for (Wave& w : e->waves) {
    w.prefix.assign(1, 0);
    for (const Plan& p : w.plans) w.prefix.push_back(w.prefix.back() + p.K * p.slice_numel);
#ifdef SWAPKERN_CUDA_EMULATION
    constexpr bool kDevice = true;  // CPU tensors are the emulated CUDA device's
#else
    const bool kDevice = device.type() != DeviceType::CPU;
#endif
    if (kDevice) {  // [n][plans][prefix] for the device kernel
      const int64_t np = static_cast<int64_t>(w.plans.size()), bytes = packed_bytes(np);
      const Tensor host =
          torch::stable::empty(IntArrayRef(&bytes, 1), ScalarType::Byte, std::nullopt, Device(DeviceType::CPU));
      uint8_t* base = data_of<uint8_t>(host);
      std::memcpy(base, &np, sizeof(int64_t));
      std::memcpy(base + sizeof(int64_t), w.plans.data(), np * sizeof(Plan));
      std::memcpy(packed_prefix(base, np), w.prefix.data(), (np + 1) * sizeof(int64_t));
      w.device_meta = torch::stable::to(host, device);
    }
  }
  for (const Tensor& t : watched) {
    e->watched.push_back(t);
    e->data.push_back(t.data_ptr());
    const IntArrayRef sizes = t.sizes(), strides = t.strides();
    std::vector<int64_t> layout(sizes.begin(), sizes.end());
    layout.insert(layout.end(), strides.begin(), strides.end());
    e->shape.push_back(std::move(layout));
    e->dtype.push_back(dtype_of(t));
  }
  return registry_of<Engine>().add(std::move(e));
}

void engine_free(int64_t handle) {
  registry_of<Engine>().take(handle);  // destroyed outside the registry's lock (on CUDA it may wait for kernels)
}

std::shared_ptr<Engine> engine_at(int64_t handle, const Tensor& index) {
  std::shared_ptr<Engine> e = registry_of<Engine>().find(handle);
  SK_CHECK_VALUE(e != nullptr, "swapkern.engine_step_: no engine ", handle, " (freed?)");
  SK_CHECK_VALUE(same_tensor(index, e->index), "swapkern.engine_step_: index is not the buffer engine ", handle,
                 " was made with");
  return e;
}

bool engine_fresh(const Engine& e) {
  for (size_t i = 0; i < e.watched.size(); ++i) {
    const Tensor& t = e.watched[i];
    if (t.data_ptr() != e.data[i] || dtype_of(t) != e.dtype[i]) return false;
    const std::vector<int64_t>& s = e.shape[i];
    const IntArrayRef sizes = t.sizes(), strides = t.strides();
    const size_t nd = sizes.size();
    if (s.size() != 2 * nd || !std::equal(sizes.begin(), sizes.end(), s.begin()) ||
        !std::equal(strides.begin(), strides.end(), s.begin() + nd)) {
      return false;
    }
  }
  return true;
}

}  // namespace swapkern
