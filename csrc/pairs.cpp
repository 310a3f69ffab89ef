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

struct Scratch {
  std::vector<int64_t> host[3];  // host copies of device indices
  std::vector<uint64_t> table;   // open-addressing set: (generation << 48) | (key + 1); 0 or another gen: empty
  uint64_t gen = 0;
  std::vector<uint32_t> table32;  // the same for keys below 2^32 - 1: key + 1, 0 empty; cleared by each call
  std::vector<uint32_t> keys32;   // the keys of check_pairs's pass 1, in buckets (KeySet32::Key)
  std::vector<uint64_t> keys64;   // the same for larger keys (KeySet::Key)
  // Gives back the sets' tables over kKeep bytes (a generation table given back comes back zeroed: empty for any
  // generation). A part calls it on its own thread when its set is done with.
  void trim_sets() {
    release_if_large(table);
    release_if_large(table32);
  }
  // Gives back every buffer over kKeep bytes: the calling thread's, once check_pairs is done with them (never from a
  // part: the buckets in keys32 and keys64 are read by both parts).
  void trim() {
    trim_sets();
    for (auto& h : host) release_if_large(h);
    release_if_large(keys32);
    release_if_large(keys64);
  }
  template <class Key>
  std::vector<Key>& keys() {
    if constexpr (std::is_same_v<Key, uint32_t>) {
      return keys32;
    } else {
      return keys64;
    }
  }
};
thread_local Scratch scratch;

// A set of keys below 2^48 with room for `count` insertions; insert() returns false for a repeat. Each slot holds
// the call's generation beside the key, so a call never clears the table (O(count) work, one random access per
// key); the generation wraps after 65535 calls, and the table is cleared then.
class KeySet {
 public:
  using Key = uint64_t;  // what a bucket of all_pass holds for this set
  static constexpr uint64_t kKeyBits = 48, kKeyMask = (uint64_t{1} << kKeyBits) - 1;

  explicit KeySet(int64_t count) : s_(scratch) {
    size_t cap = 64;
    while (cap < static_cast<size_t>(2 * count)) cap <<= 1;  // load factor <= 1/2
    if (s_.table.size() < cap) s_.table.assign(cap, 0);
    if (++s_.gen == (uint64_t{1} << (64 - kKeyBits))) {
      std::fill(s_.table.begin(), s_.table.end(), 0);
      s_.gen = 1;
    }
    tag_ = s_.gen << kKeyBits;
    mask_ = cap - 1;
    shift_ = 64 - __builtin_ctzll(cap);
    slots_ = s_.table.data();
  }
  size_t slot(uint64_t key) const { return (key * 0x9E3779B97F4A7C15ull) >> shift_; }
  // Brings a key's slot into the cache ahead of its insert: the table is cold after a swap has streamed the data.
  void prefetch(uint64_t key) const { __builtin_prefetch(slots_ + slot(key), 1, 1); }
  bool insert(uint64_t key) {
    const uint64_t mine = tag_ | (key + 1);
    for (size_t h = slot(key);; h = (h + 1) & mask_) {
      const uint64_t v = slots_[h];
      if ((v & ~kKeyMask) != tag_) {  // empty for this call
        slots_[h] = mine;
        return true;
      }
      if (v == mine) return false;
    }
  }

 private:
  Scratch& s_;
  uint64_t tag_;
  size_t mask_;
  int shift_;
  uint64_t* slots_;
};

// KeySet's twin for keys below 2^32 - 1, the common case (positions of a tensor of fewer than 2^31 elements): 4-byte
// slots, so the table is half the size, and it is cleared by each call with one memset that streams it into the
// cache before the random inserts (measured against the generation table on 8,192 keys, single thread: 0.8 vs 1.3
// ns a key with the table in cache, 1.6 vs 7.8 after the cache was flushed).
class KeySet32 {
 public:
  using Key = uint32_t;
  static constexpr uint64_t kLimit = 0xFFFFFFFFull;  // keys below this (key + 1 != 0)

