// Packing many plans (every tensor a weight swap moves, optimizer state included) for one launch.
// Layout of a packed tensor (uint8, CPU): [int64 n][n Plans][int64 prefix[n + 1]], prefix = cumulative work
// (K * slice_numel) of the plans. The index tensors a plan points to must outlive the packed tensor.
#include "packed.h"

#include <ATen/ATen.h>

#include <cstring>

namespace swapkern {

at::Tensor pack_plans(at::TensorList xs, at::TensorList ys, at::TensorList a, at::TensorList b,
                      at::IntArrayRef dim_x, at::IntArrayRef dim_y) {
  constexpr const char* op = "swapkern.pack_plans";
  const size_t n = xs.size();
  TORCH_CHECK_VALUE(n >= 1 && ys.size() == n && a.size() == n && b.size() == n && dim_x.size() == n &&
                        dim_y.size() == n,
                    op, ": xs, ys, a, b, dim_x, dim_y must have one entry per job");
  const int64_t bytes = packed_bytes(static_cast<int64_t>(n));
  at::Tensor out = at::zeros({bytes}, at::kByte);
  uint8_t* base = out.data_ptr<uint8_t>();
  int64_t* prefix = packed_prefix(base, static_cast<int64_t>(n));
  reinterpret_cast<int64_t*>(base)[0] = static_cast<int64_t>(n);
  prefix[0] = 0;
  for (size_t j = 0; j < n; ++j) {
    for (const at::Tensor* t : {&a[j], &b[j]}) {
      // The plan keeps raw pointers into the indices: they must not be temporary copies.
      TORCH_CHECK_VALUE(t->scalar_type() == at::kLong && t->dim() == 1 && t->is_contiguous() &&
                            t->device() == xs[j].device(),
                        op, ": indices must be contiguous int64 tensors on the tensors' device");
    }
    auto group = [](const at::Tensor& t, int64_t d) {
      return d < 0 ? DimGroup{0, t.dim()} : DimGroup{wrap_dim("swapkern.pack_plans", d, t.dim(), "dim"),
                                                      wrap_dim("swapkern.pack_plans", d, t.dim(), "dim") + 1};
    };
    const OwnedPlan owned =
        make_plan(op, xs[j], ys[j], group(xs[j], dim_x[j]), group(ys[j], dim_y[j]), a[j], b[j], std::nullopt, 0,
                  /*validate=*/false);
    std::memcpy(base + sizeof(int64_t) + j * sizeof(Plan), &owned.plan, sizeof(Plan));
    prefix[j + 1] = prefix[j] + owned.plan.K * owned.plan.slice_numel;
  }
  return out;
}

const Plan* check_packed(at::TensorList tensors, const at::Tensor& meta, const at::Tensor& meta_cpu) {
  constexpr const char* op = "swapkern.swap_packed_";
  TORCH_CHECK_VALUE(meta_cpu.device().is_cpu() && meta_cpu.scalar_type() == at::kByte && meta_cpu.numel() >= 8, op,
                    ": meta_cpu must be what pack_plans returned");
  const uint8_t* base = meta_cpu.data_ptr<uint8_t>();
  const int64_t n = reinterpret_cast<const int64_t*>(base)[0];
  TORCH_CHECK_VALUE(n >= 1 && meta_cpu.numel() == packed_bytes(n) && meta.numel() == meta_cpu.numel(), op,
                    ": meta and meta_cpu must be what pack_plans returned");
  TORCH_CHECK_VALUE(static_cast<int64_t>(tensors.size()) == 2 * n, op, ": give the ", 2 * n,
                    " tensors (x and y of every job) the plans were packed for");
  const Plan* plans = reinterpret_cast<const Plan*>(base + sizeof(int64_t));
  for (int64_t j = 0; j < n; ++j) {
    // A tensor that moved (a new optimizer state, a reallocated parameter) would leave the plan dangling.
    TORCH_CHECK_VALUE(tensors[2 * j].data_ptr() == plans[j].x.data && tensors[2 * j + 1].data_ptr() == plans[j].y.data &&
                          tensors[2 * j].device() == meta.device(),
                      op, ": job ", j, "'s tensors are not those the plans were packed for; pack again");
  }
  return plans;
}

}  // namespace swapkern
