// torch::stable::parallel_for (at::parallel_for behind a C shim), with exceptions carried across it: an exception
// must not unwind through the shim's C frames, so each chunk catches what its body throws, the first one is kept,
// and it is rethrown on the calling thread once every chunk has ended (an IndexError stays an IndexError).
#pragma once

#include <torch/csrc/stable/ops.h>

#include <atomic>
#include <cstdint>
#include <exception>

namespace swapkern {

template <typename F>
void parallel_for(int64_t begin, int64_t end, int64_t grain, const F& body) {
  if (end - begin <= grain) {  // one chunk: on this thread, as at::parallel_for would run it, without the shim
    if (end > begin) body(begin, end);
    return;
  }
  std::exception_ptr error;
  std::atomic<bool> failed{false};
  torch::stable::parallel_for(begin, end, grain, [&](int64_t b, int64_t e) {
    try {
      body(b, e);
    } catch (...) {
      if (!failed.exchange(true)) error = std::current_exception();
    }
  });
  if (error) std::rethrow_exception(error);
}

}  // namespace swapkern
