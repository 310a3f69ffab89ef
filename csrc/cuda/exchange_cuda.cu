// CUDA backend: the core exchange as one launch on the current stream, and the CUDA registrations of every op.
// No host sync and no allocation here: with validate=false and int64 indices already on the device, a call is
// capturable in a CUDA graph.
#include "../ops_impl.h"

#include <c10/cuda/CUDAException.h>
#include <c10/cuda/CUDAGuard.h>
#include <c10/cuda/CUDAStream.h>

#include <algorithm>

namespace swapkern {
namespace {

constexpr int kThreads = 256;
constexpr int kVecBytes = 16;

struct alignas(16) Bytes16 {
  uint64_t lo, hi;
};

template <typename T>
__device__ __forceinline__ void swap_one(T* a, T* b) {
  const T t = *a;
  *a = *b;
  *b = t;
}

// Element offset of element m of a slice (row-major over the coalesced slice geometry), in x and in y.
__device__ __forceinline__ void slice_offsets(const Plan& p, int64_t m, int64_t& ox, int64_t& oy) {
  ox = 0;
  oy = 0;
#pragma unroll
  for (int d = kMaxDims - 1; d >= 0; --d) {
    if (d < p.ndim) {
      const int64_t c = m % p.sizes[d];
      m /= p.sizes[d];
      ox += c * p.strides_x[d];
      oy += c * p.strides_y[d];
    }
  }
}

// Unit j of a slice pair. Contiguous slices: a unit is 16 bytes (one wide load and store per side when both
// addresses are aligned, element by element otherwise). Strided slices: a unit is one element.
template <typename T, bool kContiguous>
__device__ __forceinline__ void swap_unit(const Plan& p, T* xs, T* ys, int64_t j) {
  if constexpr (kContiguous) {
    constexpr int V = kVecBytes / sizeof(T);
    const int64_t m0 = j * V;
    const int64_t n = p.slice_numel - m0 < V ? p.slice_numel - m0 : V;
    T* px = xs + m0;
    T* py = ys + m0;
    if (n == V && ((reinterpret_cast<uintptr_t>(px) | reinterpret_cast<uintptr_t>(py)) % kVecBytes) == 0) {
      swap_one(reinterpret_cast<uint4*>(px), reinterpret_cast<uint4*>(py));
    } else {
      for (int64_t r = 0; r < n; ++r) swap_one(px + r, py + r);
    }
  } else {
    int64_t ox, oy;
    slice_offsets(p, j, ox, oy);
    swap_one(xs + ox, ys + oy);
  }
}

template <typename T, bool kContiguous>
__host__ __device__ constexpr int64_t units_per_slice(int64_t m) {
  return kContiguous ? (m + kVecBytes / static_cast<int64_t>(sizeof(T)) - 1) / (kVecBytes / sizeof(T)) : m;
}

// Many small slices: one flat grid-stride loop over all K * units, so tiny pairs still fill the chip.
template <typename T, bool kContiguous>
__global__ void __launch_bounds__(kThreads) exchange_flat(const Plan p) {
  const int64_t U = units_per_slice<T, kContiguous>(p.slice_numel);
  const int64_t total = p.K * U;
  for (int64_t w = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; w < total;
       w += static_cast<int64_t>(gridDim.x) * blockDim.x) {
    const int64_t k = w / U, j = w - k * U;
    T* xs = reinterpret_cast<T*>(p.x.data) + side_offset(p.x, k);
    T* ys = reinterpret_cast<T*>(p.y.data) + side_offset(p.y, k);
    swap_unit<T, kContiguous>(p, xs, ys, j);
  }
}

// Large slices: blocks along y walk the pairs, blocks along x walk the units of one pair, so the slice base
// offsets are computed once per block and pair, not per element.
template <typename T, bool kContiguous>
__global__ void __launch_bounds__(kThreads) exchange_by_pair(const Plan p) {
  const int64_t U = units_per_slice<T, kContiguous>(p.slice_numel);
  for (int64_t k = blockIdx.y; k < p.K; k += gridDim.y) {
    T* xs = reinterpret_cast<T*>(p.x.data) + side_offset(p.x, k);
    T* ys = reinterpret_cast<T*>(p.y.data) + side_offset(p.y, k);
    for (int64_t j = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; j < U;
         j += static_cast<int64_t>(gridDim.x) * blockDim.x) {
      swap_unit<T, kContiguous>(p, xs, ys, j);
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

template <typename T, bool kContiguous>
void launch(const Plan& p, int device, cudaStream_t stream) {
  const int64_t U = units_per_slice<T, kContiguous>(p.slice_numel);
  const int64_t max_blocks = static_cast<int64_t>(sm_count(device)) * 16;
  if (U >= kThreads) {
    const int64_t per_pair = std::min<int64_t>((U + kThreads - 1) / kThreads, max_blocks);
    const int64_t pairs = std::min<int64_t>({p.K, std::max<int64_t>(max_blocks / per_pair, 1), 65535});
    exchange_by_pair<T, kContiguous>
        <<<dim3(static_cast<unsigned>(per_pair), static_cast<unsigned>(pairs)), kThreads, 0, stream>>>(p);
  } else {
    const int64_t blocks = std::min<int64_t>((p.K * U + kThreads - 1) / kThreads, max_blocks);
    exchange_flat<T, kContiguous><<<static_cast<unsigned>(blocks), kThreads, 0, stream>>>(p);
  }
  C10_CUDA_KERNEL_LAUNCH_CHECK();
}

template <typename T>
void dispatch_layout(const Plan& p, int device, cudaStream_t stream) {
  const bool contiguous = p.ndim == 0 || (p.ndim == 1 && p.strides_x[0] == 1 && p.strides_y[0] == 1);
  if (contiguous) {
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
  switch (p.elem_size) {
    case 1: return dispatch_layout<uint8_t>(p, device, stream);
    case 2: return dispatch_layout<uint16_t>(p, device, stream);
    case 4: return dispatch_layout<uint32_t>(p, device, stream);
    case 8: return dispatch_layout<uint64_t>(p, device, stream);
    case 16: return dispatch_layout<Bytes16>(p, device, stream);
    default: TORCH_CHECK_TYPE(false, "swapkern: unsupported element size ", p.elem_size);
  }
}

TORCH_LIBRARY_IMPL(swapkern, CUDA, m) { register_all<exchange_cuda>(m); }

}  // namespace swapkern
