// CUDA kernels of the core exchange and their launcher: one launch on the current stream, under the tensors'
// device guard. No host sync and no allocation: with validate=false and int64 indices already on the device, a
// call is capturable in a CUDA graph.
//
// Three shapes of work, chosen on the host:
// - rows: slices made of contiguous rows. When every row starts 16-byte aligned and is whole 16-byte units, a
//   unit is 16 bytes (uint4); else one element. Each thread moves kUnroll units spaced a block apart, issuing all
//   its loads before its stores, so several 16-byte requests per thread are in flight.
// - tiled: interleaved slices of one tensor (columns of a row-major weight, channels of a channels_last batch):
//   the pairs sit inside short contiguous rows (the index dim, stride 1). A block stages a tile of whole rows in
//   shared memory with coalesced loads, exchanges every pair of every row there, and writes the tile back
//   coalesced: row-sized traffic instead of one scattered sector per element.
// - flat: everything else (strided slices, few or tiny pairs): a grid-stride loop over all element exchanges.
#include "launchers.h"
#include "stream.h"

#include "../elem.h"
#include "../packed.h"

#include <algorithm>
#include <atomic>

namespace swapkern {
namespace {

constexpr int kThreads = 256;
constexpr int kUnroll = 4;
constexpr int kVecBytes = 16;
constexpr int64_t kTileBytes = 32 * 1024;  // shared memory per block for the tiled kernel (no opt-in needed)

template <typename T>
__device__ __forceinline__ void swap_one(T* a, T* b) {
  const T t = *a;
  *a = *b;
  *b = t;
}

// Adds the offsets (in x and in y) of position m of the first nd dims of the slice geometry, row-major.
__device__ __forceinline__ void add_offsets(const Plan& p, int nd, int64_t m, int64_t& ox, int64_t& oy) {
#pragma unroll
  for (int d = kMaxDims - 1; d >= 0; --d) {
    if (d < nd) {
      const int64_t c = m % p.sizes[d];
      m /= p.sizes[d];
      ox += c * p.strides_x[d];
      oy += c * p.strides_y[d];
    }
  }
}

// Element offsets of unit j of a slice: U units per slice. kRows: rows of `inner` contiguous elements, `per_row`
// units of V elements each (V = 1 unless the rows are 16-byte aligned); else one element at any strides.
template <bool kRows>
__device__ __forceinline__ void unit_offsets(const Plan& p, int64_t j, int64_t per_row, int V, int64_t& ox,
                                             int64_t& oy) {
  if constexpr (kRows) {
    const int64_t row = j / per_row;
    ox = oy = (j - row * per_row) * V;
    add_offsets(p, p.ndim - 1, row, ox, oy);
  } else {
    ox = oy = 0;
    add_offsets(p, p.ndim, j, ox, oy);
  }
}

// Large slices: blocks along y walk the pairs, blocks along x walk a slice's units, kUnroll per thread.
// U: W units per slice, moved as type W (uint4 for aligned rows, T otherwise).
template <typename W, bool kRows>
__global__ void __launch_bounds__(kThreads)
    exchange_units(const Plan p, int64_t U, int64_t per_row, int V) {
  const int64_t stride = static_cast<int64_t>(gridDim.x) * blockDim.x * kUnroll;
  for (int64_t k = blockIdx.y; k < p.K; k += gridDim.y) {
    char* xs = p.x.data + side_offset(p.x, k) * p.elem_size;
    char* ys = p.y.data + side_offset(p.y, k) * p.elem_size;
    for (int64_t j0 = static_cast<int64_t>(blockIdx.x) * blockDim.x * kUnroll + threadIdx.x; j0 < U; j0 += stride) {
      W* px[kUnroll];
      W* py[kUnroll];
      W vx[kUnroll], vy[kUnroll];
#pragma unroll
      for (int u = 0; u < kUnroll; ++u) {  // every load first...
        const int64_t j = j0 + static_cast<int64_t>(u) * blockDim.x;
        px[u] = py[u] = nullptr;
        if (j < U) {
          int64_t ox, oy;
          unit_offsets<kRows>(p, j, per_row, V, ox, oy);
          px[u] = reinterpret_cast<W*>(xs + ox * p.elem_size);
          py[u] = reinterpret_cast<W*>(ys + oy * p.elem_size);
          vx[u] = *px[u];
          vy[u] = *py[u];
        }
      }
#pragma unroll
      for (int u = 0; u < kUnroll; ++u) {  // ...then every store
        if (px[u] != nullptr) {
          *px[u] = vy[u];
          *py[u] = vx[u];
        }
      }
    }
  }
}

// Many small slices: one flat grid-stride loop over all K * U units, so tiny pairs still fill the chip (units of
// W as exchange_units takes them); kPairsInner (interleaved slices the tiled kernel does not take): neighbouring
// threads take neighbouring pairs at the same unit, so a warp works inside one row.
template <typename W, bool kRows, bool kPairsInner>
__global__ void __launch_bounds__(kThreads) exchange_flat(const Plan p, int64_t U, int64_t per_row, int V) {
  const int64_t total = p.K * U;
  for (int64_t w = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; w < total;
       w += static_cast<int64_t>(gridDim.x) * blockDim.x) {
    int64_t k, j;
    if constexpr (kPairsInner) {
      j = w / p.K;
      k = w - j * p.K;
    } else {
      k = w / U;
      j = w - k * U;
    }
    int64_t ox, oy;
    unit_offsets<kRows>(p, j, per_row, V, ox, oy);
    ox += side_offset(p.x, k);
    oy += side_offset(p.y, k);
    swap_one(reinterpret_cast<W*>(p.x.data + ox * p.elem_size), reinterpret_cast<W*>(p.y.data + oy * p.elem_size));
  }
}

// Bytes of the tiled kernel's row-offset table, rounded up so that the tile after it is 16-byte aligned.
__host__ __device__ inline size_t tile_head(int tile_rows) { return (static_cast<size_t>(tile_rows) * 8 + 15) & ~15ull; }

// Interleaved slices of one tensor, staged in shared memory: a "row" is one slice element m, and holds the whole
// index dim (L positions, stride 1) at the offset of m. tile_rows rows per block step. Whole rows are written back
// (coalesced), the untouched positions with the values they had: like any in-place op, it must not run beside
// another writer of the same rows on another stream.
template <typename T>
__global__ void __launch_bounds__(kThreads) exchange_tiled(const Plan p, int64_t rows, int tile_rows) {
  extern __shared__ __align__(16) unsigned char smem[];
  int64_t* row_off = reinterpret_cast<int64_t*>(smem);
  T* tile = reinterpret_cast<T*>(smem + tile_head(tile_rows));
  T* data = reinterpret_cast<T*>(p.x.data);
  const int L = static_cast<int>(p.x.idx_numel);
  const int K = static_cast<int>(p.K);
  for (int64_t r0 = static_cast<int64_t>(blockIdx.x) * tile_rows; r0 < rows;
       r0 += static_cast<int64_t>(gridDim.x) * tile_rows) {
    const int nr = static_cast<int>(rows - r0 < tile_rows ? rows - r0 : tile_rows);
    for (int r = threadIdx.x; r < nr; r += blockDim.x) {
      int64_t ox = 0, oy = 0;
      add_offsets(p, p.ndim, r0 + r, ox, oy);
      row_off[r] = ox;
    }
    __syncthreads();
    for (int i = threadIdx.x; i < nr * L; i += blockDim.x) tile[i] = data[row_off[i / L] + i % L];
    __syncthreads();
    for (int i = threadIdx.x; i < nr * K; i += blockDim.x) {  // pairs are disjoint: no two threads meet
      const int r = i / K, k = i % K;
      const int64_t a = wrap_index(p.x.idx[k], L), b = wrap_index(p.y.idx[k], L);
      if (a < 0 || a >= L || b < 0 || b >= L) continue;  // validate=false with a bad index: stay inside the tile
      T* row = tile + static_cast<int64_t>(r) * L;
      swap_one(row + a, row + b);
    }
    __syncthreads();
    for (int i = threadIdx.x; i < nr * L; i += blockDim.x) data[row_off[i / L] + i % L] = tile[i];
    __syncthreads();
  }
}

// Many plans in one launch (a whole model's weight swaps): a flat grid-stride loop over all their element
// exchanges; each thread finds its plan by binary search of the work prefix, then moves elem_size bytes.
__global__ void __launch_bounds__(kThreads) exchange_packed(const uint8_t* meta, int64_t n, int64_t total) {
  const Plan* plans = reinterpret_cast<const Plan*>(meta + sizeof(int64_t));
  const int64_t* prefix = packed_prefix(meta, n);
  for (int64_t w = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; w < total;
       w += static_cast<int64_t>(gridDim.x) * blockDim.x) {
    int64_t lo = 0, hi = n;  // prefix[lo] <= w < prefix[hi]
    while (hi - lo > 1) {
      const int64_t mid = (lo + hi) / 2;
      if (prefix[mid] <= w) {
        lo = mid;
      } else {
        hi = mid;
      }
    }
    const Plan& p = plans[lo];
    const int64_t local = w - prefix[lo], k = local / p.slice_numel;
    if (!pair_active(p, k)) continue;
    int64_t ox = side_offset(p.x, k), oy = side_offset(p.y, k);
    add_offsets(p, p.ndim, local - k * p.slice_numel, ox, oy);
    swap_width(p.x.data + ox * p.elem_size, p.y.data + oy * p.elem_size, p.elem_size);
  }
}

int sm_count(int device) {
  static std::atomic<int> cache[64] = {};
  if (device < 0 || device >= 64) return 132;
  int n = cache[device].load(std::memory_order_relaxed);
  if (n == 0) {
    STD_CUDA_CHECK(cudaDeviceGetAttribute(&n, cudaDevAttrMultiProcessorCount, device));
    cache[device].store(n, std::memory_order_relaxed);
  }
  return n;
}

// Whether every row of every slice starts 16-byte aligned in x and y and is whole 16-byte units.
bool rows_aligned(const Plan& p) {
  const int64_t V = kVecBytes / p.elem_size;
  if (V <= 1 || p.sizes[p.ndim - 1] % V != 0) return false;
  if (reinterpret_cast<uintptr_t>(p.x.data) % kVecBytes || reinterpret_cast<uintptr_t>(p.y.data) % kVecBytes) {
    return false;
  }
  for (int d = 0; d + 1 < p.ndim; ++d) {
    if (p.strides_x[d] % V || p.strides_y[d] % V) return false;
  }
  for (const Side* s : {&p.x, &p.y}) {
    for (int d = 0; d < s->idx_ndim; ++d) {
      if (s->idx_strides[d] % V) return false;
    }
    if (s->sample != nullptr && s->sample_stride % V) return false;
  }
  return true;
}

// The tiled kernel takes interleaved pairs of one tensor inside rows that fit a tile, when they are dense enough
// that moving whole rows costs no more than touching a 32-byte sector per element.
int tile_rows_for(const Plan& p) {
  const bool one_tensor = p.x.data == p.y.data && p.x.idx_ndim == 1 && p.y.idx_ndim == 1 &&
                          p.x.idx_strides[0] == 1 && p.y.idx_strides[0] == 1 && p.x.idx_numel == p.y.idx_numel &&
                          p.x.sample == nullptr && std::equal(p.strides_x, p.strides_x + p.ndim, p.strides_y);
  const int64_t row_bytes = p.x.idx_numel * p.elem_size;
  if (!one_tensor || p.ndim == 0 || row_bytes + 24 > kTileBytes || p.K > p.x.idx_numel) return 0;
  if (2 * p.K * 32 < row_bytes) return 0;  // sparse pairs: touch their sectors only
  return static_cast<int>(std::min<int64_t>((kTileBytes - 16) / (row_bytes + 8), p.slice_numel));
}

// Units of a slice: 16 bytes when its rows allow (rows_aligned), else elements; returns (U, per_row, V).
struct Units {
  bool rows, vec;
  int V;
  int64_t per_row, U;
};
Units units_of(const Plan& p) {
  Units u;
  u.rows = p.ndim >= 1 && p.strides_x[p.ndim - 1] == 1 && p.strides_y[p.ndim - 1] == 1;
  u.vec = u.rows && rows_aligned(p);
  u.V = u.vec ? kVecBytes / p.elem_size : 1;
  const int64_t inner = u.rows ? p.sizes[p.ndim - 1] : 1;
  u.per_row = u.rows ? inner / u.V : 1;
  u.U = u.rows ? p.slice_numel / inner * u.per_row : p.slice_numel;
  return u;
}

template <typename T>
void launch(const Plan& p, int device, cudaStream_t stream) {
  const int64_t max_blocks = static_cast<int64_t>(sm_count(device)) * 16;
  const auto blocks_for = [&](int64_t work) { return std::min<int64_t>((work + kThreads - 1) / kThreads, max_blocks); };
  if (interleaved(p)) {
    if (const int tile = tile_rows_for(p); tile > 0) {
      const size_t smem = tile_head(tile) + static_cast<size_t>(tile) * p.x.idx_numel * sizeof(T);
      const int64_t blocks = std::min<int64_t>((p.slice_numel + tile - 1) / tile, max_blocks);
      SK_LAUNCH(static_cast<unsigned>(blocks), kThreads, smem, stream, exchange_tiled<T>)(p, p.slice_numel, tile);
    } else {
      const unsigned blocks = static_cast<unsigned>(blocks_for(p.K * p.slice_numel));
      SK_LAUNCH(blocks, kThreads, 0, stream, exchange_flat<T, false, true>)(p, p.slice_numel, 1, 1);
    }
    STD_CUDA_KERNEL_LAUNCH_CHECK();
    return;
  }
  const Units u = units_of(p);
  if (u.U >= kThreads) {  // large slices: a pair per block row, kUnroll units per thread
    const int64_t per_pair = std::min<int64_t>((u.U + kThreads * kUnroll - 1) / (kThreads * kUnroll), max_blocks);
    const int64_t pairs = std::min<int64_t>({p.K, std::max<int64_t>(max_blocks / per_pair, 1), 65535});
    const dim3 grid(static_cast<unsigned>(per_pair), static_cast<unsigned>(pairs));
    if (u.vec) {
      SK_LAUNCH(grid, kThreads, 0, stream, exchange_units<uint4, true>)(p, u.U, u.per_row, u.V);
    } else if (u.rows) {
      SK_LAUNCH(grid, kThreads, 0, stream, exchange_units<T, true>)(p, u.U, u.per_row, 1);
    } else {
      SK_LAUNCH(grid, kThreads, 0, stream, exchange_units<T, false>)(p, u.U, 1, 1);
    }
  } else {  // small slices: one flat loop over every unit of every pair
    const unsigned blocks = static_cast<unsigned>(blocks_for(p.K * u.U));
    if (u.vec) {
      SK_LAUNCH(blocks, kThreads, 0, stream, exchange_flat<uint4, true, false>)(p, u.U, u.per_row, u.V);
    } else if (u.rows) {
      SK_LAUNCH(blocks, kThreads, 0, stream, exchange_flat<T, true, false>)(p, u.U, u.per_row, 1);
    } else {
      SK_LAUNCH(blocks, kThreads, 0, stream, exchange_flat<T, false, false>)(p, u.U, 1, 1);
    }
  }
  STD_CUDA_KERNEL_LAUNCH_CHECK();
}

}  // namespace

void exchange_cuda(const Plan& p) {
  const OnDevice on(p.device_index);
  const int device = p.device_index;
  const cudaStream_t stream = current_stream(device);
  by_width(p.elem_size, [&](auto t) { launch<decltype(t)>(p, device, stream); });
}

void exchange_packed_cuda(const uint8_t* meta, int64_t n, int64_t total, int device) {
  const OnDevice on(device);
  const cudaStream_t stream = current_stream(device);
  const int64_t blocks = std::min<int64_t>((total + kThreads - 1) / kThreads, static_cast<int64_t>(sm_count(device)) * 16);
  SK_LAUNCH(static_cast<unsigned>(blocks), kThreads, 0, stream, exchange_packed)(meta, n, total);
  STD_CUDA_KERNEL_LAUNCH_CHECK();
}

}  // namespace swapkern
