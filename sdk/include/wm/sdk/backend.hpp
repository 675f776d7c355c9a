// SPDX-License-Identifier: MIT
// wm/sdk/backend.hpp: write a work-manager backend in C++: derive from wm::sdk::Backend, declare it
// with WM_DECLARE_BACKEND, build it with wm_add_backend() from CMake.
//
// @code
//   #include <wm/sdk/backend.hpp>
//   class InlineBackend final : public wm::sdk::Backend {
//    public:
//     using Backend::Backend;
//    protected:
//     void do_submit(wm_task* const* tasks, std::size_t n) override {
//       for (std::size_t i = 0; i < n; ++i) execute(tasks[i]);  // run and complete in this thread
//     }
//     unsigned do_n_workers() const override { return 1; }
//   };
//   WM_DECLARE_BACKEND(inline_demo, InlineBackend, "1.0.0", "Runs each task when it is submitted",
//                      WM_CAP_IN_PROCESS)
// @endcode
//
// Contract (see wm/abi.h): every task accepted by do_submit is finished exactly once with execute(),
// complete_encoded() or fail(), at the latest when do_join() returns. The base class runs the
// lifecycle (startup once, stop once, join once, whatever threads call in whatever order) and never
// holds a lock of its own while a hook runs: hooks may run tasks and done-callbacks, and those may
// call back into the work manager, shutdown included. Hooks may throw; the SDK turns exceptions into
// wm_error for the core. Backends that run tasks in other processes derive from
// wm::sdk::remote::RemoteBackend (<wm/sdk/remote/remote_backend.hpp>) instead, which implements
// every hook on the remote engine.
#pragma once

#include <wm/abi.h>
#include <wm/sdk/abi_version.hpp>
#include <wm/sdk/metadata.hpp>
#include <wm/sdk/resources.hpp>
#include <wm/sdk/stats.hpp>

#include <algorithm>
#include <condition_variable>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <exception>
#include <mutex>
#include <new>
#include <stdexcept>
#include <vector>
#include <string>
#include <utility>

// The oldest core minor (of this ABI major) the plugin runs on: the minor it is built against,
// unless it says less. A plugin that uses only older services defines it to that minor before
// including this header; it goes into the metadata record (min_core_abi_version), so discovery
// refuses the plugin on an older core, with the reason, without loading it.
#ifndef WM_SDK_MIN_CORE_MINOR
#define WM_SDK_MIN_CORE_MINOR WM_ABI_MINOR
#endif

namespace wm::sdk {

/** Where a task runs: a worker of this backend (wm_worker_identity, with an owned host name). */
struct WorkerIdentity {
  std::int32_t index = -1;
  std::int64_t pid = 0;
  std::int32_t rank = -1;
  std::string host;  // empty: this host

  wm_worker_identity c() const {
    return wm_worker_identity{sizeof(wm_worker_identity), index, pid, rank, 0,
                              host.empty() ? nullptr : host.c_str()};
  }
};

/** Base class of a backend. Public entry points are final; subclasses fill the protected hooks. */
class Backend {
 public:
  Backend(const wm_core_services* services, const wm_backend_config* config, const char* name)
      : services_(services), config_(config), name_(name) {}
  Backend(const Backend&) = delete;
  Backend& operator=(const Backend&) = delete;
  virtual ~Backend() = default;

  /** Runs do_startup once. Callers that come while it runs wait for it; if it throws, a later call
   *  tries again. Throws once shutdown has begun. */
  void startup() {
    {
      std::unique_lock<std::mutex> lock(mutex_);
      for (;;) {
        if (started_) return;
        if (stop_begun_) throw std::runtime_error(std::string("work manager '") + name_ + "' is shut down");
        if (!starting_) break;
        cv_.wait(lock);
      }
      starting_ = true;
    }
    try {
      do_startup();
    } catch (...) {
      settle_startup(false);
      throw;
    }
    settle_startup(true);
  }

