// Host objects the ops keep between calls (the multi-tensor engine, a FeatureSwap's bound call), reached by a
// handle: an int64 that crosses the dispatcher. An unknown or freed handle is found missing, never dereferenced;
// a call holds its object (a shared_ptr), so a free on another thread during the call cannot pull it away.
#pragma once

#include <cstdint>
#include <memory>
#include <mutex>
#include <unordered_map>
#include <utility>

namespace swapkern {

template <typename T>
class Registry {
 public:
  int64_t add(std::shared_ptr<T> item) {
    const std::lock_guard<std::mutex> lock(mutex_);
    const int64_t handle = next_++;
    items_[handle] = std::move(item);
    return handle;
  }
  // nullptr when the handle is unknown or freed.
  std::shared_ptr<T> find(int64_t handle) {
    const std::lock_guard<std::mutex> lock(mutex_);
    auto it = items_.find(handle);
    return it == items_.end() ? nullptr : it->second;
  }
  // Removes the object and hands it over (destroyed when its last holder lets go, outside the lock); nullptr if
  // unknown.
  std::shared_ptr<T> take(int64_t handle) {
    const std::lock_guard<std::mutex> lock(mutex_);
    auto it = items_.find(handle);
    if (it == items_.end()) return nullptr;
    std::shared_ptr<T> item = std::move(it->second);
    items_.erase(it);
    return item;
  }

 private:
  std::mutex mutex_;
  std::unordered_map<int64_t, std::shared_ptr<T>> items_;
  int64_t next_ = 1;
};

// The one registry of T objects, never destroyed (no order of destruction at exit to get wrong).
template <typename T>
Registry<T>& registry_of() {
  static auto* r = new Registry<T>();
  return *r;
}

}  // namespace swapkern
