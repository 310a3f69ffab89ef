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

#include "cpu/parallel.h"

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

namespace {

// Per-thread scratch, reused across calls: no allocation once a thread has seen its largest K.
struct Scratch {
  std::vector<int64_t> host[3];  // host copies of device indices
  std::vector<uint64_t> table;   // open-addressing set: (generation << 48) | (key + 1); 0 or another gen: empty
  uint64_t gen = 0;
};
thread_local Scratch scratch;

// A set of keys below 2^48 with room for `count` insertions; insert() returns false for a repeat. Each slot holds
// the call's generation beside the key, so a call never clears the table (O(count) work, one random access per
// key); the generation wraps after 65535 calls, and the table is cleared then.
class KeySet {
 public:
  static constexpr uint64_t kKeyBits = 48, kKeyMask = (uint64_t{1} << kKeyBits) - 1;

  explicit KeySet(int64_t count) : s_(scratch) {
    size_t cap = 64;
    while (cap < static_cast<size_t>(2 * count)) cap <<= 1;  // load factor <= 1/2
    if (s_.table.size() < cap) s_.table.assign(cap, 0);
    if (++s_.gen == (uint64_t{1} << (64 - kKeyBits))) {
      std::fill(s_.table.begin(), s_.table.end(), 0);
      s_.gen = 1;
    }
    tag_ = s_.gen << kKeyBits;
    mask_ = cap - 1;
    shift_ = 64 - __builtin_ctzll(cap);
    slots_ = s_.table.data();
  }
  size_t slot(uint64_t key) const { return (key * 0x9E3779B97F4A7C15ull) >> shift_; }
  // Brings a key's slot into the cache ahead of its insert: the table is cold after a swap has streamed the data.
  void prefetch(uint64_t key) const { __builtin_prefetch(slots_ + slot(key), 1, 1); }
  bool insert(uint64_t key) {
    const uint64_t mine = tag_ | (key + 1);
    for (size_t h = slot(key);; h = (h + 1) & mask_) {
      const uint64_t v = slots_[h];
      if ((v & ~kKeyMask) != tag_) {  // empty for this call
        slots_[h] = mine;
        return true;
      }
      if (v == mine) return false;
    }
  }

 private:
  Scratch& s_;
  uint64_t tag_;
  size_t mask_;
  int shift_;
  uint64_t* slots_;
};

inline int64_t wrapped(int64_t i, int64_t n) { return i < 0 ? i + n : i; }

// From this many pairs on, check_pairs splits its keys over two threads.
constexpr int64_t kParallelPairs = 1024;

// Which of two parts a key belongs to: a bit of a hash other than the KeySet's slot hash.
inline uint64_t part_of(uint64_t key) { return (key * 0xD6E8FEB86659FD93ull) >> 63; }

// The first failing check of a part: pair k, stage 0 for a[k] == b[k], 1 + side for a repeat; k == K: none.
struct Failure {
  int64_t k;
  int stage;
};
inline bool before(Failure a, Failure b) { return a.k < b.k || (a.k == b.k && a.stage < b.stage); }

}  // namespace

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

