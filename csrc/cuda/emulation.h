// CUDA emulation: what csrc/cuda/*.cu use of CUDA, for the host C++ compiler (setup.py, SWAPKERN_CUDA_EMULATION=1:
// the library swapkern._C_emu, ops torch.ops.swapkern_emu on CPU tensors, the "cuda-emulated" backend). The same
// kernels and the same launchers (kernel choice, grid sizes) run on the host: device memory is host memory, streams
// and events are synchronous no-ops, and a launch (SK_LAUNCH, csrc/cuda/stream.h) runs the grid block by block.
//
// The threads of a block run as fibers on the calling thread, one stack each: a thread runs until it reaches
// __syncthreads() or returns, and no thread passes a barrier before every thread of its block that has not
// returned has reached it (real barrier semantics: a kernel that reads shared memory another thread writes before
// a barrier sees the write; one that reads before the barrier sees the value of the previous phase). __shared__
// variables are per-block (one block runs at a time on a thread); the dynamic shared memory is `smem` (the name
// exchange_cuda.cu declares), of the size the launch asked for: under AddressSanitizer the bytes beyond it are
// poisoned, so a kernel that indexes past its tile is reported.
//
// A launch is checked as the driver checks it (block of 1..1024 threads, grid of 1..2^31-1 x 65535 x 65535
// blocks, dynamic shared memory at most 48 KiB without opt-in) and a bad one leaves an error for
// cudaGetLastError, as on a GPU. The emulated device has SWAPKERN_EMU_SMS multiprocessors (default 2), so that
// the launchers' grid caps and the kernels' grid-stride loops are reached by small tensors.
//
// Every kernel instantiation compiled into the library registers itself at load time (sk_emu::kernels()) and
// counts its launches: bench.gpu.emulate reports which were never launched.
#pragma once

#ifdef __CUDACC__
#error "csrc/cuda/emulation.h is for the host compiler (SWAPKERN_CUDA_EMULATION); nvcc compiles the real kernels"
#endif

#include <ucontext.h>

#include <atomic>
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <mutex>
#include <stdexcept>
#include <string>
#include <tuple>
#include <vector>

#include <sys/mman.h>

#if defined(__has_feature)
#if __has_feature(address_sanitizer)
#define SK_EMU_ASAN 1
#endif
#endif
#if defined(__SANITIZE_ADDRESS__)
#define SK_EMU_ASAN 1
#endif
#ifdef SK_EMU_ASAN
#include <sanitizer/asan_interface.h>
#include <sanitizer/common_interface_defs.h>
#endif

// -- the language: qualifiers, built-in variables, vector types, intrinsics -----------------------------------------
#define __global__
#define __device__
#define __host__
#define __forceinline__ inline __attribute__((always_inline))
#define __launch_bounds__(...)
#define __align__(n) __attribute__((aligned(n)))
// At block scope thread_local implies static: one copy per host thread, which runs one block at a time.
#define __shared__ thread_local

struct dim3 {
  unsigned x, y, z;
  constexpr dim3(unsigned x_ = 1, unsigned y_ = 1, unsigned z_ = 1) : x(x_), y(y_), z(z_) {}
};
struct uint3 {
  unsigned x, y, z;
};
struct alignas(16) uint4 {
  unsigned x, y, z, w;
};
struct alignas(8) uint2 {
  unsigned x, y;
};

inline float __fadd_rn(float a, float b) { return a + b; }  // built with -ffp-contract=off: no fused multiply-add
inline float __fmul_rn(float a, float b) { return a * b; }

