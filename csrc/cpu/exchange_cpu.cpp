// CPU backend: the core exchange over torch::stable::parallel_for (csrc/cpu/parallel.h).
#include "launchers.h"
#include "parallel.h"

#include "../elem.h"
#include "../packed.h"

#include <algorithm>
#include <utility>
#include <vector>

namespace swapkern {
namespace {

// Below this many element exchanges a call stays on one thread (waking a second one costs microseconds).
constexpr int64_t kGrain = 32768;
constexpr int64_t kScatteredGrain = 2048;
// Pairs fetched ahead: random slices (elements of a large weight, pixels of a batch) are cache misses, and a
// prefetch this far ahead keeps several of them in flight.
constexpr int64_t kAhead = 32;

// Exchanges elements [m, stop) (row-major over the slice geometry) of the slices at xs and ys.
template <typename T>
void swap_range(const Plan& p, T* xs, T* ys, int64_t m, int64_t stop) {
  if (p.ndim == 0) {
    std::swap(*xs, *ys);
    return;
  }
  const int last = p.ndim - 1;
  int64_t c[kMaxDims];
  int64_t ox = 0, oy = 0, rest = m;
  for (int d = last; d >= 0; --d) {
    c[d] = rest % p.sizes[d];
    rest /= p.sizes[d];
    ox += c[d] * p.strides_x[d];
    oy += c[d] * p.strides_y[d];
  }
  const int64_t sx = p.strides_x[last], sy = p.strides_y[last], n = p.sizes[last];
  for (int64_t i = m; i < stop;) {
    const int64_t len = std::min(n - c[last], stop - i);
    T* px = xs + ox;
    T* py = ys + oy;
    if (sx == 1 && sy == 1) {
      std::swap_ranges(px, px + len, py);
    } else {
      for (int64_t r = 0; r < len; ++r) std::swap(px[r * sx], py[r * sy]);
    }
    i += len;
    c[last] += len;
    ox += len * sx;
    oy += len * sy;
    for (int d = last; d > 0 && c[d] == p.sizes[d]; --d) {  // carry into outer dims
      ox += p.strides_x[d - 1] - c[d] * p.strides_x[d];
      oy += p.strides_y[d - 1] - c[d] * p.strides_y[d];
      c[d] = 0;
      ++c[d - 1];
    }
  }
}

inline void prefetch_pair(const Plan& p, int64_t k) {
  __builtin_prefetch(p.x.data + side_offset(p.x, k) * p.elem_size, 1);
  __builtin_prefetch(p.y.data + side_offset(p.y, k) * p.elem_size, 1);
}

// Exchanges [begin, end) of the plan's K * slice_numel element exchanges, in pair-major order.
template <typename T>
void pair_range(const Plan& p, int64_t begin, int64_t end) {
  const int64_t M = p.slice_numel;
  int64_t k = begin / M, m = begin % M;
  const bool small = M <= 64;  // short slices of scattered pairs: fetch the next pairs' first lines early
  const int64_t last = std::min(p.K, (end + M - 1) / M);
  if (small) {
    for (int64_t q = k; q < std::min(k + kAhead, last); ++q) prefetch_pair(p, q);
  }
  for (int64_t w = begin; w < end; ++k, m = 0) {
    const int64_t stop = std::min(M, m + (end - w));
    if (small && k + kAhead < last) prefetch_pair(p, k + kAhead);
    if (pair_active(p, k)) {
      T* xs = reinterpret_cast<T*>(p.x.data) + side_offset(p.x, k);
      T* ys = reinterpret_cast<T*>(p.y.data) + side_offset(p.y, k);
      swap_range<T>(p, xs, ys, m, stop);
    }
    w += stop - m;
  }
}

// Pair-major: work is the K * slice_numel element exchanges, split evenly over threads whatever K and the slice
// size are; each thread walks whole runs of a slice.
template <typename T>
void exchange_by_pair(const Plan& p) {
  // Short slices of scattered pairs are cache misses, each worth many streamed elements: a smaller grain lets a
  // few thousand of them share the threads.
  const int64_t grain = p.slice_numel <= 64 ? kScatteredGrain : kGrain;
  parallel_for(0, p.K * p.slice_numel, grain, [&](int64_t begin, int64_t end) { pair_range<T>(p, begin, end); });
}

void pair_range_any(const Plan& p, int64_t begin, int64_t end) {
  by_width(p.elem_size, [&](auto t) { pair_range<decltype(t)>(p, begin, end); });
}

// The slice elements [begin, end) in row-major order, walked with an odometer (no division per element).
struct Odometer {
  const Plan& p;
  int64_t c[kMaxDims];
  int64_t ox = 0, oy = 0;
  Odometer(const Plan& plan, int64_t m) : p(plan) {
    for (int d = p.ndim - 1; d >= 0; --d) {
      c[d] = m % p.sizes[d];
      m /= p.sizes[d];
      ox += c[d] * p.strides_x[d];
      oy += c[d] * p.strides_y[d];
    }
  }
  void next() {
    for (int d = p.ndim - 1; d >= 0; --d) {
      ox += p.strides_x[d];
      oy += p.strides_y[d];
      if (++c[d] < p.sizes[d] || d == 0) return;
      ox -= c[d] * p.strides_x[d];
      oy -= c[d] * p.strides_y[d];
      c[d] = 0;
    }
  }
};

// Element-major, for slices that interleave in memory (columns of a row-major weight, channels of a channels_last
// batch): the slice elements are the outer loop and the pairs the inner one, so each step works inside one
// contiguous run (a row, a pixel) instead of striding through K slices. Pair offsets are computed once into
// per-thread buffers. Long rows of one tensor whose pairs touch most of their cache lines are staged: read whole
// (sequential, so the prefetcher streams it), exchanged in the buffer, written back whole.
template <typename T>
void exchange_by_element(const Plan& p) {
  const int64_t K = p.K, M = p.slice_numel;
  thread_local std::vector<int64_t> off_x, off_y;
  off_x.resize(K);
  off_y.resize(K);
  for (int64_t k = 0; k < K; ++k) {
    off_x[k] = side_offset(p.x, k);
    off_y[k] = side_offset(p.y, k);
  }
  const int64_t* ox_k = off_x.data();
  const int64_t* oy_k = off_y.data();
  T* const x = reinterpret_cast<T*>(p.x.data);
  T* const y = reinterpret_cast<T*>(p.y.data);
  const int64_t L = p.x.idx_numel, row_bytes = L * static_cast<int64_t>(sizeof(T));
  const bool stage = p.x.data == p.y.data && p.x.idx_ndim == 1 && p.y.idx_ndim == 1 && p.x.idx_strides[0] == 1 &&
                     p.y.idx_strides[0] == 1 && p.x.sample == nullptr && row_bytes >= 4096 && row_bytes <= (1 << 16) &&
                     2 * K * 64 >= row_bytes && std::equal(p.strides_x, p.strides_x + p.ndim, p.strides_y);
  parallel_for(0, M, std::max<int64_t>(1, kGrain / std::max<int64_t>(K, 1)), [&](int64_t begin, int64_t end) {
    Odometer od(p, begin);
    thread_local std::vector<T> row;
    if (stage) row.resize(L);
    for (int64_t m = begin; m < end; ++m, od.next()) {
      if (stage) {
        T* r = x + od.ox;  // the row: positions [0, L) of the index dim, contiguous
        std::copy(r, r + L, row.data());
        for (int64_t k = 0; k < K; ++k) std::swap(row[ox_k[k]], row[oy_k[k]]);
        std::copy(row.data(), row.data() + L, r);
      } else {
        T* rx = x + od.ox;
        T* ry = y + od.oy;
        for (int64_t k = 0; k < K; ++k) std::swap(rx[ox_k[k]], ry[oy_k[k]]);
      }
    }
  });
}

template <typename T>
void exchange(const Plan& p) {
  if (interleaved(p)) {
    exchange_by_element<T>(p);
  } else {
    exchange_by_pair<T>(p);
  }
}

}  // namespace

void exchange_cpu(const Plan& p) {
  by_width(p.elem_size, [&](auto t) { exchange<decltype(t)>(p); });
}

// Many plans (a whole model's exchanges) in one parallel loop over all their work.
void exchange_packed_cpu(const Plan* plans, const int64_t* prefix, int64_t n) {
  parallel_for(0, prefix[n], kGrain, [&](int64_t begin, int64_t end) {
    int64_t j = std::upper_bound(prefix, prefix + n + 1, begin) - prefix - 1;
    for (; begin < end && j < n; ++j) {
      const int64_t stop = std::min(end, prefix[j + 1]);
      if (stop > begin) pair_range_any(plans[j], begin - prefix[j], stop - prefix[j]);
      begin = std::max(begin, stop);
    }
  });
}


}  // namespace swapkern
