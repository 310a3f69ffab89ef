// CPU launchers of the multi-tensor engine: the draw is a loop over groups, the apply one parallel loop per wave.
#include "launchers.h"

namespace swapkern {

void engine_draw_cpu(const Engine& e, uint64_t seed, uint64_t step) {
  const int64_t* table = data_of<const int64_t>(e.table_cpu);
  const auto* rows = reinterpret_cast<const WeightDraw*>(table);
  int64_t* buf = data_of<int64_t>(e.index);
  for (int64_t g = 0; g < e.groups; ++g) draw_weight_group(rows[g], table, buf, seed, step);
}

void engine_apply_cpu(const Engine&, const Wave& w) {
  if (!w.plans.empty() && w.prefix.back() > 0) {
    exchange_packed_cpu(w.plans.data(), w.prefix.data(), static_cast<int64_t>(w.plans.size()));
  }
}

}  // namespace swapkern
