// The CUDA kernels' launchers: what csrc/bindings.cpp registers for the CUDA dispatch key. Each runs on the
// current stream under the tensors' device guard, with no host sync.
#pragma once

#include "../draw.h"
#include "../engine.h"
#include "../loader.h"
#include "../swapkern.h"

namespace swapkern {

void exchange_cuda(const Plan& plan);                                                  // exchange_cuda.cu
void exchange_packed_cuda(const uint8_t* meta_device, int64_t n, int64_t total, int device);  // exchange_cuda.cu
void load_cuda(const LoadParams& p);                                                   // loader_cuda.cu
void draw_cuda(const DrawParams& p);                                                   // draw_cuda.cu
void engine_draw_cuda(const Engine& e, uint64_t seed, uint64_t step);                  // engine_cuda.cu
void engine_apply_cuda(const Engine& e, const Wave& w);                                // engine_cuda.cu
void engine_release_cuda(Engine& e) noexcept;  // engine_cuda.cu: waits for the engine's kernels (in ~Engine)

}  // namespace swapkern
