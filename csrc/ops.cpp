// Schemas of every swapkern op. Each mutates its tensor arguments in place and returns nothing; the Python
// layer (swapkern/ops.py) returns the tensors. validate=false skips the data-dependent checks (unsafe).
#include "packed.h"

#include <torch/library.h>

TORCH_LIBRARY(swapkern, m) {
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
  // Packs the plans of many exchanges (job j: x[j].select(dim_x[j], a[j][k]) <-> y[j].select(dim_y[j], b[j][k]),
  // dims -1: flat elements) into a CPU byte tensor for swap_packed_. Indices must be contiguous int64.
  m.def("pack_plans(Tensor[] xs, Tensor[] ys, Tensor[] a, Tensor[] b, int[] dim_x, int[] dim_y) -> Tensor");
  // Runs packed plans in one launch; tensors = [x0, y0, x1, y1, ...] as packed; meta on their device.
  m.def("swap_packed_(Tensor(a!)[] tensors, Tensor meta, Tensor meta_cpu) -> ()");
  // Draws a FeaturePlan into buf (layout: swapkern.data.plan_layout) from (seed, step, image keys), one launch.
  m.def("draw_feature_plan_(Tensor(a!) buf, Tensor? indices, int B, int C, int HW, int which, int what, "
        "bool extent_all, int swaps, int seed, int step, int threshold) -> ()");
  m.def("load_batch_(Tensor(a!) out, Tensor data, Tensor index, Tensor scale, Tensor shift, Tensor? pairs=None, "
        "Tensor? at=None, Tensor? image=None, Tensor? active=None, Tensor? flip=None, int which=1, int what=0, "
        "bool extent_all=True, bool nhwc=True, bool validate=True) -> ()");
}

TORCH_LIBRARY_IMPL(swapkern, CompositeExplicitAutograd, m) { m.impl("pack_plans", &swapkern::pack_plans); }
