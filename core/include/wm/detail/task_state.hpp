// SPDX-License-Identifier: MIT
// wm/detail/task_state.hpp: the shared state behind a future; owned by the core, one per task.
//
// Kept small on purpose (a host may hold hundreds of thousands of outstanding futures): no mutex,
// no std::any, no listener vector. The result lives typed in ResultState<R>; a failure, rare, in a
// record allocated only then; listeners in a lock-free list that finishing closes.
#pragma once

#include <wm/abi.h>
#include <wm/errors.hpp>

#include <boost/smart_ptr/intrusive_ptr.hpp>

#include <any>
#include <atomic>
#include <chrono>
#include <cstdint>
#include <exception>
#include <iosfwd>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <tuple>
#include <type_traits>
#include <typeinfo>
#include <utility>

namespace wm {
class WMFuture;
}

namespace wm::detail {

struct RegisteredTask;
struct TaskState;
struct Needs;  // what a task needs of a worker (TaskSpec::needs); core/src/internal.hpp

/** Something told once when a task finishes (watchers, as_completed, callbacks). */
class Listener {
 public:
  virtual ~Listener() = default;
  virtual void on_done(TaskState* state) noexcept = 0;
};

/** One registered listener; a singly linked list hangs off TaskState::listeners. */
struct ListenerNode {
  std::shared_ptr<Listener> listener;
  ListenerNode* next = nullptr;
};

/** Why a task failed: the exception get_result() rethrows and its record. Allocated on failure only. */
struct Failure {
  std::exception_ptr error;        // the wm::TaskFailure to rethrow (null: out of memory)
  std::optional<ErrorInfo> info;   // nullopt: out of memory while describing it
};

/** Spin windows of a waiter (TaskState::wait_spin_us) for in-process and remote backends. */
inline constexpr std::uint8_t kLocalWaitSpinMicros = 20;
inline constexpr std::uint8_t kRemoteWaitSpinMicros = 0;

struct TaskState {
  enum : std::uint32_t { pending = 0, succeeded = 1, failed = 2, status_mask = 3, waiters = 4 };
  // result_guard (a futex word): whether the result was taken, and how many threads copy it now.
  enum : std::uint32_t { result_taken = 1u << 31, result_copiers = result_taken - 1 };

  TaskState() noexcept;
  TaskState(const TaskState&) = delete;
  TaskState& operator=(const TaskState&) = delete;
  virtual ~TaskState();

  // ---- filled by the typed implementation (TaskStateImpl in task.hpp) ----
  /** Runs the callable in this thread and stores its result; the task's exceptions propagate. */
  virtual void run_local() = 0;
  /** Writes the encoded request (header, name, fingerprint, arguments); false: cannot run remotely. */
  virtual bool encode_request(std::streambuf& out) const = 0;
  /** Stores the result decoded from the payload of an "ok" reply; throws on bad bytes. */
  virtual void set_result_from_payload(const char* data, std::size_t size) = 0;
  /** Name shown in errors: the registered name or the callable's type. */
  virtual std::string display_name() const = 0;
  /** Drops the bound arguments (called once the task is finished; they are not needed after). */
  virtual void release_arguments() noexcept {}
  /** Type of the result (typeid(void) for none); Future<T> checks it before touching the result. */
  virtual const std::type_info& result_type() const noexcept = 0;
  /** The stored result in a std::any, copied or (take) moved out; empty for void. Throws
   *  std::logic_error if it was taken already or its type cannot be copied into a std::any. */
  virtual std::any result_any(bool take) = 0;

