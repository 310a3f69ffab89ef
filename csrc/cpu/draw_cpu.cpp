// CPU plan drawing: the batch-level draws (batch key, image choice) in one pass, then the groups in parallel.
#include "launchers.h"
#include "parallel.h"

namespace swapkern {

void draw_cpu(const DrawParams& params) {
  const DrawParams p = with_step(params, params.counter != nullptr ? static_cast<uint64_t>(*params.counter) : params.step);
  uint32_t sum = 0, best = 0;
  int64_t pos = 0;
  const uint32_t image_base = base_key(p.seed, p.step, kImage);
  for (int64_t n = 0; n < p.B; ++n) {
    const uint32_t key = image_key(p, n);
    sum += key;
    const uint32_t score = word32(key, image_base, 0);
    if (n == 0 || score > best) best = score, pos = n;  // the first of equal maxima, as torch.argmax
  }
  const uint32_t bkey = p.indices != nullptr ? sum : kBatchKey;
  p.buf[2] = bkey;
  p.buf[0] = static_cast<int64_t>(word32(bkey, base_key(p.seed, p.step, kCoin), 0)) < p.threshold;
  p.buf[1] = p.which == Which::One ? pos : 0;
  const int64_t G = p.which == Which::Every ? p.B : 1;
  if (G < 1024) {
    for (int64_t g = 0; g < G; ++g) draw_group(p, g);
  } else {
    parallel_for(0, G, 1024, [&](int64_t begin, int64_t end) {
      for (int64_t g = begin; g < end; ++g) draw_group(p, g);
    });
  }
  if (p.counter != nullptr) ++*p.counter;
}

}  // namespace swapkern
