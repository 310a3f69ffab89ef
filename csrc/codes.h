// The one encoding of a feature-swap protocol's three characters for C++ (swapkern/_codes.py is the Python table).
#pragma once

#include <cstdint>

namespace swapkern {

enum class Which : int32_t { One = 0, All = 1, Every = 2 };  // 1: one random image, A: all (one draw), E: each its own
enum class What : int32_t { Channels = 0, Pixels = 1 };      // S: two channels, P: two pixels

inline bool valid_codes(int64_t which, int64_t what) { return which >= 0 && which <= 2 && (what == 0 || what == 1); }

}  // namespace swapkern
