// Validation and index arithmetic shared by every backend: user arguments -> Plan.
#include "checks.h"
#include "swapkern.h"

#include <algorithm>
#include <climits>
#include <numeric>
#include <utility>
#include <vector>

namespace swapkern {
namespace {

// A list of per-dim values held on the stack up to kInline entries (a tensor may have more dims: then on the heap),
// so that building a plan allocates nothing.
template <typename T>
class DimVec {
 public:
  size_t size() const { return n_; }
  bool empty() const { return n_ == 0; }
  T* begin() { return heap_.empty() ? inline_ : heap_.data(); }
  const T* begin() const { return heap_.empty() ? inline_ : heap_.data(); }
  T* end() { return begin() + n_; }
  const T* end() const { return begin() + n_; }
  T& operator[](size_t i) { return begin()[i]; }
  const T& operator[](size_t i) const { return begin()[i]; }
  T& back() { return begin()[n_ - 1]; }
  void push_back(T v) {
    if (heap_.empty() && n_ == kInline) heap_.assign(inline_, inline_ + n_);
    if (heap_.empty()) {
      inline_[n_] = v;
    } else {
      heap_.push_back(v);
    }
    ++n_;
  }
  bool operator==(const DimVec& o) const { return std::equal(begin(), end(), o.begin(), o.end()); }
  IntArrayRef ref() const { return IntArrayRef(begin(), n_); }

 private:
  static constexpr size_t kInline = 2 * kMaxDims;
  T inline_[kInline] = {};
  std::vector<T> heap_;
  size_t n_ = 0;
};

struct Dims {
  DimVec<int64_t> sizes, sx, sy;
};

// Drops size-1 dims, orders dims by x's strides (outermost first) and merges dims that are contiguous in both
// tensors, so a contiguous slice becomes one dim of stride 1. Iteration order is irrelevant to an exchange as
// long as x and y use the same one.
Dims coalesce_slice(const Dims& in) {
  DimVec<size_t> order;
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
void fill_side(const char* op, Side& s, const Tensor& t, DimGroup g) {
  s.data = static_cast<char*>(t.data_ptr());
  const IntArrayRef t_sizes = t.sizes(), t_strides = t.strides();
  DimVec<int64_t> sizes, strides;
  int64_t numel = 1;
  for (int64_t d = g.begin; d < g.end; ++d) {
    numel *= t_sizes[d];
    if (t_sizes[d] == 1) continue;  // contributes coordinate 0 only
    if (!sizes.empty() && strides.back() == t_strides[d] * t_sizes[d]) {
      sizes.back() *= t_sizes[d];
      strides.back() = t_strides[d];
      continue;
    }
    sizes.push_back(t_sizes[d]);
    strides.push_back(t_strides[d]);
  }
  SK_RULE(sizes.size() <= static_cast<size_t>(kMaxDims), rules::kGeometryDims, op,
          ": the indexed dims of a tensor of shape ", t_sizes, " do not coalesce into ", kMaxDims,
          " dims or fewer; make it contiguous first");
  s.idx_numel = numel;
  s.idx_ndim = static_cast<int32_t>(sizes.size());
  for (size_t d = 0; d < sizes.size(); ++d) {
    s.idx_sizes[d] = sizes[d];
    s.idx_strides[d] = strides[d];
  }
}

}  // namespace

int64_t wrap_dim(const char* op, int64_t dim, int64_t ndim, const char* name) {
  SK_RULE(dim >= -ndim && dim < ndim, rules::kOpDim, op, ": ", name, "=", dim, " is out of range for a tensor with ",
          ndim, " dims");
  return dim < 0 ? dim + ndim : dim;
}

void check_tensors(const char* op, const Tensor& x, const Tensor& y) {
  const ScalarType dtype = dtype_of(x), y_dtype = dtype_of(y);
  const size_t elem = x.element_size();
  // The kernels move elements of 1, 2, 4, 8 or 16 bytes (csrc/elem.h by_width); a quantized tensor's bits mean
  // nothing without its scales, which a swap would leave behind.
  SK_RULE(elem <= 16 && (elem & (elem - 1)) == 0 && !torch::headeronly::isQIntType(dtype), rules::kTensorDtype, op,
          ": unsupported dtype ", dtype);
  SK_RULE(dtype == y_dtype, rules::kTensorsDtype, op, ": x has dtype ", dtype, " but y has ", y_dtype);
  const Device x_device = x.device(), y_device = y.device();
  SK_RULE(x_device == y_device, rules::kTensorsDevice, op, ": x is on ", x_device, " but y is on ", y_device);
  const bool same = same_tensor(x, y);
  check_swappable(op, x, "x");
  if (!same) check_swappable(op, y, "y");
  SK_RULE(same || !memory_intersects(x, y), rules::kTensorsOverlap, op,
          ": x and y overlap in memory; to swap within one tensor use swap_ or swap_elements_");
}

Plan plan_geometry(const char* op, const Tensor& x, const Tensor& y, DimGroup gx, DimGroup gy, bool has_sample,
                   int64_t sample_dim, int64_t K) {
  const bool same = same_tensor(x, y);
  const IntArrayRef x_sizes = x.sizes(), x_strides = x.strides(), y_sizes = y.sizes(), y_strides = y.strides();
  const int64_t x_dim = static_cast<int64_t>(x_sizes.size()), y_dim = static_cast<int64_t>(y_sizes.size());
  // The slice: every dim outside the index group (and the sample dim), in order; shapes must match.
  Dims slice;
  DimVec<int64_t> ysizes;
  for (int64_t d = 0; d < x_dim; ++d) {
    if ((d >= gx.begin && d < gx.end) || (has_sample && d == sample_dim)) continue;
    slice.sizes.push_back(x_sizes[d]);
    slice.sx.push_back(x_strides[d]);
  }
  for (int64_t d = 0; d < y_dim; ++d) {
    if ((d >= gy.begin && d < gy.end) || (has_sample && same && d == sample_dim)) continue;
    ysizes.push_back(y_sizes[d]);
    slice.sy.push_back(y_strides[d]);
  }
  SK_RULE(ysizes == slice.sizes, rules::kGeometrySlice, op, ": the slices of x have shape ", slice.sizes.ref(),
          " but those of y have shape ", ysizes.ref());
  const Dims c = coalesce_slice(slice);
  SK_RULE(c.sizes.size() <= static_cast<size_t>(kMaxDims), rules::kGeometryDims, op, ": slices of a tensor of shape ",
          x_sizes, " do not coalesce into ", kMaxDims, " dims or fewer; make it contiguous first");
  Plan p;
  p.K = K;
  p.elem_size = static_cast<int32_t>(x.element_size());
  p.device_index = x.get_device_index();
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
      s->sample_size = x_sizes[sample_dim];
      s->sample_stride = x_strides[sample_dim];
    }
  }
  // Static, so checked even with validate=false: an empty index range has no valid index.
  SK_RULE(K == 0 || (p.x.idx_numel > 0 && p.y.idx_numel > 0), rules::kGeometryEmpty, op,
          ": cannot index into a dim of size 0");
  if (has_sample) {
    SK_RULE(K == 0 || x_sizes[sample_dim] > 0, rules::kGeometryEmpty, op, ": cannot index into a sample dim of size 0");
  }
  return p;
}

