// The multi-tensor engine: every exchange of a weight-swap step (parameters and optimizer state of a whole model)
// drawn and applied by one op call, whose host cost does not grow with the number of tensors.
//
// engine_new registers the jobs once: it packs their plans (csrc/plan.cpp, one packed block per wave of jobs that
// touch disjoint memory), keeps references to the tensors the plans were packed for and their layout, and returns
// a handle. engine_step_ then draws each group's pairs into the index buffer from (seed, step) (csrc/weights.h) and
// applies them; before touching anything it checks that every registered tensor still has the data pointer,
// shape, strides and dtype it was packed with, and answers "stale" (1) instead of running when one has changed,
// so the caller packs again. A tensor list never crosses the dispatcher per step: that is what keeps it flat.
#pragma once

#include "swapkern.h"
#include "weights.h"

#include "tensor.h"

#include <cstdint>
#include <memory>
#include <optional>
#include <utility>
#include <vector>

namespace swapkern {

// One packed wave: its plans (on the host, and for CUDA a device copy) and their work prefix.
struct Wave {
  std::vector<Plan> plans;
  std::vector<int64_t> prefix;       // prefix[j] = work (pairs x slice elements) of plans before j
  std::optional<Tensor> device_meta;  // CUDA: [n][Plans][prefix] as swapkern.packed_bytes lays it out
};

struct Engine {
  Engine(Tensor index_, Tensor table_cpu_, Tensor table_)
      : index(std::move(index_)), table_cpu(std::move(table_cpu_)), table(std::move(table_)) {}
  Engine(const Engine&) = delete;
  Engine& operator=(const Engine&) = delete;
  ~Engine();  // CUDA: first waits for the kernels that read the buffers below (csrc/cuda/engine_cuda.cu)

  Tensor index;                  // int64 [slots] on the device: per group a, b, keep, pick, scratch
  Tensor table_cpu, table;       // the draw table (WeightDraw rows, then kInter candidates), host and device
  int64_t groups = 0;
  std::vector<Wave> waves;
  std::vector<Tensor> watched;   // the tensors the plans point into, held, with their layout at pack time
  std::vector<void*> data;
  std::vector<std::vector<int64_t>> shape;
  std::vector<ScalarType> dtype;
  // CUDA: (stream, event) per stream the engine's kernels ran on, the event recorded after the latest of them. The
  // stable ABI has no record_stream, so instead of telling the caching allocator which streams use index, table
  // and device_meta, the engine waits for those events before it lets go of the buffers (engine_free, or a repack
  // that replaces it): no buffer goes back to the allocator while a kernel on any stream may still read it.
  mutable std::vector<std::pair<void*, void*>> launched;
};

// Op bodies (csrc/bindings.cpp registers them).
int64_t engine_new(const Tensor& index, const std::vector<Tensor>& xs, const std::vector<Tensor>& ys,
                   const std::vector<int64_t>& dim_x, const std::vector<int64_t>& dim_y,
                   const std::vector<int64_t>& group, const std::vector<int64_t>& job,
                   const std::vector<int64_t>& wave, const Tensor& table, int64_t groups,
                   const std::vector<Tensor>& watched);
void engine_free(int64_t handle);
// mode: 1 draw, 2 apply, 3 both. Returns 0 when done, 1 when a registered tensor changed (nothing was done).
// The version counters of index and of the watched tensors are bumped in Python (swapkern/_native.py).
template <void (*draw)(const Engine&, uint64_t, uint64_t), void (*apply)(const Engine&, const Wave&)>
int64_t engine_step(const Tensor& index, int64_t handle, int64_t seed, int64_t step, int64_t mode);

// The registry, for the op bodies: the engine of a handle, held for the call.
std::shared_ptr<Engine> engine_at(int64_t handle, const Tensor& index);
bool engine_fresh(const Engine& e);

template <void (*draw)(const Engine&, uint64_t, uint64_t), void (*apply)(const Engine&, const Wave&)>
int64_t engine_step(const Tensor& index, int64_t handle, int64_t seed, int64_t step, int64_t mode) {
  const std::shared_ptr<Engine> held = engine_at(handle, index);
  const Engine& e = *held;
  if (!engine_fresh(e)) return 1;
  if (mode & 1) draw(e, static_cast<uint64_t>(seed), static_cast<uint64_t>(step));
  if (mode & 2) {
    for (const Wave& w : e.waves) apply(e, w);
  }
  return 0;
}

}  // namespace swapkern
