// SPDX-License-Identifier: MIT
// link_stats.hpp: what the core counts for one work manager (tasks by outcome, the rate, the last
// failures, in-process workers' tasks), kept cheap on the path of every task: sharded relaxed
// counters, and per-worker records that only the worker's thread writes.
#pragma once

#include <wm/detail/task_state.hpp>
#include <wm/stats.hpp>

#include <atomic>
#include <chrono>
#include <cstdint>
#include <deque>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

namespace wm::detail {

/** Nanoseconds of CLOCK_MONOTONIC_COARSE: a few ns to read where CLOCK_MONOTONIC costs a hundred
 *  on these VMs (bench/NOTES.md), at the tick's resolution (1-4 ms). */
std::int64_t coarse_ns() noexcept;
/** Nanoseconds of CLOCK_MONOTONIC (steady_clock). */
std::int64_t steady_ns() noexcept;
/** The id WMFuture::task_id() gives the task of this sequence number (task_state.cpp). */
std::string task_uuid_of(std::uint64_t sequence);

/**
 * One in-process worker's record: the task it runs and since when, its tasks done, its busy time.
 * Written by the thread that runs the worker's tasks, read by stats() from any thread (relaxed
 * atomics: a reader may see a task's name with the previous one's start; it is a snapshot).
 *
 * The clock is not read for every task (a read costs more than a tiny task's bookkeeping may): one
 * task in `every` is timed, start and end, and stands for the others in the busy time; `every`
 * doubles (up to 64) while timed tasks are short and falls back to 1 once one is long, so a long
 * task is timed exactly. An untimed task's start is the last reading (off by the tiny tasks run
 * since). A reader that sees a task run long asks for the next start to be read (reread).
 */
struct alignas(64) WorkerMeter {
  std::atomic<const char*> task_name{nullptr};
  std::atomic<std::uint64_t> task_seq{0};  // 0: no task
  std::atomic<std::int64_t> task_start{0};
  std::atomic<std::uint64_t> done{0};
  std::atomic<std::int64_t> busy{0};   // ns
  std::atomic<std::int64_t> first{0};  // ns: its first task's start
  std::atomic<bool> reread{false};
  // The worker's own (atomics only so that a second thread lending itself as the same worker, as
  // two threads submitting to serial at once do, is no data race; the counts are then approximate).
  std::atomic<std::int64_t> last_read{0};
  std::atomic<std::int32_t> countdown{0}, every{1};
  std::atomic<bool> timed{false};

  void begin(const char* name, std::uint64_t seq) noexcept;
  void end() noexcept;
};

/** An in-process task this thread runs as a worker, and that worker's meter (svc_execute). */
struct MeteredRun {
  WorkerMeter* meter = nullptr;
  const TaskState* task = nullptr;
};
/** Starts metering s on the meter of the worker this thread is (set_worker), if it has one;
 *  returns what this thread metered before (a task may run another in place: serial). */
MeteredRun begin_metered(TaskState* s) noexcept;
/** finish(): s ends on this thread's meter before it is published (a waiter then sees it done). */
void finished_meter(const TaskState* s) noexcept;
/** After the task: ends its meter if finish() did not, and restores what was metered before. */
void end_metered(const MeteredRun& before) noexcept;

/** Per work manager: owned by its BackendLink, pointed to by its tasks (TaskState::link_stats),
 *  which all finish before the backend is destroyed. */
class LinkStats {
 public:
  explicit LinkStats(const std::string& backend);
  LinkStats(const LinkStats&) = delete;
  LinkStats& operator=(const LinkStats&) = delete;
  ~LinkStats();

  // ---- the path of every task ----
  void submitted(std::int64_t n) noexcept { shard().submitted.fetch_add(n, std::memory_order_relaxed); }
  /** Counts a task's end before it is published (a waiter that then asks sees it); failures are
   *  recorded (kind, worker, message). undo: the backend finished it twice; take it back. */
  void finishing(const TaskState* s, std::uint32_t status, bool undo = false) noexcept;
  /** The record of in-process worker `index` (allocated on first use); null past kMaxMeters. */
  WorkerMeter* meter(std::int32_t index) noexcept;

  // ---- snapshots ----
  /** Fills the core's part of a snapshot: counts, rate, failures, recent failures. */
  void fill(Stats& out);
  /** Failures by worker index (for the workers of a snapshot). */
  std::uint64_t failures_of(std::int32_t index) const;
  /** In-process workers' records for workers 0..n-1. */
  void fill_meters(Stats& out, unsigned n_workers);
  double uptime() const noexcept;

 private:
  struct alignas(64) Shard {
    std::atomic<std::int64_t> submitted{0}, completed{0}, failed{0}, cancelled{0};
  };
  static constexpr unsigned kShards = 8;
  static constexpr unsigned kMeterChunk = 64;
  static constexpr unsigned kMeterChunks = 1024;  // 65,536 workers, the most --n-workers takes
  Shard& shard() noexcept;

  const std::string backend_;
  const std::int64_t started_ns_;
  Shard shards_[kShards];
  std::atomic<std::int64_t> by_kind_[kFailureKinds] = {};
  std::unique_ptr<std::atomic<WorkerMeter*>[]> meters_;  // kMeterChunks chunks of kMeterChunk

  mutable std::mutex mutex_;  // what follows; never held while anything outside this class runs
  std::map<std::int32_t, std::uint64_t> failures_by_worker_;
  struct Recent {
    std::string task_name;
    std::uint64_t sequence;
    FailureKind kind;
    std::string message;
    std::int32_t worker;
    std::int64_t at_ns;
  };
  std::deque<Recent> recent_;
  std::deque<std::pair<std::int64_t, std::uint64_t>> history_;  // (ns, finished) per snapshot
};

}  // namespace wm::detail