  /** flags: wm_shutdown_flag bits. The first call stops (do_stop); a later call with
   *  WM_SHUTDOWN_NOW cuts a gentle stop short (do_stop(true)); a call with WM_SHUTDOWN_WAIT returns
   *  once do_join has returned (one caller runs it, the others wait for that one). */
  void shutdown(std::uint32_t flags) {
    const bool now = (flags & WM_SHUTDOWN_NOW) != 0;
    bool stop = false;
    {
      std::lock_guard<std::mutex> lock(mutex_);
      if (!stop_begun_ || (now && !stop_now_)) {
        stop = true;
        stop_begun_ = true;
        stop_now_ = stop_now_ || now;
        ++stops_running_;
      }
    }
    if (stop) {
      try {
        do_stop(now);
      } catch (...) {
        settle_stop();
        throw;
      }
      settle_stop();
    }
    if ((flags & WM_SHUTDOWN_WAIT) == 0) return;
    {
      std::unique_lock<std::mutex> lock(mutex_);
      // Join only once every do_stop has returned (a stop on another thread may still be failing
      // the tasks it took back) and no startup runs (it was told to stop; its threads may be new).
      cv_.wait(lock, [this] { return !starting_ && stops_running_ == 0 && join_state_ != Join::running; });
      if (join_state_ == Join::done) return;
      join_state_ = Join::running;
    }
    try {
      do_join();
    } catch (...) {
      settle_join();
      throw;
    }
    settle_join();
  }

  void submit(wm_task* const* tasks, std::size_t n) { do_submit(tasks, n); }
  /** cancel(wm::kill_running) on a task that started: true if the backend will stop it. */
  bool cancel_running(wm_task* task) { return do_cancel_running(task); }
  /** wm::WorkManager::stats(): what the backend alone knows; false if it keeps nothing. */
  bool stats(BackendStats& out) { return do_stats(out); }
  void run() { do_run(); }
  bool is_master() const { return do_is_master(); }
  unsigned n_workers() const { return do_n_workers(); }
  const char* name() const { return name_; }

 protected:
  // ---- hooks ----
  virtual void do_startup() {}
  /** Refuse new tasks (do_submit throws from now on), fail the accepted ones that have not started
   *  (WM_FAIL_SHUTDOWN), and tell workers to stop once the running ones are done (within the
   *  backend's shutdown timeout), or at once if now. Never waits. Called once, and possibly a second
   *  time with now = true, maybe while the first call still runs on another thread, maybe from a
   *  task or done-callback this backend is running. */
  virtual void do_stop(bool now) { (void)now; }
  /** Wait until every accepted task is finished and every thread and worker of the backend is gone.
   *  Called once, after do_stop, and never from one of the backend's own threads. */
  virtual void do_join() {}
  /** Accept n tasks: either all of them (return) or none (throw). */
  virtual void do_submit(wm_task* const* tasks, std::size_t n) = 0;
  /** Not the master: serve until told to stop. The default (master-only backends) returns. */
  virtual void do_run() {}
  virtual bool do_is_master() const { return true; }
  virtual unsigned do_n_workers() const = 0;
  /** Stop `task`, which may be running on a worker (wm::kill_running), so that it fails with
   *  WM_FAIL_CANCELLED: true if it will. The task may have finished meanwhile (the core keeps it
   *  alive during the call): identify it by its sequence number, never by using it. The default
   *  (threads cannot be stopped) says no. */
  virtual bool do_cancel_running(wm_task* task) {
    (void)task;
    return false;
  }
  /** For wm::WorkManager::stats() (<wm/sdk/stats.hpp>): the tasks queued and in flight, retries,
   *  bytes, and each worker: its state, the task it runs and for how long, tasks done, restarts,
   *  busy time. Called from any thread, often (ten times a second on a busy run): hold no lock a
   *  task or done-callback could need, and do not wait for a task. The core counts tasks itself and
   *  keeps what threads of in-process backends run (set_worker): the default fills nothing and says
   *  so (false), which is all serial and threads need. Remote backends answer from the dispatcher. */
  virtual bool do_stats(BackendStats& out) {
    (void)out;
    return false;
  }

