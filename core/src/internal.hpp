// SPDX-License-Identifier: MIT
// internal.hpp: helpers shared by the core's source files (not installed).
#pragma once

#include <wm/abi.h>
#include <wm/errors.hpp>

#include <cstdint>
#include <exception>
#include <string>
#include <vector>

namespace wm::detail {

struct TaskState;

/** What a task needs of a worker (TaskSpec::needs): amounts > 0, names distinct and sorted. */
struct Needs {
  std::vector<std::string> names;
  std::vector<wm_resource_amount> amounts;  // name pointers into names
  /** "gpu=1, mem=2e+09" */
  std::string text() const;
};

/** cancel(kill_running) on a task that started: asks the backend it was submitted to to stop it. */
bool stop_running_task(TaskState* s);

// ---- where code runs (for error records) ----
const std::string& host_name();
/** Which worker this thread is (index -1: none), for the records of failures that happen here. */
void set_worker(std::int32_t index, std::int32_t rank) noexcept;
std::int32_t worker_index() noexcept;
std::int32_t worker_rank() noexcept;
/** Seeds rand(), random() and drand48() of this process (a worker's WM_PROCESS_SEED). */
void seed_process(std::uint64_t seed) noexcept;
/** Fills the "where" fields of a failure record: this process and thread, or the worker named. */
void fill_where(ErrorInfo& info, const wm_worker_identity* where) noexcept;

/** Name of the work manager whose worker this process is, or of the last one created. */
void set_process_backend(const std::string& name);
std::string process_backend();

// ---- user code the core runs (tasks, done-callbacks) ----
/**
 * Marks this thread as running user code for the scope's life: a task (in-process execution, or
 * a worker executing a request) or a callback (listeners and done-callbacks of a finishing task).
 * Scopes nest: the innermost one is what the thread runs now. Stack traces are taken only for
 * throws inside tasks; the shutdown path uses in_user_code() to tell a re-entrant call.
 */
struct UserCodeScope {
  enum Kind : std::uint8_t { none = 0, task = 1, callback = 2 };
  explicit UserCodeScope(Kind kind) noexcept;
  ~UserCodeScope();
  UserCodeScope(const UserCodeScope&) = delete;
  UserCodeScope& operator=(const UserCodeScope&) = delete;

 private:
  Kind saved_;
};
/** True while this thread runs a task (the innermost UserCodeScope is a task's). */
bool in_task() noexcept;
/** True while this thread runs a task or a callback for the core. */
bool in_user_code() noexcept;

// ---- stack traces ----
/** Records the frames of the throw in progress, if this thread runs a task (called by the
 *  __cxa_throw hook; returns at once otherwise). */
void record_throw_trace() noexcept;
/** Stack trace of the exception most recently thrown in a task on this thread ("" if none was taken). */
std::string last_throw_stacktrace();

/** Builds the failure record of the exception being handled (call inside a catch block). */
ErrorInfo current_exception_info(const std::string& task_name);

// ---- logging (log.cpp: stderr or the host's sink; WM_LOG_LEVEL=debug|info|warning|error, default
// warning; each line with its time, role and pid) ----
void log(int level, const std::string& component, const std::string& message) noexcept;

/** Fails a task with the record info (and the task's own exception, if it ran here); never throws. */
void fail_task(TaskState* s, ErrorInfo info, std::exception_ptr original = nullptr) noexcept;

/** Master side of the wire: decode a reply into the task's result or failure (never throws). */
void complete_from_reply(TaskState* s, const char* data, std::size_t size, const wm_worker_identity* where) noexcept;
/** Work managers of this process whose tasks run in other processes (workers started from what
 *  this process had loaded when they started). */
int remote_work_managers() noexcept;
/** Absolute paths of the task libraries loaded so far. */
std::vector<std::string> loaded_task_libraries();

// ---- set-up errors and help (setup_errors.cpp) ----
/** Called with a ConfigError or PluginError that wm's set-up (make_work_manager, parse_args, ...)
 *  is about to let out to the host: if no one catches it, the program ends with its message on
 *  stderr (rank 0 of a parallel job only) and exit code 2 instead of std::terminate's abort. */
void exit_2_if_uncaught(const Error& e) noexcept;
/** False when a launcher's variables (OMPI_COMM_WORLD_RANK, PMIX_RANK, PMI_RANK, SLURM_PROCID) say
 *  this process is not the first of its job: help and set-up errors are printed by rank 0 only. */
bool is_first_rank() noexcept;

/** Worker side of the wire: execute a request by name, append the reply to out. */
void execute_encoded_into(const void* request, std::size_t size, wm_byte_buffer* out) noexcept;
/** Calls visit for every registered task, in name order (wm_core_services.list_tasks). */
void list_tasks(void (*visit)(void* context, const wm_task_entry* entry), void* context) noexcept;

// ---- GPUs, cores and resources per worker (binding.cpp): the services of ABI 1.1 (wm/abi.h) ----
void svc_worker_environment(std::int32_t index, std::uint32_t n_workers,
                            void (*visit)(void* context, const char* name, const char* value), void* context);
void svc_bind_worker_thread(std::int32_t index, std::uint32_t n_workers);
std::size_t svc_worker_resources(std::int32_t index, std::uint32_t n_workers, wm_resource_amount* out,
                                 std::size_t capacity);

}  // namespace wm::detail
