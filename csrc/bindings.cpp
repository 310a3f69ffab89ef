// Every schema of torch.ops.swapkern and every per-device implementation line, in one place, on the stable ABI
// (STABLE_TORCH_LIBRARY; kernels boxed by TORCH_BOX). Mutating ops return nothing (the Python layer,
// swapkern/ops.py, returns the tensors); validate=false skips the data-dependent checks.
//
// What the stable ABI cannot express lives in Python, once (swapkern/_native.py): the autograd rules of the
// mutating ops (no differentiation through a swap, inference tensors only inside inference mode, one version bump
// per mutated tensor) and their fake/meta kernels (torch.library.register_fake).
#include "cpu/launchers.h"
#include "engine.h"
#include "ops.h"

#include <torch/csrc/stable/library.h>

#ifdef SWAPKERN_WITH_CUDA
#include "cuda/launchers.h"
#endif

// The ops' namespace: torch.ops.swapkern; the CUDA emulation build (setup.py, SWAPKERN_CUDA_EMULATION=1) is a
// library of its own, loaded beside this one: torch.ops.swapkern_emu, the CUDA launchers for CPU tensors.
#ifdef SWAPKERN_CUDA_EMULATION
#define SK_OPS swapkern_emu
#else
#define SK_OPS swapkern
#endif

STABLE_TORCH_LIBRARY(SK_OPS, m) {
  // Exchange x.select(dim, a[k]) with x.select(dim, b[k]), inside x.select(sample_dim, sample[k]) if given.
  m.def("swap_(Tensor(a!) x, int dim, Tensor a, Tensor b, Tensor? sample=None, int sample_dim=0, "
        "bool validate=True) -> ()");
  // Exchange pixels p[k] and q[k] (flat indices into H*W) of an (N, C, H, W) batch, all channels.
  m.def("swap_pixels_(Tensor(a!) x, Tensor p, Tensor q, Tensor? sample=None, bool validate=True) -> ()");
  // Exchange the elements at row-major flat indices i[k] and j[k].
  m.def("swap_elements_(Tensor(a!) x, Tensor i, Tensor j, bool validate=True) -> ()");
  // Exchange x.select(dim_x, i[k]) with y.select(dim_y, j[k]), or elements at flat indices if both dims are None.
  m.def("swap_between_(Tensor(a!) x, Tensor(b!) y, Tensor i, Tensor j, int? dim_x=None, int? dim_y=None, "
        "bool validate=True) -> ()");
  // Fused loader: out = flip(swap(data[index] * scale[c] + shift[c])), one kernel; data is uint8 storage.
  // The plan is a FeaturePlan's compact form; which (0: 1, 1: A, 2: E), what (0: S, 1: P).
  m.def("load_batch_(Tensor(a!) out, Tensor data, Tensor index, Tensor scale, Tensor shift, Tensor? pairs=None, "
        "Tensor? at=None, Tensor? image=None, Tensor? active=None, Tensor? flip=None, int which=1, int what=0, "
        "bool extent_all=True, bool nhwc=True, bool validate=True) -> ()");
  // Draws a FeaturePlan into buf (layout: swapkern.data.plan_layout) from (seed, step, image keys).
  // With a counter (one int64 on buf's device), the step is read from it on the device and it is incremented:
  // then a compiled graph or a captured CUDA graph draws a new step each call.
  m.def("draw_feature_plan_(Tensor(a!) buf, Tensor? indices, int B, int C, int HW, int which, int what, "
        "bool extent_all, int swaps, int seed, int step, int threshold, Tensor(b!)? counter=None) -> ()");
  // Draws a FeaturePlan into buf and applies it to x: one call per protocol step.
  m.def("feature_swap_(Tensor(a!) x, Tensor(b!) buf, Tensor? indices, int which, int what, bool extent_all, "
        "int swaps, int seed, int step, int threshold, Tensor(c!)? counter=None) -> ()");
  // A FeatureSwap's bound call (csrc/feature.h): feature_bind checks and holds buf and counter (the draw of
  // draw_feature_plan_ with a counter) for batches of shape (B, C, H, W); feature_step_(x, handle) is then
  // feature_swap_(x, buf, None, ..., counter), buf and counter written as there (held by the binding, so not in the
  // schema: an eager-mode fast path, never traced, as the engine's step).
  m.def("feature_bind(Tensor buf, Tensor counter, int B, int C, int H, int W, int which, int what, bool extent_all, "
        "int swaps, int seed, int threshold) -> int");
  m.def("feature_step_(Tensor(a!) x, int handle) -> ()");
  m.def("feature_free(int handle) -> ()");
  // The multi-tensor engine (csrc/engine.h): register a weight-swap step's jobs once; then each step draws every
  // group's pairs into index and applies them (mode 1 draw, 2 apply, 3 both); 1 means "stale, pack again".
  m.def("engine_new(Tensor index, Tensor[] xs, Tensor[] ys, int[] dim_x, int[] dim_y, int[] group, int[] job, "
        "int[] wave, Tensor table, int groups, Tensor[] watched) -> int");
  m.def("engine_step_(Tensor(a!) index, int handle, int seed, int step, int mode) -> int");
  m.def("engine_free(int handle) -> ()");
}