  // ---- services ----
  const wm_core_services& services() const { return *services_; }
  const wm_backend_config& config() const { return *config_; }
  /** Workers asked for by the user (--n-workers / WM_N_WORKERS); 0 means "your default". */
  unsigned requested_workers() const { return config_->n_workers; }
  bool worker_role() const { return config_->worker_role != 0; }
  /** True once shutdown has begun. */
  bool stopping() const {
    std::lock_guard<std::mutex> lock(mutex_);
    return stop_begun_;
  }

  /** In-process: runs a task in this thread and completes its future. */
  void execute(wm_task* task) const { services_->execute(task); }
  /** Name, sequence number and encoded size of a task. */
  wm_task_info task_info(wm_task* task) const {
    wm_task_info info{};
    info.struct_size = sizeof info;
    services_->task_info(task, &info);
    return info;
  }
  /** Remote: appends the task's encoded request to out. Throws if it cannot. */
  void encode(wm_task* task, wm_byte_buffer& out) const {
    wm_error err{};
    if (services_->encode(task, &out, &err) != 0) throw std::runtime_error(err.message);
  }
  /** Worker side: runs an encoded request and appends the encoded reply to out. */
  void execute_encoded(const void* request, std::size_t size, wm_byte_buffer& out) const {
    services_->execute_encoded(request, size, &out);
  }
  void complete_encoded(wm_task* task, const void* reply, std::size_t size,
                        const WorkerIdentity* where = nullptr) const {
    const wm_worker_identity w = where != nullptr ? where->c() : wm_worker_identity{};
    services_->complete_encoded(task, reply, size, where != nullptr ? &w : nullptr);
  }
  /** Fails a task; where: the worker it ran or was running on (the failure record names it). */
  void fail(wm_task* task, wm_failure_kind kind, const std::string& message, const WorkerIdentity* where = nullptr,
            std::uint32_t attempts = 1) const {
    const wm_worker_identity w = where != nullptr ? where->c() : wm_worker_identity{};
    services_->fail(task, kind, message.c_str(), where != nullptr ? &w : nullptr, attempts);
  }
  void log(wm_log_level level, const std::string& message) const {
    services_->log(level, name_, message.c_str());
  }

  /** Backends whose workers are all alike (in-process ones): true if a worker covers what the task
   *  needs (wm::TaskSpec::needs). Takes no lock and runs no user code. */
  bool workers_cover(wm_task* task) const {
    const wm_task_info info = task_info(task);
    return info.n_needs == 0 || worker_resources().covers(info.needs, info.n_needs);
  }
  /** Fails, with WM_FAIL_RESOURCES, a task accepted that workers_cover() refused, saying what it
   *  asked for and what the workers have. Runs its callbacks: call it without a lock held. */
  void fail_unfit(wm_task* task) const {
    const wm_task_info info = task_info(task);
    fail(task, WM_FAIL_RESOURCES, unfit_message(info.needs, info.n_needs, {worker_resources()}, name_));
  }

  /** The resolved value of a declared option (the core validated type and range already). */
  const wm_option_value& option(const char* option_name) const {
    for (std::size_t i = 0; i < config_->n_options; ++i)
      if (std::strcmp(config_->options[i].name, option_name) == 0) return config_->options[i];
    throw std::logic_error(std::string("backend option not declared: ") + option_name);
  }
  std::int64_t option_int(const char* n) const { return option(n).int_value; }
  double option_double(const char* n) const { return option(n).double_value; }
  bool option_bool(const char* n) const { return option(n).bool_value != 0; }
  std::string option_string(const char* n) const { return option(n).string_value; }

 private:
  enum class Join { not_yet, running, done };

  void settle_startup(bool ok) {
    {
      std::lock_guard<std::mutex> lock(mutex_);
      starting_ = false;
      started_ = ok;
    }
    cv_.notify_all();
  }
  void settle_stop() {
    {
      std::lock_guard<std::mutex> lock(mutex_);
      --stops_running_;
    }
    cv_.notify_all();
  }
  void settle_join() {
    {
      std::lock_guard<std::mutex> lock(mutex_);
      join_state_ = Join::done;
    }
    cv_.notify_all();
  }