  std::atomic<std::uint32_t> refs{1};
  std::atomic<std::uint32_t> word{pending};      // status bits | waiters bit (futex word)
  std::atomic<std::uint32_t> result_guard{0};    // result_taken | number of copies in progress
  std::atomic<bool> submitted{false};
  // Whether the task may still be cancelled: queued until a backend starts it (runs it, encodes it
  // to send it, or finishes it); cancelled by Future::cancel(). One exchange decides (claim_start).
  enum : std::uint8_t { run_queued = 0, run_started = 1, run_cancelled = 2 };
  std::atomic<std::uint8_t> run_state{run_queued};
  // How long a waiter spins before it sleeps, in microseconds, set at submit: a result made in this
  // process comes within microseconds; one from another process needs the cores that a spinning
  // waiter would take (the dispatcher's and the worker's), so their waiters sleep at once.
  std::uint8_t wait_spin_us = kLocalWaitSpinMicros;
  std::uint64_t sequence;                        // process-unique, from a counter
  const RegisteredTask* registered = nullptr;    // set for tasks that can run by name
  // Set at submit: the name of the work manager it was submitted to, in a record per work manager
  // that is never freed (LinkTag, core/src/link_stats.hpp: also how its counts are found).
  const std::string* backend_name = nullptr;
  std::atomic<ListenerNode*> listeners{nullptr}; // closed_list() once the task finished
  const Failure* failure = nullptr;              // written before the status says failed
  // Remote backends: the size of the encoded request, measured at submit (where a task that cannot
  // travel fails, in the caller's thread); the request itself is encoded when it is sent, straight
  // into the backend's storage. 0: not measured yet.
  std::uint64_t encoded_size = 0;
  Needs* needs = nullptr;  // owned; null: needs nothing

  std::uint32_t status() const noexcept { return word.load(std::memory_order_acquire) & status_mask; }
  bool done() const noexcept { return status() != pending; }
};

inline void intrusive_ptr_add_ref(TaskState* s) noexcept { s->refs.fetch_add(1, std::memory_order_relaxed); }
inline void intrusive_ptr_release(TaskState* s) noexcept {
  if (s->refs.fetch_sub(1, std::memory_order_acq_rel) == 1) delete s;
}

using StatePtr = boost::intrusive_ptr<TaskState>;

// ---- the result (core/src/task_state.cpp) ----

/**
 * Whether a result can be copied. std::is_copy_constructible says yes for a standard container of
 * move-only elements (std::vector<std::unique_ptr<T>>), whose copy constructor exists but does not
 * compile; this also looks at the elements of anything that holds values the way a container does
 * (a `value_type` member: the standard containers, std::optional, std::array; maps through their
 * std::pair), and inside std::pair and std::tuple. Found by member type, so that this header needs
 * no container header. Views and iterators (an `element_type` or `iterator_category` member) copy
 * no elements and are not looked into. A class of your own holding such a member should delete its
 * copy constructor (then it is move-only here too).
 */
template <class T>
struct is_copyable;
template <class T>
inline constexpr bool is_copyable_v = is_copyable<T>::value;

template <class T, class = void>
struct has_element_type : std::false_type {};
template <class T>
struct has_element_type<T, std::void_t<typename T::element_type>> : std::true_type {};
template <class T, class = void>
struct has_iterator_category : std::false_type {};
template <class T>
struct has_iterator_category<T, std::void_t<typename T::iterator_category>> : std::true_type {};
/** True for a type that copies its elements with itself: a value_type that is another object type,
 *  and neither an element_type (smart pointers, std::span) nor an iterator_category (iterators). */
template <class T, class = void>
struct owns_elements : std::false_type {};
template <class T>
struct owns_elements<T, std::void_t<typename T::value_type>>
    : std::bool_constant<std::is_object_v<typename T::value_type> &&
                         !std::is_same_v<std::remove_cv_t<typename T::value_type>, std::remove_cv_t<T>> &&
                         !has_element_type<T>::value && !has_iterator_category<T>::value> {};
// The elements decide, for what owns them (looked at only once T itself can be copied).
template <class T, bool = owns_elements<T>::value>
struct elements_copyable : std::true_type {};
template <class T>
struct elements_copyable<T, true> : is_copyable<std::remove_cv_t<typename T::value_type>> {};

template <class T>
struct is_copyable : std::conjunction<std::is_copy_constructible<T>, elements_copyable<T>> {};
template <class A, class B>
struct is_copyable<std::pair<A, B>> : std::bool_constant<is_copyable_v<A> && is_copyable_v<B>> {};
template <class... T>
struct is_copyable<std::tuple<T...>> : std::bool_constant<(is_copyable_v<T> && ...)> {};

// Copies run side by side and without a lock (a copy constructor is user code); taking the
// result waits until the copies in progress are done, and later copies are refused.
/** Registers a copy of the result; false if the result was taken. */
bool begin_copy(TaskState* s) noexcept;
void end_copy(TaskState* s) noexcept;
/** Claims the result for moving out, once the copies in progress are done; false if it was taken. */
bool begin_take(TaskState* s) noexcept;
[[noreturn]] void throw_result_taken(const TaskState* s);
/** Throws std::logic_error: a future (or a watched state) that refers to no task. */
[[noreturn]] void throw_no_task();
[[noreturn]] void throw_result_not_copyable(const TaskState* s, const char* what);

/** The typed result slot between TaskState and the implementations; Future<R> reads it. */
template <class R>
class ResultState : public TaskState {
 public:
  const std::type_info& result_type() const noexcept final { return typeid(R); }

