// The one encoding of a feature-swap protocol's three characters for C++, and the keys of the rules that refuse an
// input (swapkern/_codes.py is the Python table of both; tests/test_rules.py holds the two tables equal).
#pragma once

#include <cstdint>

namespace swapkern {

enum class Which : int32_t { One = 0, All = 1, Every = 2 };  // 1: one random image, A: all (one draw), E: each its own
enum class What : int32_t { Channels = 0, Pixels = 1 };      // S: two channels, P: two pixels

inline bool valid_codes(int64_t which, int64_t what) { return which >= 0 && which <= 2 && (what == 0 || what == 1); }

// The Python exception a refusal becomes (csrc/error.h: SK_RULE throws the C++ exception that crosses as it).
enum class Refusal : int32_t { Value, Index, Type };  // ValueError, IndexError, TypeError

// A rule of the validator: a short stable key, carried by the exception on every backend (err.rule in Python; the
// message's "[key] " prefix across the stable ABI), and the exception type it raises.
struct Rule {
  const char* key;
  Refusal refusal;
};

// Every rule the compiled validator checks, one line each: "key", exception. swapkern/_codes.py RULES lists these
// and the rules only Python checks (arguments, autograd).
namespace rules {
// the op's own shape rules (csrc/ops.h, wrap_dim)
inline constexpr Rule kOpDim{"op.dim", Refusal::Value};               // a dim out of range
inline constexpr Rule kOpSampleDim{"op.sample_dim", Refusal::Value};  // sample_dim == dim
inline constexpr Rule kOpShape{"op.shape", Refusal::Value};           // the op's shape needs (a 4-d batch)
inline constexpr Rule kOpDims{"op.dims", Refusal::Value};             // swap_between_: dim_x and dim_y
// one tensor (check_tensors, check_swappable)
inline constexpr Rule kTensorDtype{"tensor.dtype", Refusal::Type};       // not 1, 2, 4, 8 or 16 bytes, or quantized
inline constexpr Rule kTensorLayout{"tensor.layout", Refusal::Value};    // not strided
inline constexpr Rule kTensorMeta{"tensor.meta", Refusal::Value};        // on the meta device
inline constexpr Rule kTensorOverlap{"tensor.overlap", Refusal::Value};  // not provably free of self-overlap
// two tensors (x and y; out and data)
inline constexpr Rule kTensorsDtype{"tensors.dtype", Refusal::Value};
inline constexpr Rule kTensorsDevice{"tensors.device", Refusal::Value};
inline constexpr Rule kTensorsOverlap{"tensors.overlap", Refusal::Value};
// index tensors (prepare_index)
inline constexpr Rule kIndexDtype{"index.dtype", Refusal::Type};  // not an integer dtype (bool: flags only)
inline constexpr Rule kIndexLayout{"index.layout", Refusal::Value};
inline constexpr Rule kIndexShape{"index.shape", Refusal::Value};  // more than 1-d
inline constexpr Rule kIndexDevice{"index.device", Refusal::Value};
inline constexpr Rule kIndexLength{"index.length", Refusal::Value};  // a, b, sample of different lengths
// the geometry (plan_geometry, fill_side)
inline constexpr Rule kGeometrySlice{"geometry.slice", Refusal::Value};  // slice shapes differ
inline constexpr Rule kGeometryDims{"geometry.dims", Refusal::Value};    // more than kMaxDims after coalescing
inline constexpr Rule kGeometryEmpty{"geometry.empty", Refusal::Index};  // K > 0 pairs into a dim of size 0
// validate=true (check_range, check_pairs)
inline constexpr Rule kIndexRange{"index.range", Refusal::Index};
inline constexpr Rule kSizeKeyspace{"size.keyspace", Refusal::Value};  // samples x positions >= kMaxPositions
inline constexpr Rule kPairSelf{"pair.self", Refusal::Value};          // a[k] == b[k] in one tensor
inline constexpr Rule kPairRepeat{"pair.repeat", Refusal::Value};      // an index twice in one scope
// the fused loader (prepare_load)
inline constexpr Rule kLoadDtype{"load.dtype", Refusal::Type};    // out not a float type, data not uint8
inline constexpr Rule kLoadShape{"load.shape", Refusal::Value};   // out, data, index, scale, shift, flip shapes
inline constexpr Rule kLoadPlan{"load.plan", Refusal::Value};     // a FeaturePlan of another shape or protocol
}  // namespace rules

}  // namespace swapkern