// -- the runtime: errors, device attributes, streams, events --------------------------------------------------------
enum cudaError_t {
  cudaSuccess = 0,
  cudaErrorInvalidValue = 1,
  cudaErrorInvalidConfiguration = 9,
  cudaErrorInvalidDevice = 101,
  cudaErrorInvalidResourceHandle = 400,
};
enum cudaDeviceAttr { cudaDevAttrMaxThreadsPerBlock = 1, cudaDevAttrMultiProcessorCount = 16 };
enum cudaStreamCaptureStatus { cudaStreamCaptureStatusNone = 0, cudaStreamCaptureStatusActive = 1 };
enum { cudaEventDisableTiming = 2 };
struct CUstream_st;
struct CUevent_st;
using cudaStream_t = CUstream_st*;
using cudaEvent_t = CUevent_st*;

namespace sk_emu {

inline thread_local cudaError_t last_error = cudaSuccess;
inline std::atomic<int64_t> live_events{0};

inline cudaError_t fail(cudaError_t e) {
  last_error = e;
  return e;
}

// Multiprocessors of the emulated device.
inline int sm_count() {
  static const int n = [] {
    const char* v = std::getenv("SWAPKERN_EMU_SMS");
    const int k = v != nullptr ? std::atoi(v) : 0;
    return k > 0 ? k : 2;
  }();
  return n;
}

inline CUstream_st* the_stream() {
  static char stream;
  return reinterpret_cast<CUstream_st*>(&stream);
}

}  // namespace sk_emu

inline cudaError_t cudaGetLastError() {
  const cudaError_t e = sk_emu::last_error;
  sk_emu::last_error = cudaSuccess;
  return e;
}
inline const char* cudaGetErrorString(cudaError_t e) {
  switch (e) {
    case cudaSuccess: return "no error";
    case cudaErrorInvalidValue: return "invalid argument";
    case cudaErrorInvalidConfiguration: return "invalid configuration argument";
    case cudaErrorInvalidDevice: return "invalid device ordinal";
    case cudaErrorInvalidResourceHandle: return "invalid resource handle";
  }
  return "unknown error";
}
// The device of CPU tensors has index -1 (a launcher passes its tensors' index): the emulated device.
inline cudaError_t cudaDeviceGetAttribute(int* value, cudaDeviceAttr attr, int device) {
  if (device < -1 || device > 0) return sk_emu::fail(cudaErrorInvalidDevice);
  switch (attr) {
    case cudaDevAttrMultiProcessorCount: *value = sk_emu::sm_count(); return cudaSuccess;
    case cudaDevAttrMaxThreadsPerBlock: *value = 1024; return cudaSuccess;
  }
  return sk_emu::fail(cudaErrorInvalidValue);
}
inline cudaError_t cudaStreamIsCapturing(cudaStream_t, cudaStreamCaptureStatus* status) {
  *status = cudaStreamCaptureStatusNone;  // no graphs here
  return cudaSuccess;
}
// Work is done when its launch returns: an event is complete when recorded.
inline cudaError_t cudaEventCreateWithFlags(cudaEvent_t* event, unsigned) {
  *event = reinterpret_cast<cudaEvent_t>(new char(0));
  ++sk_emu::live_events;
  return cudaSuccess;
}
inline cudaError_t cudaEventRecord(cudaEvent_t event, cudaStream_t) {
  return event != nullptr ? cudaSuccess : sk_emu::fail(cudaErrorInvalidResourceHandle);
}
inline cudaError_t cudaEventSynchronize(cudaEvent_t event) {
  return event != nullptr ? cudaSuccess : sk_emu::fail(cudaErrorInvalidResourceHandle);
}
inline cudaError_t cudaEventDestroy(cudaEvent_t event) {
  if (event == nullptr) return sk_emu::fail(cudaErrorInvalidResourceHandle);
  delete reinterpret_cast<char*>(event);
  --sk_emu::live_events;
  return cudaSuccess;
}

