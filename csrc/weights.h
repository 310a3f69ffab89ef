// Drawing a weight-swap step's pairs, group by group, on the host or the device: the specification is
// swapkern/_groups.py (draw_group), which the Triton and torch backends run; this is it, bit for bit.
#pragma once

#include "hash.h"

#include <torch/headeronly/macros/Macros.h>

#include <cstdint>

namespace swapkern {

// What a group draws each step (WeightDraw::kind):
//   kWPairs  2k distinct positions of [0, n): a = even draws, b = odd draws (rows, cols, mixed, neuron)
//   kWInRow  a row r = below(word(extent), n), then 2k distinct positions of it: r * L + v
//   kWInCol  a column c = below(word(extent), C), then 2k distinct positions v of its n = rows * R elements:
//           (v / R) * C * R + c * R + v % R
//   kWBias   k distinct units u of [0, n), a column c_j = below(word(extent, j), L) each: a = u * L + c_j, b = u
//   kWInter  a candidate pair of layers (la, lb) = cand[below(word(0, extent), ncand)]; k distinct rows of la
//           (draws 0..k-1 keyed by la) and of lb (draws k..2k-1 keyed by lb); pick = the candidate
enum WeightKind : int64_t { kWPairs = 0, kWInRow = 1, kWInCol = 2, kWBias = 3, kWInter = 4 };

// One group's row of the draw table (int64 fields, so the table is one int64 tensor on host and device).
struct WeightDraw {
  int64_t kind = kWPairs;
  int64_t key = 0;    // the layer's key in the generator
  int64_t n = 0;      // positions drawn from
  int64_t k = 0;      // pairs
  int64_t L = 1;      // row length (in-row, bias)
  int64_t C = 1;      // columns (in-col)
  int64_t R = 1;      // elements per column entry (in-col: numel / (rows * cols))
  int64_t index = 0;  // offset of this group in the index buffer: a (k), b (k), keep (k), pick (1), scratch (2k)
  int64_t cand = 0;   // kWInter: offset of the candidates in the draw table, 4 int64 each (la, lb, na, nb)
  int64_t ncand = 0;
};
static_assert(sizeof(WeightDraw) == 10 * sizeof(int64_t), "WeightDraw is read as rows of int64");
constexpr int64_t kWeightDrawFields = 10;

// Index buffer slots of a group.
C10_HOST_DEVICE inline int64_t* slot_a(int64_t* buf, const WeightDraw& g) { return buf + g.index; }
C10_HOST_DEVICE inline int64_t* slot_b(int64_t* buf, const WeightDraw& g) { return buf + g.index + g.k; }
C10_HOST_DEVICE inline int64_t* slot_keep(int64_t* buf, const WeightDraw& g) { return buf + g.index + 2 * g.k; }
C10_HOST_DEVICE inline int64_t* slot_pick(int64_t* buf, const WeightDraw& g) { return buf + g.index + 3 * g.k; }
C10_HOST_DEVICE inline int64_t* slot_scratch(int64_t* buf, const WeightDraw& g) {
  return buf + g.index + 3 * g.k + 1;
}
C10_HOST_DEVICE inline int64_t group_slots(int64_t k) { return 5 * k + 1; }

// Draws t = 0..m-1 of draws.distinct(key, base, n, m, first): draw t takes the r-th smallest value of [0, n) not
// yet taken, r = below(word(key, base, first + t), n - t). `sorted` (m slots) keeps the taken values in order, so
// each draw is one walk: O(m^2) for the whole sequence. emit(t, value) stores draw t.
template <typename Emit>
C10_HOST_DEVICE inline void distinct_draws(int64_t* sorted, int64_t m, int64_t n, uint32_t key, uint32_t base,
                                           int64_t first, Emit emit) {
  for (int64_t t = 0; t < m; ++t) {
    int64_t e = below(word32(key, base, static_cast<uint32_t>(first + t)), n - t);
    int64_t pos = 0;
    while (pos < t && sorted[pos] <= e) {
      ++e;
      ++pos;
    }
    for (int64_t q = t; q > pos; --q) sorted[q] = sorted[q - 1];
    sorted[pos] = e;
    emit(t, e);
  }
}

// Fills group g's a, b, keep (all 1) and pick from (seed, step). table: the whole draw table (for candidates).
C10_HOST_DEVICE inline void draw_weight_group(const WeightDraw& g, const int64_t* table, int64_t* buf, uint64_t seed,
                                              uint64_t step) {
  int64_t* a = slot_a(buf, g);
  int64_t* b = slot_b(buf, g);
  int64_t* keep = slot_keep(buf, g);
  int64_t* scratch = slot_scratch(buf, g);
  const uint32_t pairs = base_key(seed, step, kPairs), extent = base_key(seed, step, kExtent);
  const uint32_t key = static_cast<uint32_t>(g.key);
  for (int64_t j = 0; j < g.k; ++j) keep[j] = 1;
  *slot_pick(buf, g) = 0;
  switch (g.kind) {
    case kWPairs:
      distinct_draws(scratch, 2 * g.k, g.n, key, pairs, 0, [&](int64_t t, int64_t v) { (t % 2 ? b : a)[t / 2] = v; });
      break;
    case kWInRow: {
      const int64_t r = below(word32(key, extent, 0), g.n);
      distinct_draws(scratch, 2 * g.k, g.L, key, pairs, 0,
                     [&](int64_t t, int64_t v) { (t % 2 ? b : a)[t / 2] = r * g.L + v; });
      break;
    }
    case kWInCol: {
      const int64_t c = below(word32(key, extent, 0), g.C);
      distinct_draws(scratch, 2 * g.k, g.n, key, pairs, 0, [&](int64_t t, int64_t v) {
        (t % 2 ? b : a)[t / 2] = (v / g.R) * g.C * g.R + c * g.R + v % g.R;
      });
      break;
    }
    case kWBias:
      distinct_draws(scratch, g.k, g.n, key, pairs, 0, [&](int64_t t, int64_t u) {
        a[t] = u * g.L + below(word32(key, extent, static_cast<uint32_t>(t)), g.L);
        b[t] = u;
      });
      break;
    default: {  // kWInter
      const int64_t pick = below(word32(0, extent, 0), g.ncand);
      const int64_t* cand = table + g.cand + 4 * pick;
      *slot_pick(buf, g) = pick;
      distinct_draws(scratch, g.k, cand[2], static_cast<uint32_t>(cand[0]), pairs, 0,
                     [&](int64_t t, int64_t v) { a[t] = v; });
      distinct_draws(scratch, g.k, cand[3], static_cast<uint32_t>(cand[1]), pairs, g.k,
                     [&](int64_t t, int64_t v) { b[t] = v; });
    }
  }
}

}  // namespace swapkern
