// SPDX-License-Identifier: MIT
// backend_link.hpp: a created backend instance behind a WorkManager, and plugin loading.
#pragma once

#include "plugin_scan.hpp"

#include "watch.hpp"

#include <wm/abi.h>
#include <wm/environment.hpp>
#include <wm/stats.hpp>

#include <atomic>
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

namespace wm::detail {

class LinkStats;
struct LinkTag;

/** Options and settings handed to a backend at creation; kept alive as long as the backend. */
struct ResolvedOption {
  std::string name;    // option name as declared ("spin-us")
  std::string text;    // value as given
  std::string source;  // "default", "environment", "command line"
  std::uint32_t type = 0;
  std::int32_t bool_value = 0;
  std::int64_t int_value = 0;
  double double_value = 0;
};

struct BackendConfigStorage {
  std::vector<ResolvedOption> options;
  std::vector<wm_option_value> values;
  std::vector<std::string> libraries;
  std::vector<const char*> library_ptrs;
  std::string host_program, worker_arg;
  wm_backend_config config{};
  void finalize();  // points config at the vectors above
};

/**
 * One backend instance. Holds no lock while it calls the backend: entry points may run tasks and
 * done-callbacks, which may call back in (submit, shutdown, even destroy the work manager). The
 * backend itself makes startup and shutdown idempotent and safe to call concurrently (wm/abi.h).
 */
class BackendLink : public std::enable_shared_from_this<BackendLink> {
 public:
  BackendLink(const ScannedPlugin& plugin, std::unique_ptr<BackendConfigStorage> config);
  /** Shuts down (waiting) and destroys the backend; from inside a task or done-callback, where it
   *  must not wait, it hands both to a thread of its own, which owns them until they are gone. */
  ~BackendLink();
  BackendLink(const BackendLink&) = delete;
  BackendLink& operator=(const BackendLink&) = delete;

  const std::string& name() const noexcept { return *name_; }
  const std::string* interned_name() const noexcept { return name_; }
  std::uint64_t capabilities() const noexcept { return caps_; }
  bool in_process() const noexcept { return (caps_ & WM_CAP_IN_PROCESS) != 0; }

  void startup();
  /** flags: wm_shutdown_flag bits. From inside a task or a done-callback WM_SHUTDOWN_WAIT is
   *  dropped: the shutdown begins and the call returns (whoever waits later waits for the rest). */
  void shutdown(std::uint32_t flags = WM_SHUTDOWN_WAIT);
  void run();
  bool is_master() const;
  unsigned n_workers() const;
  void submit(const StatePtr* states, std::size_t n);
  bool is_shut_down() const noexcept { return stopping_.load(); }
  /** cancel(kill_running): asks the backend to stop a task of its that is running (its worker is
   *  replaced); true if the task will fail with CancelledError. */
  bool stop_running(TaskState* s);
  /** A snapshot: the core's counts, and the backend's totals and workers (WorkManager::stats()). */
  Stats stats();
  /** What the core counts for this work manager. */
  LinkStats& counters() noexcept { return *stats_; }
  const std::shared_ptr<LinkStats>& shared_counters() const noexcept { return stats_; }
  /** A master's: the status dump, the dashboard, its own progress (watch.hpp); until shutdown. */
  void start_watch(const WatchSettings& settings);

 private:
  const std::string* name_;
  const wm_backend_descriptor* desc_ = nullptr;
  wm_backend* instance_ = nullptr;
  std::uint64_t caps_ = 0;
  std::unique_ptr<BackendConfigStorage> config_;
  bool counted_remote_ = false;  // counted in remote_work_managers()
  std::atomic<bool> started_{false};
  std::atomic<bool> stopping_{false};
  std::atomic<bool> registered_{false};  // in the link registry (at its first submit)
  // Tasks point at it until they finish, which is before the backend is destroyed; shared with the
  // thread that destroys a backend let go of inside a task.
  std::shared_ptr<LinkStats> stats_;
  LinkTag* tag_;  // name_'s; never freed (futures read the name); its counters cleared at destruction
  bool counting_;  // false only under WM_BENCH_NO_STATS (the bench's measure of the counting's cost)
  std::unique_ptr<Watch> watch_;
  std::atomic<bool> summarized_{false};  // the shutdown summary was given
  void shut_down();                      // once a waiting shutdown returned
};

/** The core's service table handed to every backend. */
const wm_core_services* core_services();
/** Interns a backend name (never freed, so tasks can point at it). */
const std::string* intern_name(const std::string& name);
/** Directory of the installed plugins, next to the core library. */
std::string default_plugin_directory();
/** Absolute path of the running program. */
std::string host_program_path();

/** Ctrl-C (core/src/sigint.cpp): shuts this backend down on SIGINT, then dies by the signal. */
void install_sigint_for(const std::shared_ptr<BackendLink>& link);

/** Runs a backend that is not the master (a spawned worker, an SPMD rank > 0, a node) until its
 *  master says stop, then ends the process: exit status 0, or 1 with the reason logged. */
[[noreturn]] void serve_and_exit(std::shared_ptr<BackendLink> link);

}  // namespace wm::detail
