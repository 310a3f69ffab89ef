// CPU plan drawing: the batch-level draws (batch key, image choice) in one pass, then the groups in parallel.
#include "launchers.h"
#include "parallel.h"

#include <algorithm>

namespace swapkern {

namespace {

// The batch-level draws over the images [begin, begin + m), m <= kChunk: the images' scores (the image choice's
// words) into score, their keys' wrapping sum and the largest score out. Pure uint32 arithmetic over an array, so
// the compiler vectorizes it (with AVX2 where the CPU has it: one clone per instruction set, picked at load time).
constexpr int64_t kChunk = 256;

// One clone per instruction set where GCC builds for x86-64; elsewhere (or with another compiler) one function.
#if defined(__x86_64__) && defined(__GNUC__) && !defined(__clang__)
#define SK_CLONES __attribute__((target_clones("avx2", "default")))
#else
#define SK_CLONES
#endif

template <bool keyed>
SK_CLONES void scores(const int64_t* indices, int64_t begin, int64_t m, uint32_t base, uint32_t* score,
                      uint32_t& sum, uint32_t& top) {
  uint32_t s = 0, t = 0;
  for (int64_t i = 0; i < m; ++i) {
    const uint32_t key = mix32(static_cast<uint32_t>(keyed ? indices[begin + i] : begin + i));  // as image_key
    s += key;
    score[i] = word32(key, base, 0);
  }
  for (int64_t i = 0; i < m; ++i) t = std::max(t, score[i]);
  sum += s;
  top = t;
}

}  // namespace

void draw_cpu(const DrawParams& params) {
  const uint64_t step = params.counter != nullptr ? static_cast<uint64_t>(*params.counter) : params.step;
  const DrawParams p = with_step(params, step);
  uint32_t sum = 0, best = 0;
  int64_t pos = 0;
  const uint32_t image_base = base_key(p.seed, p.step, kImage);
  uint32_t score[kChunk];
  // The image choice is needed by one-image protocols, the keys' sum by keyed batches; neither: no pass at all.
  const bool needed = p.which == Which::One || p.indices != nullptr;
  for (int64_t begin = 0; needed && begin < p.B; begin += kChunk) {
    const int64_t m = std::min(kChunk, p.B - begin);
    uint32_t top = 0;
    if (p.indices != nullptr) {
      scores<true>(p.indices, begin, m, image_base, score, sum, top);
    } else {
      scores<false>(nullptr, begin, m, image_base, score, sum, top);
    }
    if (begin == 0 || top > best) {  // the first of equal maxima, as torch.argmax
      int64_t i = 0;
      while (score[i] != top) ++i;
      best = top, pos = begin + i;
    }
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
