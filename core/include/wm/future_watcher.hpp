// SPDX-License-Identifier: MIT
// wm/future_watcher.hpp: FutureWatcher, one wait for many futures.
//
// @code
//   wm::FutureWatcher watcher(futures, /*threshold=*/10);
//   while (watcher.pending() > 0) {
//     for (const wm::WMFuture& f : watcher.wait()) handle(f);  // wakes once >= 10 are done
//   }
// @endcode
#pragma once

#include <wm/future.hpp>

#include <chrono>
#include <cstddef>
#include <iterator>
#include <memory>
#include <type_traits>
#include <utility>
#include <vector>

namespace wm {

namespace detail {
class WatcherCore;
}

/**
 * Waits on many futures with one lock and one sleeping thread: futures signal the watcher as
 * they finish; wait() wakes when `threshold` of them have finished (or when all remaining
 * have, if fewer are left). No polling anywhere.
 */
class FutureWatcher {
  // A range of futures: anything with begin()/end(). Without this constraint `FutureWatcher w(10)`
  // picked the range constructor (an exact match for int) and failed to compile.
  template <class Range>
  using if_range = std::void_t<decltype(std::begin(std::declval<const Range&>())),
                               decltype(std::end(std::declval<const Range&>()))>;

 public:
  /** A watcher with no futures yet that wakes wait() once `threshold` of them have finished. */
  explicit FutureWatcher(std::size_t threshold = 1);
  /** Watches the futures of a range (a std::vector<Future<T>>, of WMFuture, ...). */
  template <class Range, class = if_range<Range>>
  explicit FutureWatcher(const Range& futures, std::size_t threshold = 1) : FutureWatcher(threshold) {
    add(futures);
  }
  ~FutureWatcher();
  FutureWatcher(FutureWatcher&&) noexcept;
  FutureWatcher& operator=(FutureWatcher&&) noexcept;

  /** Watches more futures. */
  template <class Range, class = if_range<Range>>
  void add(const Range& futures) {
    for (const auto& f : futures) add_one(f);
  }
  void add_one(const WMFuture& future);

  /** Tells the watcher that future finished (done by the futures themselves; public as in WESTPA). */
  void signal(const WMFuture& future);

  /** Blocks until the threshold is reached, then returns the finished futures and resets. */
  std::vector<WMFuture> wait();
  /** As wait(), giving up after timeout (then returns what finished so far, maybe nothing). */
  std::vector<WMFuture> wait_for(std::chrono::steady_clock::duration timeout);
  /** Returns the futures finished since the last reset, and forgets them. Never blocks. */
  std::vector<WMFuture> reset();

  std::size_t threshold() const noexcept;
  /** Futures added and not yet returned by wait()/reset(). */
  std::size_t pending() const noexcept;

 private:
  std::shared_ptr<detail::WatcherCore> core_;
};

}  // namespace wm
