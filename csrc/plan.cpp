// Validation and index arithmetic shared by every backend: user arguments -> Plan.
#include "checks.h"
#include "swapkern.h"

#include <ATen/ATen.h>
#include <c10/util/SmallVector.h>

#include <algorithm>
#include <climits>
#include <numeric>
#include <utility>
#include <vector>

namespace swapkern {
namespace {

struct Dims {
  c10::SmallVector<int64_t, kMaxDims> sizes, sx, sy;
};

// Drops size-1 dims, orders dims by x's strides (outermost first) and merges dims that are contiguous in both
// tensors, so a contiguous slice becomes one dim of stride 1. Iteration order is irrelevant to an exchange as
// long as x and y use the same one.
Dims coalesce_slice(const Dims& in) {
  c10::SmallVector<size_t, kMaxDims> order;
  for (size_t d = 0; d < in.sizes.size(); ++d)
    if (in.sizes[d] != 1) order.push_back(d);
  std::stable_sort(order.begin(), order.end(), [&](size_t p, size_t q) { return in.sx[p] > in.sx[q]; });
  Dims out;
  for (size_t d : order) {
    if (!out.sizes.empty()) {
      const int64_t size = in.sizes[d];
      if (out.sx.back() == in.sx[d] * size && out.sy.back() == in.sy[d] * size) {
        out.sizes.back() *= size;
        out.sx.back() = in.sx[d];
        out.sy.back() = in.sy[d];
        continue;
      }
    }
    out.sizes.push_back(in.sizes[d]);
    out.sx.push_back(in.sx[d]);
    out.sy.push_back(in.sy[d]);
  }
  return out;
}

// Fills the index geometry of one side: the group [begin, end) of dims, flattened row-major.
void fill_side(const char* op, Side& s, const at::Tensor& t, DimGroup g) {
  s.data = static_cast<char*>(t.data_ptr());
  c10::SmallVector<int64_t, kMaxDims> sizes, strides;
  int64_t numel = 1;
  for (int64_t d = g.begin; d < g.end; ++d) {
    numel *= t.size(d);
    if (t.size(d) == 1) continue;  // contributes coordinate 0 only
    if (!sizes.empty() && strides.back() == t.stride(d) * t.size(d)) {
      sizes.back() *= t.size(d);
      strides.back() = t.stride(d);
      continue;
    }
    sizes.push_back(t.size(d));
    strides.push_back(t.stride(d));
  }
  TORCH_CHECK_VALUE(sizes.size() <= static_cast<size_t>(kMaxDims), op, ": the indexed dims of a tensor of shape ",
                    t.sizes(), " do not coalesce into ", kMaxDims, " dims or fewer; make it contiguous first");
  s.idx_numel = numel;
  s.idx_ndim = static_cast<int32_t>(sizes.size());
  for (size_t d = 0; d < sizes.size(); ++d) {
    s.idx_sizes[d] = sizes[d];
    s.idx_strides[d] = strides[d];
  }
}

}  // namespace

int64_t wrap_dim(const char* op, int64_t dim, int64_t ndim, const char* name) {
  TORCH_CHECK_VALUE(dim >= -ndim && dim < ndim, op, ": ", name, "=", dim, " is out of range for a tensor with ",
                    ndim, " dims");
  return dim < 0 ? dim + ndim : dim;
}

void check_tensors(const char* op, const at::Tensor& x, const at::Tensor& y) {
  TORCH_CHECK_TYPE(x.element_size() <= 16 && (x.element_size() & (x.element_size() - 1)) == 0 && !x.is_quantized(),
                   op, ": unsupported dtype ", x.scalar_type());
  TORCH_CHECK_VALUE(x.scalar_type() == y.scalar_type(), op, ": x has dtype ", x.scalar_type(), " but y has ",
                    y.scalar_type());
  TORCH_CHECK_VALUE(x.device() == y.device(), op, ": x is on ", x.device(), " but y is on ", y.device());
  check_swappable(op, x, "x");
  if (!x.is_same(y)) check_swappable(op, y, "y");
  TORCH_CHECK_VALUE(x.is_same(y) || !memory_intersects(x, y), op,
                    ": x and y overlap in memory; to swap within one tensor use swap_ or swap_elements_");
}

Plan plan_geometry(const char* op, const at::Tensor& x, const at::Tensor& y, DimGroup gx, DimGroup gy, bool has_sample,
                   int64_t sample_dim, int64_t K) {
  const bool same = x.is_same(y);
  // The slice: every dim outside the index group (and the sample dim), in order; shapes must match.
  Dims slice;
  c10::SmallVector<int64_t, kMaxDims> ysizes;
  for (int64_t d = 0; d < x.dim(); ++d) {
    if ((d >= gx.begin && d < gx.end) || (has_sample && d == sample_dim)) continue;
    slice.sizes.push_back(x.size(d));
    slice.sx.push_back(x.stride(d));
  }
  for (int64_t d = 0; d < y.dim(); ++d) {
    if ((d >= gy.begin && d < gy.end) || (has_sample && same && d == sample_dim)) continue;
    ysizes.push_back(y.size(d));
    slice.sy.push_back(y.stride(d));
  }
  TORCH_CHECK_VALUE(ysizes == slice.sizes, op, ": the slices of x have shape ", at::IntArrayRef(slice.sizes),
                    " but those of y have shape ", at::IntArrayRef(ysizes));
  const Dims c = coalesce_slice(slice);
  TORCH_CHECK_VALUE(c.sizes.size() <= static_cast<size_t>(kMaxDims), op, ": slices of a tensor of shape ",
                    x.sizes(), " do not coalesce into ", kMaxDims, " dims or fewer; make it contiguous first");
  Plan p;
  p.K = K;
  p.elem_size = static_cast<int32_t>(x.element_size());
  p.device_index = x.device().has_index() ? x.device().index() : -1;
  p.ndim = static_cast<int32_t>(c.sizes.size());
  p.slice_numel = 1;
  for (size_t d = 0; d < c.sizes.size(); ++d) {
    p.sizes[d] = c.sizes[d];
    p.strides_x[d] = c.sx[d];
    p.strides_y[d] = c.sy[d];
    p.slice_numel *= c.sizes[d];
  }
  fill_side(op, p.x, x, gx);
  fill_side(op, p.y, y, gy);
  if (has_sample) {
    for (Side* s : {&p.x, &p.y}) {
      s->sample_size = x.size(sample_dim);
      s->sample_stride = x.stride(sample_dim);
    }
  }
  // Static, so checked even with validate=false: an empty index range has no valid index.
  TORCH_CHECK_INDEX(K == 0 || (p.x.idx_numel > 0 && p.y.idx_numel > 0), op, ": cannot index into a dim of size 0");
  if (has_sample) TORCH_CHECK_INDEX(K == 0 || x.size(sample_dim) > 0, op, ": cannot index into a sample dim of size 0");
  return p;
}

OwnedPlan make_plan(const char* op, const at::Tensor& x, const at::Tensor& y, DimGroup gx, DimGroup gy,
                    const at::Tensor& a, const at::Tensor& b, const std::optional<at::Tensor>& sample,
                    int64_t sample_dim, bool validate) {
  const bool same = x.is_same(y);
  const bool has_sample = sample.has_value();
  check_tensors(op, x, y);
  OwnedPlan out;
  out.a = prepare_index(op, a, "a", x, y);
  out.b = prepare_index(op, b, "b", x, y);
  if (has_sample) out.sample = prepare_index(op, *sample, "sample", x, y);
  const int64_t K = out.a.numel();
  TORCH_CHECK_VALUE(out.b.numel() == K, op, ": a has ", K, " indices but b has ", out.b.numel());
  TORCH_CHECK_VALUE(!has_sample || out.sample.numel() == K, op, ": a has ", K, " indices but sample has ",
                    out.sample.numel());
  out.plan = plan_geometry(op, x, y, gx, gy, has_sample, sample_dim, K);
  Plan& p = out.plan;
  p.x.idx = out.a.data_ptr<int64_t>();
  p.y.idx = out.b.data_ptr<int64_t>();
  if (has_sample) p.x.sample = p.y.sample = out.sample.data_ptr<int64_t>();
  if (!validate || K == 0) return out;
  const char* what = gx.end - gx.begin == 1 ? "dim" : (gx.begin == 0 && gx.end == x.dim() ? "the tensor" : "dims");
  const auto u64 = [](const at::Tensor& t) { return t.scalar_type() == at::kUInt64; };
  check_pairs(op, out.a, out.b, has_sample ? &out.sample : nullptr, p.x.idx_numel, p.y.idx_numel,
              has_sample ? x.size(sample_dim) : 1, same, u64(a), u64(b), has_sample && u64(*sample), what);
  return out;
}

}  // namespace swapkern
