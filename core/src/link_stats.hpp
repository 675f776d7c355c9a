// SPDX-License-Identifier: MIT
// link_stats.hpp: what the core counts for one work manager (tasks by outcome, the rate, the last
// failures, in-process workers' tasks), kept cheap on the path of every task: sharded relaxed
// counters, and per-worker records that only the worker's thread writes.
#pragma once

#include <wm/detail/task_state.hpp>
#include <wm/stats.hpp>
#include <wm/task.hpp>  // RegisteredTask

#include <atomic>
#include <chrono>
#include <cstdint>
#include <deque>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <type_traits>
#include <vector>

namespace wm::detail {

class LinkStats;

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
 * since). A reader that sees a task run long has the next one timed (countdown).
 */
struct alignas(64) WorkerMeter {
  std::atomic<const char*> task_name{nullptr};
  std::atomic<std::uint64_t> task_seq{0};  // 0: no task
  std::atomic<std::int64_t> task_start{0};
  // Tasks that succeeded here; counted here only (not in the shards). With the worker's failures
  // (LinkStats::failures_of), its tasks done.
  std::atomic<std::uint64_t> succeeded{0};
  std::atomic<std::int64_t> busy{0};   // ns
  std::atomic<std::int64_t> first{0};  // ns: its first task's start
  // The worker's own (atomics only so that a second thread lending itself as the same worker, as
  // two threads submitting to serial at once do, is no data race; the counts are then approximate).
  std::atomic<std::int32_t> countdown{0}, every{1};
  std::atomic<bool> timed{false};

  void begin(const char* name, std::uint64_t seq) noexcept {
    task_name.store(name, std::memory_order_relaxed);
    task_seq.store(seq, std::memory_order_relaxed);
    const std::int32_t left = countdown.load(std::memory_order_relaxed) - 1;
    countdown.store(left, std::memory_order_relaxed);
    if (left <= 0) begin_timed();
  }
  void end() noexcept {
    if (timed.load(std::memory_order_relaxed)) end_timed();
    task_seq.store(0, std::memory_order_relaxed);
  }
  void begin_timed() noexcept;
  void end_timed() noexcept;
};

/**
 * A work manager's identity, for its tasks: its name and its counters. TaskState::backend_name
 * points at `name` (the first member of a standard-layout record), so a task finds its counters
 * without a field of its own (a future stays in its malloc class). Never freed: futures outlive
 * their work manager and read the name; `stats` is cleared before the counters go.
 */
struct LinkTag {
  std::string name;
  std::atomic<LinkStats*> stats{nullptr};
  // Its workers map this process's memory (WM_CAP_MAPS_MEMORY): shared arrays go as references.
  std::atomic<bool> maps_memory{false};
};
/** A new tag (never freed), its counters not set yet; its name is the work manager's name, one
 *  pointer per work manager (BackendLink::interned_name()). */
LinkTag* make_link_tag(const std::string& name);
/** The tag whose name this is (a name made by make_link_tag). */
inline LinkTag* tag_of(const std::string* name) noexcept {
  static_assert(std::is_standard_layout_v<LinkTag>, "TaskState::backend_name points at the first member of a LinkTag");
  return reinterpret_cast<LinkTag*>(const_cast<std::string*>(name));
}
/** The counters of the work manager a task was submitted to (null: not submitted). */
inline LinkStats* stats_of(const TaskState* s) noexcept {
  return s->backend_name != nullptr ? tag_of(s->backend_name)->stats.load(std::memory_order_relaxed) : nullptr;
}

/** What the core keeps per thread for the statistics, in one place. */
struct ThreadObs {
  std::int32_t worker = -1;       // set_worker
  unsigned shard = ~0u;           // LinkStats shard of this thread
  std::uint64_t cached_link = 0;  // LinkStats::id() the meter below belongs to (0: none)
  WorkerMeter* meter = nullptr;
  const TaskState* running = nullptr;  // the task this thread runs on `meter` now
};
// initial-exec: no __tls_get_addr call on the path of every task (libwm_core is loaded with the
// program, or dlopen'ed into the static TLS space glibc keeps for that); constinit: no guard.
extern constinit thread_local ThreadObs t_obs [[gnu::tls_model("initial-exec")]];

/** set_worker(): the worker this thread is from now on (-1: none). */
void note_worker(std::int32_t index) noexcept;
/** This thread's shard of the counters (assigned at its first count). */
unsigned shard_of(ThreadObs& t) noexcept;
/** The meter of this thread's worker in link (cached for the thread). */
WorkerMeter* meter_of(ThreadObs& t, LinkStats& link) noexcept;

