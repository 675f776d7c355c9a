// wm/detail/task_state.hpp: the shared state behind a future; owned by the core, one per task.
#pragma once

#include <wm/abi.h>
#include <wm/errors.hpp>

#include <boost/smart_ptr/intrusive_ptr.hpp>

#include <any>
#include <atomic>
#include <chrono>
#include <cstdint>
#include <exception>
#include <memory>
#include <mutex>
#include <streambuf>
#include <string>
#include <vector>

namespace wm {
class WMFuture;
}

namespace wm::detail {

struct RegisteredTask;
struct TaskState;

/** Something told once when a task finishes (watchers, as_completed, callbacks). */
class Listener {
 public:
  virtual ~Listener() = default;
  virtual void on_done(TaskState* state) noexcept = 0;
};

struct TaskState {
  enum : std::uint32_t { pending = 0, succeeded = 1, failed = 2, status_mask = 3, waiters = 4 };

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

  std::atomic<std::uint32_t> refs{1};
  std::atomic<std::uint32_t> word{pending};  // status bits | waiters bit (futex word)
  std::atomic<std::uint32_t> has_listeners{0};
  std::uint64_t sequence;                   // process-unique, from a counter
  const RegisteredTask* registered = nullptr;  // set for tasks that can run by name
  std::string request;                      // encoded request, filled at submit for remote backends
  std::size_t deferred_size = 0;            // nonzero: a large request, measured at submit, encoded when sent
  std::any result;                          // guarded by mutex once finished
  bool result_discarded = false;            // get_result(discard=true) took it
  std::exception_ptr error;                 // the wm::TaskFailure to rethrow
  std::shared_ptr<const ErrorInfo> error_info;
  const std::string* backend_name = nullptr;  // set at submit; interned, never freed
  std::atomic<bool> submitted{false};
  std::mutex mutex;
  std::vector<std::shared_ptr<Listener>> listeners;

  std::uint32_t status() const noexcept { return word.load(std::memory_order_acquire) & status_mask; }
  bool done() const noexcept { return status() != pending; }
};

inline void intrusive_ptr_add_ref(TaskState* s) noexcept { s->refs.fetch_add(1, std::memory_order_relaxed); }
inline void intrusive_ptr_release(TaskState* s) noexcept {
  if (s->refs.fetch_sub(1, std::memory_order_acq_rel) == 1) delete s;
}

using StatePtr = boost::intrusive_ptr<TaskState>;

// ---- completion and waiting (core/src/task_state.cpp) ----
/** Marks a task succeeded (result already stored) and tells waiters and listeners. */
void finish_success(TaskState* s) noexcept;
/** Marks a task failed with the given failure and tells waiters and listeners. */
void finish_failure(TaskState* s, std::exception_ptr error, std::shared_ptr<const ErrorInfo> info) noexcept;
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

}  // namespace wm::detail
