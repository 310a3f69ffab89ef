// The CUDA emulation's kernel registry for Python (bench/gpu/emulate.py reads it with ctypes): every kernel
// instantiation compiled into swapkern._C_emu and how many times it was launched. Built only by the emulation
// build (setup.py, SWAPKERN_CUDA_EMULATION); nvcc never sees this file.
#include "emulation.h"

#define SK_EMU_EXPORT extern "C" __attribute__((visibility("default")))

SK_EMU_EXPORT int64_t swapkern_emu_kernels() {
  const std::lock_guard<std::mutex> lock(sk_emu::registry_mutex());
  return static_cast<int64_t>(sk_emu::registry().size());
}

SK_EMU_EXPORT const char* swapkern_emu_kernel_name(int64_t i) {
  const std::lock_guard<std::mutex> lock(sk_emu::registry_mutex());
  return sk_emu::registry().at(static_cast<size_t>(i))->name.c_str();
}

SK_EMU_EXPORT int64_t swapkern_emu_kernel_launches(int64_t i) {
  const std::lock_guard<std::mutex> lock(sk_emu::registry_mutex());
  return sk_emu::registry().at(static_cast<size_t>(i))->launches.load();
}

SK_EMU_EXPORT int64_t swapkern_emu_live_events() { return sk_emu::live_events.load(); }