  explicit KeySet32(int64_t count) {
    size_t cap = 64;
    while (cap < static_cast<size_t>(2 * count)) cap <<= 1;  // load factor <= 1/2
    std::vector<uint32_t>& table = scratch.table32;
    if (table.size() < cap) table.resize(cap);
    slots_ = table.data();
    std::memset(slots_, 0, cap * sizeof(uint32_t));
    mask_ = cap - 1;
    shift_ = 64 - __builtin_ctzll(cap);
  }
  size_t slot(uint64_t key) const { return (key * 0x9E3779B97F4A7C15ull) >> shift_; }
  void prefetch(uint64_t key) const { __builtin_prefetch(slots_ + slot(key), 1, 1); }
  bool insert(uint64_t key) {
    const uint32_t mine = static_cast<uint32_t>(key + 1);
    for (size_t h = slot(key);; h = (h + 1) & mask_) {
      const uint32_t v = slots_[h];
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
  uint32_t* slots_;
};

inline int64_t wrapped(int64_t i, int64_t n) { return i < 0 ? i + n : i; }

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

// v wrapped into [0, m) (v in [-m, m)), without a branch.
inline uint64_t wrap_index(int64_t v, int64_t m) { return static_cast<uint64_t>(v + (m & (v >> 63))); }

// Step 1 of all_pass for the pairs [k0, k1): whether any index is out of range or a[k] == b[k] (same), and the keys
// split by part into b0[0, c0) and b1[0, c1) (split: by a hash bit; else all into b0), without a branch on the data.
template <bool kSample, bool kSame, class Key>
bool gather_keys(const int64_t* va, const int64_t* vb, const int64_t* vs, int64_t k0, int64_t k1, int64_t nx,
                 int64_t ny, int64_t ns, Range ra, Range rb, Range rs, bool split, Key* b0, Key* b1,
                 int64_t& c0_out, int64_t& c1_out) {
  const uint64_t n = static_cast<uint64_t>(std::max(nx, ny));
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
    uint64_t base = 0;
    if constexpr (kSample) {
      bad |= rs.out(vs[k]);
      base = wrap_index(vs[k], ns) * n;
    }
    const uint64_t ka = (base + wrap_index(ia, nx)) * 2, kb = (base + wrap_index(ib, ny)) * 2 + (kSame ? 0 : 1);
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
  std::vector<Key>& buf = scratch.keys<Key>();
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
  const bool small_keys = static_cast<uint64_t>(ns) * static_cast<uint64_t>(std::max(nx, ny)) * 2 < KeySet32::kLimit;
  return small_keys ? all_pass_with<KeySet32>(va, vb, vs, K, nx, ny, ns, same, unsigned_a, unsigned_b, unsigned_s)
                    : all_pass_with<KeySet>(va, vb, vs, K, nx, ny, ns, same, unsigned_a, unsigned_b, unsigned_s);
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
  // Keys (scope * n + index) * 2 + side: one set serves both sides when x and y differ; below 2 * kMaxPositions.
  const int64_t n = std::max(nx, ny);
  static_assert(static_cast<uint64_t>(2 * (kMaxPositions - 1)) <= KeySet::kKeyMask,
                "the largest key + 1 must fit the KeySet's 48 bits");
  const bool keyspace = n == 0 || ns <= (kMaxPositions - 1) / n;
  const auto key_of = [&](int64_t k, int side) {
    const int64_t i = side == 0 ? wrapped(va[k], nx) : wrapped(vb[k], ny);
    const int64_t scope = vs != nullptr ? wrapped(vs[k], ns) : 0;
    return static_cast<uint64_t>((scope * n + i) * 2 + (same ? 0 : side));
  };
  if (keyspace && all_pass(va, vb, vs, K, nx, ny, ns, same, unsigned_a, unsigned_b, unsigned_s)) return;
  // Some check fails (pass 1 says so): pass 2, the checks in their order on one thread, finds the first failure:
  // the ranges of a, b, sample, the positions' count, then pair by pair a[k] == b[k] before a's repeat before b's.
  check_range(op, va, K, nx, /*wrap=*/true, unsigned_a, "a", what);
  check_range(op, vb, K, ny, /*wrap=*/true, unsigned_b, "b", what);
  if (vs != nullptr) check_range(op, vs, K, ns, /*wrap=*/true, unsigned_s, "sample", "the sample dim");
  SK_RULE(keyspace, rules::kSizeKeyspace, op, ": too many samples times indices to check (2^47 or more positions)");
  const Failure f = [&]() -> Failure {
    KeySet seen(2 * K);
    for (int64_t k = 0; k < K; ++k) {
      if (same && wrapped(va[k], nx) == wrapped(vb[k], ny)) return {k, 0};
      for (int side = 0; side < 2; ++side) {
        if (!seen.insert(key_of(k, side))) return {k, 1 + side};
      }
    }
    return {K, 0};
  }();
  if (f.k == K) return;  // pass 2 is the check: pass 1 only spares it the work when everything passes
  const int64_t ia = wrapped(va[f.k], nx), ib = wrapped(vb[f.k], ny);
  SK_RULE(f.stage != 0, rules::kPairSelf, op, ": pair ", f.k, " exchanges index ", ia,
          " with itself; a[k] must differ from b[k]");
  const int side = f.stage - 1;
  const int64_t scope = vs != nullptr ? wrapped(vs[f.k], ns) : 0;
  const char* where = same ? (vs != nullptr ? "one sample" : "the tensor") : (side == 0 ? "x" : "y");
  detail::refuse(rules::kPairRepeat, op, ": index ", side == 0 ? ia : ib, " appears more than once in ", where,
                 vs != nullptr ? " (sample " : "", vs != nullptr ? std::to_string(scope) : std::string(),
                 vs != nullptr ? ")" : "", "; the exchanges of one call must be disjoint");
}

}  // namespace swapkern
