// The order of checks, one for every backend (swapkern/_checks.py says the same; the first failing check decides the
// exception and its rule key, csrc/codes.h, and nothing moves before it):
//   1. arguments, in Python (swapkern/_index.py, ops.py): tensors, validate a bool, dims ints, indices integer-like
//      (TypeError; IndexError for an int beyond int64);
//   2. the autograd rules, in Python (swapkern/_native.py): requires grad in grad mode, an inference tensor outside
//      inference mode (RuntimeError);
//   3. the op's own shape rules (ops.h): dims in range, sample_dim != dim, a 4-d batch (ValueError);
//   4. the tensors (check_tensors): a swappable dtype (TypeError); one dtype, one device, strided, not meta,
//      provably free of self-overlap, x and y apart (ValueError);
//   5. each index a, b, sample in turn (prepare_index): integers (TypeError), strided, at most 1-d, on the CPU or
//      x's device (ValueError); then one length for all (ValueError);
//   6. the geometry (plan_geometry): slice shapes equal and coalescing (ValueError), an index into an empty dim
//      (IndexError);
//   7. validate=true (check_pairs): ranges of a, b, sample (IndexError), the positions' count, then pair by pair
//      a[k] != b[k] (one tensor) and no index twice in a scope (ValueError): the first failing pair's.
// The dispatcher refuses a sparse, mkldnn or quantized tensor argument before any of this runs (the ops have CPU
// and CUDA kernels only); swapkern/_native.py then asks the Python twin which rule that is.
#include "checks.h"

#include <torch/csrc/stable/ops.h>

#include <algorithm>
#include <array>
#include <utility>
#include <vector>

namespace swapkern {

bool provably_disjoint(IntArrayRef sizes, IntArrayRef strides) {
  // (stride, size) of the dims that have more than one position: on the stack for up to 16 dims (no allocation).
  using Dim = std::pair<int64_t, int64_t>;
  std::array<Dim, 16> local;
  std::vector<Dim> heap;
  Dim* dims = local.data();
  if (sizes.size() > local.size()) {
    heap.resize(sizes.size());
    dims = heap.data();
  }
  size_t n = 0;
  for (size_t d = 0; d < sizes.size(); ++d) {
    if (sizes[d] == 0) return true;
    if (sizes[d] > 1) dims[n++] = {strides[d], sizes[d]};
  }
  std::sort(dims, dims + n);
  int64_t span = 0;  // largest offset reachable with the dims so far
  for (size_t i = 0; i < n; ++i) {
    const auto [stride, size] = dims[i];
    if (stride <= span) return false;
    span += (size - 1) * stride;
  }
  return true;
}

namespace {

std::pair<uintptr_t, uintptr_t> byte_range(const Tensor& t) {
  const uintptr_t lo = reinterpret_cast<uintptr_t>(t.data_ptr());
  const IntArrayRef sizes = t.sizes(), strides = t.strides();
  int64_t span = 1;
  for (size_t d = 0; d < sizes.size(); ++d) span += (sizes[d] - 1) * strides[d];
  return {lo, lo + static_cast<uintptr_t>(span * static_cast<int64_t>(t.element_size()))};
}

}  // namespace

bool memory_intersects(const Tensor& a, const Tensor& b) {
  using torch::headeronly::Layout;
  if (a.numel() == 0 || b.numel() == 0 || a.layout() != Layout::Strided || b.layout() != Layout::Strided) return false;
  const Device da = a.device();
  if (da != b.device() || da.type() == DeviceType::Meta) return false;
  const auto ra = byte_range(a), rb = byte_range(b);
  return ra.first < rb.second && rb.first < ra.second;
}

void check_swappable(const char* op, const Tensor& t, const char* name) {
  SK_RULE(t.layout() == torch::headeronly::Layout::Strided, rules::kTensorLayout, op, ": ", name,
          " must be a strided tensor, got layout ", t.layout());
  SK_RULE(!is_meta(t), rules::kTensorMeta, op, ": ", name, " is on the meta device, which holds no data to swap");
  SK_RULE(provably_disjoint(t.sizes(), t.strides()), rules::kTensorOverlap, op, ": ", name, " (shape ", t.sizes(),
          ", strides ", t.strides(),
          ") has elements that overlap in memory, or cannot be shown not to (expand, unfold, as_strided); "
          "swap a .contiguous() copy");
}

Tensor prepare_index(const char* op, const Tensor& t, const char* name, const Tensor& x, const Tensor& y,
                     IndexArg kind) {
  const ScalarType dtype = dtype_of(t);
  SK_RULE(is_integral(dtype, /*include_bool=*/kind == IndexArg::Flags), rules::kIndexDtype, op, ": ", name,
          " must hold integers, got a tensor of dtype ", dtype);
  SK_RULE(t.layout() == torch::headeronly::Layout::Strided, rules::kIndexLayout, op, ": ", name,
          " must be a strided tensor, got layout ", t.layout());
  SK_RULE(kind != IndexArg::Vector || t.dim() <= 1, rules::kIndexShape, op, ": ", name, " must have shape [K], got ",
          t.sizes());
  const Device device = t.device(), x_device = x.device();
  SK_RULE(device.type() == DeviceType::CPU || device == x_device, rules::kIndexDevice, op, ": ", name, " is on ",
          device, " but the tensor is on ", x_device, "; indices must be on the CPU or on the tensor's device");
  const bool int64 = dtype == ScalarType::Long || dtype == ScalarType::UInt64;
  // uint64 read as int64 bit for bit (no conversion kernel; an index of 2^63 or more is then negative and refused)
  Tensor v = dtype == ScalarType::UInt64 ? torch::stable::view(t, ScalarType::Long) : t;
  if (!int64 || device != x_device || !t.is_contiguous()) {
    v = torch::stable::contiguous(torch::stable::to(v, ScalarType::Long, std::nullopt, x_device));
  }
  if (memory_intersects(v, x) || (!same_tensor(x, y) && memory_intersects(v, y))) v = torch::stable::clone(v);
  return v;
}

const int64_t* host_values(const Tensor& t, std::vector<int64_t>& buf) {
  if (t.is_cpu()) return data_of<const int64_t>(t);
  const int64_t n = t.numel(), one = 1;
  buf.resize(static_cast<size_t>(n));
  Tensor host = torch::stable::from_blob(buf.data(), IntArrayRef(&n, 1), IntArrayRef(&one, 1),
                                         Device(DeviceType::CPU), ScalarType::Long);
  torch::stable::copy_(host, t);  // a device-to-host copy, so a sync
  return buf.data();
}

void check_range(const char* op, const int64_t* v, int64_t K, int64_t n, bool wrap, bool from_unsigned,
                 const char* name, const char* what) {
  const int64_t lo = wrap && !from_unsigned ? -n : 0;  // uint64 bits: no value is negative
  for (int64_t k = 0; k < K; ++k) {
    if (__builtin_expect(v[k] >= lo && v[k] < n, 1)) continue;
    if (from_unsigned && v[k] < 0) {
      detail::refuse(rules::kIndexRange, op, ": ", name, " holds index ", static_cast<uint64_t>(v[k]),
                     ", out of range for ", what, " of size ", n);
    }
    detail::refuse(rules::kIndexRange, op, ": ", name, " holds index ", v[k], ", out of range for ", what,
                   " of size ", n);
  }
}

}  // namespace swapkern