void check_pairs(const char* op, const Tensor& a, const Tensor& b, const Tensor* sample, int64_t nx,
                 int64_t ny, int64_t ns, bool same, bool unsigned_a, bool unsigned_b, bool unsigned_s,
                 const char* what, const Plan* warm) {
  const int64_t K = a.numel();
  const int64_t* va = host_values(a, scratch.host[0]);
  const int64_t* vb = host_values(b, scratch.host[1]);
  const int64_t* vs = sample != nullptr ? host_values(*sample, scratch.host[2]) : nullptr;
  check_range(op, va, K, nx, /*wrap=*/true, unsigned_a, "a", what);
  check_range(op, vb, K, ny, /*wrap=*/true, unsigned_b, "b", what);
  if (vs != nullptr) check_range(op, vs, K, ns, /*wrap=*/true, unsigned_s, "sample", "the sample dim");
  // Keys (scope * n + index) * 2 + side: one set serves both sides when x and y differ; below 2 * kMaxPositions.
  const int64_t n = std::max(nx, ny);
  static_assert(static_cast<uint64_t>(2 * (kMaxPositions - 1)) <= KeySet::kKeyMask,
                "the largest key + 1 must fit the KeySet's 48 bits");
  SK_RULE(n == 0 || ns <= (kMaxPositions - 1) / n, rules::kSizeKeyspace, op,
          ": too many samples times indices to check (2^47 or more positions)");
  auto key_of = [&](int64_t k, int side) {
    const int64_t i = side == 0 ? wrapped(va[k], nx) : wrapped(vb[k], ny);
    const int64_t scope = vs != nullptr ? wrapped(vs[k], ns) : 0;
    return static_cast<uint64_t>((scope * n + i) * 2 + (same ? 0 : side));
  };
  // The keys split into `parts` sets by a hash bit, one per thread: every occurrence of a key is in one part, so
  // each part finds its first repeat exactly where the one set would, and the first failure of all parts (by pair,
  // then a[k] == b[k] before a's repeat before b's) is the one a single pass reports.
  const int64_t parts = K >= kParallelPairs ? 2 : 1;
  Failure first[2] = {{K, 0}, {K, 0}};
  parallel_for(0, parts, 1, [&](int64_t begin, int64_t end) {
    for (int64_t q = begin; q < end; ++q) {
      const auto mine = [&](uint64_t key) { return parts == 1 || static_cast<int64_t>(part_of(key)) == q; };
      KeySet seen(2 * K);
      constexpr int64_t kAhead = 8;  // pairs prefetched ahead of the one inserted
      // The pairs whose data lines this part warms: its share of the pairs, as the exchange splits them.
      const int64_t warm_begin = warm != nullptr ? K * q / parts : 0;
      const int64_t warm_end = warm != nullptr ? K * (q + 1) / parts : 0;
      const auto prefetch = [&](int64_t k) {
        for (int side = 0; side < 2; ++side) {
          const uint64_t key = key_of(k, side);
          if (mine(key)) seen.prefetch(key);
        }
        if (k >= warm_begin && k < warm_end) {
          __builtin_prefetch(warm->x.data + side_offset(warm->x, k) * warm->elem_size, 1);
          __builtin_prefetch(warm->y.data + side_offset(warm->y, k) * warm->elem_size, 1);
        }
      };
      for (int64_t k = 0; k < std::min(K, kAhead); ++k) prefetch(k);
      for (int64_t k = 0; k < K && first[q].k == K; ++k) {
        if (k + kAhead < K) prefetch(k + kAhead);
        if (same && q == 0 && wrapped(va[k], nx) == wrapped(vb[k], ny)) {
          first[q] = {k, 0};
          break;
        }
        for (int side = 0; side < 2; ++side) {
          const uint64_t key = key_of(k, side);
          if (mine(key) && !seen.insert(key)) {
            first[q] = {k, 1 + side};
            break;
          }
        }
      }
    }
  });
  const Failure f = parts == 1 || before(first[0], first[1]) ? first[0] : first[1];
  if (f.k == K) return;
  const int64_t ia = wrapped(va[f.k], nx), ib = wrapped(vb[f.k], ny);
  SK_RULE(f.stage != 0, rules::kPairSelf, op, ": pair ", f.k, " exchanges index ", ia,
          " with itself; a[k] must differ from b[k]");
  const int side = f.stage - 1;
  const int64_t scope = vs != nullptr ? wrapped(vs[f.k], ns) : 0;
  const char* where = same ? (vs != nullptr ? "one sample" : "the tensor") : (side == 0 ? "x" : "y");
  detail::refuse(rules::kPairRepeat, op, ": index ", side == 0 ? ia : ib, " appears more than once in ", where,
                 vs != nullptr ? " (sample " : "", vs != nullptr ? std::to_string(scope) : std::string(),
                 vs != nullptr ? ")" : "", "; the exchanges of one call must be disjoint");
}

}  // namespace swapkern
