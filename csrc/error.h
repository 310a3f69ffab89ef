// How the host code refuses an input (this header was csrc/check.h; csrc/checks.h holds the rules themselves).
// SK_RULE(cond, rule, parts...) is the validator's: it streams its parts into the message as TORCH_CHECK does and,
// when cond is false, throws the exception of `rule` (csrc/codes.h: rules::k...) with the message prefixed by the
// rule's key, "[index.range] swapkern.swap_: ...": swapkern/_native.py strips the prefix into err.rule, so every
// backend's exception names the rule that refused the input (swapkern/_codes.py: RULES). The SK_CHECK_* macros
// below carry no rule (the internal ops: engine, draw). The stable ABI has no c10::Error, so each Python
// exception type is a standard C++ exception that the op-call binding translates:
//   SK_CHECK_VALUE  std::invalid_argument  -> ValueError
//   SK_CHECK_INDEX  std::out_of_range      -> IndexError
//   SK_CHECK_TYPE   std::runtime_error, the message tagged "[TypeError] " (no C++ exception becomes a TypeError:
//                   swapkern/_native.py turns the tag into one)
//   SK_CHECK        std::runtime_error     -> RuntimeError
// The message is built only when the check fails. Never throw out of a torch::stable::parallel_for body
// (csrc/cpu/parallel.h carries exceptions across it).
#pragma once

#include "codes.h"

#include <torch/csrc/stable/device_struct.h>
#include <torch/headeronly/core/Layout.h>
#include <torch/headeronly/core/ScalarType.h>
#include <torch/headeronly/util/HeaderOnlyArrayRef.h>

#include <cstdint>
#include <ostream>
#include <sstream>
#include <stdexcept>
#include <string>
#include <vector>

namespace swapkern {

// The tag SK_CHECK_TYPE puts in front of its message (swapkern/_native.py: _TYPE_ERROR reads it).
constexpr const char* kTypeErrorTag = "[TypeError] ";

namespace detail {

// Message parts: anything with an operator<<, and tensor metadata printed as ATen prints it ([3, 4], cuda:0,
// Strided), so the messages read as they did before the stable ABI.
template <typename T>
void put(std::ostream& os, const T& v) {
  os << v;
}
void put(std::ostream& os, torch::headeronly::IntHeaderOnlyArrayRef v);
inline void put(std::ostream& os, const std::vector<int64_t>& v) {
  put(os, torch::headeronly::IntHeaderOnlyArrayRef(v));
}
void put(std::ostream& os, const torch::stable::Device& d);
void put(std::ostream& os, torch::headeronly::Layout layout);

template <typename... Parts>
std::string message(const Parts&... parts) {
  std::ostringstream os;
  (put(os, parts), ...);
  return os.str();
}

template <typename E, typename... Parts>
[[noreturn]] __attribute__((noinline, cold)) void fail(const Parts&... parts) {
  throw E(message(parts...));
}

// The exception of a rule: its message "[key] parts..." (TypeError: tagged first, "[TypeError] [key] ...").
template <typename... Parts>
[[noreturn]] __attribute__((noinline, cold)) void refuse(const Rule& rule, const Parts&... parts) {
  switch (rule.refusal) {
    case Refusal::Value: throw std::invalid_argument(message("[", rule.key, "] ", parts...));
    case Refusal::Index: throw std::out_of_range(message("[", rule.key, "] ", parts...));
    case Refusal::Type: break;
  }
  throw std::runtime_error(message(kTypeErrorTag, "[", rule.key, "] ", parts...));
}

}  // namespace detail
}  // namespace swapkern

#define SK_RULE(cond, rule, ...)                       \
  do {                                                 \
    if (__builtin_expect(!(cond), 0)) {                \
      ::swapkern::detail::refuse(rule, __VA_ARGS__);   \
    }                                                  \
  } while (0)

#define SK_CHECK_WITH(E, cond, ...)                    \
  do {                                                 \
    if (__builtin_expect(!(cond), 0)) {                \
      ::swapkern::detail::fail<E>(__VA_ARGS__);        \
    }                                                  \
  } while (0)

#define SK_CHECK(cond, ...) SK_CHECK_WITH(std::runtime_error, cond, __VA_ARGS__)
#define SK_CHECK_VALUE(cond, ...) SK_CHECK_WITH(std::invalid_argument, cond, __VA_ARGS__)
#define SK_CHECK_INDEX(cond, ...) SK_CHECK_WITH(std::out_of_range, cond, __VA_ARGS__)
#define SK_CHECK_TYPE(cond, ...) SK_CHECK_WITH(std::runtime_error, cond, ::swapkern::kTypeErrorTag, __VA_ARGS__)
