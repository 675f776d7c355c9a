// SPDX-License-Identifier: MIT
// link_stats.cpp: the core's counts for each work manager (see link_stats.hpp), and the text of a
// snapshot (format_stats).
#include "link_stats.hpp"

#include "duration_text.hpp"
#include "internal.hpp"

#include <wm/task.hpp>

#include <time.h>
#include <unistd.h>

#include <algorithm>
#include <cinttypes>
#include <cstdio>

namespace wm::detail {

std::int64_t coarse_ns() noexcept {
  timespec ts{};
  clock_gettime(CLOCK_MONOTONIC_COARSE, &ts);
  return std::int64_t(ts.tv_sec) * 1000000000 + ts.tv_nsec;
}

std::int64_t steady_ns() noexcept {
  return std::chrono::duration_cast<std::chrono::nanoseconds>(std::chrono::steady_clock::now().time_since_epoch())
      .count();
}

namespace {
constexpr auto relaxed = std::memory_order_relaxed;
// A timed task at least this long is timed again at the next one: tasks are not tiny any more.
constexpr std::int64_t kLongTaskNs = 20000;
constexpr std::int32_t kMostUntimed = 64;
// The rate is over this much of the past.
constexpr std::int64_t kRateWindowNs = 10'000'000'000;
constexpr std::size_t kRecentFailures = 20;
constexpr std::size_t kMessageLimit = 500;

std::atomic<unsigned> g_next_shard{0};
}  // namespace

std::string duration_text(double s) {
  char buf[48];
  if (s < 60)
    std::snprintf(buf, sizeof buf, "%.1f s", s < 0 ? 0.0 : s);
  else if (s < 3600)
    std::snprintf(buf, sizeof buf, "%dm%02ds", int(s) / 60, int(s) % 60);
  else
    std::snprintf(buf, sizeof buf, "%dh%02dm", int(s) / 3600, int(s) / 60 % 60);
  return buf;
}

// ---------------------------------------------------------------- WorkerMeter

void WorkerMeter::begin_timed() noexcept {
  const std::int64_t now = coarse_ns();
  task_start.store(now, relaxed);
  timed.store(true, relaxed);
  countdown.store(every.load(relaxed), relaxed);
  if (first.load(relaxed) == 0) first.store(now, relaxed);
}

void WorkerMeter::end_timed() noexcept {
  timed.store(false, relaxed);
  const std::int64_t now = coarse_ns();
  const std::int64_t took = now - task_start.load(relaxed);
  const std::int32_t stands_for = every.load(relaxed);
  // The timed task stands for the untimed ones that follow it until the next reading, whose start
  // is taken as this reading.
  busy.store(busy.load(relaxed) + took * stands_for, relaxed);
  every.store(took >= kLongTaskNs ? 1 : std::min(2 * stands_for, kMostUntimed), relaxed);
  task_start.store(now, relaxed);
}

constinit thread_local ThreadObs t_obs [[gnu::tls_model("initial-exec")]];

namespace {
std::atomic<std::uint64_t> g_next_link_id{1};
}  // namespace

LinkTag* make_link_tag(const std::string& name) {
  // Kept in a list that is never destroyed (futures outlive main), so they stay reachable: about 50
  // bytes per work manager ever made.
  static std::mutex mutex;
  static auto* tags = new std::deque<LinkTag>;
  std::lock_guard<std::mutex> lock(mutex);
  LinkTag& tag = tags->emplace_back();
  tag.name = name;
  return &tag;
}

unsigned shard_of(ThreadObs& t) noexcept {
  // Each thread counts in a shard of its own (while there are no more threads than shards): no
  // cache line goes back and forth between workers finishing tasks at once.
  if (t.shard == ~0u) t.shard = g_next_shard.fetch_add(1, relaxed) % LinkStats::kShards;
  return t.shard;
}

WorkerMeter* meter_of(ThreadObs& t, LinkStats& link) noexcept {
  t.meter = link.meter(t.worker);
  t.cached_link = link.id();
  return t.meter;
}

void note_worker(std::int32_t index) noexcept {
  ThreadObs& t = t_obs;
  if (t.running != nullptr) return;  // set_worker inside a metered task: that task keeps its meter
  t.worker = index;
  t.cached_link = 0;
  t.meter = nullptr;
}

// ---------------------------------------------------------------- LinkStats

LinkStats::LinkStats(const std::string& backend)
    : id_(g_next_link_id.fetch_add(1, relaxed)), backend_(backend), started_ns_(steady_ns()), meters_(new std::atomic<WorkerMeter*>[kMeterChunks]) {
  for (unsigned i = 0; i < kMeterChunks; ++i) meters_[i].store(nullptr, relaxed);
  history_.emplace_back(started_ns_, 0);
}

LinkStats::~LinkStats() {
  for (unsigned i = 0; i < kMeterChunks; ++i) delete[] meters_[i].load(std::memory_order_acquire);
}

void LinkStats::submitted(std::int64_t n) noexcept { shards_[shard_of(t_obs)].submitted.fetch_add(n, relaxed); }

void LinkStats::finishing(const TaskState* s, std::uint32_t status, unsigned shard, bool undo) noexcept {
  Shard& sh = shards_[shard];
  const std::int64_t one = undo ? -1 : 1;
  if (status == TaskState::succeeded) {
    sh.completed.fetch_add(one, relaxed);
    return;
  }
  const ErrorInfo* info = s->failure != nullptr && s->failure->info ? &*s->failure->info : nullptr;
  const FailureKind kind = info != nullptr ? info->kind : FailureKind::backend;
  (kind == FailureKind::cancelled ? sh.cancelled : sh.failed).fetch_add(one, relaxed);
  const auto k = static_cast<std::size_t>(kind);
  if (k < kFailureKinds) by_kind_[k].fetch_add(one, relaxed);
  if (undo) return;
  try {
    const std::int32_t worker = info != nullptr ? info->worker_index : -1;
    Recent r{info != nullptr ? info->task_name : s->display_name(), s->sequence, kind,
             info != nullptr ? info->message.substr(0, kMessageLimit) : std::string("(not recorded: out of memory)"),
             worker, steady_ns()};
    std::lock_guard<std::mutex> lock(mutex_);
    if (worker >= 0) ++failures_by_worker_[worker];
    recent_.push_back(std::move(r));
    if (recent_.size() > kRecentFailures) recent_.pop_front();
  } catch (...) {
    // Out of memory: the failure is counted, not described.
  }
}

WorkerMeter* LinkStats::meter(std::int32_t index) noexcept {
  if (index < 0) return nullptr;
  const auto chunk = static_cast<unsigned>(index) / kMeterChunk;
  if (chunk >= kMeterChunks) return nullptr;
  WorkerMeter* p = meters_[chunk].load(std::memory_order_acquire);
  if (p == nullptr) {
    WorkerMeter* fresh = new (std::nothrow) WorkerMeter[kMeterChunk];
    if (fresh == nullptr) return nullptr;
    if (meters_[chunk].compare_exchange_strong(p, fresh, std::memory_order_acq_rel))
      p = fresh;
    else
      delete[] fresh;  // another worker of the chunk made it first
  }
  return &p[static_cast<unsigned>(index) % kMeterChunk];
}

double LinkStats::uptime() const noexcept { return double(steady_ns() - started_ns_) * 1e-9; }

namespace {
// A sum of shards (a shard may be negative: a task counted twice is taken back in another shard).
std::uint64_t count(std::int64_t v) { return static_cast<std::uint64_t>(std::max<std::int64_t>(v, 0)); }
}  // namespace

LinkStats::Totals LinkStats::totals() const noexcept {
  std::int64_t submitted = 0, completed = 0, failed = 0, cancelled = 0;
  for (const Shard& sh : shards_) {
    submitted += sh.submitted.load(relaxed);
    completed += sh.completed.load(relaxed);
    failed += sh.failed.load(relaxed);
    cancelled += sh.cancelled.load(relaxed);
  }
  completed += static_cast<std::int64_t>(metered_successes());
  return Totals{count(submitted), count(completed), count(failed), count(cancelled)};
}

void LinkStats::counts(std::uint64_t& submitted, std::uint64_t& finished, std::uint64_t& failed) const noexcept {
  const Totals t = totals();
  submitted = t.submitted;
  finished = t.completed + t.failed + t.cancelled;
  failed = t.failed;
}

void LinkStats::fill(Stats& out) {
  const Totals t = totals();
  out.backend = backend_;
  out.pid = static_cast<std::int64_t>(getpid());
  out.uptime_seconds = uptime();
  out.submitted = t.submitted;
  out.completed = t.completed;
  out.failed = t.failed;
  out.cancelled = t.cancelled;
  for (std::size_t k = 0; k < kFailureKinds; ++k) out.failed_by_kind[k] = count(by_kind_[k].load(relaxed));

  const std::int64_t now = steady_ns();
  const std::uint64_t finished = out.finished();
  std::lock_guard<std::mutex> lock(mutex_);
  // The rate: from the newest snapshot at least 10 s old (or the oldest there is) to now. One
  // sample older than the window is kept; samples come at most twice a second.
  while (history_.size() > 1 && history_[1].first <= now - kRateWindowNs) history_.pop_front();
  const auto& [then, finished_then] = history_.front();
  out.rate_seconds = double(now - then) * 1e-9;
  out.tasks_per_second =
      out.rate_seconds > 0 ? double(finished - std::min(finished, finished_then)) / out.rate_seconds : 0;
  if (now - history_.back().first >= 500'000'000) history_.emplace_back(now, finished);
  out.recent_failures.clear();
  for (const Recent& r : recent_) {
    FailureNote n;
    n.task_name = r.task_name;
    n.task_id = task_uuid_of(r.sequence);
    n.kind = r.kind;
    n.message = r.message;
    n.worker_index = r.worker;
    n.seconds_ago = double(now - r.at_ns) * 1e-9;
    out.recent_failures.push_back(std::move(n));
  }
}

std::uint64_t LinkStats::metered_successes() const noexcept {
  std::uint64_t n = 0;
  for (unsigned c = 0; c < kMeterChunks; ++c)
    if (const WorkerMeter* chunk = meters_[c].load(std::memory_order_acquire))
      for (unsigned i = 0; i < kMeterChunk; ++i) n += chunk[i].succeeded.load(relaxed);
  return n;
}

std::uint64_t LinkStats::failures_of(std::int32_t index) const {
  std::lock_guard<std::mutex> lock(mutex_);
  auto it = failures_by_worker_.find(index);
  return it == failures_by_worker_.end() ? 0 : it->second;
}

void LinkStats::fill_meters(Stats& out, unsigned n_workers) {
  const std::int64_t now = coarse_ns();
  const std::int64_t pid = static_cast<std::int64_t>(getpid());
  for (unsigned i = 0; i < n_workers; ++i) {
    WorkerStats w;
    w.index = static_cast<std::int32_t>(i);
    w.pid = pid;
    w.host = host_name();
    w.state = WorkerState::idle;
    if (WorkerMeter* m = meter(w.index)) {
      const std::uint64_t seq = m->task_seq.load(relaxed);
      const char* name = m->task_name.load(relaxed);
      const std::int64_t start = m->task_start.load(relaxed);
      w.tasks_done = m->succeeded.load(relaxed) + failures_of(w.index);
      const std::int64_t first = m->first.load(relaxed);
      w.up_seconds = first != 0 ? double(now - first) * 1e-9 : 0;
      w.busy_seconds = std::min(double(m->busy.load(relaxed)) * 1e-9, w.up_seconds);
      if (seq != 0) {
        w.state = WorkerState::busy;
        w.in_flight = 1;
        w.task_sequence = seq;
        w.task_name = name != nullptr ? name : "<unregistered callable>";
        w.task_id = task_uuid_of(seq);
        w.task_seconds = std::max(0.0, double(now - start) * 1e-9);
        // Seen running a while: the next task is timed, its start read, not taken from this one's.
        if (w.task_seconds > 0.01) {
          m->every.store(1, relaxed);
          m->countdown.store(0, relaxed);
        }
        w.busy_seconds = std::min(w.busy_seconds + w.task_seconds, w.up_seconds);
      }
      w.busy_fraction = w.up_seconds > 0 ? w.busy_seconds / w.up_seconds : 0;
    }
    out.workers.push_back(std::move(w));
  }
}

}  // namespace wm::detail

