// CUDA launchers of the multi-tensor engine: one thread per group draws its pairs into the index buffer, then one
// packed exchange per wave (csrc/cuda/exchange_cuda.cu), all on the current stream with no host sync.
#include "launchers.h"
#include "stream.h"

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

// The engine's device buffers (index, table, device_meta) are read by kernels on whatever stream is current. The
// stable ABI has no record_stream to tell the caching allocator so; instead the engine records an event on that
// stream after each launch (one reusable event per stream), and engine_release_cuda waits for every stream's event
// before the buffers are let go. A launch on the stream the buffers were allocated on needs no event, but which one
// that was is not known for index (the caller made it), so every stream gets one: a cudaEventRecord per launch,
// no allocation after the first step on a stream. Not while the stream is being captured into a CUDA graph: an
// event recorded then stays "captured" and cannot be waited on; a graph that holds an apply must be destroyed
// before the engine (optim.py says so).
void mark_launched(const Engine& e, int device) {
  const cudaStream_t stream = current_stream(device);
  cudaStreamCaptureStatus capturing = cudaStreamCaptureStatusNone;
  STD_CUDA_CHECK(cudaStreamIsCapturing(stream, &capturing));
  if (capturing != cudaStreamCaptureStatusNone) return;
  for (auto& [s, event] : e.launched) {
    if (s == stream) {
      STD_CUDA_CHECK(cudaEventRecord(static_cast<cudaEvent_t>(event), stream));
      return;
    }
  }
  cudaEvent_t event = nullptr;
  STD_CUDA_CHECK(cudaEventCreateWithFlags(&event, cudaEventDisableTiming));
  e.launched.emplace_back(stream, event);
  STD_CUDA_CHECK(cudaEventRecord(event, stream));
}

}  // namespace

void engine_draw_cuda(const Engine& e, uint64_t seed, uint64_t step) {
  if (e.groups == 0) return;
  const int device = e.index.get_device_index();
  const OnDevice on(device);
  const unsigned blocks = static_cast<unsigned>((e.groups + kThreads - 1) / kThreads);
  SK_LAUNCH(blocks, kThreads, 0, current_stream(device), draw_groups)(data_of<const int64_t>(e.table), e.groups,
                                                                      data_of<int64_t>(e.index), seed, step);
  STD_CUDA_KERNEL_LAUNCH_CHECK();
  mark_launched(e, device);
}

void engine_apply_cuda(const Engine& e, const Wave& w) {
  const int64_t n = static_cast<int64_t>(w.plans.size());
  if (n == 0 || w.prefix.back() == 0) return;
  const int device = e.index.get_device_index();
  const OnDevice on(device);
  exchange_packed_cuda(data_of<const uint8_t>(*w.device_meta), n, w.prefix.back(), device);
  mark_launched(e, device);
}

void engine_release_cuda(Engine& e) noexcept {
  // Runs in ~Engine: waits, then frees the events; errors are dropped (nothing can be raised from a destructor, and
  // at exit the CUDA context may be gone already).
  // A failure is also left as the thread's last CUDA error, which the next launch check (ours or torch's) would
  // report as its own: clear it.
  for (auto& [stream, event] : e.launched) {
    if (cudaEventSynchronize(static_cast<cudaEvent_t>(event)) != cudaSuccess) (void)cudaGetLastError();
    if (cudaEventDestroy(static_cast<cudaEvent_t>(event)) != cudaSuccess) (void)cudaGetLastError();
  }
  e.launched.clear();
}

}  // namespace swapkern
