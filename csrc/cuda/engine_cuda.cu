// CUDA launchers of the multi-tensor engine: one thread per group draws its pairs into the index buffer, then one
// packed exchange per wave (csrc/cuda/exchange_cuda.cu), all on the current stream with no host sync.
#include "launchers.h"

#include <c10/cuda/CUDAException.h>
#include <c10/cuda/CUDAGuard.h>
#include <c10/cuda/CUDAStream.h>

namespace swapkern {
namespace {

constexpr int kThreads = 128;

__global__ void __launch_bounds__(kThreads)
    draw_groups(const int64_t* table, int64_t groups, int64_t* buf, uint64_t seed, uint64_t step) {
  const int64_t g = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
  if (g >= groups) return;
  const WeightDraw row = reinterpret_cast<const WeightDraw*>(table)[g];
  draw_weight_group(row, table, buf, seed, step);
}

// The engine's device buffers are read by kernels on the current stream: if that is not the stream they were
// allocated on, the caching allocator must not hand them out again (a repack frees them) before those kernels end.
void keep_for_stream(const Engine& e, const Wave* w) {
  const c10::Stream stream = c10::cuda::getCurrentCUDAStream(e.index.device().index());
  e.index.record_stream(stream);
  e.table.record_stream(stream);
  if (w != nullptr) w->device_meta.record_stream(stream);
}

}  // namespace

void engine_draw_cuda(const Engine& e, uint64_t seed, uint64_t step) {
  if (e.groups == 0) return;
  const c10::cuda::CUDAGuard guard(e.index.device());
  const cudaStream_t stream = c10::cuda::getCurrentCUDAStream(e.index.device().index()).stream();
  const unsigned blocks = static_cast<unsigned>((e.groups + kThreads - 1) / kThreads);
  keep_for_stream(e, nullptr);
  draw_groups<<<blocks, kThreads, 0, stream>>>(e.table.data_ptr<int64_t>(), e.groups, e.index.data_ptr<int64_t>(),
                                               seed, step);
  C10_CUDA_KERNEL_LAUNCH_CHECK();
}

void engine_apply_cuda(const Engine& e, const Wave& w) {
  const int64_t n = static_cast<int64_t>(w.plans.size());
  if (n == 0 || w.prefix.back() == 0) return;
  keep_for_stream(e, &w);
  exchange_packed_cuda(w.device_meta.data_ptr<uint8_t>(), n, w.prefix.back(), e.index.device().index());
}

}  // namespace swapkern
