// SPDX-License-Identifier: MIT
// wm/errors.hpp: the exceptions the library throws, and ErrorInfo, the record of a task's failure.
#pragma once

#include <cstdint>
#include <exception>
#include <stdexcept>
#include <string>

namespace wm {

/** Base of every exception the library throws. */
class Error : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

/** Bad configuration: an environment variable, a command-line value, an unknown work manager. */
class ConfigError : public Error {
 public:
  using Error::Error;
};

/** A backend plugin could not be found, loaded or created. */
class PluginError : public Error {
 public:
  using Error::Error;
};

/** A callable cannot run on this backend: it is not registered with WM_TASK, or its arguments
 *  cannot be encoded. Thrown by submit(). */
class TaskNotRegisteredError : public Error {
 public:
  using Error::Error;
};

/** Why a future failed. */
enum class FailureKind : std::int32_t {
  task_exception = 0,     // the task threw
  worker_lost = 1,        // the worker running it died
  timeout = 2,            // it ran past the per-task timeout
  shutdown = 3,           // the work manager shut down before it finished
  protocol = 4,           // bytes did not decode
  backend = 5,            // another backend failure
  unknown_task = 6,       // the worker does not know the task's name
  signature_mismatch = 7, // the task was called with other argument types than it was registered with
  cancelled = 8,          // Future::cancel() removed it before it started, or stopped it (kill_running)
  resources = 9           // it needs more of a resource (TaskSpec::needs) than any worker has
};

/** Name of a failure kind ("worker_lost", ...). */
const char* to_string(FailureKind kind) noexcept;

/** Everything known about a failure; it travels between processes with the reply. */
struct ErrorInfo {
  FailureKind kind = FailureKind::task_exception;
  std::string type_name;   // type of the exception the task threw, e.g. "std::invalid_argument"
  std::string message;     // its what(), or the backend's explanation
  std::string task_name;   // registered name, or "<unregistered callable>"
  std::string host;        // where it ran
  std::int64_t pid = 0;
  std::int32_t worker_index = -1;  // -1: not run by a worker (the master, or never ran)
  std::int32_t rank = -1;          // MPI rank of the process it ran in, -1: none
  std::string backend;     // work manager it was submitted to
  std::string stacktrace;  // where the exception was thrown, if the platform gives one
  std::uint32_t attempts = 1;

  /** One line: "task 'f' raised std::runtime_error: boom [host h, pid 12, worker 0, rank 1]". */
  std::string describe() const;

  template <class Archive>
  void serialize(Archive& ar) {
    ar(kind, type_name, message, task_name, host, pid, worker_index, rank, backend, stacktrace, attempts);
  }
};

/** Base of the exceptions a failed future rethrows from get_result(). */
class TaskFailure : public Error {
 public:
  explicit TaskFailure(ErrorInfo info);
  const ErrorInfo& info() const noexcept { return info_; }
  FailureKind kind() const noexcept { return info_.kind; }
  const std::string& task_name() const noexcept { return info_.task_name; }
  /** Type name of the exception the task threw ("" if the task did not throw). */
  const std::string& type_name() const noexcept { return info_.type_name; }
  const std::string& stacktrace() const noexcept { return info_.stacktrace; }

 private:
  ErrorInfo info_;
};

/** The task threw. For tasks run in this process, original() holds the very exception. */
class TaskError : public TaskFailure {
 public:
  TaskError(ErrorInfo info, std::exception_ptr original);
  /** The exception the task threw, if it ran in this process (else null). */
  std::exception_ptr original() const noexcept { return original_; }

 private:
  std::exception_ptr original_;
};

/** The worker process running the task died (signal or exit). */
class WorkerLostError : public TaskFailure {
 public:
  using TaskFailure::TaskFailure;
};
/** The task ran past the backend's per-task timeout and its worker was replaced. */
class TaskTimeoutError : public TaskFailure {
 public:
  using TaskFailure::TaskFailure;
};
/** The work manager shut down before the task finished, or submit() came after shutdown. */
class ShutdownError : public TaskFailure {
 public:
  using TaskFailure::TaskFailure;
};
/** A message did not decode (corrupt bytes, another build of the program). */
class ProtocolError : public TaskFailure {
 public:
  using TaskFailure::TaskFailure;
};
/** The backend failed the task for another reason. */
class BackendError : public TaskFailure {
 public:
  using TaskFailure::TaskFailure;
};
/** The worker does not know a task of this name (not registered there, task library not loaded). */
class UnknownTaskError : public TaskFailure {
 public:
  using TaskFailure::TaskFailure;
};
/** The task's name is known but it was called with other argument or result types. */
class SignatureMismatchError : public TaskFailure {
 public:
  using TaskFailure::TaskFailure;
};

/** Future::cancel() removed the task before it started, or stopped it while it ran (wm::kill_running). */
class CancelledError : public TaskFailure {
 public:
  using TaskFailure::TaskFailure;
};
/** The task needs more of a resource (TaskSpec::needs) than any worker of the work manager has: it
 *  could never run, so it failed when it was submitted. The message names what it asked for and
 *  what the workers have. */
class ResourceError : public TaskFailure {
 public:
  using TaskFailure::TaskFailure;
};

/** The exception that a future failing with `info` throws (original: the task's own exception). */
std::exception_ptr make_failure(ErrorInfo info, std::exception_ptr original = nullptr);

}  // namespace wm
