// SPDX-License-Identifier: MIT
// registry.cpp: the task registry, the wire format of requests and replies, and the worker-side
// "execute this named task on these bytes".
#include "internal.hpp"
#include "shared_memory.hpp"

#include <wm/task.hpp>

// Task libraries are loaded with Boost.DLL (BOOST_DLL_USE_STD_FS: set for the core in CMake).
#include <string>
#include <vector>
#include <boost/dll/shared_library.hpp>

#include <cxxabi.h>
#include <dlfcn.h>  // dlerror(): the loader's own message, which Boost.DLL's error_code does not carry
#include <unistd.h>

#include <algorithm>
#include <cstdlib>
#include <filesystem>
#include <cstring>
#include <memory>
#include <mutex>
#include <shared_mutex>
#include <string>
#include <unordered_map>
#include <vector>

namespace wm {
namespace detail {
namespace {

constexpr std::uint32_t kRequestMagic = 0x31514d57;  // "WMQ1"
constexpr std::uint32_t kReplyMagic = 0x31504d57;    // "WMP1"
constexpr std::uint8_t kReplyOk = 0;
constexpr std::uint8_t kReplyFailure = 1;

struct Registry {
  std::shared_mutex mutex;
  std::unordered_map<std::string, RegisteredTask> by_name;
  std::unordered_map<const void*, const RegisteredTask*> by_address;
  std::vector<std::string> libraries;  // task libraries loaded, in order
  // Never unloaded (the registry is never destroyed): registered tasks point into them.
  std::vector<boost::dll::shared_library> handles;
  std::unordered_map<std::string, std::string> library_of;  // task name -> library ("" host program)
};

// The task library being loaded on this thread: its static initialisers register its tasks.
thread_local const std::string* t_loading_library = nullptr;

// Tasks register during static initialisation, possibly before any other static of the core is
// constructed: a function-local static is initialised on first use.
Registry& registry() {
  static Registry* r = new Registry;  // never destroyed: tasks may be looked up during exit
  return *r;
}

template <class T>
void put(std::streambuf& out, T v) {
  out.sputn(reinterpret_cast<const char*>(&v), sizeof v);
}
template <class T>
bool get(const char*& p, const char* end, T& v) {
  if (static_cast<std::size_t>(end - p) < sizeof v) return false;
  std::memcpy(&v, p, sizeof v);
  p += sizeof v;
  return true;
}

ErrorInfo here_info(FailureKind kind, const std::string& task, std::string message) {
  ErrorInfo info;
  info.kind = kind;
  info.task_name = task;
  info.message = std::move(message);
  fill_where(info, nullptr);
  info.backend = process_backend();
  return info;
}

[[noreturn]] void throw_failure(ErrorInfo info) { std::rethrow_exception(make_failure(std::move(info))); }

struct ParsedRequest {
  std::string name;
  std::uint64_t fingerprint = 0;
  const char* args = nullptr;
  std::size_t args_size = 0;
};

ParsedRequest parse_request(const char* data, std::size_t size) {
  const char* p = data;
  const char* end = data + size;
  std::uint32_t magic = 0;
  std::uint16_t name_len = 0;
  ParsedRequest r;
  if (!get(p, end, magic) || magic != kRequestMagic)
    throw_failure(here_info(FailureKind::protocol, "<unknown>",
                            "request does not start with the task request marker (corrupt bytes, or "
                            "a worker of another build)"));
  if (!get(p, end, name_len) || static_cast<std::size_t>(end - p) < name_len)
    throw_failure(here_info(FailureKind::protocol, "<unknown>", "request truncated in the task name"));
  r.name.assign(p, name_len);
  p += name_len;
  if (!get(p, end, r.fingerprint))
    throw_failure(here_info(FailureKind::protocol, r.name, "request truncated before the signature"));
  r.args = p;
  r.args_size = static_cast<std::size_t>(end - p);
  return r;
}

// Runs a parsed request through the registry; the task's own exceptions propagate.
void invoke_parsed(const ParsedRequest& r, std::streambuf& payload) {
  const RegisteredTask* task = find_task(r.name);
  if (task == nullptr)
    throw_failure(here_info(FailureKind::unknown_task, r.name,
                            "no task named '" + r.name + "' is registered in this process: register it "
                            "with WM_TASK(" + r.name + ") in the host program, or load the task library "
                            "that defines it with wm::load_task_library() before creating the work manager"));
  if (task->fingerprint != r.fingerprint)
    throw_failure(here_info(FailureKind::signature_mismatch, r.name,
                            "task '" + r.name + "' is registered with the signature " +
                                demangle(task->signature) +
                                "; the call used other argument or result types (submit by name with "
                                "exactly the registered parameter types)"));
  UserCodeScope scope(UserCodeScope::task);
  task->invoke_encoded(r.args, r.args_size, payload);
}

}  // namespace

void register_task(const RegisteredTask& task) noexcept {
  try {
    Registry& r = registry();
    std::unique_lock<std::shared_mutex> lock(r.mutex);
    auto [it, inserted] = r.by_name.emplace(task.name, task);
    if (!inserted) {
      if (it->second.address != task.address)
        log(WM_LOG_WARNING, "core",
            std::string("task name '") + task.name +
                "' is registered twice with different functions; the first registration is kept");
      return;
    }
    r.by_address.emplace(task.address, &it->second);
    if (t_loading_library != nullptr) r.library_of.emplace(task.name, *t_loading_library);
  } catch (...) {
    // Registration runs before main(); an exception here would terminate the program.
  }
}

const RegisteredTask* find_task(std::string_view name) noexcept {
  Registry& r = registry();
  std::shared_lock<std::shared_mutex> lock(r.mutex);
  auto it = r.by_name.find(std::string(name));
  return it == r.by_name.end() ? nullptr : &it->second;
}

const RegisteredTask* find_task(const void* address) noexcept {
  // The last hit is cached per thread: submit loops look up the same function over and over.
  thread_local const void* last_address = nullptr;
  thread_local const RegisteredTask* last_task = nullptr;
  if (address == last_address && last_task != nullptr) return last_task;
  Registry& r = registry();
  std::shared_lock<std::shared_mutex> lock(r.mutex);
  auto it = r.by_address.find(address);
  const RegisteredTask* t = it == r.by_address.end() ? nullptr : it->second;
  last_address = address;
  last_task = t;
  return t;
}

std::uint64_t fingerprint_of(const char* mangled) noexcept {
  std::uint64_t h = 1469598103934665603ull;
  for (const char* p = mangled; *p != '\0'; ++p) {
    h ^= static_cast<unsigned char>(*p);
    h *= 1099511628211ull;
  }
  return h;
}

std::string demangle(const char* mangled) {
  int status = 0;
  std::unique_ptr<char, void (*)(void*)> out(abi::__cxa_demangle(mangled, nullptr, nullptr, &status),
                                             std::free);
  return status == 0 && out ? std::string(out.get()) : std::string(mangled);
}

void write_request_header(std::streambuf& out, std::string_view name, std::uint64_t fingerprint) {
  if (name.size() > 0xffff) throw Error("task name longer than 65535 bytes");
  put(out, kRequestMagic);
  put(out, static_cast<std::uint16_t>(name.size()));
  out.sputn(name.data(), static_cast<std::streamsize>(name.size()));
  put(out, fingerprint);
}

void invoke_request_locally(const std::string& request, ByteBuffer& payload) {
  BufferSink sink(payload);
  invoke_parsed(parse_request(request.data(), request.size()), sink);
}

namespace {

// Replaces whatever part of an "ok" reply was written from start on with the failure reply.
void write_failure_reply(wm_byte_buffer* out, std::size_t start, const ErrorInfo& info) noexcept {
  out->size = start;
  try {
    BufferSink sink(*out);
    put(sink, kReplyMagic);
    put(sink, kReplyFailure);
    encode_value(sink, info);
  } catch (...) {
    out->size = start;  // out of memory while describing the failure: an empty reply fails the task
  }
}

}  // namespace

void execute_encoded_into(const void* request, std::size_t size, wm_byte_buffer* out) noexcept {
  const std::size_t start = out->size;
  std::string name = "<unknown>";
  // A worker whose master maps its memory reads shared arguments in place and replies with
  // references to its own regions.
  const bool share = share_with_master();
  ShareDecodeScope share_in(share, 0);
  ShareEncodeScope share_out(share, true);
  try {
    BufferSink sink(*out);
    ParsedRequest r = parse_request(static_cast<const char*>(request), size);
    name = r.name;
    put(sink, kReplyMagic);
    put(sink, kReplyOk);
    invoke_parsed(r, sink);
  } catch (const TaskFailure& f) {
    try {
      ErrorInfo info = f.info();
      if (info.task_name == "<unknown>") info.task_name = name;
      write_failure_reply(out, start, info);
    } catch (...) {
      write_failure_reply(out, start, ErrorInfo{});
    }
  } catch (...) {
    try {
      write_failure_reply(out, start, current_exception_info(name));
    } catch (...) {
      write_failure_reply(out, start, ErrorInfo{});
    }
  }
}

/** Decodes a reply into the task's result or failure; bad bytes become a ProtocolError. */
void complete_from_reply(TaskState* s, const char* data, std::size_t size, const wm_worker_identity* where) noexcept {
  const char* p = data;
  const char* end = data + size;
  std::uint32_t magic = 0;
  std::uint8_t status = 0;
  std::string task = "<unknown>";
  try {
    task = s->display_name();
    if (!get(p, end, magic) || magic != kReplyMagic || !get(p, end, status) ||
        (status != kReplyOk && status != kReplyFailure)) {
      finish_with(s, FailureKind::protocol,
                  "reply of " + std::to_string(size) +
                      " bytes is not a task reply (corrupt bytes, or a worker of another build)", where);
      return;
    }
    if (status == kReplyOk) {
      try {
        s->set_result_from_payload(p, static_cast<std::size_t>(end - p));
      } catch (const std::exception& e) {
        finish_with(s, FailureKind::protocol, std::string("result did not decode: ") + e.what(), where);
        return;
      }
      finish_success(s);
      return;
    }
    ErrorInfo info;
    try {
      info = decode_value<ErrorInfo>(p, static_cast<std::size_t>(end - p));
    } catch (const std::exception& e) {
      finish_with(s, FailureKind::protocol, std::string("error report did not decode: ") + e.what(), where);
      return;
    }
    // The record names the work manager the task was submitted to (ErrorInfo::backend), which is not
    // the worker's own when a backend's workers are another's (a zmq node's are processes workers).
    if (s->backend_name != nullptr)
      info.backend = *s->backend_name;
    else if (info.backend.empty())
      info.backend = process_backend();
    if (info.kind == FailureKind::unknown_task && find_task(info.task_name) != nullptr)
      info.message = "task '" + info.task_name + "' is registered in the master (host " + host_name() + ", pid " +
                     std::to_string(getpid()) + ") but not in the worker that got it (host " + info.host + ", pid " +
                     std::to_string(info.pid) +
                     "): load the task library that defines it before creating the work manager, so that its "
                     "workers load it too";
    fail_task(s, std::move(info));
  } catch (...) {
    finish_with(s, FailureKind::protocol, "reply could not be processed (out of memory?)", where);
  }
}

void throw_decode_failure(const char* what, const char* detail_text) {
  throw_failure(here_info(FailureKind::protocol, "<unknown>",
                          std::string(what) + ": " + detail_text));
}

}  // namespace detail

std::vector<std::string> registered_tasks() {
  detail::Registry& r = detail::registry();
  std::shared_lock<std::shared_mutex> lock(r.mutex);
  std::vector<std::string> names;
  for (const auto& [name, task] : r.by_name) names.push_back(name);
  return names;
}

void load_task_library(const std::string& path) {
  // rtld_now: a missing symbol is reported here, not as an uncatchable exit at the first call.
  // Workers get the same absolute path, whatever their working directory. A bare name (no '/') is
  // looked up where the dynamic loader looks (LD_LIBRARY_PATH, the system's directories).
  const bool bare = path.find('/') == std::string::npos;
  std::string absolute = bare ? path : std::filesystem::absolute(path).string();
  auto mode = boost::dll::load_mode::rtld_now | boost::dll::load_mode::rtld_local;
  if (bare) mode = mode | boost::dll::load_mode::search_system_folders;
  boost::dll::shared_library library;
  std::error_code ec;
  detail::t_loading_library = &absolute;
  library.load(absolute, mode, ec);
  detail::t_loading_library = nullptr;
  if (ec) {
    // Boost.DLL's error_code only says "bad file descriptor"; the loader's message says what is wrong.
    const char* err = dlerror();
    throw PluginError("cannot load task library '" + path + "': " + (err ? err : "unknown error"));
  }
  {
    detail::Registry& r = detail::registry();
    std::unique_lock<std::shared_mutex> lock(r.mutex);
    for (const auto& l : r.libraries)
      if (l == absolute) return;  // loaded before: this second handle's dlclose only drops a count
    r.libraries.push_back(absolute);
    r.handles.push_back(std::move(library));
  }
  if (const int n = detail::remote_work_managers(); n > 0)
    detail::log(WM_LOG_WARNING, "core",
                "task library " + absolute + " was loaded after " + std::to_string(n) +
                    " work manager(s) running tasks in other processes were created: their workers do not have "
                    "its tasks (they fail with UnknownTaskError there); load task libraries before creating the "
                    "work manager");
}

namespace detail {
void list_tasks(void (*visit)(void* context, const wm_task_entry* entry), void* context) noexcept {
  struct Row {
    std::string name, signature, library;
    std::uint64_t fingerprint;
  };
  std::vector<Row> rows;
  try {
    {
      Registry& r = registry();
      std::shared_lock<std::shared_mutex> lock(r.mutex);
      for (const auto& [name, task] : r.by_name) {
        auto lib = r.library_of.find(name);
        rows.push_back(Row{name, task.signature, lib == r.library_of.end() ? std::string() : lib->second,
                           task.fingerprint});
      }
    }
    std::sort(rows.begin(), rows.end(), [](const Row& a, const Row& b) { return a.name < b.name; });
    for (Row& row : rows) row.signature = demangle(row.signature.c_str());
  } catch (...) {
    log(WM_LOG_ERROR, "core", "out of memory while listing the registered tasks");
    return;
  }
  // Visited outside the registry's lock: the visitor may look tasks up.
  for (const Row& row : rows) {
    const wm_task_entry e{sizeof(wm_task_entry), 0, row.name.c_str(), row.fingerprint, row.signature.c_str(),
                          row.library.c_str()};
    visit(context, &e);
  }
}

std::vector<std::string> loaded_task_libraries() {
  Registry& r = registry();
  std::shared_lock<std::shared_mutex> lock(r.mutex);
  return r.libraries;
}
}  // namespace detail

}  // namespace wm
