// wm/future.hpp: WMFuture and Future<T>, the pending result of a submitted task.
//
// @code
//   wm::Future<int> f = wm.submit(square, 7);
//   f.add_done_callback([](const wm::WMFuture& done) { std::cout << done.task_id() << " done\n"; });
//   if (f.wait_for(std::chrono::seconds(5))) std::cout << f.get_result() << "\n";  // 49
// @endcode
//
// Futures are cheap handles (one reference count); copies refer to the same task. A future
// outlives its work manager. Waiting never polls: waiters sleep in the kernel until the task ends.
#pragma once

#include <wm/detail/task_state.hpp>
#include <wm/errors.hpp>

#include <any>
#include <chrono>
#include <exception>
#include <functional>
#include <optional>
#include <string>
#include <type_traits>
#include <utility>

namespace wm {

/** Untyped future: everything but the typed result. */
class WMFuture {
 public:
  WMFuture() = default;
  explicit WMFuture(detail::StatePtr state) noexcept : state_(std::move(state)) {}

  /** False for a default-constructed future. */
  bool valid() const noexcept { return static_cast<bool>(state_); }
  /** A UUID naming this task, unique across processes. */
  std::string task_id() const;
  /** Registered name of the task, or the callable's type. */
  std::string task_name() const;

  /** True once the task finished (successfully or not). Never blocks. */
  bool done() const noexcept { return state_->done(); }
  bool is_done() const noexcept { return done(); }
  /** True once the task finished with an error. Never blocks. */
  bool failed() const noexcept { return state_->status() == detail::TaskState::failed; }

  /** Blocks until the task finishes. */
  void wait() const noexcept { detail::wait(state_.get()); }
  /** Blocks until the task finishes or the timeout passes; returns done(). */
  template <class Rep, class Period>
  bool wait_for(std::chrono::duration<Rep, Period> timeout) const noexcept {
    return detail::wait_until(state_.get(),
                              std::chrono::steady_clock::now() +
                                  std::chrono::duration_cast<std::chrono::steady_clock::duration>(timeout));
  }
  /** Blocks until the task finishes or the deadline passes; returns done(). */
  bool wait_until(std::chrono::steady_clock::time_point deadline) const noexcept {
    return detail::wait_until(state_.get(), deadline);
  }

  /** Blocks, then returns the failure the result would throw (a wm::TaskFailure), or null. */
  std::exception_ptr get_exception() const;
  /** Blocks, then returns the stack trace of the failure ("" if it succeeded or none was taken). */
  std::string get_traceback() const;
  /** Blocks, then returns the failure record, or nullopt if the task succeeded. */
  std::optional<ErrorInfo> error_info() const;

  /** Calls fn(*this) once the task is finished (at once, if it is). An exception thrown by fn is
   *  logged and ignored. The callback runs on whichever thread finishes the task. */
  void add_done_callback(std::function<void(const WMFuture&)> fn) const;

  /** Blocks, then returns the untyped result (empty for void), rethrowing a failure.
   *  discard: drop the future's copy, so a list of futures does not keep every result alive. */
  std::any get_result_any(bool discard = true) const;

  const detail::StatePtr& state() const noexcept { return state_; }
  friend bool operator==(const WMFuture& a, const WMFuture& b) noexcept { return a.state_ == b.state_; }
  friend bool operator!=(const WMFuture& a, const WMFuture& b) noexcept { return a.state_ != b.state_; }

 protected:
  detail::StatePtr state_;
};

/** Typed future of a task returning T. */
template <class T>
class Future : public WMFuture {
 public:
  using value_type = T;
  Future() = default;
  explicit Future(detail::StatePtr state) noexcept : WMFuture(std::move(state)) {}

  /** Blocks until the task finishes, then returns its result or throws its failure (a
   *  wm::TaskFailure subclass: TaskError if the task threw). discard: release the stored result
   *  after this call; a later get_result() then throws std::logic_error. */
  T get_result(bool discard = true) const {
    std::any value = get_result_any(std::is_void_v<T> ? false : discard);
    if constexpr (std::is_void_v<T>) {
      return;
    } else {
      return std::any_cast<T>(std::move(value));
    }
  }
};

}  // namespace wm

template <>
struct std::hash<wm::WMFuture> {
  std::size_t operator()(const wm::WMFuture& f) const noexcept {
    return std::hash<const void*>()(f.state().get());
  }
};
