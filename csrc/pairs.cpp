// check_pairs (csrc/checks.h), the data-dependent checks of validate=true: the ranges of a pair list's indices and
// its disjointness, in two passes. Pass 1 only asks whether every check passes, as fast as it can (branch-free over
// the pairs, on two threads from kParallelPairs); pass 2, only when pass 1 says no, runs the checks in their order
// and reports the first failure (rule, pair, side and message as swapkern/_checks.py's twin reports them).
#include "checks.h"

#include "cpu/parallel.h"

#include <algorithm>
#include <cstring>
#include <string>
#include <type_traits>
#include <vector>

namespace swapkern {

namespace {

// Per-thread scratch, reused across calls: no allocation once a thread has seen its largest K, up to kKeep bytes a
// buffer (one of 8M pairs would otherwise keep hundreds of MiB for the life of the thread).
constexpr size_t kKeep = size_t{32} << 20;

template <class T>
void release_if_large(std::vector<T>& v) {
  if (v.capacity() * sizeof(T) > kKeep) std::vector<T>().swap(v);
}

// The buffers of one key width: a set's table (KeySet<T>) and pass 1's buckets.
template <class T>
struct Buffers {
  std::vector<T> table, keys;
};

struct Scratch {
  std::vector<int64_t> host[3];  // host copies of device indices
  Buffers<uint32_t> b32;         // keys below 2^32 - 1, the common case (fewer than 2^31 positions)
  Buffers<uint64_t> b64;         // the others (below 2^48: kMaxPositions)
  template <class T>
  Buffers<T>& of() {
    if constexpr (std::is_same_v<T, uint32_t>) {
      return b32;
    } else {
      return b64;
    }
  }
  // Gives back the sets' tables over kKeep bytes. A part calls it on its own thread when its set is done with.
  void trim_sets() {
    release_if_large(b32.table);
    release_if_large(b64.table);
  }
  // Gives back every buffer over kKeep bytes: the calling thread's, once check_pairs is done with them (never from a
  // part: the buckets are read by both parts).
  void trim() {
    trim_sets();
    for (auto& h : host) release_if_large(h);
    release_if_large(b32.keys);
    release_if_large(b64.keys);
  }
};
thread_local Scratch scratch;

// A set of keys with room for `count` insertions, in Slot-wide slots (key + 1; 0 is empty) of this thread's table;
// insert() returns false for a repeat. The table is cleared by one memset, which also streams it into the cache
// before the random inserts (a scratch microbenchmark on 8,192 keys, not kept, found it faster than a table that
// kept a generation tag per slot and was never cleared, in cache and still more after the cache was flushed).
template <class Slot>
class KeySet {
 public:
  using Key = Slot;  // what a bucket of all_pass holds for this set

  explicit KeySet(int64_t count) {
    size_t cap = 64;
    while (cap < static_cast<size_t>(2 * count)) cap <<= 1;  // load factor <= 1/2
    std::vector<Slot>& table = scratch.of<Slot>().table;
    if (table.size() < cap) table.resize(cap);
    slots_ = table.data();
    std::memset(slots_, 0, cap * sizeof(Slot));
    mask_ = cap - 1;
    shift_ = 64 - __builtin_ctzll(cap);
  }
  size_t slot(uint64_t key) const { return (key * 0x9E3779B97F4A7C15ull) >> shift_; }
  // Brings a key's slot into the cache ahead of its insert.
  void prefetch(uint64_t key) const { __builtin_prefetch(slots_ + slot(key), 1, 1); }
  bool insert(uint64_t key) {
    const Slot mine = static_cast<Slot>(key + 1);
    for (size_t h = slot(key);; h = (h + 1) & mask_) {
      const Slot v = slots_[h];
      if (v == 0) {
        slots_[h] = mine;
        return true;
      }
      if (v == mine) return false;
    }
  }

