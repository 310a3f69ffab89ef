// CUDA backend: the core exchange as one launch on the current stream, and the CUDA registrations of every op.
// No host sync and no allocation here: with validate=false and int64 indices already on the device, a call is
// capturable in a CUDA graph.
#include "launchers.h"

#include "../elem.h"
#include "../packed.h"

#include <c10/cuda/CUDAException.h>
#include <c10/cuda/CUDAGuard.h>
#include <c10/cuda/CUDAStream.h>

#include <algorithm>

namespace swapkern {
namespace {

constexpr int kThreads = 256;
constexpr int kVecBytes = 16;

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

// Unit j of a slice pair.
// kRows: the slice's innermost dim has stride 1 in x and in y, so the slice is rows of contiguous elements;
//   a unit is 16 bytes of a row (one wide load and store per side when both addresses are aligned, element by
//   element otherwise), and the row's offset costs one division per 16 bytes, not per element.
// Otherwise a unit is one element at any strides.
template <typename T, bool kRows>
__device__ __forceinline__ void swap_unit(const Plan& p, T* xs, T* ys, int64_t j, int64_t per_row) {
  if constexpr (kRows) {
    constexpr int64_t V = kVecBytes / sizeof(T);
    const int64_t inner = p.sizes[p.ndim - 1];
    const int64_t row = j / per_row;
    const int64_t c = (j - row * per_row) * V;
    int64_t ox = c, oy = c;
    add_offsets(p, p.ndim - 1, row, ox, oy);
    const int64_t n = inner - c < V ? inner - c : V;
    T* px = xs + ox;
    T* py = ys + oy;
    if (n == V && ((reinterpret_cast<uintptr_t>(px) | reinterpret_cast<uintptr_t>(py)) % kVecBytes) == 0) {
      swap_one(reinterpret_cast<uint4*>(px), reinterpret_cast<uint4*>(py));
    } else {
      for (int64_t r = 0; r < n; ++r) swap_one(px + r, py + r);
    }
  } else {
    int64_t ox = 0, oy = 0;
    add_offsets(p, p.ndim, j, ox, oy);
    swap_one(xs + ox, ys + oy);
  }
}

// Many small slices: one flat grid-stride loop over all K * U units, so tiny pairs still fill the chip.
// kPairsInner (interleaved slices, e.g. columns): neighbouring threads take neighbouring pairs at the same unit,
// so a warp works inside one row and the cache lines it loads serve the other pairs of that row.
template <typename T, bool kRows, bool kPairsInner>
__global__ void __launch_bounds__(kThreads) exchange_flat(const Plan p, int64_t U, int64_t per_row) {
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
    T* xs = reinterpret_cast<T*>(p.x.data) + side_offset(p.x, k);
    T* ys = reinterpret_cast<T*>(p.y.data) + side_offset(p.y, k);
    swap_unit<T, kRows>(p, xs, ys, j, per_row);
  }
}

// Large slices: blocks along y walk the pairs, blocks along x walk the units of one pair, so the slice base
// offsets are computed once per block and pair, not per element.
template <typename T, bool kRows>
__global__ void __launch_bounds__(kThreads) exchange_by_pair(const Plan p, int64_t U, int64_t per_row) {
  for (int64_t k = blockIdx.y; k < p.K; k += gridDim.y) {
    T* xs = reinterpret_cast<T*>(p.x.data) + side_offset(p.x, k);
    T* ys = reinterpret_cast<T*>(p.y.data) + side_offset(p.y, k);
    for (int64_t j = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; j < U;
         j += static_cast<int64_t>(gridDim.x) * blockDim.x) {
      swap_unit<T, kRows>(p, xs, ys, j, per_row);
    }
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
    switch (p.elem_size) {
      case 1: swap_one(reinterpret_cast<uint8_t*>(p.x.data) + ox, reinterpret_cast<uint8_t*>(p.y.data) + oy); break;
      case 2: swap_one(reinterpret_cast<uint16_t*>(p.x.data) + ox, reinterpret_cast<uint16_t*>(p.y.data) + oy); break;
      case 4: swap_one(reinterpret_cast<uint32_t*>(p.x.data) + ox, reinterpret_cast<uint32_t*>(p.y.data) + oy); break;
      case 8: swap_one(reinterpret_cast<uint64_t*>(p.x.data) + ox, reinterpret_cast<uint64_t*>(p.y.data) + oy); break;
      default: swap_one(reinterpret_cast<Bytes16*>(p.x.data) + ox, reinterpret_cast<Bytes16*>(p.y.data) + oy);
    }
  }
}

int sm_count(int device) {
  static int cache[64] = {};
  if (device < 0 || device >= 64) return 132;
  if (cache[device] == 0) {
    int n = 0;
    C10_CUDA_CHECK(cudaDeviceGetAttribute(&n, cudaDevAttrMultiProcessorCount, device));
    cache[device] = n;
  }
  return cache[device];
}

template <typename T, bool kRows>
void launch(const Plan& p, int device, cudaStream_t stream) {
  constexpr int64_t V = kVecBytes / sizeof(T);
  int64_t per_row = 1, U = p.slice_numel;
  if constexpr (kRows) {
    const int64_t inner = p.sizes[p.ndim - 1];
    per_row = (inner + V - 1) / V;
    U = p.slice_numel / inner * per_row;
  }
  const int64_t max_blocks = static_cast<int64_t>(sm_count(device)) * 16;
  if (!kRows && interleaved(p)) {
    const int64_t blocks = std::min<int64_t>((p.K * U + kThreads - 1) / kThreads, max_blocks);
    exchange_flat<T, false, true><<<static_cast<unsigned>(blocks), kThreads, 0, stream>>>(p, U, per_row);
  } else if (U >= kThreads) {
    const int64_t per_pair = std::min<int64_t>((U + kThreads - 1) / kThreads, max_blocks);
    const int64_t pairs = std::min<int64_t>({p.K, std::max<int64_t>(max_blocks / per_pair, 1), 65535});
    exchange_by_pair<T, kRows>
        <<<dim3(static_cast<unsigned>(per_pair), static_cast<unsigned>(pairs)), kThreads, 0, stream>>>(p, U, per_row);
  } else {
    const int64_t blocks = std::min<int64_t>((p.K * U + kThreads - 1) / kThreads, max_blocks);
    exchange_flat<T, kRows, false><<<static_cast<unsigned>(blocks), kThreads, 0, stream>>>(p, U, per_row);
  }
  C10_CUDA_KERNEL_LAUNCH_CHECK();
}

template <typename T>
void dispatch_layout(const Plan& p, int device, cudaStream_t stream) {
  const bool rows = p.ndim >= 1 && p.strides_x[p.ndim - 1] == 1 && p.strides_y[p.ndim - 1] == 1;
  if (rows) {
    launch<T, true>(p, device, stream);
  } else {
    launch<T, false>(p, device, stream);
  }
}

}  // namespace

void exchange_cuda(const Plan& p) {
  const c10::cuda::CUDAGuard guard(static_cast<c10::DeviceIndex>(p.device_index));
  const int device = p.device_index;
  const cudaStream_t stream = c10::cuda::getCurrentCUDAStream(device).stream();
  by_width(p.elem_size, [&](auto t) { dispatch_layout<decltype(t)>(p, device, stream); });
}

void exchange_packed_cuda(const uint8_t* meta, int64_t n, int64_t total, int device) {
  const c10::cuda::CUDAGuard guard(static_cast<c10::DeviceIndex>(device));
  const cudaStream_t stream = c10::cuda::getCurrentCUDAStream(device).stream();
  const int64_t blocks = std::min<int64_t>((total + kThreads - 1) / kThreads, static_cast<int64_t>(sm_count(device)) * 16);
  exchange_packed<<<static_cast<unsigned>(blocks), kThreads, 0, stream>>>(meta, n, total);
  C10_CUDA_KERNEL_LAUNCH_CHECK();
}

}  // namespace swapkern