/** svc_execute: starts metering s on the meter of the worker this thread is (set_worker), if it
 *  is one and runs no metered task already (a task that runs another in place: serial). */
inline bool begin_metered(TaskState* s) noexcept;
/** After the task, if begin_metered said so: ends its meter if finish() did not. */
inline void end_metered() noexcept;
/** finish(): counts s's end before it is published, so that a waiter that wakes and asks for the
 *  statistics sees it: on its meter if this thread runs it as a worker (a success is counted there
 *  alone), else in the counters of its work manager. undo: it was finished already. */
inline void count_finish(const TaskState* s, std::uint32_t status, bool undo = false) noexcept;

/** Per work manager: owned by its BackendLink, found by its tasks through their LinkTag; they all
 *  finish before the backend is destroyed. */
class LinkStats {
 public:
  explicit LinkStats(const std::string& backend);
  LinkStats(const LinkStats&) = delete;
  LinkStats& operator=(const LinkStats&) = delete;
  ~LinkStats();

  // ---- the path of every task ----
  void submitted(std::int64_t n) noexcept;
  /** Counts a task's end (in the shard of this thread); a failure is recorded (kind, worker,
   *  message). undo: the backend finished it twice; take it back. */
  void finishing(const TaskState* s, std::uint32_t status, unsigned shard, bool undo) noexcept;
  /** The record of in-process worker `index` (allocated on first use); null past the last chunk. */
  WorkerMeter* meter(std::int32_t index) noexcept;
  /** Unique in the process: a thread's cached meter is this link's only if the ids match. */
  std::uint64_t id() const noexcept { return id_; }

  // ---- snapshots ----
  /** Fills the core's part of a snapshot: counts, rate, failures, recent failures. */
  void fill(Stats& out);
  /** Failures by worker index (for the workers of a snapshot). */
  std::uint64_t failures_of(std::int32_t index) const;
  /** In-process workers' records for workers 0..n-1. */
  void fill_meters(Stats& out, unsigned n_workers);
  /** Tasks that succeeded on in-process workers (counted on their meters). */
  std::uint64_t metered_successes() const noexcept;
  struct Totals {
    std::uint64_t submitted, completed, failed, cancelled;
  };
  /** The counters summed over the shards and the in-process workers' meters. */
  Totals totals() const noexcept;
  /** The counts alone, cheaply (the progress display). */
  void counts(std::uint64_t& submitted, std::uint64_t& finished, std::uint64_t& failed) const noexcept;
  /** The work manager was shut down: nothing more will be counted. */
  void close() noexcept { closed_.store(true, std::memory_order_release); }
  bool closed() const noexcept { return closed_.load(std::memory_order_acquire); }
  double uptime() const noexcept;

 private:
  struct alignas(64) Shard {
    std::atomic<std::int64_t> submitted{0}, completed{0}, failed{0}, cancelled{0};
  };
  static constexpr unsigned kMeterChunk = 64;
  static constexpr unsigned kMeterChunks = 1024;  // 65,536 workers, the most --n-workers takes

 public:
  static constexpr unsigned kShards = 8;

 private:
  const std::uint64_t id_;
  const std::string backend_;
  const std::int64_t started_ns_;
  Shard shards_[kShards];
  std::atomic<std::int64_t> by_kind_[kFailureKinds] = {};
  std::unique_ptr<std::atomic<WorkerMeter*>[]> meters_;  // kMeterChunks chunks of kMeterChunk
  std::atomic<bool> closed_{false};

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

inline bool begin_metered(TaskState* s) noexcept {
  ThreadObs& t = t_obs;
  LinkStats* link = stats_of(s);
  if (t.worker < 0 || link == nullptr || t.running != nullptr) return false;
  WorkerMeter* m = t.cached_link == link->id() ? t.meter : meter_of(t, *link);
  if (m == nullptr) return false;
  m->begin(s->registered != nullptr ? s->registered->name : nullptr, s->sequence);
  t.running = s;
  return true;
}

inline void end_metered() noexcept {
  ThreadObs& t = t_obs;
  if (t.running != nullptr) {
    t.meter->end();
    t.running = nullptr;
  }
}

inline void count_finish(const TaskState* s, std::uint32_t status, bool undo) noexcept {
  ThreadObs& t = t_obs;
  if (t.running == s && !undo) {
    WorkerMeter* m = t.meter;
    t.running = nullptr;
    m->end();
    if (status == TaskState::succeeded) {
      m->succeeded.store(m->succeeded.load(std::memory_order_relaxed) + 1, std::memory_order_relaxed);
      return;
    }
  }
  if (LinkStats* link = stats_of(s)) link->finishing(s, status, shard_of(t), undo);
}

}  // namespace wm::detail