  /** The result, copied (discard false) or moved out; only once the task succeeded. */
  R get(bool discard) {
    if (!discard) {
      if constexpr (is_copyable_v<R>) {
        if (!begin_copy(this)) throw_result_taken(this);
        struct Copy {
          TaskState* s;
          ~Copy() { end_copy(s); }
        } copy{this};
        return *result;
      } else {
        throw_result_not_copyable(this, "get_result(false) would copy it; call get_result() to move it out");
      }
    }
    if (!begin_take(this)) throw_result_taken(this);
    R out = std::move(*result);
    result.reset();
    return out;
  }

  std::any result_any(bool take) final {
    if constexpr (is_copyable_v<R>) {
      return std::any(get(take));
    } else {
      (void)take;
      throw_result_not_copyable(this, "get_result_any cannot hold it; use Future<R>::get_result()");
    }
  }

  /** Stores the result (before the task is marked succeeded). */
  template <class... A>
  void emplace_result(A&&... a) {
    result.emplace(std::forward<A>(a)...);
  }

 private:
  std::optional<R> result;
};

template <>
class ResultState<void> : public TaskState {
 public:
  const std::type_info& result_type() const noexcept final { return typeid(void); }
  std::any result_any(bool) final { return {}; }
};

// ---- completion and waiting (core/src/task_state.cpp) ----
/** Marks a task succeeded (result already stored) and tells waiters and listeners. */
void finish_success(TaskState* s) noexcept;
/** Marks a task failed: error is what get_result() throws, info its record (nullopt: unknown). */
void finish_failure(TaskState* s, std::exception_ptr error, std::optional<ErrorInfo> info) noexcept;
/** Fails a task for a reason other than the task's own exception. where: the worker it ran or was
 *  running on (null: none, the failure is recorded as this process's); attempts: runs made. */
void finish_with(TaskState* s, FailureKind kind, std::string message, const wm_worker_identity* where = nullptr,
                 std::uint32_t attempts = 1) noexcept;
/** Runs the task here and finishes it, turning any exception into a TaskError. */
void execute_local(TaskState* s) noexcept;
/** Blocks until the task is finished; no polling (futex). */
void wait(TaskState* s) noexcept;
/** Blocks until the task is finished or the deadline passes; true if finished. */
bool wait_until(TaskState* s, std::chrono::steady_clock::time_point deadline) noexcept;
/** Registers a listener, or calls it right away if the task is already finished. */
void add_listener(TaskState* s, std::shared_ptr<Listener> listener);
/** Unique id of the task (a UUID string), derived from its sequence number. */
std::string task_uuid(const TaskState* s);
/** Next process-unique task sequence number. */
std::uint64_t next_sequence() noexcept;

/** A backend starts the task (runs it, sends it, or finishes it): true, or false if it was
 *  cancelled (the backend then drops it). */
bool claim_start(TaskState* s) noexcept;
/** Future::cancel(): fails the task with CancelledError if no backend started it; true if so.
 *  kill_running: a task that started is stopped by its backend if it can (its worker is replaced). */
bool cancel(TaskState* s, bool kill_running);
/** TaskSpec::needs(): sets what the task needs of a worker; throws wm::Error on a bad name or
 *  amount, or once the task was submitted. */
void set_needs(TaskState* s, const std::pair<std::string_view, double>* amounts, std::size_t n);

}  // namespace wm::detail
