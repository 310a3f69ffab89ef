// swapkern: one core operation, K pairs of equally shaped strided slices exchanged in place.
// Every public op is index arithmetic that fills a Plan; each backend runs a Plan in one launch.
#pragma once

#include "tensor.h"

#include <torch/headeronly/macros/Macros.h>

#include <cstdint>
#include <optional>

namespace swapkern {

// Geometry is coalesced before it reaches a kernel; tensors needing more dims are rejected with ValueError.
constexpr int kMaxDims = 8;

// Where the slice of pair k starts in one tensor: an index into a row-major flattened group of dims,
// plus, optionally, a sample index along one more dim. Offsets are in elements.
struct Side {
  char* data = nullptr;              // element 0 of the tensor (storage offset applied)
  const int64_t* idx = nullptr;      // [K] indices into the flattened group; negative counts from the end
  const int64_t* sample = nullptr;   // [K] sample indices, or nullptr for the whole tensor
  int64_t idx_numel = 1;             // number of positions in the flattened group
  int64_t sample_size = 1;
  int64_t sample_stride = 0;
  int32_t idx_ndim = 0;
  int64_t idx_sizes[kMaxDims] = {};
  int64_t idx_strides[kMaxDims] = {};
};

// K pairs: slice k of x (at x.offset(k)) is exchanged with slice k of y (y may be x).
struct Plan {
  Side x, y;
  int64_t K = 0;
  int64_t slice_numel = 1;
  int32_t ndim = 0;       // dims of the slice after coalescing (0: single elements)
  int32_t elem_size = 0;  // bytes; the kernels move bits, so only the width matters
  int32_t device_index = -1;
  int64_t sizes[kMaxDims] = {};
  int64_t strides_x[kMaxDims] = {};
  int64_t strides_y[kMaxDims] = {};
  // Multi-tensor steps (csrc/engine.cpp): pair k moves only if keep[k] != 0, and the whole plan only if
  // *select == select_value (one candidate of an inter-layer group per step). nullptr: always.
  const int64_t* keep = nullptr;
  const int64_t* select = nullptr;
  int64_t select_value = 0;
};

// Whether pair k of plan p moves this step.
C10_HOST_DEVICE inline bool pair_active(const Plan& p, int64_t k) {
  return (p.keep == nullptr || p.keep[k] != 0) && (p.select == nullptr || *p.select == p.select_value);
}

C10_HOST_DEVICE inline int64_t wrap_index(int64_t i, int64_t n) { return i < 0 ? i + n : i; }

// Element offset of pair k's slice in one tensor.
C10_HOST_DEVICE inline int64_t side_offset(const Side& s, int64_t k) {
  int64_t i = wrap_index(s.idx[k], s.idx_numel);
  int64_t off = 0;
  if (s.idx_ndim == 1 && static_cast<uint64_t>(i) < static_cast<uint64_t>(s.idx_sizes[0])) {
    off = i * s.idx_strides[0];  // one coalesced dim and an index in range: no division (i % size == i)
  } else {
    for (int d = s.idx_ndim - 1; d >= 0; --d) {
      const int64_t size = s.idx_sizes[d];
      off += (i % size) * s.idx_strides[d];
      i /= size;
    }
  }
  if (s.sample != nullptr) off += wrap_index(s.sample[k], s.sample_size) * s.sample_stride;
  return off;
}

// Whether the pairs sit closer together in memory than the elements of one slice (columns of a row-major weight,
// channels of a channels_last batch): then walking pairs innermost keeps the accesses of a step together.
inline bool interleaved(const Plan& p) {
  if (p.ndim == 0 || p.K < 2 || p.x.idx_ndim == 0) return false;
  return p.x.idx_strides[p.x.idx_ndim - 1] < p.strides_x[p.ndim - 1];
}

// The index tensors a Plan points into; keep this alive while the Plan runs.
struct OwnedPlan {
  Plan plan;
  std::optional<Tensor> a, b, sample;
};

// Which dims of a tensor the pair indices address: [begin, end), flattened row-major.
struct DimGroup {
  int64_t begin;
  int64_t end;
};

// Validates every argument (raising ValueError / IndexError / TypeError before anything moves) and builds
// the Plan. With validate=false the data-dependent checks (range, duplicates, a[k] != b[k]) are skipped:
// they are what needs a host copy of the indices when the indices live on a GPU.
OwnedPlan make_plan(const char* op, const Tensor& x, const Tensor& y, DimGroup gx, DimGroup gy, const Tensor& a,
                    const Tensor& b, const std::optional<Tensor>& sample, int64_t sample_dim, bool validate);

// The rules on the tensors of a plan (dtype, device, layout, no overlap), and the geometry of K pairs between them
// (slice shape, coalesced dims, index groups, sample dim) with no index values: the caller attaches the indices.
void check_tensors(const char* op, const Tensor& x, const Tensor& y);
Plan plan_geometry(const char* op, const Tensor& x, const Tensor& y, DimGroup gx, DimGroup gy, bool has_sample,
                   int64_t sample_dim, int64_t K);

// Normalises a user dim, raising ValueError when it is out of range.
int64_t wrap_dim(const char* op, int64_t dim, int64_t ndim, const char* name);


}  // namespace swapkern
