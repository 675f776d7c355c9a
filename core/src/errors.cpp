// SPDX-License-Identifier: MIT
// errors.cpp: failure records and the exception types built from them.
#include <wm/detail/codec.hpp>
#include <wm/errors.hpp>
#include <wm/version.hpp>

#include <string>

namespace wm {

const char* core_version() noexcept { return WM_VERSION_STRING; }
unsigned core_abi_version() noexcept { return WM_ABI_VERSION; }

const char* to_string(FailureKind kind) noexcept {
  switch (kind) {
    case FailureKind::task_exception: return "task_exception";
    case FailureKind::worker_lost: return "worker_lost";
    case FailureKind::timeout: return "timeout";
    case FailureKind::shutdown: return "shutdown";
    case FailureKind::protocol: return "protocol";
    case FailureKind::backend: return "backend";
    case FailureKind::unknown_task: return "unknown_task";
    case FailureKind::signature_mismatch: return "signature_mismatch";
    case FailureKind::cancelled: return "cancelled";
    case FailureKind::resources: return "resources";
  }
  return "unknown";
}

std::string ErrorInfo::describe() const {
  std::string s = "task '" + task_name + "'";
  switch (kind) {
    case FailureKind::task_exception: s += " raised " + type_name + ": " + message; break;
    case FailureKind::worker_lost: s += " lost its worker: " + message; break;
    case FailureKind::timeout: s += " timed out: " + message; break;
    case FailureKind::shutdown: s += " did not finish: " + message; break;
    case FailureKind::protocol: s += " failed to decode: " + message; break;
    case FailureKind::backend: s += " failed in the backend: " + message; break;
    case FailureKind::unknown_task: s += " is unknown to the worker: " + message; break;
    case FailureKind::signature_mismatch: s += " was called with the wrong types: " + message; break;
    case FailureKind::cancelled: s += " was cancelled: " + message; break;
    case FailureKind::resources: s += " cannot run on any worker: " + message; break;
  }
  std::string where;
  if (!backend.empty()) where += "work manager " + backend;
  if (!host.empty()) where += std::string(where.empty() ? "" : ", ") + "host " + host;
  if (pid != 0) where += ", pid " + std::to_string(pid);
  if (worker_index >= 0) where += ", worker " + std::to_string(worker_index);
  if (rank >= 0) where += ", rank " + std::to_string(rank);
  if (attempts > 1) where += ", " + std::to_string(attempts) + " attempts";
  if (!where.empty()) s += " [" + where + "]";
  return s;
}

TaskFailure::TaskFailure(ErrorInfo info) : Error(info.describe()), info_(std::move(info)) {}

TaskError::TaskError(ErrorInfo info, std::exception_ptr original)
    : TaskFailure(std::move(info)), original_(std::move(original)) {}

std::exception_ptr make_failure(ErrorInfo info, std::exception_ptr original) {
  switch (info.kind) {
    case FailureKind::task_exception:
      return std::make_exception_ptr(TaskError(std::move(info), std::move(original)));
    case FailureKind::worker_lost: return std::make_exception_ptr(WorkerLostError(std::move(info)));
    case FailureKind::timeout: return std::make_exception_ptr(TaskTimeoutError(std::move(info)));
    case FailureKind::shutdown: return std::make_exception_ptr(ShutdownError(std::move(info)));
    case FailureKind::protocol: return std::make_exception_ptr(ProtocolError(std::move(info)));
    case FailureKind::backend: return std::make_exception_ptr(BackendError(std::move(info)));
    case FailureKind::unknown_task: return std::make_exception_ptr(UnknownTaskError(std::move(info)));
    case FailureKind::signature_mismatch:
      return std::make_exception_ptr(SignatureMismatchError(std::move(info)));
    case FailureKind::cancelled: return std::make_exception_ptr(CancelledError(std::move(info)));
    case FailureKind::resources: return std::make_exception_ptr(ResourceError(std::move(info)));
  }
  return std::make_exception_ptr(BackendError(std::move(info)));
}

}  // namespace wm