  const wm_core_services* services_;
  const wm_backend_config* config_;
  const char* name_;
  mutable std::mutex mutex_;  // guards the lifecycle flags only; never held while a hook runs
  std::condition_variable cv_;
  bool starting_ = false, started_ = false;
  bool stop_begun_ = false, stop_now_ = false;
  int stops_running_ = 0;
  Join join_state_ = Join::not_yet;
  // What a worker has (workers_cover), read from the core once.
  const Resources& worker_resources() const {
    std::call_once(resources_once_, [this] { resources_ = Resources::of_worker(*services_, 0, do_n_workers()); });
    return resources_;
  }
  mutable std::once_flag resources_once_;
  mutable Resources resources_;
};

namespace detail {

inline void set_error(wm_error* err, const char* what) {
  if (err == nullptr) return;
  err->code = 1;
  std::strncpy(err->message, what, sizeof err->message - 1);
  err->message[sizeof err->message - 1] = '\0';
}

// Runs fn, turning any exception into a wm_error: nothing thrown crosses the C boundary.
template <class Fn>
int guarded(wm_error* err, Fn&& fn) noexcept {
  try {
    fn();
    return 0;
  } catch (const std::exception& e) {
    set_error(err, e.what());
  } catch (...) {
    set_error(err, "unknown exception (not derived from std::exception) in backend");
  }
  return 1;
}

inline Backend* self(wm_backend* b) { return reinterpret_cast<Backend*>(b); }

/** Empty if the core can run this plugin; otherwise why not, naming both versions. need: the oldest
 *  core ABI version the plugin runs on (its metadata record's min_core_abi_version, which discovery
 *  has checked already: this refuses only a plugin whose record and code disagree). */
inline std::string core_refusal(const wm_core_services* s, const wm_backend_config* c, const char* name,
                                std::uint32_t need = (WM_ABI_MAJOR << 16) | WM_SDK_MIN_CORE_MINOR) {
  const std::uint32_t have = s != nullptr ? s->abi_version : 0;
  if (s == nullptr || c == nullptr)
    return std::string("work manager '") + name + "' was created without the core's services";
  if (WM_ABI_MAJOR_OF(have) != WM_ABI_MAJOR || have < need ||
      s->struct_size < sizeof(wm_core_services) - sizeof(s->reserved) ||
      c->struct_size < sizeof(wm_backend_config) - sizeof(c->reserved))
    return std::string("work manager '") + name + "' needs a wm core of ABI version " + abi_version_text(need) +
           " or a later " + std::to_string(WM_ABI_MAJOR) + ".x, and this program's core speaks ABI version " +
           abi_version_text(have) + ": upgrade wm (libwm_core) or rebuild the plugin against the SDK of this wm";
  return {};
}

// Name of the backend class B and the oldest core it runs on (its record's min_core_abi_version);
// WM_DECLARE_BACKEND specialises both.
template <class B>
const char* backend_name();
template <class B>
std::uint32_t min_core_abi_version();

template <class B>
wm_backend_descriptor make_descriptor(const char* name, const char* version, std::uint64_t caps) {
  wm_backend_descriptor d{};
  d.abi_version = WM_ABI_VERSION;
  d.struct_size = sizeof(wm_backend_descriptor);
  d.name = name;
  d.version = version;
  d.capabilities = caps;
  d.create = [](const wm_core_services* s, const wm_backend_config* c, wm_error* err) -> wm_backend* {
    const std::string refusal = core_refusal(s, c, backend_name<B>(), min_core_abi_version<B>());
    if (!refusal.empty()) {
      set_error(err, refusal.c_str());
      return nullptr;
    }
    Backend* created = nullptr;
    // The name pointer refers to the descriptor's static string, which lives as long as the library.
    guarded(err, [&] { created = new B(s, c, backend_name<B>()); });
    return reinterpret_cast<wm_backend*>(created);
  };
  d.destroy = [](wm_backend* b) { delete self(b); };
  d.startup = [](wm_backend* b, wm_error* err) { return guarded(err, [&] { self(b)->startup(); }); };
  d.shutdown = [](wm_backend* b, std::uint32_t flags, wm_error* err) {
    return guarded(err, [&] { self(b)->shutdown(flags); });
  };
  d.submit = [](wm_backend* b, wm_task* const* t, std::size_t n, wm_error* err) {
    return guarded(err, [&] { self(b)->submit(t, n); });
  };
  d.run = [](wm_backend* b, wm_error* err) { return guarded(err, [&] { self(b)->run(); }); };
  d.is_master = [](wm_backend* b) -> int { return self(b)->is_master() ? 1 : 0; };
  d.n_workers = [](wm_backend* b) -> std::uint32_t { return self(b)->n_workers(); };
  d.cancel = [](wm_backend* b, wm_task* t) -> int {
    bool stopping = false;
    wm_error ignored{};
    guarded(&ignored, [&] { stopping = self(b)->cancel_running(t); });
    return stopping ? 1 : 0;
  };
  d.stats = [](wm_backend* b, wm_backend_stats* totals, void (*worker)(void*, const wm_worker_stats*),
               void* context) -> int {
    BackendStats s;
    bool filled = false;
    wm_error ignored{};
    if (guarded(&ignored, [&] { filled = self(b)->stats(s); }) != 0 || !filled) return 1;
    if (totals != nullptr) {
      // The core's record may be of another minor: fill what it has room for.
      wm_backend_stats t{};
      t.struct_size = totals->struct_size;
      t.queued = s.queued;
      t.in_flight = s.in_flight;
      t.retried = s.retried;
      t.bytes_sent = s.bytes_sent;
      t.bytes_received = s.bytes_received;
      std::memcpy(totals, &t, std::min<std::size_t>(totals->struct_size, sizeof t));
    }
    if (worker != nullptr)
      for (const WorkerStats& w : s.workers) {
        const wm_worker_stats c = w.c();
        worker(context, &c);
      }
    return 0;
  };
  return d;
}

}  // namespace detail
}  // namespace wm::sdk

