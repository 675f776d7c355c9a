// SPDX-License-Identifier: MIT
// where.cpp: host, pid, worker index and stack traces for error records, and the core's log.
#include "console.hpp"
#include "internal.hpp"
#include "link_stats.hpp"

#include <wm/task.hpp>

#include <boost/stacktrace.hpp>

#include <cxxabi.h>
#include <dlfcn.h>
#include <unistd.h>

#include <array>
#include <atomic>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <exception>
#include <mutex>
#include <typeinfo>

namespace wm::detail {

const std::string& host_name() {
  static const std::string name = [] {
    char buf[256] = {};
    if (gethostname(buf, sizeof buf - 1) != 0) return std::string("unknown-host");
    return std::string(buf);
  }();
  return name;
}

namespace {
thread_local std::int32_t t_worker_index = -1;
thread_local std::int32_t t_worker_rank = -1;
std::mutex g_backend_mutex;
std::string g_backend;

// Frames of the last throw in a task on this thread, captured by the __cxa_throw hook. A fixed
// array: a throw must not allocate more than it does already.
struct ThrowTrace {
  std::array<void*, 64> frames{};
  std::size_t count = 0;
};
thread_local ThrowTrace t_trace;
// What this thread runs for the core (UserCodeScope); constant-initialised, so reading it is one load.
thread_local UserCodeScope::Kind t_user_code = UserCodeScope::none;

bool stacktraces_enabled() {
  static const bool enabled = [] {
    const char* v = std::getenv("WM_STACKTRACE");
    return v == nullptr || (std::strcmp(v, "0") != 0 && std::strcmp(v, "off") != 0 &&
                            std::strcmp(v, "false") != 0 && std::strcmp(v, "no") != 0);
  }();
  return enabled;
}
}  // namespace

void set_worker(std::int32_t index, std::int32_t rank) noexcept {
  t_worker_index = index;
  t_worker_rank = rank;
  note_worker(index);  // the statistics' record of what this thread runs as that worker
  note_process_worker(index, rank);  // who a serving process is, for its log lines
}
std::int32_t worker_index() noexcept { return t_worker_index; }
std::int32_t worker_rank() noexcept { return t_worker_rank; }

void seed_process(std::uint64_t seed) noexcept {
  std::srand(static_cast<unsigned>(seed));
  srandom(static_cast<unsigned>(seed));
  srand48(static_cast<long>(seed));
}

void fill_where(ErrorInfo& info, const wm_worker_identity* where) noexcept {
  try {
    if (where == nullptr) {
      info.host = host_name();
      info.pid = static_cast<std::int64_t>(getpid());
      info.worker_index = worker_index();
      info.rank = worker_rank();
      return;
    }
    info.host = where->host != nullptr && *where->host != '\0' ? std::string(where->host) : host_name();
    info.pid = where->pid;
    info.worker_index = where->index;
    info.rank = where->rank;
  } catch (...) {
    // Out of memory for a host name: the record goes without it.
  }
}


void set_process_backend(const std::string& name) {
  std::lock_guard<std::mutex> lock(g_backend_mutex);
  g_backend = name;
}
std::string process_backend() {
  std::lock_guard<std::mutex> lock(g_backend_mutex);
  return g_backend;
}

UserCodeScope::UserCodeScope(Kind kind) noexcept : saved_(t_user_code) {
  t_user_code = kind;
  if (kind == task) t_trace.count = 0;  // a trace from an earlier task must not be reported for this one
}
UserCodeScope::~UserCodeScope() { t_user_code = saved_; }
bool in_task() noexcept { return t_user_code == UserCodeScope::task; }
bool in_user_code() noexcept { return t_user_code != UserCodeScope::none; }

void record_throw_trace() noexcept {
  // Throws outside tasks (the host's own, the core's) cost what they cost without the library.
  if (!in_task() || !stacktraces_enabled()) return;
  t_trace.count = boost::stacktrace::safe_dump_to(2, t_trace.frames.data(), sizeof(t_trace.frames));
}

std::string last_throw_stacktrace() {
  if (t_trace.count == 0) return {};
  auto st = boost::stacktrace::stacktrace::from_dump(t_trace.frames.data(),
                                                    t_trace.count * sizeof(void*));
  return boost::stacktrace::to_string(st);
}

ErrorInfo current_exception_info(const std::string& task_name) {
  ErrorInfo info;
  info.kind = FailureKind::task_exception;
  info.task_name = task_name;
  fill_where(info, nullptr);
  info.backend = process_backend();
  const std::type_info* type = abi::__cxa_current_exception_type();
  info.type_name = type != nullptr ? demangle(type->name()) : "unknown";
  try {
    throw;
  } catch (const std::exception& e) {
    info.message = e.what();
  } catch (...) {
    info.message = "(an exception of type " + info.type_name + ", not derived from std::exception)";
  }
  info.stacktrace = last_throw_stacktrace();
  return info;
}


}  // namespace wm::detail

