// CUDA fused loader: one grid-stride kernel over the output in its memory order, on the current stream.
#include "launchers.h"
#include "stream.h"

#include <torch/headeronly/util/BFloat16.h>
#include <torch/headeronly/util/Half.h>

#include <algorithm>

namespace swapkern {
namespace {

constexpr int kThreads = 256;

template <typename Out, typename I>
__global__ void __launch_bounds__(kThreads) load_kernel(const LoadParams p) {
  const I total = static_cast<I>(p.B * p.C * p.H * p.W);
  Out* out = static_cast<Out*>(p.out);
  for (I t = static_cast<I>(blockIdx.x) * blockDim.x + threadIdx.x; t < total;
       t += static_cast<I>(gridDim.x) * blockDim.x) {
    I n, c, h, w;
    output_coords<I>(p, t, n, c, h, w);
    I src_c = c;
    const int64_t src = source_offset<I>(p, n, src_c, h, w);
    // Two roundings, as the reference computes it: no fused multiply-add.
    const float v = __fadd_rn(__fmul_rn(static_cast<float>(p.data[src]), p.scale[src_c]), p.shift[src_c]);
    out[static_cast<int64_t>(n) * p.out_strides[0] + static_cast<int64_t>(c) * p.out_strides[1] +
        static_cast<int64_t>(h) * p.out_strides[2] + static_cast<int64_t>(w) * p.out_strides[3]] = Out(v);
  }
}

template <typename Out>
void launch(const LoadParams& p) {
  int sms = 0;
  STD_CUDA_CHECK(cudaDeviceGetAttribute(&sms, cudaDevAttrMultiProcessorCount, p.device_index));
  const int64_t total = p.B * p.C * p.H * p.W;
  const int64_t blocks = std::min<int64_t>((total + kThreads - 1) / kThreads, static_cast<int64_t>(sms) * 16);
  const cudaStream_t stream = current_stream(p.device_index);
  // 32-bit coordinates when they fit (the grid-stride step included): the divisions dominate this kernel.
  if (total + static_cast<int64_t>(blocks) * kThreads < (int64_t{1} << 31)) {
    SK_LAUNCH(static_cast<unsigned>(blocks), kThreads, 0, stream, load_kernel<Out, int32_t>)(p);
  } else {
    SK_LAUNCH(static_cast<unsigned>(blocks), kThreads, 0, stream, load_kernel<Out, int64_t>)(p);
  }
  STD_CUDA_KERNEL_LAUNCH_CHECK();
}

}  // namespace

void load_cuda(const LoadParams& p) {
  const OnDevice on(p.device_index);
  switch (p.out_dtype) {
    case 0: return launch<float>(p);
    case 1: return launch<torch::headeronly::Half>(p);
    default: return launch<torch::headeronly::BFloat16>(p);
  }
}

}  // namespace swapkern