 private:
  size_t mask_;
  int shift_;
  Slot* slots_;
};

// Keys below this fit 32-bit slots (key + 1 != 0).
constexpr uint64_t kKeys32 = 0xFFFFFFFFull;
static_assert(2 * kMaxPositions < ~uint64_t{0}, "key + 1 of the largest key must fit 64-bit slots");

// The key of a position (an index wrapped into [0, n) by swapkern.h's wrap_index, in its scope: a sample, or the
// whole tensor), below 2 * positions: one set serves both sides (side 1 for y's indices when x and y differ; 0 when
// they are one tensor). Unsigned: an index out of range (pass 1 computes its key before it refuses) wraps, harmlessly.
inline uint64_t position_key(int64_t scope, int64_t n, int64_t index, uint64_t side) {
  return (static_cast<uint64_t>(scope) * static_cast<uint64_t>(n) + static_cast<uint64_t>(index)) * 2 + side;
}

// From this many pairs on, check_pairs splits its keys over two threads.
constexpr int64_t kParallelPairs = 1024;

// Which of two parts a key belongs to: a bit of a hash other than the KeySet's slot hash.
inline uint64_t part_of(uint64_t key) { return (key * 0xD6E8FEB86659FD93ull) >> 63; }

// The first failing check: pair k, stage 0 for a[k] == b[k], 1 + side for a repeat; k == K: none.
struct Failure {
  int64_t k;
  int stage;
};

// One index argument's range, as one unsigned compare: v in [-m, m) (wrap) is v + m in [0, 2m); uint64 bits, v in
// [0, m) (a negative v is a value of 2^63 or more).
struct Range {
  uint64_t shift, limit;
  Range(int64_t m, bool from_unsigned)
      : shift(from_unsigned ? 0 : static_cast<uint64_t>(m)),
        limit(static_cast<uint64_t>(m) << (from_unsigned ? 0 : 1)) {}
  bool out(int64_t v) const { return static_cast<uint64_t>(v) + shift >= limit; }
};

// Step 1 of all_pass for the pairs [k0, k1): whether any index is out of range or a[k] == b[k] (same), and the keys
// split by part into b0[0, c0) and b1[0, c1) (split: by a hash bit; else all into b0), without a branch on the data.
template <bool kSample, bool kSame, class Key>
bool gather_keys(const int64_t* va, const int64_t* vb, const int64_t* vs, int64_t k0, int64_t k1, int64_t nx,
                 int64_t ny, int64_t ns, Range ra, Range rb, Range rs, bool split, Key* b0, Key* b1,
                 int64_t& c0_out, int64_t& c1_out) {
  const int64_t n = std::max(nx, ny);
  const uint64_t mask = split ? ~uint64_t{0} : 0;
  int64_t c0 = 0, c1 = 0;  // in registers: a count indexed by the part would chain each store to the last
  bool bad = false;
  const auto put = [&](uint64_t key) {
    const int64_t part = static_cast<int64_t>(part_of(key) & mask);
    *(part ? b1 + c1 : b0 + c0) = static_cast<Key>(key);  // below Key's range unless an index is out of range
    c1 += part;
    c0 += 1 - part;
  };
  for (int64_t k = k0; k < k1; ++k) {
    const int64_t ia = va[k], ib = vb[k];
    bad |= ra.out(ia) | rb.out(ib);
    int64_t scope = 0;
    if constexpr (kSample) {
      bad |= rs.out(vs[k]);
      scope = wrap_index(vs[k], ns);
    }
    const uint64_t ka = position_key(scope, n, wrap_index(ia, nx), 0);
    const uint64_t kb = position_key(scope, n, wrap_index(ib, ny), kSame ? 0 : 1);
    if constexpr (kSame) bad |= ka == kb;
    put(ka);
    put(kb);
  }
  c0_out = c0;
  c1_out = c1;
  return bad;
}

// Pass 1 of check_pairs: whether every check passes (it says nothing of which fails; check_pairs then runs the
// checks in their order to report it). From kParallelPairs pairs on, in two steps on two threads: each thread reads
// half of the pairs, checks their ranges and splits their keys by a hash bit into one bucket per part (a branch on
// that bit mispredicts half the time, and cost more than the inserts); then each part's keys go into one set,
// sized for what its buckets hold (every occurrence of a key is in one part, so a repeat is a repeat within its
// part). Below that, the same on one thread with one part.
template <class Set>
bool all_pass_with(const int64_t* va, const int64_t* vb, const int64_t* vs, int64_t K, int64_t nx, int64_t ny,
                   int64_t ns, bool same, bool unsigned_a, bool unsigned_b, bool unsigned_s) {
  using Key = typename Set::Key;
  const int64_t parts = K >= kParallelPairs ? 2 : 1;
  // Buckets: thread t's keys of part q at [(t * parts + q) * 2 * share, ...), share = its pairs (ceil(K / parts)).
  const int64_t share = (K + parts - 1) / parts;
  std::vector<Key>& buf = scratch.of<Key>().keys;
  if (buf.size() < static_cast<size_t>(parts * parts * 2 * share)) buf.resize(parts * parts * 2 * share);
  Key* keys = buf.data();
  const auto bucket = [&](int64_t t, int64_t q) { return keys + (t * parts + q) * 2 * share; };
  int64_t count[2][2] = {{0, 0}, {0, 0}};  // [thread][part]
  bool fails[2] = {false, false};
  const Range ra(nx, unsigned_a), rb(ny, unsigned_b), rs(ns, unsigned_s);
  parallel_for(0, parts, 1, [&](int64_t begin, int64_t end) {
    for (int64_t t = begin; t < end; ++t) {
      const int64_t k0 = t * share, k1 = std::min(K, k0 + share);
      int64_t unused = 0;  // one part: nothing goes to b1 (which is b0)
      const auto run = [&](auto gather) {
        fails[t] = gather(va, vb, vs, k0, k1, nx, ny, ns, ra, rb, rs, parts == 2, bucket(t, 0), bucket(t, parts - 1),
                          count[t][0], parts == 2 ? count[t][1] : unused);
      };
      if (vs != nullptr) {
        same ? run(gather_keys<true, true, Key>) : run(gather_keys<true, false, Key>);
      } else {
        same ? run(gather_keys<false, true, Key>) : run(gather_keys<false, false, Key>);
      }
    }
  });
  if (fails[0] || fails[1]) return false;
  bool passed[2] = {true, true};
  parallel_for(0, parts, 1, [&](int64_t begin, int64_t end) {
    for (int64_t q = begin; q < end; ++q) {
      {
        Set seen(count[0][q] + (parts == 2 ? count[1][q] : 0));
        constexpr int64_t kAhead = 8;  // keys prefetched ahead of the one inserted
        for (int64_t t = 0; t < parts && passed[q]; ++t) {
          const Key* b = bucket(t, q);
          const int64_t m = count[t][q];
          for (int64_t j = 0; j < m; ++j) {
            if (j + kAhead < m) seen.prefetch(b[j + kAhead]);
            if (!seen.insert(b[j])) {
              passed[q] = false;
              break;
            }
          }
        }
      }
      scratch.trim_sets();  // this thread's set, once it is done with (the buckets stay: the other part reads them)
    }
  });
  return passed[0] && passed[1];
}

bool all_pass(const int64_t* va, const int64_t* vb, const int64_t* vs, int64_t K, int64_t nx, int64_t ny, int64_t ns,
              bool same, bool unsigned_a, bool unsigned_b, bool unsigned_s) {
  // Keys below 2 * ns * n: 32-bit keys and slots when they fit (half the bytes to write, read and probe).
  const bool small_keys = static_cast<uint64_t>(ns) * static_cast<uint64_t>(std::max(nx, ny)) * 2 < kKeys32;
  return small_keys
             ? all_pass_with<KeySet<uint32_t>>(va, vb, vs, K, nx, ny, ns, same, unsigned_a, unsigned_b, unsigned_s)
             : all_pass_with<KeySet<uint64_t>>(va, vb, vs, K, nx, ny, ns, same, unsigned_a, unsigned_b, unsigned_s);
}

}  // namespace

void check_pairs(const char* op, const Tensor& a, const Tensor& b, const Tensor* sample, int64_t nx,
                 int64_t ny, int64_t ns, bool same, bool unsigned_a, bool unsigned_b, bool unsigned_s,
                 const char* what) {
  struct Trim {
    ~Trim() { scratch.trim(); }  // the calling thread's buffers, whether the checks pass or refuse
  } trim;
  const int64_t K = a.numel();
  const int64_t* va = host_values(a, scratch.host[0]);
  const int64_t* vb = host_values(b, scratch.host[1]);
  const int64_t* vs = sample != nullptr ? host_values(*sample, scratch.host[2]) : nullptr;
  const int64_t n = std::max(nx, ny);
  const bool keyspace = n == 0 || ns <= (kMaxPositions - 1) / n;  // every key below 2 * kMaxPositions
  if (keyspace && all_pass(va, vb, vs, K, nx, ny, ns, same, unsigned_a, unsigned_b, unsigned_s)) return;
  // Some check fails (pass 1 says so): pass 2, the checks in their order on one thread, finds the first failure:
  // the ranges of a, b, sample, the positions' count, then pair by pair a[k] == b[k] before a's repeat before b's.
  check_range(op, va, K, nx, /*wrap=*/true, unsigned_a, "a", what);
  check_range(op, vb, K, ny, /*wrap=*/true, unsigned_b, "b", what);
  if (vs != nullptr) check_range(op, vs, K, ns, /*wrap=*/true, unsigned_s, "sample", "the sample dim");
  SK_RULE(keyspace, rules::kSizeKeyspace, op, ": too many samples times indices to check (2^47 or more positions)");
  const auto scope_of = [&](int64_t k) { return vs != nullptr ? wrap_index(vs[k], ns) : int64_t{0}; };
  const Failure f = [&]() -> Failure {
    KeySet<uint64_t> seen(2 * K);
    for (int64_t k = 0; k < K; ++k) {
      const int64_t ia = wrap_index(va[k], nx), ib = wrap_index(vb[k], ny);
      if (same && ia == ib) return {k, 0};
      const int64_t scope = scope_of(k);
      if (!seen.insert(position_key(scope, n, ia, 0))) return {k, 1};
      if (!seen.insert(position_key(scope, n, ib, same ? 0 : 1))) return {k, 2};
    }
    return {K, 0};
  }();
  if (f.k == K) return;  // pass 2 is the check: pass 1 only spares it the work when everything passes
  const int64_t ia = wrap_index(va[f.k], nx), ib = wrap_index(vb[f.k], ny);
  SK_RULE(f.stage != 0, rules::kPairSelf, op, ": pair ", f.k, " exchanges index ", ia,
          " with itself; a[k] must differ from b[k]");
  const int side = f.stage - 1;
  const int64_t scope = scope_of(f.k);
  const char* where = same ? (vs != nullptr ? "one sample" : "the tensor") : (side == 0 ? "x" : "y");
  detail::refuse(rules::kPairRepeat, op, ": index ", side == 0 ? ia : ib, " appears more than once in ", where,
                 vs != nullptr ? " (sample " : "", vs != nullptr ? std::to_string(scope) : std::string(),
                 vs != nullptr ? ")" : "", "; the exchanges of one call must be disjoint");
}

}  // namespace swapkern
