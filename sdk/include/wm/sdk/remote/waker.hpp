// SPDX-License-Identifier: MIT
// wm/sdk/remote/waker.hpp: an eventfd to wake a thread that sleeps in poll(), from any thread.
#pragma once

#include <cstdint>

namespace wm::sdk::remote {

/** @brief An eventfd that wakes a poll() on fd(): ring() from any thread, drain() after waking. */
class Waker {
 public:
  /** Throws std::runtime_error if the system refuses an eventfd. */
  Waker();
  ~Waker();
  Waker(const Waker&) = delete;
  Waker& operator=(const Waker&) = delete;

  int fd() const { return fd_; }
  void ring() const noexcept;
  void drain() const noexcept;

 private:
  int fd_ = -1;
};

}  // namespace wm::sdk::remote
