// wm/sdk/remote/dispatcher.hpp: the master side of every remote backend, written once. It owns the
// ready queue, each worker's tasks in flight, adaptive windows and batching, retries, per-task
// timeouts, the shutdown state machine (drain, ask to stop, force) and the blame rules; it is the
// only code that completes or fails a remote task. A Transport moves the bytes.
//
// One thread (the dispatcher's) runs the loop and the transport; submit() and stop() may be called
// from any thread. Done-callbacks run on the dispatcher's thread; they may submit, and shut down.
#pragma once

#include <wm/abi.h>
#include <wm/sdk/backend.hpp>
#include <wm/sdk/remote/registry.hpp>
#include <wm/sdk/remote/transport.hpp>

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstddef>
#include <cstdint>
#include <deque>
#include <functional>
#include <memory>
#include <mutex>
#include <set>
#include <string>
#include <thread>
#include <utility>
#include <vector>

namespace wm::sdk::remote {

/** How the engine behaves; remote backends declare the user-facing ones (WM_REMOTE_ENGINE_OPTIONS). */
struct EngineOptions {
  double task_timeout = 0;      // s a task may run before its worker is killed (0: no limit)
  std::uint32_t retries = 0;    // runs again of a task lost to a worker death
  double shutdown_timeout = 5;  // s a gentle shutdown gives running tasks
  int spin_us = 200;            // us the dispatcher keeps looking after activity before it sleeps
  std::size_t max_window = 128; // most tasks in flight on one worker
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

class Dispatcher final : private TransportEvents {
 public:
  using Clock = std::chrono::steady_clock;

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
  unsigned n_workers() const noexcept { return n_workers_.load(std::memory_order_relaxed); }
  bool on_own_thread() const noexcept { return std::this_thread::get_id() == thread_id_.load(); }

  struct Stats {
    std::uint64_t completed = 0;  // tasks completed or failed by the dispatcher
    std::uint64_t loops = 0;      // turns of the loop
    double cpu_seconds = 0;       // CPU time of the dispatcher's thread (when it ended)
  };
  /** Counters, valid after join(). */
  Stats stats() const { return stats_; }

 private:
  struct Job {
    wm_task* task;
    std::uint64_t seq;
    std::size_t size;
    std::uint32_t attempts;  // runs lost to worker deaths so far
  };
  struct InFlight {
    Job job;
    Clock::time_point sent_at;
  };
  enum class State { none, starting, ready, lost, disabled };
  enum class Kill { none, timeout, protocol, shutdown, refused };
  struct Worker {
    State state = State::none;
    WorkerIdentity identity;
    std::deque<InFlight> inflight;
    std::size_t window = 1;
    double avg_us = 1000.0;  // smoothed service time per task
    Clock::time_point last_reply{};
    int early_deaths = 0;
    Kill kill = Kill::none;
    std::string kill_note;
    std::string last_status;
    std::uint8_t room_places = 0;  // entries in room_: 2 when it went to the front while at the back
    bool dirty = false, stop_sent = false, force_sent = false, busy = false, fast = false;
    bool closing = false;  // the transport refused a task: the worker is ending
    bool has_timeout = false;
    Clock::time_point timeout_at{};
  };

  // ---- the thread ----
  void run() noexcept;
  void loop();
  void take_submitted();
  void begin_stopping(bool now);
  void force_all(Kill reason);
  void dispatch();
  void send(WorkerId id, Worker& w, const Job& job, Clock::time_point now);
  void flush_dirty();
  void run_timers(Clock::time_point now);
  int wait_ms(Clock::time_point now);
  void finish_remaining();

  // ---- bookkeeping ----
  bool usable(const Worker& w) const {
    return w.state == State::ready && w.kill == Kill::none && !w.stop_sent && !w.closing;
  }
  std::size_t prefetch() const;
  void offer_room(WorkerId id, Worker& w);
  void rearm_timeout(WorkerId id, Worker& w);
  void classify_spin(Worker& w);
  void note_service_time(Worker& w, const InFlight& done);
  void check_startup();
  void check_dead();
  void give_up(WorkerId id, Worker& w, const std::string& why);
  void fail(const Job& j, wm_failure_kind kind, const std::string& message, const Worker* on = nullptr,
            std::uint32_t attempts = 1);
  void fail_ready(wm_failure_kind kind, const std::string& message);
  std::string task_label(const Job& j) const;
  std::string worker_label(WorkerId id, const Worker& w) const;
  Worker& worker(WorkerId id);

  // ---- TransportEvents ----
  void worker_added(WorkerId id) override;
  void worker_ready(WorkerId id, const Hello& hello) override;
  void reply(WorkerId id, std::uint64_t seq, const char* data, std::size_t size) override;
  void protocol_error(WorkerId id, const std::string& why) override;
  void worker_lost(WorkerId id, const std::string& status) override;

  const wm_core_services& services_;
  const std::string name_;
  std::unique_ptr<Transport> transport_;
  const EngineOptions options_;
  TaskListing own_tasks_;

  // shared with other threads (under mutex_)
  mutable std::mutex mutex_;
  std::condition_variable cv_;
  std::vector<Job> submitted_;
  std::atomic<std::size_t> queued_{0};
  std::atomic<bool> sleeping_{false};
  std::atomic<bool> stop_flag_{false};
  bool stop_requested_ = false, stop_now_ = false;
  bool startup_settled_ = false, finished_ = false;
  std::string startup_error_;
  std::string dead_reason_;
  std::atomic<unsigned> n_workers_{0};
  std::thread thread_;
  std::atomic<std::thread::id> thread_id_{};
  std::mutex join_mutex_;

  // the dispatcher's thread only
  std::vector<Worker> workers_;
  std::deque<Job> ready_;
  std::deque<WorkerId> room_;       // ready workers that may have room, in the order they got it
  std::vector<WorkerId> dirty_;     // workers with frames queued since the last flush
  std::set<std::pair<Clock::time_point, WorkerId>> timeouts_;  // per-task timeouts, one per worker
  std::size_t alive_ = 0;           // workers with a process: starting, ready, or being stopped
  std::size_t ready_count_ = 0;
  std::size_t fast_busy_ = 0;       // workers with tasks in flight short enough to spin for
  std::size_t busy_ = 0;            // workers with tasks in flight
  bool stopping_ = false, stopping_now_ = false, deadline_forced_ = false, settled_seen_ = false, dead_ = false;
  Clock::time_point stop_deadline_{}, last_activity_{}, no_worker_since_{};
  std::string dead_text_;        // dead_reason_, for this thread
  std::string registry_refusal_;  // why a worker was refused by the registry handshake (the first one)
  Stats stats_;
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
                            "below this)")