// The stable ABI's checks (torch/csrc/stable/macros.h), with the emulated runtime's messages.
#undef STD_CUDA_CHECK
#undef STD_CUDA_KERNEL_LAUNCH_CHECK
#define STD_CUDA_CHECK(EXPR)                                                                             \
  do {                                                                                                   \
    const cudaError_t sk_err_ = (EXPR);                                                                  \
    if (sk_err_ != cudaSuccess) {                                                                        \
      throw std::runtime_error(std::string("CUDA error (emulated): ") + cudaGetErrorString(sk_err_) +   \
                               " at " + __FILE__ + ":" + std::to_string(__LINE__));                      \
    }                                                                                                    \
  } while (0)
#define STD_CUDA_KERNEL_LAUNCH_CHECK() STD_CUDA_CHECK(cudaGetLastError())

namespace sk_emu {
constexpr size_t kMaxDynamicSmem = 48 * 1024;  // without cudaFuncSetAttribute opt-in
}  // namespace sk_emu

// The dynamic shared memory: `extern __shared__ unsigned char smem[]` inside a kernel of swapkern's anonymous
// namespace names this array (a block-scope extern declaration names the variable of its enclosing namespace).
namespace swapkern {
namespace {
[[maybe_unused]] thread_local __attribute__((aligned(16))) unsigned char smem[sk_emu::kMaxDynamicSmem];
// GCC reaches a block-scope `extern thread_local` through the TU's TLS init function, which it emits only when a
// thread_local of the TU has a dynamic initializer: this one (else the library has an undefined __tls_init).
[[maybe_unused]] thread_local const bool tls_init_anchor = std::getenv("SWAPKERN_EMU_SMS") != nullptr;
}  // namespace
}  // namespace swapkern

// -- the launch: a registry of kernels, the block scheduler, the fibers --------------------------------------------
namespace sk_emu {

constexpr int kMaxThreads = 1024;
#ifdef SK_EMU_ASAN
constexpr size_t kStackBytes = 512 * 1024;
#else
constexpr size_t kStackBytes = 128 * 1024;
#endif

// One kernel instantiation: its name and how many times it was launched.
struct KernelInfo {
  std::string name;
  std::atomic<int64_t> launches{0};
};

inline std::mutex& registry_mutex() {
  static auto* m = new std::mutex();
  return *m;
}
inline std::vector<KernelInfo*>& registry() {
  static auto* r = new std::vector<KernelInfo*>();  // never destroyed: no exit order
  return *r;
}

// "swapkern::{anonymous}::exchange_tiled<unsigned char>" from the signature of kernel_name<&exchange_tiled<...>>.
template <auto K>
const char* kernel_signature() {
  return __PRETTY_FUNCTION__;
}
template <auto K>
std::string kernel_name() {
  std::string s = kernel_signature<K>();
  const size_t at = s.find("K = ");
  if (at == std::string::npos) return s;
  s = s.substr(at + 4);
  const size_t end = s.find_first_of(";]");
  if (end != std::string::npos) s = s.substr(0, end);
  for (const char* prefix : {"& ", "&"}) {
    if (s.rfind(prefix, 0) == 0) s = s.substr(std::strlen(prefix));
  }
  return s;
}

inline KernelInfo* add_kernel(std::string name) {
  auto* k = new KernelInfo();
  k->name = std::move(name);
  const std::lock_guard<std::mutex> lock(registry_mutex());
  registry().push_back(k);
  return k;
}

// Registered when the library loads, for each instantiation the launchers contain (not when first launched).
template <auto K>
struct Kernel {
  static KernelInfo* const info;
};
template <auto K>
KernelInfo* const Kernel<K>::info = add_kernel(kernel_name<K>());

// The threads of the block being run on this host thread.
struct Threads {
  ucontext_t scheduler;
  std::vector<ucontext_t> ctx;
  std::vector<char> done;
  char* stacks = nullptr;
  size_t capacity = 0;  // fibers the stacks hold
  int current = 0;
  void (*body)(void*) = nullptr;
  void* arg = nullptr;
#ifdef SK_EMU_ASAN
  void* fake_stack = nullptr;
  const void* sched_bottom = nullptr;
  size_t sched_size = 0;
#endif

