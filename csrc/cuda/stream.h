// The CUDA side of the stable ABI for the launchers: the current stream (aoti_torch_get_current_cuda_stream, a C
// shim of libtorch_cuda declared with USE_CUDA) and the device a launch runs on.
//
// SK_LAUNCH(grid, block, smem, stream, kernel)(args...) is the launch kernel<<<grid, block, smem, stream>>>(args...),
// token for token under nvcc; the emulation build (SWAPKERN_CUDA_EMULATION, csrc/cuda/emulation.h) compiles the
// same sources with the host compiler, where it runs the grid on the host.
#pragma once

#ifdef SWAPKERN_CUDA_EMULATION
#include "emulation.h"

#include <cstdint>

namespace swapkern {

inline cudaStream_t current_stream(int32_t) { return sk_emu::the_stream(); }

class OnDevice {  // one emulated device
 public:
  explicit OnDevice(int32_t) {}
};

}  // namespace swapkern
#else

#ifndef USE_CUDA
#error "CUDA translation units are compiled with -DUSE_CUDA (it declares the CUDA stream shim)"
#endif

#include <cuda_runtime.h>
#include <torch/csrc/inductor/aoti_torch/c/shim.h>
#include <torch/csrc/stable/accelerator.h>
#include <torch/csrc/stable/macros.h>

#include <cstdint>
#include <optional>

#define SK_LAUNCH(grid, block, smem, stream, ...) __VA_ARGS__<<<grid, block, smem, stream>>>

namespace swapkern {

// The stream PyTorch launches on for `device` now (torch.cuda.current_stream).
inline cudaStream_t current_stream(int32_t device) {
  void* stream = nullptr;
  STABLE_TORCH_ERROR_CODE_CHECK(aoti_torch_get_current_cuda_stream(device, &stream));
  return static_cast<cudaStream_t>(stream);
}

// Makes `device` the current one for a launch and restores the previous one after, as c10's CUDAGuard does. The
// stable DeviceGuard lives behind a C handle (a heap object), so it is made only when the device must change: the
// common case, the tensors on the current device, allocates nothing.
class OnDevice {
 public:
  explicit OnDevice(int32_t device) {
    if (torch::stable::accelerator::getCurrentDeviceIndex() != device) guard_.emplace(device);
  }

 private:
  std::optional<torch::stable::accelerator::DeviceGuard> guard_;
};

}  // namespace swapkern
#endif  // SWAPKERN_CUDA_EMULATION
