// The rules every compiled op checks before anything moves, written once (swapkern/_checks.py is their Python
// twin for the Triton and torch backends; tests/test_fuzz.py holds both to one model).
#pragma once

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

// Type, shape and device checks of an index argument; returns it as a contiguous int64 tensor on `device`, read
// once: a copy when it shares memory with a tensor the op writes (x, y), so no kernel reads an index it moves.
// uint64 indices keep their bits: values of 2^63 and more read as negative, and the range check refuses them.
// An index that is already contiguous int64 (or uint64) on the right device and apart from x and y is used as
// it is: no op call, no allocation (only its data pointer and numel are read, so a 0-d index serves as [1]).
Tensor prepare_index(const char* op, const Tensor& t, const char* name, const Tensor& x, const Tensor& y);

// The values of a contiguous int64 tensor on the host: its own data on the CPU, else a copy into buf (a sync).
const int64_t* host_values(const Tensor& t, std::vector<int64_t>& buf);

// The data-dependent checks of K pairs (with validate=true): every a in [-nx, nx), b in [-ny, ny), sample in
// [-ns, ns) (IndexError); then, same=true: a[k] != b[k] and no index twice in one scope; same=false: no repeat
// in a, none in b (ValueError). O(K) time in reused per-thread buffers; one host copy for device indices.
void check_pairs(const char* op, const Tensor& a, const Tensor& b, const Tensor* sample, int64_t nx,
                 int64_t ny, int64_t ns, bool same, bool unsigned_a, bool unsigned_b, bool unsigned_s,
                 const char* what);

}  // namespace swapkern