  ~Threads() {
    if (stacks != nullptr) munmap(stacks, capacity * kStackBytes);
  }
  void reserve(size_t n) {
    if (n <= capacity) return;
    if (stacks != nullptr) munmap(stacks, capacity * kStackBytes);
    const int prot = PROT_READ | PROT_WRITE, flags = MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE;
    void* p = mmap(nullptr, n * kStackBytes, prot, flags, -1, 0);
    if (p == MAP_FAILED) throw std::runtime_error("swapkern CUDA emulation: cannot map the fiber stacks");
    stacks = static_cast<char*>(p);
    capacity = n;
    ctx.resize(n);
  }
};

inline thread_local Threads* t_threads = nullptr;

// The built-in variables of the running thread: plain globals (a thread_local costs a __tls_get_addr call per
// read in a shared library, and a grid-stride loop reads gridDim every iteration), so one launch runs at a time
// in the process, under launch_mutex(): one device, one queue.
struct Builtins {
  uint3 thread, block, block_dim, grid_dim;
};
inline Builtins t_builtins;
inline std::mutex& launch_mutex() {
  static auto* m = new std::mutex();
  return *m;
}

inline void to_scheduler() {
  Threads& t = *t_threads;
#ifdef SK_EMU_ASAN
  void* fake = nullptr;
  __sanitizer_start_switch_fiber(&fake, t.sched_bottom, t.sched_size);
#endif
  swapcontext(&t.ctx[static_cast<size_t>(t.current)], &t.scheduler);
#ifdef SK_EMU_ASAN
  __sanitizer_finish_switch_fiber(fake, nullptr, nullptr);
#endif
}

inline void fiber_entry() {
#ifdef SK_EMU_ASAN
  __sanitizer_finish_switch_fiber(nullptr, &t_threads->sched_bottom, &t_threads->sched_size);
#endif
  Threads& t = *t_threads;
  t.body(t.arg);
  t.done[static_cast<size_t>(t.current)] = 1;
#ifdef SK_EMU_ASAN
  __sanitizer_start_switch_fiber(nullptr, t.sched_bottom, t.sched_size);  // this fiber's stack is done with
#endif
  setcontext(&t.scheduler);
}

// Runs the n threads of one block: each as a fiber, in passes; a pass resumes every thread that has not returned
// once, which runs it to its next __syncthreads() or to its end, so every pass is one phase between barriers.
inline void run_block(Threads& t, int n, void (*body)(void*), void* arg) {
  const uint3 bd = t_builtins.block_dim;
  t.body = body;
  t.arg = arg;
  t.done.assign(static_cast<size_t>(n), 0);
  for (int i = 0; i < n; ++i) {
    ucontext_t& c = t.ctx[static_cast<size_t>(i)];
    getcontext(&c);
    c.uc_stack.ss_sp = t.stacks + static_cast<size_t>(i) * kStackBytes;
    c.uc_stack.ss_size = kStackBytes;
    c.uc_link = nullptr;
    makecontext(&c, fiber_entry, 0);
  }
  int left = n;
  while (left > 0) {
    for (int i = 0; i < n; ++i) {
      if (t.done[static_cast<size_t>(i)]) continue;
      t.current = i;
      const unsigned u = static_cast<unsigned>(i);
      t_builtins.thread = uint3{u % bd.x, u / bd.x % bd.y, u / (bd.x * bd.y)};
#ifdef SK_EMU_ASAN
      __sanitizer_start_switch_fiber(&t.fake_stack, t.stacks + static_cast<size_t>(i) * kStackBytes, kStackBytes);
#endif
      swapcontext(&t.scheduler, &t.ctx[static_cast<size_t>(i)]);
#ifdef SK_EMU_ASAN
      __sanitizer_finish_switch_fiber(t.fake_stack, nullptr, nullptr);
#endif
      if (t.done[static_cast<size_t>(i)]) --left;
    }
  }
}

// The launch itself: checks the configuration, then runs every block of the grid in order.
template <auto K, typename... A>
void run_grid(dim3 grid, dim3 block, size_t smem, A&&... args);

template <auto K>
struct Launch {
  dim3 grid, block;
  size_t smem;
  // The kernel once more as a plain argument: GCC instantiates a function template named only as a template
  // argument of a non-dependent launch (exchange_units<uint4, true>) too late, if ever.
  Launch(dim3 g, dim3 b, size_t s, cudaStream_t, decltype(K)) : grid(g), block(b), smem(s) {}
  template <typename... A>
  void operator()(A&&... args) const {
    run_grid<K>(grid, block, smem, std::forward<A>(args)...);
  }
};

template <typename R, typename... P>
std::tuple<std::decay_t<P>...> params_of(R (*)(P...));

template <auto K, typename... A>
void run_grid(dim3 grid, dim3 block, size_t smem, A&&... args) {
  Kernel<K>::info->launches.fetch_add(1, std::memory_order_relaxed);
  const uint64_t threads = uint64_t{block.x} * block.y * block.z;
  if (grid.x == 0 || grid.y == 0 || grid.z == 0 || grid.x > 0x7fffffffu || grid.y > 65535 || grid.z > 65535 ||
      threads == 0 || threads > kMaxThreads || block.z > 64) {
    fail(cudaErrorInvalidConfiguration);
    return;
  }
  if (smem > kMaxDynamicSmem) {
    fail(cudaErrorInvalidValue);
    return;
  }
  using Params = decltype(params_of(K));
  Params params(std::forward<A>(args)...);  // the kernel's arguments, converted once as a launch does
  const std::lock_guard<std::mutex> lock(launch_mutex());
  if (t_threads == nullptr) t_threads = new Threads();  // per host thread, kept (its stacks are reused)
  Threads& t = *t_threads;
  t.reserve(static_cast<size_t>(threads));
  const Builtins saved = t_builtins;
  t_builtins.block_dim = uint3{block.x, block.y, block.z};
  t_builtins.grid_dim = uint3{grid.x, grid.y, grid.z};
#ifdef SK_EMU_ASAN  // the bytes past the launch's dynamic shared memory are not there
  ASAN_POISON_MEMORY_REGION(swapkern::smem + smem, kMaxDynamicSmem - smem);
#endif
  const auto body = [](void* p) { std::apply(K, *static_cast<Params*>(p)); };
  for (unsigned z = 0; z < grid.z; ++z) {
    for (unsigned y = 0; y < grid.y; ++y) {
      for (unsigned x = 0; x < grid.x; ++x) {
        t_builtins.block = uint3{x, y, z};
        std::memset(swapkern::smem, 0xA5, smem);  // shared memory starts undefined: not the last block's values
        run_block(t, static_cast<int>(threads), body, &params);
      }
    }
  }
  t_builtins = saved;
#ifdef SK_EMU_ASAN
  ASAN_UNPOISON_MEMORY_REGION(swapkern::smem, kMaxDynamicSmem);
#endif
}

}  // namespace sk_emu

#define threadIdx (::sk_emu::t_builtins.thread)
#define blockIdx (::sk_emu::t_builtins.block)
#define blockDim (::sk_emu::t_builtins.block_dim)
#define gridDim (::sk_emu::t_builtins.grid_dim)

inline void __syncthreads() { sk_emu::to_scheduler(); }

// The launch: SK_LAUNCH(grid, block, smem, stream, kernel)(args...) is kernel<<<grid, block, smem, stream>>>(args...)
// under nvcc (csrc/cuda/stream.h); here it runs the grid on this thread before it returns.
#define SK_LAUNCH(grid, block, smem, stream, ...) \
  ::sk_emu::Launch<&__VA_ARGS__>(grid, block, smem, stream, &__VA_ARGS__)