// The engine's registry calls: one kernel for every device (engine_free has no tensor to dispatch on).
STABLE_TORCH_LIBRARY_IMPL(SK_OPS, CompositeExplicitAutograd, m) {
  m.impl("engine_new", TORCH_BOX(&swapkern::engine_new));
  m.impl("engine_free", TORCH_BOX(&swapkern::engine_free));
  m.impl("feature_bind", TORCH_BOX(&swapkern::feature_bind));
  m.impl("feature_free", TORCH_BOX(&swapkern::feature_free));
}

namespace swapkern {

// The boxed form of a kernel (TORCH_BOX of a template instance, without its commas inside the macro).
template <auto kernel>
constexpr auto boxed = TORCH_BOX(kernel);

template <Launcher exchange, void (*load)(const LoadParams&), void (*draw)(const DrawParams&),
          void (*engine_draw)(const Engine&, uint64_t, uint64_t), void (*engine_apply)(const Engine&, const Wave&)>
void register_device(torch::stable::detail::StableLibrary& m) {
  m.impl("swap_", boxed<&swap_op<exchange>>);
  m.impl("swap_pixels_", boxed<&swap_pixels_op<exchange>>);
  m.impl("swap_elements_", boxed<&swap_elements_op<exchange>>);
  m.impl("swap_between_", boxed<&swap_between_op<exchange>>);
  m.impl("load_batch_", boxed<&load_batch_op<load>>);
  m.impl("draw_feature_plan_", boxed<&draw_op<draw>>);
  m.impl("feature_swap_", boxed<&feature_swap_op<exchange, draw>>);
  m.impl("feature_step_", boxed<&feature_step_op<exchange, draw>>);
  m.impl("engine_step_", boxed<&engine_step<engine_draw, engine_apply>>);
}

}  // namespace swapkern

#ifdef SWAPKERN_CUDA_EMULATION
STABLE_TORCH_LIBRARY_IMPL(SK_OPS, CPU, m) {  // csrc/cuda/emulation.h: the CUDA kernels run on the host
  swapkern::register_device<swapkern::exchange_cuda, swapkern::load_cuda, swapkern::draw_cuda,
                            swapkern::engine_draw_cuda, swapkern::engine_apply_cuda>(m);
}
#else
STABLE_TORCH_LIBRARY_IMPL(swapkern, CPU, m) {
  swapkern::register_device<swapkern::exchange_cpu, swapkern::load_cpu, swapkern::draw_cpu, swapkern::engine_draw_cpu,
                            swapkern::engine_apply_cpu>(m);
}
#endif

#if defined(SWAPKERN_WITH_CUDA) && !defined(SWAPKERN_CUDA_EMULATION)
STABLE_TORCH_LIBRARY_IMPL(swapkern, CUDA, m) {
  swapkern::register_device<swapkern::exchange_cuda, swapkern::load_cuda, swapkern::draw_cuda,
                            swapkern::engine_draw_cuda, swapkern::engine_apply_cuda>(m);
}
#endif
