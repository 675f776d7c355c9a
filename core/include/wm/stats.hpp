// SPDX-License-Identifier: MIT
// wm/stats.hpp: what a work manager is doing (WorkManager::stats()): tasks by outcome, the queue,
// the rate, bytes moved, the last failures, and each worker with the task it runs.
//
// @code
//   wm::Stats s = wm->stats();   // cheap: call it ten times a second if you like
//   std::cout << s.finished() << "/" << s.submitted << " done, " << s.tasks_per_second << " tasks/s\n";
//   for (const wm::WorkerStats& w : s.workers)
//     if (w.running()) std::cout << "worker " << w.index << " runs " << w.task_name << " for " << w.task_seconds << " s\n";
//   std::cout << wm::format_stats(s);   // the text SIGUSR1 prints
// @endcode
//
// Where the numbers come from: the core counts tasks (submitted, finished, failed by kind) for
// every backend; remote backends (processes, mpi, zmq) add each worker's view from their
// dispatcher, in-process ones (serial, threads) from the core's record of the tasks their threads
// run. A snapshot is taken at one moment per source: totals and workers may differ by the tasks
// that finished in between.
#pragma once

#include <wm/errors.hpp>

#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

namespace wm {

/** What a worker is doing. */
enum class WorkerState {
  starting,  // started (or started again after it was lost), not ready yet
  idle,      // ready, no task
  busy,      // running a task
  lost       // gone and not coming back
};
/** "starting", "idle", "busy", "lost". */
const char* to_string(WorkerState state) noexcept;

/** One worker of a work manager. */
struct WorkerStats {
  std::int32_t index = -1;  // the worker's index (WM_PROCESS_INDEX; threads: its thread's number)
  std::int64_t pid = 0;     // its process (0: not known yet)
  std::int32_t rank = -1;   // its MPI rank, -1: none
  std::string host;         // where it runs
  WorkerState state = WorkerState::idle;
  // The task it runs now: task_sequence 0 (and task_name, task_id empty) when none.
  std::string task_name;
  std::string task_id;  // as WMFuture::task_id()
  std::uint64_t task_sequence = 0;
  double task_seconds = 0;  // how long it has run
  std::uint64_t tasks_done = 0;    // finished on this worker, failed ones included
  std::uint64_t tasks_failed = 0;  // of those, failed (the task threw, the worker died, ...)
  std::uint32_t restarts = 0;      // times it was started again after it was lost
  std::uint32_t in_flight = 0;     // tasks on it and not finished (the running one included)
  double busy_seconds = 0;         // time it had a task, since it first started
  double up_seconds = 0;           // time since it first started
  double busy_fraction = 0;        // busy_seconds / up_seconds
  std::uint64_t bytes_sent = 0;      // requests sent to it (remote backends)
  std::uint64_t bytes_received = 0;  // replies received from it (remote backends)

  bool running() const noexcept { return task_sequence != 0; }
};

/** A failure, as the last ones are kept (Stats::recent_failures). */
struct FailureNote {
  std::string task_name;
  std::string task_id;
  FailureKind kind = FailureKind::task_exception;
  std::string message;        // the failure's message, at most 500 characters
  std::int32_t worker_index = -1;
  double seconds_ago = 0;     // when, before the snapshot
};

/** Number of FailureKind values (Stats::failed_by_kind). */
inline constexpr std::size_t kFailureKinds = 10;

/** A snapshot of a work manager (WorkManager::stats()). */
struct Stats {
  std::string backend;        // "threads", "processes", ...
  std::int64_t pid = 0;       // the master's process
  double uptime_seconds = 0;  // since the work manager was made

  std::uint64_t submitted = 0;  // tasks accepted
  std::uint64_t completed = 0;  // finished with a result
  std::uint64_t failed = 0;     // finished with an error, cancelled ones not counted
  std::uint64_t cancelled = 0;  // cancelled (Future::cancel) before or while they ran
  std::uint64_t retried = 0;    // runs again of tasks lost with a worker (remote backends' retries)
  /** Failures by FailureKind (cancelled ones included, at FailureKind::cancelled). */
  std::uint64_t failed_by_kind[kFailureKinds] = {};

  std::uint64_t queued = 0;     // submitted, not on a worker yet
  std::uint64_t in_flight = 0;  // on workers, not finished (sent ahead to a worker included)
  std::uint64_t running = 0;    // workers running a task now
  double tasks_per_second = 0;  // tasks finished per second over the last 10 s (see rate_seconds)
  double rate_seconds = 0;      // the time that rate was measured over (shorter early in a run;
                                // longer when no snapshot was taken in the 10 s before the last)

  std::uint64_t bytes_sent = 0;      // requests sent to workers
  std::uint64_t bytes_received = 0;  // replies received from workers

  /** Every worker, by index. Empty when the backend keeps no per-worker view, or when its thread
   *  did not answer in time (workers_note says so). */
  std::vector<WorkerStats> workers;
  std::string workers_note;
  /** The last failures (at most 20), oldest first. */
  std::vector<FailureNote> recent_failures;

  /** Tasks finished: completed, failed or cancelled. */
  std::uint64_t finished() const noexcept { return completed + failed + cancelled; }
  std::uint64_t failures(FailureKind kind) const noexcept {
    const auto i = static_cast<std::size_t>(kind);
    return i < kFailureKinds ? failed_by_kind[i] : 0;
  }
  /** Workers in a state. */
  std::size_t workers_in(WorkerState state) const noexcept {
    std::size_t n = 0;
    for (const WorkerStats& w : workers) n += w.state == state ? 1 : 0;
    return n;
  }
};

/** The snapshot as text, a few lines: totals, then one line per worker with the task it runs and
 *  for how long (what SIGUSR1 prints; see --wm-dump-signal). */
std::string format_stats(const Stats& stats);

}  // namespace wm