namespace wm {

const char* to_string(WorkerState state) noexcept {
  switch (state) {
    case WorkerState::starting: return "starting";
    case WorkerState::idle: return "idle";
    case WorkerState::busy: return "busy";
    case WorkerState::lost: return "lost";
  }
  return "idle";
}

namespace {
std::string percent(double f) {
  char buf[16];
  std::snprintf(buf, sizeof buf, "%.0f%%", 100 * f);
  return buf;
}
}  // namespace

std::string format_stats(const Stats& s) {
  std::string out = "work manager '" + s.backend + "' (pid " + std::to_string(s.pid) + "), up " +
                    detail::duration_text(s.uptime_seconds) + ":\n";
  char rate[32];
  std::snprintf(rate, sizeof rate, "%.1f", s.tasks_per_second);
  out += "  tasks: " + std::to_string(s.submitted) + " submitted, " + std::to_string(s.completed) + " completed, " +
         std::to_string(s.failed) + " failed";
  std::string kinds;
  for (std::size_t k = 0; k < kFailureKinds; ++k)
    if (s.failed_by_kind[k] != 0 && static_cast<FailureKind>(k) != FailureKind::cancelled)
      kinds += (kinds.empty() ? "" : ", ") + std::to_string(s.failed_by_kind[k]) + " " +
               to_string(static_cast<FailureKind>(k));
  if (!kinds.empty()) out += " (" + kinds + ")";
  out += ", " + std::to_string(s.cancelled) + " cancelled, " + std::to_string(s.retried) + " retried; " +
         std::to_string(s.queued) + " queued, " + std::to_string(s.in_flight) + " in flight; " + rate + " tasks/s\n";
  if (s.bytes_sent != 0 || s.bytes_received != 0)
    out += "  bytes: " + std::to_string(s.bytes_sent) + " sent, " + std::to_string(s.bytes_received) + " received\n";
  if (!s.workers_note.empty()) out += "  workers: " + s.workers_note + "\n";
  for (const WorkerStats& w : s.workers) {
    out += "  worker " + std::to_string(w.index);
    std::string where;
    if (w.rank >= 0) where += "rank " + std::to_string(w.rank) + ", ";
    if (w.pid != 0) where += "pid " + std::to_string(w.pid);
    if (!w.host.empty() && w.host != detail::host_name()) where += " on " + w.host;
    if (!where.empty()) out += " (" + where + ")";
    out += std::string(": ") + to_string(w.state) + ", " + std::to_string(w.tasks_done) + " done, " +
           std::to_string(w.tasks_failed) + " failed, " + std::to_string(w.restarts) + " restarts, busy " +
           percent(w.busy_fraction);
    if (w.running())
      out += "; running '" + w.task_name + "' (task " + w.task_id + ") for " + detail::duration_text(w.task_seconds);
    out += "\n";
  }
  return out;
}

}  // namespace wm
