// SPDX-License-Identifier: MIT
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
#include <typeinfo>
#include <utility>

namespace wm {

/** Tag for WMFuture::cancel(wm::kill_running): also stop a task that is running. */
struct KillRunning {
  explicit KillRunning() = default;
};
inline constexpr KillRunning kill_running{};

/** Untyped future: everything but the typed result.
 *
 * A default-constructed (or moved-from) future refers to no task: valid() is false, done() and
 * failed() are false, and every call that would wait or read the task throws std::logic_error. */
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

  /** True once the task finished (successfully or not). Never blocks. False if !valid(). */
  bool done() const noexcept { return state_ && state_->done(); }
  bool is_done() const noexcept { return done(); }
  /** True once the task finished with an error. Never blocks. False if !valid(). */
  bool failed() const noexcept { return state_ && state_->status() == detail::TaskState::failed; }

  /** Blocks until the task finishes. */
  void wait() const { detail::wait(checked()); }
  /** Blocks until the task finishes or the timeout passes; returns done(). */
  template <class Rep, class Period>
  bool wait_for(std::chrono::duration<Rep, Period> timeout) const {
    return detail::wait_until(checked(),
                              std::chrono::steady_clock::now() +
                                  std::chrono::duration_cast<std::chrono::steady_clock::duration>(timeout));
  }
  /** Blocks until the task finishes or the deadline passes; returns done(). */
  bool wait_until(std::chrono::steady_clock::time_point deadline) const {
    return detail::wait_until(checked(), deadline);
  }

  /**
   * Cancels the task if no worker has started it: it is never run, get_result() throws
   * wm::CancelledError, and its done-callbacks run once, in this thread, before cancel() returns.
   * Returns true if the task is cancelled (also if it was already), false if it started or
   * finished. A task counts as started once a worker runs it or, on a remote backend, once it was
   * sent to a worker (workers take a few tasks ahead).
   */
  bool cancel() const { return detail::cancel(checked(), false); }
  /**
   * As cancel(), and a task that started is stopped too where its worker can be: on processes, mpi
   * and zmq its worker is stopped as for a timeout and replaced (tasks sent to it behind this one
   * run elsewhere), and the task fails with wm::CancelledError once the worker is gone (wait on the
   * future to know when). False on threads and serial (a thread cannot be stopped) and for a task
   * that finished.
   */
  bool cancel(KillRunning) const { return detail::cancel(checked(), true); }
  /** True once the task failed because it was cancelled. Never blocks. */
  bool cancelled() const noexcept {
    return failed() && state_->failure != nullptr && state_->failure->info &&
           state_->failure->info->kind == FailureKind::cancelled;
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

  /** Blocks, then returns a copy of the result in a std::any (empty for void), rethrowing a
   *  failure. For results that can be copied only: a move-only result (std::unique_ptr, ...)
   *  throws std::logic_error here; read it with Future<T>::get_result().
   *  discard: move the result out instead of copying it (a later get_result() then throws). */
  std::any get_result_any(bool discard = true) const;

  const detail::StatePtr& state() const noexcept { return state_; }
  friend bool operator==(const WMFuture& a, const WMFuture& b) noexcept { return a.state_ == b.state_; }
  friend bool operator!=(const WMFuture& a, const WMFuture& b) noexcept { return a.state_ != b.state_; }

 protected:
  /** The task, or std::logic_error if there is none. */
  detail::TaskState* checked() const {
    if (!state_) detail::throw_no_task();
    return state_.get();
  }
  /** Waits, rethrows a failure, and checks that the result is a `want` (null: any type). */
  detail::TaskState* succeeded_state(const std::type_info* want) const;

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
   *  wm::TaskFailure subclass: TaskError if the task threw).
   *  discard true (the default): moves the result out, so a list of futures does not keep every
   *  result alive; a later get_result() then throws std::logic_error.
   *  discard false: returns a copy and keeps the result. A result that cannot be copied
   *  (std::unique_ptr, any move-only type) throws std::logic_error instead; take it with
   *  get_result() or get_result(true). */
  T get_result(bool discard = true) const {
    detail::TaskState* s = succeeded_state(&typeid(T));
    if constexpr (std::is_void_v<T>) {
      (void)s, (void)discard;
    } else {
      return static_cast<detail::ResultState<T>*>(s)->get(discard);
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