/**
 * Declares the one backend of a plugin library.
 *   NAME         identifier; the backend's name (WM_WORK_MANAGER=NAME), a-z 0-9 _
 *   CLASS        a wm::sdk::Backend subclass constructible from (services, config, name)
 *   VERSION      text, e.g. "1.2.0"
 *   DESCRIPTION  one line
 *   ...          wm_capability bits (CAPS), then the options if any: wm::sdk::option_int(...),
 *                option_bool(...), ... (CAPS is part of the variadic list so that a backend without
 *                options compiles cleanly under -Wpedantic)
 * Use it once, at global scope. It emits the metadata record in the WM_PLUGIN_SECTION section (read by discovery without
 * loading the library) and the extern "C" entry symbol wm_backend_entry_NAME. The record says which cores the plugin runs
 * on (WM_SDK_MIN_CORE_MINOR, above): discovery refuses it on an older one, and create() checks the same bound.
 */
#define WM_DECLARE_BACKEND(NAME, CLASS, VERSION, DESCRIPTION, ...)                                   \
  template <>                                                                                        \
  inline const char* wm::sdk::detail::backend_name<CLASS>() {                                        \
    return #NAME;                                                                                    \
  }                                                                                                  \
  [[gnu::section(WM_PLUGIN_SECTION), gnu::used, gnu::retain]] constexpr wm_plugin_metadata          \
      wm_plugin_metadata_##NAME = ::wm::sdk::accepting_cores_from(                                   \
          WM_SDK_MIN_CORE_MINOR,                                                                     \
          ::wm::sdk::make_metadata(#NAME, VERSION, DESCRIPTION, "wm_backend_entry_" #NAME, __VA_ARGS__)); \
  template <>                                                                                        \
  inline std::uint32_t wm::sdk::detail::min_core_abi_version<CLASS>() {                              \
    return wm_plugin_metadata_##NAME.min_core_abi_version;                                           \
  }                                                                                                  \
  extern "C" [[gnu::visibility("default")]] const wm_backend_descriptor* wm_backend_entry_##NAME(   \
      void) {                                                                                        \
    static const wm_backend_descriptor descriptor =                                                  \
        ::wm::sdk::detail::make_descriptor<CLASS>(#NAME, VERSION, wm_plugin_metadata_##NAME.capabilities); \
    return &descriptor;                                                                              \
  }