OwnedPlan make_plan(const char* op, const Tensor& x, const Tensor& y, DimGroup gx, DimGroup gy, const Tensor& a,
                    const Tensor& b, const std::optional<Tensor>& sample, int64_t sample_dim, bool validate) {
  const bool has_sample = sample.has_value();
  check_tensors(op, x, y);
  OwnedPlan out;
  const Tensor& ia = out.a.emplace(prepare_index(op, a, "a", x, y));
  const Tensor& ib = out.b.emplace(prepare_index(op, b, "b", x, y));
  const Tensor* is = has_sample ? &out.sample.emplace(prepare_index(op, *sample, "sample", x, y)) : nullptr;
  const int64_t K = ia.numel(), Kb = ib.numel();
  SK_RULE(Kb == K, rules::kIndexLength, op, ": a has ", K, " indices but b has ", Kb);
  if (has_sample) {
    const int64_t Ks = is->numel();
    SK_RULE(Ks == K, rules::kIndexLength, op, ": a has ", K, " indices but sample has ", Ks);
  }
  out.plan = plan_geometry(op, x, y, gx, gy, has_sample, sample_dim, K);
  Plan& p = out.plan;
  p.x.idx = data_of<const int64_t>(ia);
  p.y.idx = data_of<const int64_t>(ib);
  if (has_sample) p.x.sample = p.y.sample = data_of<const int64_t>(*is);
  if (!validate || K == 0) return out;
  const char* what = gx.end - gx.begin == 1 ? "dim" : (gx.begin == 0 && gx.end == x.dim() ? "the tensor" : "dims");
  const auto u64 = [](const Tensor& t) { return dtype_of(t) == ScalarType::UInt64; };
  check_pairs(op, ia, ib, is, p.x.idx_numel, p.y.idx_numel, has_sample ? x.size(sample_dim) : 1, same_tensor(x, y),
              u64(a), u64(b), has_sample && u64(*sample), what);
  return out;
}

}  // namespace swapkern
