// CUDA plan drawing: one block, one launch, no host sync. Reductions (batch key, image choice) in shared memory,
// then one thread per group.
#include "launchers.h"
#include "stream.h"

namespace swapkern {
namespace {

constexpr int kThreads = 512;

__global__ void __launch_bounds__(kThreads) draw_kernel(const DrawParams params) {
  __shared__ uint32_t s_sum[kThreads], s_best[kThreads];
  __shared__ int64_t s_pos[kThreads];
  __shared__ uint64_t s_step;
  const int tid = threadIdx.x;
  if (tid == 0) s_step = params.counter != nullptr ? static_cast<uint64_t>(*params.counter) : params.step;
  __syncthreads();
  const DrawParams p = with_step(params, s_step);
  const uint32_t image_base = base_key(p.seed, p.step, kImage);
  uint32_t sum = 0, best = 0;
  int64_t pos = -1;
  for (int64_t n = tid; n < p.B; n += kThreads) {
    const uint32_t key = image_key(p, n);
    sum += key;
    const uint32_t score = word32(key, image_base, 0);
    if (pos < 0 || score > best) best = score, pos = n;
  }
  s_sum[tid] = sum, s_best[tid] = best, s_pos[tid] = pos;
  __syncthreads();
  for (int half = kThreads / 2; half > 0; half /= 2) {
    if (tid < half) {
      s_sum[tid] += s_sum[tid + half];
      const int64_t op = s_pos[tid + half];
      const uint32_t ob = s_best[tid + half];
      // Larger score wins; on a tie the smaller position (the first, as torch.argmax).
      if (op >= 0 && (s_pos[tid] < 0 || ob > s_best[tid] || (ob == s_best[tid] && op < s_pos[tid]))) {
        s_best[tid] = ob, s_pos[tid] = op;
      }
    }
    __syncthreads();
  }
  if (tid == 0) {
    const uint32_t bkey = p.indices != nullptr ? s_sum[0] : kBatchKey;
    p.buf[2] = bkey;
    p.buf[0] = static_cast<int64_t>(word32(bkey, base_key(p.seed, p.step, kCoin), 0)) < p.threshold;
    p.buf[1] = p.which == Which::One ? s_pos[0] : 0;
  }
  __syncthreads();
  const int64_t G = p.which == Which::Every ? p.B : 1;
  for (int64_t g = tid; g < G; g += kThreads) draw_group(p, g);
  if (tid == 0 && p.counter != nullptr) *p.counter += 1;  // every thread has its copy of the step
}

}  // namespace

void draw_cuda(const DrawParams& p) {
  const OnDevice on(p.device_index);
  SK_LAUNCH(1, kThreads, 0, current_stream(p.device_index), draw_kernel)(p);
  STD_CUDA_KERNEL_LAUNCH_CHECK();
}

}  // namespace swapkern
