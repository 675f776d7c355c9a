// SPDX-License-Identifier: MIT
// wm/sdk/remote/dispatcher.hpp: the master side of every remote backend, written once: the ready
// queue, each worker's tasks in flight, adaptive windows and batching, retries, per-task timeouts,
// the shutdown state machine (drain, ask to stop, force), the blame rules and the link protocol
// (setup, hello and the registry handshake, large payloads). It is the only code that completes or
// fails a remote task. A Transport moves the bytes.
//
// One thread (the dispatcher's) runs the loop and the transport; submit() and stop() may be called
// from any thread. Done-callbacks run on the dispatcher's thread; they may submit, and shut down.
// RemoteBackend runs one for a backend's master; tests and benchmarks may run one over any transport.
#pragma once

#include <wm/abi.h>
#include <wm/sdk/backend.hpp>
#include <wm/sdk/resources.hpp>
#include <wm/sdk/remote/transport.hpp>

#include <cstddef>
#include <cstdint>
#include <functional>
#include <memory>
#include <string>

namespace wm::sdk::remote {

/** How the engine behaves; remote backends declare the user-facing ones (WM_REMOTE_ENGINE_OPTIONS). */
struct EngineOptions {
  double task_timeout = 0;      // s a task may run before its worker is killed (0: no limit)
  std::uint32_t retries = 0;    // runs again of a task lost to a worker death
  double shutdown_timeout = 5;  // s a gentle shutdown gives running tasks
  int spin_us = 200;            // us the master and workers keep looking after activity before they sleep
  std::size_t max_window = 128; // most tasks in flight on one worker
  int keep_memory_mib = 256;    // freed memory a worker process keeps for reuse (0: malloc defaults)
  /** The workers run on this host and the master maps their memory, as they map its (the backend
   *  declares WM_CAP_MAPS_MEMORY): wm::SharedArray arguments and results go as references. */
  bool share_memory = false;
  /** Workers come and go (nodes): startup does not wait for them, and losing them all is not the
   *  end. Otherwise startup waits for every worker started (up to startup_limit) and fails if none
   *  said hello. */
  bool elastic = false;
  double startup_limit = 60;
  /** Elastic only: tasks that wait this many seconds while there is no worker at all (none ready,
   *  none starting) fail (0: they wait for ever). */
  double no_worker_timeout = 0;
  /** Deaths before its hello after which a worker slot is given up. */
  int early_death_limit = 3;
  /** What the user can do about lost tasks, appended to a WorkerLostError when retries is 0, e.g.
   *  "set WM_PROCESSES_RETRIES to run tasks lost to a worker death again". */
  std::string retries_hint;
  /** Appended to the error when no worker could be started, e.g. where to look. */
  std::string dead_hint;
  /** Called on the dispatcher's thread when a worker is lost that the engine did not stop (it died,
   *  or left with tasks in flight after a gentle stop), before its tasks are failed or run again:
   *  the worker's label, how it ended (the transport's status) and the task it was running ("" if
   *  idle). For transports whose runtime may end the whole job right after a death (MPI), so that
   *  the log names the task at once. Empty: not called. */
  std::function<void(const std::string& worker, const std::string& status, const std::string& task)> on_worker_lost;
};

/** Reads the engine options a remote backend declared with WM_REMOTE_ENGINE_OPTIONS. */
EngineOptions engine_options(const wm_backend_config& config, const char* backend_name);

/** @brief The remote engine's master side over one transport. */
class Dispatcher {
 public:
  Dispatcher(const wm_core_services& services, std::string backend_name, std::unique_ptr<Transport> transport,
             EngineOptions options);
  /** Stops at once (if not yet) and joins. Never from the dispatcher's own thread. */
  ~Dispatcher();
  Dispatcher(const Dispatcher&) = delete;
  Dispatcher& operator=(const Dispatcher&) = delete;

  /** Starts the dispatcher's thread. Unless elastic, returns once every worker said hello or was
   *  given up, and throws with the reason if none could start (or startup_limit passed). */
  void start();
  /** Accepts the tasks (from any thread); throws once stopping, or once no worker can run them. */
  void submit(wm_task* const* tasks, std::size_t n);
  /** Begins the shutdown (from any thread, also from a done-callback on the dispatcher's thread):
   *  tasks not sent fail at once; tasks sent get shutdown_timeout to finish (none if now), then
   *  their workers are stopped by force. Never waits. */
  void stop(bool now);
  /** Waits until the thread is gone: every task finished, every worker ended. */
  void join();
  /** Workers started and not given up. */
  unsigned n_workers() const noexcept;
  /** Waits until at least n workers are ready, the dispatcher stops, or `seconds` pass; true if
   *  they are. */
  bool wait_for_workers(unsigned n, double seconds);
  bool on_own_thread() const noexcept;
  /** cancel(wm::kill_running): stops the worker that holds task `seq` (running it, or with it
   *  queued) as for a timeout; the task fails with WM_FAIL_CANCELLED, the worker's other tasks run
   *  elsewhere. True if a worker held it. From any thread; waits for the dispatcher's answer. */
  bool stop_running(std::uint64_t seq);
  /** The transport, for the thread that owns it once the dispatcher's thread is gone (after join()). */
  Transport& transport();
  /** wm::WorkManager::stats(): the queue, retries, bytes and every worker (its state, the task it
   *  runs and since when, tasks done, restarts, busy time), assembled by the dispatcher's thread on
   *  request (nothing is kept for it on the path of a task but a few counters). From any thread:
   *  waits up to `seconds` for the answer (the thread may be running a done-callback); false if
   *  none came. */
  bool snapshot(BackendStats& out, double seconds = 0.5);

  struct Stats {
    std::uint64_t completed = 0;  // tasks completed or failed by the dispatcher
    std::uint64_t loops = 0;      // turns of the loop
    double cpu_seconds = 0;       // CPU time of the dispatcher's thread (when it ended)
  };
  /** Counters, valid after join(). */
  Stats stats() const;

  struct Impl;

 private:
  std::unique_ptr<Impl> impl_;
};

}  // namespace wm::sdk::remote

/** The options of the remote engine, declared by a remote backend after its capabilities:
 *  WM_DECLARE_BACKEND(name, Class, "1.0", "...", WM_CAP_REMOTE, WM_REMOTE_ENGINE_OPTIONS, ...). */
#define WM_REMOTE_ENGINE_OPTIONS                                                                        \
  ::wm::sdk::option_double("task-timeout", "0", 0, 1e9,                                                \
                           "seconds a task may run before its worker is stopped and the task fails "   \
                           "with a timeout (0: no limit)"),                                            \
      ::wm::sdk::option_int("retries", "0", 0, 1000,                                                   \
                            "times a task lost to a worker death is run again (never for exceptions "  \
                            "the task throws)"),                                                       \
      ::wm::sdk::option_double("shutdown-timeout", "5", 0, 1e9,                                        \
                               "seconds shutdown waits for running tasks before it stops the workers " \
                               "by force"),                                                            \
      ::wm::sdk::option_int("spin-us", "200", 0, 100000,                                               \
                            "microseconds the master and workers keep looking for messages before "    \
                            "they sleep (0: sleep at once)"),                                          \
      ::wm::sdk::option_int("max-window", "128", 1, 65536,                                             \
                            "most tasks in flight on one worker (the window adapts to task length "    \
                            "below this)"),                                                            \
      ::wm::sdk::option_int("worker-keep-memory", "256", 0, 2047,                                      \
                            "MiB of freed memory a worker process keeps for reuse instead of "         \
                            "returning it (large messages reuse warm pages; 0: malloc defaults)")
