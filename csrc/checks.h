// The rules every compiled op checks before anything moves, written once (swapkern/_checks.py is their Python
// twin for the Triton and torch backends, function for function under the same names; each refusal names its rule,
// csrc/codes.h; tests/test_fuzz.py and tests/test_rules.py hold both to one model, rule key for rule key).
#pragma once

#include "swapkern.h"
#include "tensor.h"

#include <cstdint>
#include <vector>

namespace swapkern {

// Whether no two positions of a strided layout can share an element: with the dims of size > 1 ordered by stride,
// each stride exceeds the span of all smaller-stride dims. Sufficient, not necessary: layouts it cannot prove
// (stride 0 from expand, unfold, some as_strided views) are refused with ValueError.
bool provably_disjoint(IntArrayRef sizes, IntArrayRef strides);

// Byte ranges [lo, hi) of two tensors' elements intersect (false when either is empty, on the meta device, or
// when they are on different devices): from data pointer, sizes, strides and element size alone.
bool memory_intersects(const Tensor& a, const Tensor& b);

// ValueError unless t is strided, on a device with data, and provably free of self-overlap.
void check_swappable(const char* op, const Tensor& t, const char* name);

// The most positions (samples x indices of the larger side) check_pairs can tell apart: its keys, 2 per position,
// stay below 2^48 (swapkern/_checks.py MAX_POSITIONS is the same number).
constexpr int64_t kMaxPositions = int64_t{1} << 47;

// What an index-like argument may be: Vector, an integer tensor of at most one dim (the swap ops' indices, the
// loader's index); Any, integers of any shape (the loader's pairs, at, image); Flags, integers or bools of any
// shape (the loader's active and flip).
enum class IndexArg { Vector, Any, Flags };

// The one index converter: dtype (index.dtype), layout (index.layout), shape (index.shape) and device
// (index.device) of an index-like argument, in that order; returns it as a contiguous int64 tensor on x's device,
// read once: a copy when it shares memory with a tensor the op writes (x, y), so no kernel reads an index it moves.
// uint64 indices keep their bits: values of 2^63 and more read as negative, and check_range refuses them (its
// from_unsigned). An index that is already contiguous int64 (or uint64) on the right device and apart from x and
// y is used as it is: no op call, no allocation (only its data pointer and numel are read, so a 0-d index serves
// as [1]).
Tensor prepare_index(const char* op, const Tensor& t, const char* name, const Tensor& x, const Tensor& y,
                     IndexArg kind = IndexArg::Vector);

// The values of a contiguous int64 tensor on the host: its own data on the CPU, else a copy into buf (a sync).
const int64_t* host_values(const Tensor& t, std::vector<int64_t>& buf);

// The one range check (index.range): every v[k] in [-n, n) (wrap: negative indices count from the end) or in
// [0, n); from_unsigned: v came from uint64 bits, so a negative v is a value of 2^63 or more (refused, printed as
// such). The first value out of range is the one reported.
void check_range(const char* op, const int64_t* v, int64_t K, int64_t n, bool wrap, bool from_unsigned,
                 const char* name, const char* what);

// The data-dependent checks of K pairs (with validate=true): every a in [-nx, nx), b in [-ny, ny), sample in
// [-ns, ns) (index.range, IndexError); ns * max(nx, ny) < kMaxPositions (size.keyspace); then pair by pair, k =
// 0, 1, ...: same=true: a[k] != b[k] (pair.self), then a[k], then b[k] not seen before in its scope (pair.repeat);
// same=false: a[k] not seen in a, b[k] not seen in b (ValueError): the first failing pair's, and within a pair in
// that order. O(K) time in per-thread buffers reused across calls (those over 32 MiB are given back after the call);
// one host copy for device indices. Two passes (csrc/pairs.cpp): the first only asks whether every check passes
// (branch-free over the pairs, on two threads from 1,024 pairs); only when one fails does the second run the checks
// in their order, on one thread, to report the first failure.
void check_pairs(const char* op, const Tensor& a, const Tensor& b, const Tensor* sample, int64_t nx,
                 int64_t ny, int64_t ns, bool same, bool unsigned_a, bool unsigned_b, bool unsigned_s,
                 const char* what);

}  // namespace swapkern
