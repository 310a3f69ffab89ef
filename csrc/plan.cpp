// Validation and index arithmetic shared by every backend: user arguments -> Plan.
#include "swapkern.h"

#include <ATen/ATen.h>
#include <ATen/MemoryOverlap.h>

#include <algorithm>
#include <climits>
#include <numeric>
#include <utility>
#include <vector>

namespace swapkern {
namespace {

struct Dims {
  std::vector<int64_t> sizes, sx, sy;
};

// Drops size-1 dims, orders dims by x's strides (outermost first) and merges dims that are contiguous in both
// tensors, so a contiguous slice becomes one dim of stride 1. Iteration order is irrelevant to an exchange as
// long as x and y use the same one.
Dims coalesce_slice(const Dims& in) {
  std::vector<size_t> order;
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
  std::vector<int64_t> sizes, strides;
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

// Type and shape checks of one index argument; returns it as a contiguous int64 tensor on `device`.
at::Tensor prepare_index(const char* op, const at::Tensor& t, const char* name, const at::Device& device) {
  TORCH_CHECK_TYPE(at::isIntegralType(t.scalar_type(), /*includeBool=*/false), op, ": ", name,
                   " must hold integers, got a tensor of dtype ", t.scalar_type());
  TORCH_CHECK_VALUE(t.dim() <= 1, op, ": ", name, " must have shape [K], got ", t.sizes());
  TORCH_CHECK_VALUE(t.device().is_cpu() || t.device() == device, op, ": ", name, " is on ", t.device(),
                    " but the tensor is on ", device, "; indices must be on the CPU or on the tensor's device");
  return t.reshape({-1}).to(device, at::kLong).contiguous();
}

// A host copy for the data-dependent checks (a device-to-host copy, and so a sync, for GPU indices).
std::vector<int64_t> host_values(const at::Tensor& t) {
  const at::Tensor h = t.to(at::kCPU, at::kLong).contiguous();
  const int64_t* p = h.data_ptr<int64_t>();
  return std::vector<int64_t>(p, p + h.numel());
}

void check_range(const char* op, std::vector<int64_t>& v, int64_t n, const char* name, const char* what) {
  for (int64_t& i : v) {
    TORCH_CHECK_INDEX(i >= -n && i < n, op, ": ", name, " index ", i, " is out of range for ", what, " of size ",
                      n);
    i = wrap_index(i, n);
  }
}

// Every (scope, index) pair may appear at most once: the K exchanges must be disjoint. Keys are
// scope * n + index (scope 0 for the whole tensor). A bitmap when the key space is small next to K, else a sort:
// O(K) or O(K log K) host work, and never a buffer the size of the data.
void check_disjoint(const char* op, const std::vector<int64_t>& keys, int64_t n, int64_t scopes, bool sampled,
                    const char* where) {
  const int64_t space = n * scopes;
  auto fail = [&](int64_t key) {
    const int64_t scope = key / n, index = key % n;
    TORCH_CHECK_VALUE(sampled, op, ": index ", index, " appears more than once in ", where,
                      "; the exchanges of one call must be disjoint");
    TORCH_CHECK_VALUE(false, op, ": index ", index, " appears more than once in sample ", scope,
                      "; the exchanges of one call must be disjoint within a sample");
  };
  if (space <= std::max<int64_t>(int64_t{1} << 16, 256 * static_cast<int64_t>(keys.size()))) {
    std::vector<uint64_t> seen((space + 63) / 64, 0);
    for (int64_t key : keys) {
      uint64_t& word = seen[key >> 6];
      const uint64_t bit = uint64_t{1} << (key & 63);
      if (word & bit) fail(key);
      word |= bit;
    }
    return;
  }
  std::vector<int64_t> sorted(keys);
  std::sort(sorted.begin(), sorted.end());
  auto dup = std::adjacent_find(sorted.begin(), sorted.end());
  if (dup != sorted.end()) fail(*dup);
}

// Byte range [lo, hi) that a tensor's elements can touch.
std::pair<uintptr_t, uintptr_t> extent(const at::Tensor& t) {
  uintptr_t lo = reinterpret_cast<uintptr_t>(t.data_ptr());
  int64_t span = 1;
  for (int64_t d = 0; d < t.dim(); ++d) span += (t.size(d) - 1) * t.stride(d);
  return {lo, lo + static_cast<uintptr_t>(span * t.element_size())};
}

}  // namespace

int64_t wrap_dim(const char* op, int64_t dim, int64_t ndim, const char* name) {
  TORCH_CHECK_VALUE(dim >= -ndim && dim < ndim, op, ": ", name, "=", dim, " is out of range for a tensor with ",
                    ndim, " dims");
  return dim < 0 ? dim + ndim : dim;
}

OwnedPlan make_plan(const char* op, const at::Tensor& x, const at::Tensor& y, DimGroup gx, DimGroup gy,
                    const at::Tensor& a, const at::Tensor& b, const std::optional<at::Tensor>& sample,
                    int64_t sample_dim, bool validate) {
  const bool same = x.is_same(y);
  const bool has_sample = sample.has_value();
  TORCH_CHECK_TYPE(x.element_size() <= 16 && (x.element_size() & (x.element_size() - 1)) == 0, op,
                   ": unsupported dtype ", x.scalar_type());
  TORCH_CHECK_VALUE(x.layout() == at::kStrided && y.layout() == at::kStrided, op, ": only strided tensors");
  TORCH_CHECK_VALUE(x.scalar_type() == y.scalar_type(), op, ": x has dtype ", x.scalar_type(), " but y has ",
                    y.scalar_type());
  TORCH_CHECK_VALUE(x.device() == y.device(), op, ": x is on ", x.device(), " but y is on ", y.device());
  TORCH_CHECK_VALUE(at::has_internal_overlap(x) != at::MemOverlap::Yes &&
                        at::has_internal_overlap(y) != at::MemOverlap::Yes,
                    op, ": a tensor whose elements overlap in memory (e.g. from expand) cannot be swapped in place");
  if (!same && x.numel() > 0 && y.numel() > 0) {
    const auto ex = extent(x), ey = extent(y);
    TORCH_CHECK_VALUE(ex.second <= ey.first || ey.second <= ex.first, op,
                      ": x and y overlap in memory; to swap within one tensor use swap_ or swap_elements_");
  }

  OwnedPlan out;
  out.a = prepare_index(op, a, "a", x.device());
  out.b = prepare_index(op, b, "b", x.device());
  if (has_sample) out.sample = prepare_index(op, *sample, "sample", x.device());
  const int64_t K = out.a.numel();
  TORCH_CHECK_VALUE(out.b.numel() == K, op, ": a has ", K, " indices but b has ", out.b.numel());
  TORCH_CHECK_VALUE(!has_sample || out.sample.numel() == K, op, ": a has ", K, " indices but sample has ",
                    out.sample.numel());

  // The slice: every dim outside the index group (and the sample dim), in order; shapes must match.
  Dims slice;
  std::vector<int64_t> ysizes;
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

  Plan& p = out.plan;
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
  p.x.idx = out.a.data_ptr<int64_t>();
  p.y.idx = out.b.data_ptr<int64_t>();
  if (has_sample) {
    for (Side* s : {&p.x, &p.y}) {
      s->sample = out.sample.data_ptr<int64_t>();
      s->sample_size = x.size(sample_dim);
      s->sample_stride = x.stride(sample_dim);
    }
  }

  // Static, so checked even with validate=false: an empty index range has no valid index.
  TORCH_CHECK_INDEX(K == 0 || (p.x.idx_numel > 0 && p.y.idx_numel > 0), op, ": cannot index into a dim of size 0");
  if (has_sample) TORCH_CHECK_INDEX(K == 0 || x.size(sample_dim) > 0, op, ": cannot index into a sample dim of size 0");
  if (!validate || K == 0) return out;
  // Data-dependent checks, on a host copy of the indices.
  std::vector<int64_t> va = host_values(a), vb = host_values(b), vs;
  const char* what = gx.end - gx.begin == 1 ? "dim" : (gx.begin == 0 && gx.end == x.dim() ? "the tensor" : "dims");
  check_range(op, va, p.x.idx_numel, "a", what);
  check_range(op, vb, p.y.idx_numel, "b", what);
  if (has_sample) {
    vs = host_values(*sample);
    check_range(op, vs, x.size(sample_dim), "sample", "the sample dim");
  }
  // Keys scope * n + index; the sample count is bounded by a tensor dim, so the product fits easily in
  // int64 unless the tensor itself is astronomically large.
  const int64_t scopes = has_sample ? x.size(sample_dim) : 1;
  const int64_t nx = p.x.idx_numel, ny = p.y.idx_numel;
  TORCH_CHECK_VALUE(scopes <= INT64_MAX / std::max(nx, ny), op, ": too many samples times indices");
  std::vector<int64_t> keys_a, keys_b;
  for (int64_t k = 0; k < K; ++k) {
    const int64_t scope = has_sample ? vs[k] : 0;
    if (same) {
      TORCH_CHECK_VALUE(va[k] != vb[k], op, ": pair ", k, " exchanges index ", va[k],
                        " with itself; a[k] must differ from b[k]");
      keys_a.push_back(scope * nx + va[k]);
      keys_a.push_back(scope * nx + vb[k]);
    } else {
      keys_a.push_back(scope * nx + va[k]);
      keys_b.push_back(scope * ny + vb[k]);
    }
  }
  check_disjoint(op, keys_a, nx, scopes, has_sample, same ? "the tensor" : "x");
  if (!same) check_disjoint(op, keys_b, ny, scopes, has_sample, "y");
  return out;
}

}  // namespace swapkern
