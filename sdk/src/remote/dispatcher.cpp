// SPDX-License-Identifier: MIT
// dispatcher.cpp: the master side of the remote engine (see wm/sdk/remote/dispatcher.hpp).
#include <wm/sdk/remote/dispatcher.hpp>

#include "link.hpp"
#include "registry.hpp"

#include <sched.h>
#include <time.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cmath>
#include <condition_variable>
#include <deque>
#include <mutex>
#include <random>
#include <set>
#include <stdexcept>
#include <thread>
#include <utility>
#include <vector>

namespace wm::sdk::remote {
namespace {

using Clock = std::chrono::steady_clock;

const wm_option_value& declared(const wm_backend_config& c, const char* option, const char* backend) {
  for (std::size_t i = 0; i < c.n_options; ++i)
    if (std::strcmp(c.options[i].name, option) == 0) return c.options[i];
  throw std::logic_error(std::string("work manager '") + backend + "' does not declare the engine option '" +
                         option + "': add WM_REMOTE_ENGINE_OPTIONS to its WM_DECLARE_BACKEND");
}

// Resource names of placements: the core's copies go with their tasks; these stay.
const char* intern(const char* name) {
  static std::mutex mutex;
  static auto* names = new std::set<std::string>;  // never destroyed: dispatchers may outlive main
  std::lock_guard<std::mutex> lock(mutex);
  return names->insert(name).first->c_str();
}

double thread_cpu_seconds() {
  timespec ts{};
  clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
  return double(ts.tv_sec) + double(ts.tv_nsec) * 1e-9;
}

}  // namespace

EngineOptions engine_options(const wm_backend_config& config, const char* backend_name) {
  EngineOptions o;
  o.task_timeout = declared(config, "task-timeout", backend_name).double_value;
  o.retries = static_cast<std::uint32_t>(declared(config, "retries", backend_name).int_value);
  o.shutdown_timeout = declared(config, "shutdown-timeout", backend_name).double_value;
  o.spin_us = static_cast<int>(declared(config, "spin-us", backend_name).int_value);
  o.max_window = static_cast<std::size_t>(declared(config, "max-window", backend_name).int_value);
  o.keep_memory_mib = static_cast<int>(declared(config, "worker-keep-memory", backend_name).int_value);
  o.retries_hint = "set WM_" + upper_snake(backend_name) + "_RETRIES to run tasks lost to a worker death again";
  return o;
}

struct Dispatcher::Impl final : public TransportHost, public MasterLinkEvents {
  Impl(const wm_core_services& services, std::string backend_name, std::unique_ptr<Transport> transport,
       EngineOptions options);

  void start();
  void submit(wm_task* const* tasks, std::size_t n);
  void stop(bool now);
  void join();
  bool wait_for_workers(unsigned n, double seconds);
  bool on_own_thread() const noexcept { return std::this_thread::get_id() == thread_id_.load(); }

  struct Job {
    wm_task* task;
    std::uint64_t seq;
    std::size_t size;
    std::uint32_t attempts;  // runs lost to worker deaths so far
    // What it needs of a worker: 0 nothing, kUnplaced needs (wm_task_info.needs) not yet looked
    // up, else 1 + its index in placements_. (32 bytes a job, as without needs.)
    std::uint32_t placement;
  };
  static constexpr std::uint32_t kUnplaced = ~std::uint32_t(0);
  /** Tasks that need the same resources wait in one queue of their own; which kinds of worker
   *  cover them is worked out once per kind. */
  struct Placement {
    std::vector<wm_resource_amount> needs;
    std::deque<Job> jobs;
    std::vector<std::int8_t> covers;  // by worker kind: -1 not known yet, 0 no, 1 yes
    bool warned = false;              // elastic: said that no worker so far has what it needs
  };
  struct InFlight {
    Job job;
    Clock::time_point sent_at;
  };
  enum class State { none, starting, ready, lost, disabled };
  enum class Kill { none, timeout, protocol, shutdown, refused, cancelled };
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
    bool has_timeout = false;
    Clock::time_point timeout_at{};
    std::uint32_t kind = 0;                  // index in kinds_: what it has (from its hello)
    std::vector<std::uint64_t> cancel_seqs;  // Kill::cancelled: the tasks it was stopped for
    // For snapshot(): counted on this thread, read by it when asked.
    std::uint64_t done = 0, bytes_sent = 0, bytes_received = 0;
    std::uint32_t restarts = 0;
    Clock::time_point first_start{}, busy_since{};
    Clock::duration busy_time{};
  };
  /** snapshot() from another thread, answered by the dispatcher's (shared: the asker may give up). */
  struct StatsRequest {
    BackendStats result;
    bool answered = false;
  };
  /** cancel(kill_running) from another thread, answered by the dispatcher's. */
  struct CancelRequest {
    std::uint64_t seq;
    bool answered = false, stopping = false;
  };

  // ---- the thread ----
  void run() noexcept;
  void loop();
  void take_submitted();
  void begin_stopping(bool now);
  void force_all(Kill reason);
  void force(WorkerId id, Worker& w);
  void dispatch();
  void dispatch_placed(Clock::time_point now);
  bool next_room(std::size_t pf, std::size_t waiting, WorkerId& id, std::size_t& take);
  bool next_for(const Worker& w, Job& out);
  bool covers(Placement& p, std::uint32_t kind);
  void enqueue(Job j, bool front);
  std::size_t ready_total() const { return ready_.size() + placed_waiting_; }
  bool stop_running(std::uint64_t seq);
  void answer_cancels();
  void answer_stats();
  void fill_snapshot(BackendStats& out, std::size_t not_taken);
  void send(WorkerId id, Worker& w, const Job& job, Clock::time_point now);
  void mark_dirty(WorkerId id, Worker& w);
  void flush_dirty();
  void run_timers(Clock::time_point now);
  int wait_ms(Clock::time_point now);
  void finish_remaining();

  // ---- bookkeeping ----
  bool usable(WorkerId id, const Worker& w) const {
    return w.state == State::ready && w.kill == Kill::none && !w.stop_sent && !transport_->closing(id);
  }
  std::size_t prefetch() const;
  void offer_room(WorkerId id, Worker& w);
  void rearm_timeout(WorkerId id, Worker& w);
  void classify_spin(Worker& w);
  void note_service_time(Worker& w, const InFlight& done);
  void start_slot(WorkerId id, Worker& w, const std::string& replacing);
  void check_startup();
  void check_dead();
  void give_up(WorkerId id, Worker& w, const std::string& why, wm_log_level level = WM_LOG_ERROR);
  void protocol_error(WorkerId id, const std::string& why);
  void fail(const Job& j, wm_failure_kind kind, const std::string& message, Worker* on = nullptr,
            std::uint32_t attempts = 1);
  void fail_ready(wm_failure_kind kind, const std::string& message);
  std::string task_label(const Job& j) const;
  wm_task_info task_info(wm_task* t) const {
    wm_task_info info{};
    info.struct_size = sizeof info;
    services_.task_info(t, &info);
    return info;
  }
  std::string worker_label(WorkerId id, const Worker& w) const;
  Worker& worker(WorkerId id);
  MasterLink& link(WorkerId id) { return *links_[id]; }

  // ---- TransportHost ----
  void worker_added(WorkerId id) override;
  Inbox& inbox(WorkerId id) override { return link(id).inbox(); }
  void arrived(WorkerId id) override { link(id).arrived(); }
  void received(WorkerId id, const char* data, std::size_t size) override { link(id).received(data, size); }
  void payload_received(WorkerId id, Buffer&& payload) override { link(id).payload_received(std::move(payload)); }
  void payload_sent(WorkerId id, Buffer&& buffer) override { link(id).payload_sent(std::move(buffer)); }
  void broken(WorkerId id, const std::string& why) override { protocol_error(id, why); }
  void worker_lost(WorkerId id, const std::string& status) override;

  // ---- MasterLinkEvents ----
  void hello(WorkerId id, const char* data, std::size_t size) override;
  void reply(WorkerId id, std::uint64_t seq, const char* data, std::size_t size, const wm_shared_block* block) override;
  bool reply_storage(Buffer& into, std::size_t n) override { return into.pooled_for(services_, n); }
  void bye(WorkerId id) override { transport_->said_goodbye(id); }
  // broken(): the same as the transport's

  const wm_core_services& services_;
  const std::string name_;
  std::unique_ptr<Transport> transport_;
  const EngineOptions options_;
  const std::size_t large_;
  TaskListing own_tasks_;
  std::mt19937_64 seeds_{std::random_device{}()};

  // shared with other threads (under mutex_)
  mutable std::mutex mutex_;
  std::condition_variable cv_;
  std::vector<Job> submitted_;
  std::vector<CancelRequest*> cancels_;  // waiting for the dispatcher's thread
  std::vector<std::shared_ptr<StatsRequest>> stats_requests_;  // waiting for the dispatcher's thread
  std::vector<Resources> kinds_shared_;  // kinds_, for submit()
  std::atomic<std::size_t> queued_{0};
  std::atomic<bool> sleeping_{false};
  std::atomic<bool> stop_flag_{false};
  bool stop_requested_ = false, stop_now_ = false;
  bool startup_settled_ = false, finished_ = false;
  std::string startup_error_;
  std::string dead_reason_;
  unsigned ready_shared_ = 0;  // ready_count_, for wait_for_workers
  std::atomic<unsigned> n_workers_{0};
  std::thread thread_;
  std::atomic<std::thread::id> thread_id_{};
  std::mutex join_mutex_;

  // the dispatcher's thread only
  std::vector<Worker> workers_;
  std::vector<std::unique_ptr<MasterLink>> links_;
  std::deque<Job> ready_;            // tasks that need nothing, in order
  std::vector<Placement> placements_; // tasks that need resources, by what they need
  std::size_t placed_waiting_ = 0;    // tasks in placements_
  bool placed_stale_ = false;         // room or tasks came since dispatch_placed last looked
  std::vector<Resources> kinds_;      // each distinct set of resources a worker said it has
  std::vector<WorkerId> skipped_;     // dispatch_placed: workers nothing fitted, given their place back
  std::deque<WorkerId> room_;       // ready workers that may have room, in the order they got it
  std::vector<WorkerId> dirty_;     // workers with frames queued since the last flush
  std::set<std::pair<Clock::time_point, WorkerId>> timeouts_;  // per-task timeouts, one per worker
  std::size_t alive_ = 0;           // workers with a process: starting, ready, or being stopped
  std::size_t ready_count_ = 0;
  std::size_t fast_busy_ = 0;       // workers with tasks in flight short enough to spin for
  std::size_t busy_ = 0;            // workers with tasks in flight
  bool stopping_ = false, stopping_now_ = false, deadline_forced_ = false, settled_seen_ = false, dead_ = false;
  bool big_held_ = false;           // large buffers or storage were used since the last idle release
  Clock::time_point stop_deadline_{}, last_activity_{}, no_worker_since_{}, last_large_{};
  std::string dead_text_;        // dead_reason_, for this thread
  std::string registry_refusal_;  // why a worker was refused by the registry handshake (the first one)
  Stats stats_;
  std::uint64_t retried_ = 0;     // tasks run again after a worker death
};

// ---------------------------------------------------------------- the public face

Dispatcher::Dispatcher(const wm_core_services& services, std::string backend_name, std::unique_ptr<Transport> transport,
                       EngineOptions options)
    : impl_(std::make_unique<Impl>(services, std::move(backend_name), std::move(transport), std::move(options))) {}

Dispatcher::~Dispatcher() {
  impl_->stop(true);
  impl_->join();
}

void Dispatcher::start() { impl_->start(); }
void Dispatcher::submit(wm_task* const* tasks, std::size_t n) { impl_->submit(tasks, n); }
void Dispatcher::stop(bool now) { impl_->stop(now); }
void Dispatcher::join() { impl_->join(); }
unsigned Dispatcher::n_workers() const noexcept { return impl_->n_workers_.load(std::memory_order_relaxed); }
bool Dispatcher::wait_for_workers(unsigned n, double seconds) { return impl_->wait_for_workers(n, seconds); }
bool Dispatcher::on_own_thread() const noexcept { return impl_->on_own_thread(); }
Transport& Dispatcher::transport() { return *impl_->transport_; }
bool Dispatcher::stop_running(std::uint64_t seq) {
  if (impl_->on_own_thread()) return impl_->stop_running(seq);
  Impl::CancelRequest request{seq};
  {
    std::unique_lock<std::mutex> lock(impl_->mutex_);
    if (impl_->finished_ || impl_->stop_requested_) return false;
    impl_->cancels_.push_back(&request);
    impl_->queued_.fetch_add(1, std::memory_order_seq_cst);  // the loop looks at what came
  }
  impl_->transport_->wake();
  std::unique_lock<std::mutex> lock(impl_->mutex_);
  impl_->cv_.wait(lock, [&] { return request.answered || impl_->finished_; });
  if (!request.answered) impl_->cancels_.erase(std::remove(impl_->cancels_.begin(), impl_->cancels_.end(), &request),
                                               impl_->cancels_.end());
  return request.stopping;
}
Dispatcher::Stats Dispatcher::stats() const { return impl_->stats_; }
bool Dispatcher::snapshot(BackendStats& out, double seconds) {
  Impl& d = *impl_;
  if (d.on_own_thread()) {
    std::size_t not_taken;
    {
      std::lock_guard<std::mutex> lock(d.mutex_);
      not_taken = d.submitted_.size();
    }
    d.fill_snapshot(out, not_taken);
    return true;
  }
  auto request = std::make_shared<Impl::StatsRequest>();
  std::unique_lock<std::mutex> lock(d.mutex_);
  if (!d.finished_) {
    d.stats_requests_.push_back(request);
    d.queued_.fetch_add(1, std::memory_order_seq_cst);  // the loop looks at what came
    lock.unlock();
    d.transport_->wake();
    lock.lock();
    d.cv_.wait_for(lock, std::chrono::duration<double>(seconds), [&] { return request->answered || d.finished_; });
  }
  if (request->answered) {
    out = std::move(request->result);
    return true;
  }
  if (!d.finished_) return false;  // busy (a done-callback?); the request is answered later, to no one
  // The thread is gone: what it kept stays as it left it.
  d.fill_snapshot(out, d.submitted_.size());
  return true;
}

// ---------------------------------------------------------------- from other threads

Dispatcher::Impl::Impl(const wm_core_services& services, std::string backend_name, std::unique_ptr<Transport> transport,
                       EngineOptions options)
    : services_(services),
      name_(std::move(backend_name)),
      transport_(std::move(transport)),
      options_(std::move(options)),
      large_(static_cast<std::size_t>(services.large_payload_bytes)) {
  own_tasks_ = TaskListing::of_this_process(services_);
}

void Dispatcher::Impl::start() {
  {
    std::lock_guard<std::mutex> lock(mutex_);
    if (stop_requested_) throw std::runtime_error("the " + name_ + " work manager was shut down");
  }
  thread_ = std::thread([this] { run(); });
  std::unique_lock<std::mutex> lock(mutex_);
  const bool settled = cv_.wait_for(lock, std::chrono::duration<double>(options_.startup_limit),
                                    [this] { return startup_settled_; });
  std::string error = settled ? startup_error_
                              : "the workers of the " + name_ + " work manager did not report ready within " +
                                    seconds_text(options_.startup_limit);
  if (error.empty()) return;
  lock.unlock();
  stop(true);
  join();
  throw std::runtime_error(error);
}

void Dispatcher::Impl::submit(wm_task* const* tasks, std::size_t n) {
  bool any_needs = false;
  std::vector<Job> jobs;
  jobs.reserve(n);
  for (std::size_t i = 0; i < n; ++i) {
    const wm_task_info info = task_info(tasks[i]);
    jobs.push_back(Job{tasks[i], info.sequence, static_cast<std::size_t>(info.encoded_size), 0,
                       info.n_needs != 0 ? kUnplaced : 0});
    any_needs = any_needs || info.n_needs != 0;
  }
  std::vector<Job> unfit;
  std::vector<Resources> kinds;
  {
    std::lock_guard<std::mutex> lock(mutex_);
    if (stop_requested_) throw std::runtime_error("the " + name_ + " work manager is shut down");
    if (!dead_reason_.empty()) throw std::runtime_error(dead_reason_);
    if (any_needs && !options_.elastic) {
      // Accepted, but no worker could ever run it: it fails below, at once (without the lock: a
      // failure runs callbacks). With elastic workers, one that has it may join later: it waits.
      kinds = kinds_shared_;
      auto fits = [&](const Job& j) {
        if (j.placement == 0) return true;
        const wm_task_info info = task_info(j.task);
        return std::any_of(kinds.begin(), kinds.end(),
                           [&](const Resources& k) { return k.covers(info.needs, info.n_needs); });
      };
      auto split = std::stable_partition(jobs.begin(), jobs.end(), fits);
      unfit.assign(split, jobs.end());
      jobs.erase(split, jobs.end());
    }
    if (submitted_.empty())
      submitted_.swap(jobs);
    else
      submitted_.insert(submitted_.end(), jobs.begin(), jobs.end());
    queued_.store(submitted_.size() + cancels_.size() + stats_requests_.size(), std::memory_order_seq_cst);
  }
  if (sleeping_.load(std::memory_order_seq_cst)) transport_->wake();
  for (const Job& j : unfit) {
    const wm_task_info info = task_info(j.task);
    fail(j, WM_FAIL_RESOURCES, unfit_message(info.needs, info.n_needs, kinds, name_));
  }
}

void Dispatcher::Impl::stop(bool now) {
  {
    std::lock_guard<std::mutex> lock(mutex_);
    if (stop_requested_ && (stop_now_ || !now)) return;
    stop_requested_ = true;
    stop_now_ = stop_now_ || now;
    stop_flag_.store(true, std::memory_order_seq_cst);
  }
  cv_.notify_all();
  transport_->wake();
}

void Dispatcher::Impl::join() {
  std::lock_guard<std::mutex> lock(join_mutex_);
  if (!thread_.joinable()) return;
  if (on_own_thread()) throw std::logic_error("the dispatcher cannot join its own thread");
  thread_.join();
}

bool Dispatcher::Impl::wait_for_workers(unsigned n, double seconds) {
  std::unique_lock<std::mutex> lock(mutex_);
  cv_.wait_for(lock, std::chrono::duration<double>(seconds),
               [&] { return ready_shared_ >= n || stop_requested_ || finished_; });
  return ready_shared_ >= n;
}

// ---------------------------------------------------------------- the thread

void Dispatcher::Impl::run() noexcept {
  thread_id_.store(std::this_thread::get_id());
  try {
    loop();
  } catch (const std::exception& e) {
    services_.log(WM_LOG_ERROR, name_.c_str(), (std::string("the dispatcher failed: ") + e.what()).c_str());
    std::lock_guard<std::mutex> lock(mutex_);
    if (startup_error_.empty()) startup_error_ = e.what();
  }
  finish_remaining();
  stats_.cpu_seconds = thread_cpu_seconds();
  {
    std::lock_guard<std::mutex> lock(mutex_);
    finished_ = true;
    if (!startup_settled_ && startup_error_.empty())
      startup_error_ = "the " + name_ + " work manager was shut down during startup";
    startup_settled_ = true;
    stop_requested_ = true;  // nothing is accepted any more
  }
  cv_.notify_all();
}

void Dispatcher::Impl::loop() {
  last_activity_ = no_worker_since_ = last_large_ = Clock::now();
  transport_->start(*this);
  flush_dirty();
  if (options_.elastic) {
    settled_seen_ = true;
    {
      std::lock_guard<std::mutex> lock(mutex_);
      startup_settled_ = true;
    }
    cv_.notify_all();
  }
  check_startup();
  for (;;) {
    ++stats_.loops;
    take_submitted();
    if (!stopping_) dispatch();
    flush_dirty();
    const auto now = Clock::now();
    run_timers(now);
    if (stopping_ && alive_ == 0) break;
    int timeout = wait_ms(now);
    if (timeout != 0) {
      sleeping_.store(true, std::memory_order_seq_cst);
      if (queued_.load(std::memory_order_seq_cst) != 0 || stop_flag_.load(std::memory_order_seq_cst)) {
        sleeping_.store(false, std::memory_order_relaxed);
        timeout = 0;
      }
    }
    const int events = transport_->progress(timeout);
    sleeping_.store(false, std::memory_order_relaxed);
    if (events > 0)
      last_activity_ = Clock::now();
    else if (timeout == 0)
      sched_yield();  // spinning: a woken waiter (the host thread) may need this core
  }
}

void Dispatcher::Impl::take_submitted() {
  if (queued_.load(std::memory_order_seq_cst) == 0 && !stop_flag_.load(std::memory_order_seq_cst)) return;
  std::vector<Job> got;
  bool stop, now, cancels, stats;
  {
    std::lock_guard<std::mutex> lock(mutex_);
    got.swap(submitted_);
    cancels = !cancels_.empty();
    stats = !stats_requests_.empty();
    queued_.store(0, std::memory_order_relaxed);
    stop = stop_requested_;
    now = stop_now_;
    stop_flag_.store(false, std::memory_order_relaxed);
  }
  if (!got.empty()) {
    last_activity_ = Clock::now();
    placed_stale_ = true;
    // Tasks wait for a worker at most no_worker_timeout from when they began to wait for one.
    if (ready_total() == 0 && alive_ == 0) no_worker_since_ = last_activity_;
    if (std::none_of(got.begin(), got.end(), [](const Job& j) { return j.placement != 0; })) {
      ready_.insert(ready_.end(), got.begin(), got.end());
    } else {
      for (const Job& j : got) enqueue(j, false);
    }
  }
  if (cancels) answer_cancels();
  if (stats) answer_stats();
  if (stop && !stopping_) {
    begin_stopping(now);
  } else if (stop && now && !stopping_now_) {
    stopping_now_ = true;
    stop_deadline_ = Clock::now();
    deadline_forced_ = true;
    force_all(Kill::shutdown);
  }
}

void Dispatcher::Impl::begin_stopping(bool now) {
  stopping_ = true;
  stopping_now_ = now;
  fail_ready(WM_FAIL_SHUTDOWN, "the " + name_ + " work manager shut down before this task was sent to a worker");
  stop_deadline_ = now ? Clock::now()
                       : Clock::now() + std::chrono::duration_cast<Clock::duration>(
                                            std::chrono::duration<double>(options_.shutdown_timeout));
  // Every worker finishes what it was sent, replies, and leaves; what is still running at the
  // deadline is stopped by force (run_timers).
  for (WorkerId id = 0; id < workers_.size(); ++id) {
    Worker& w = workers_[id];
    if ((w.state == State::starting || w.state == State::ready) && !w.stop_sent) {
      w.stop_sent = true;
      link(id).send_stop();
      mark_dirty(id, w);
    }
  }
  if (now) {
    deadline_forced_ = true;
    force_all(Kill::shutdown);
  }
  check_startup();
}

void Dispatcher::Impl::force(WorkerId id, Worker& w) {
  w.force_sent = true;
  link(id).refuse();
  transport_->stop_worker(id);
}

void Dispatcher::Impl::force_all(Kill reason) {
  for (WorkerId id = 0; id < workers_.size(); ++id) {
    Worker& w = workers_[id];
    if ((w.state != State::starting && w.state != State::ready) || w.force_sent) continue;
    if (w.kill == Kill::none) w.kill = reason;
    force(id, w);
  }
}

std::size_t Dispatcher::Impl::prefetch() const {
  // While the queue is deep, every worker also gets one task more than its window: it starts that
  // one as soon as it replies, without waiting for the dispatcher to send it. Near the end, none:
  // the last tasks go to whichever worker is free.
  return ready_total() >= ready_count_ ? 1 : 0;
}

void Dispatcher::Impl::dispatch() {
  if (dead_) return;
  if (placed_waiting_ != 0) return dispatch_placed(Clock::now());
  if (ready_.empty()) return;
  const std::size_t pf = prefetch();
  const auto now = Clock::now();
  WorkerId id;
  std::size_t room;
  while (!ready_.empty() && next_room(pf, ready_.size(), id, room)) {
    Worker& w = workers_[id];
    const std::size_t take = std::min(room, ready_.size());
    for (std::size_t k = 0; k < take && usable(id, w); ++k) {
      const Job j = ready_.front();
      ready_.pop_front();
      send(id, w, j, now);
    }
    if (usable(id, w) && w.inflight.size() <= w.window) offer_room(id, w);
  }
}

// The next worker in the room that can take tasks now, and how many: its room, and, near the end of
// the `waiting` tasks, not more than a fair part of them (no worker sits on a backlog while another
// idles). False once the room is empty.
bool Dispatcher::Impl::next_room(std::size_t pf, std::size_t waiting, WorkerId& id, std::size_t& take) {
  while (!room_.empty()) {
    id = room_.front();
    room_.pop_front();
    Worker& w = workers_[id];
    --w.room_places;
    if (!usable(id, w)) continue;
    const std::size_t limit = w.window + pf;
    if (w.inflight.size() >= limit) continue;
    const std::size_t share = std::max<std::size_t>(1, waiting / std::max<std::size_t>(1, ready_count_));
    take = std::min(limit - w.inflight.size(), share);
    return true;
  }
  return false;
}

// With tasks that need resources waiting: each worker with room takes, in submit order, the tasks
// it covers (those that need nothing included); a worker none fits keeps its place in the room.
// Looked at again only once room or tasks came (a task waiting for a busy GPU worker costs no turn
// of the loop a scan).
void Dispatcher::Impl::dispatch_placed(Clock::time_point now) {
  if (!placed_stale_) return;
  placed_stale_ = false;
  const std::size_t pf = prefetch();
  skipped_.clear();
  WorkerId id;
  std::size_t take;
  while (ready_total() != 0 && next_room(pf, ready_total(), id, take)) {
    Worker& w = workers_[id];
    std::size_t sent = 0;
    Job j{};
    while (sent < take && usable(id, w) && next_for(w, j)) {
      send(id, w, j, now);
      ++sent;
    }
    if (sent == 0) {
      skipped_.push_back(id);
      continue;
    }
    if (usable(id, w) && w.inflight.size() <= w.window) offer_room(id, w);
  }
  for (WorkerId id : skipped_) offer_room(id, workers_[id]);
  placed_stale_ = false;  // the places given back above bring nothing new
}

// Takes the oldest task w covers: the front of the queue of tasks that need nothing, or of a
// placement w's kind covers.
bool Dispatcher::Impl::next_for(const Worker& w, Job& out) {
  std::deque<Job>* best = ready_.empty() ? nullptr : &ready_;
  Placement* from = nullptr;
  for (Placement& p : placements_) {
    if (p.jobs.empty() || (best != nullptr && best->front().seq < p.jobs.front().seq) || !covers(p, w.kind)) continue;
    best = &p.jobs;
    from = &p;
  }
  if (best == nullptr) return false;
  out = best->front();
  best->pop_front();
  if (from != nullptr) --placed_waiting_;
  return true;
}

bool Dispatcher::Impl::covers(Placement& p, std::uint32_t kind) {
  if (p.covers.size() <= kind) p.covers.resize(kinds_.size(), -1);
  if (p.covers[kind] < 0) p.covers[kind] = kinds_[kind].covers(p.needs.data(), p.needs.size()) ? 1 : 0;
  return p.covers[kind] == 1;
}

// Queues a task: at the back (new), or at the front (it ran on a worker that was lost).
void Dispatcher::Impl::enqueue(Job j, bool front) {
  placed_stale_ = true;
  if (j.placement == 0) {
    front ? ready_.push_front(j) : ready_.push_back(j);
    return;
  }
  if (j.placement == kUnplaced) {
    const wm_task_info info = task_info(j.task);
    for (std::size_t i = 0; i < placements_.size() && j.placement == kUnplaced; ++i) {
      const auto& have = placements_[i].needs;
      if (have.size() == info.n_needs &&
          std::equal(have.begin(), have.end(), info.needs, [](const wm_resource_amount& a, const wm_resource_amount& b) {
            return a.amount == b.amount && std::strcmp(a.name, b.name) == 0;
          }))
        j.placement = static_cast<std::uint32_t>(i + 1);
    }
    if (j.placement == kUnplaced) {
      // The names are the core's, valid while it holds a task: this placement keeps its own.
      Placement p;
      p.needs.assign(info.needs, info.needs + info.n_needs);
      for (auto& a : p.needs) a.name = intern(a.name);
      placements_.push_back(std::move(p));
      j.placement = static_cast<std::uint32_t>(placements_.size());
    }
  }
  Placement& p = placements_[j.placement - 1];
  if (!p.warned && options_.elastic) {
    bool any = false;
    for (std::uint32_t k = 0; k < kinds_.size() && !any; ++k) any = covers(p, k);
    if (!any) {
      p.warned = true;
      services_.log(WM_LOG_WARNING, name_.c_str(),
                    ("tasks that need " + needs_text(p.needs.data(), p.needs.size()) +
                     " wait: no worker that joined so far has that much (they have: " + kinds_text(kinds_) +
                     "); they run once one that has it joins")
                        .c_str());
    }
  }
  front ? p.jobs.push_front(j) : p.jobs.push_back(j);
  ++placed_waiting_;
  placed_stale_ = true;
}

// cancel(kill_running): the worker running or holding task seq is stopped as for a timeout; the
// task fails as cancelled, the others it held run elsewhere. False if no worker holds it.
bool Dispatcher::Impl::stop_running(std::uint64_t seq) {
  for (WorkerId id = 0; id < workers_.size(); ++id) {
    Worker& w = workers_[id];
    if (w.state != State::ready || (w.kill != Kill::none && w.kill != Kill::cancelled)) continue;
    if (std::none_of(w.inflight.begin(), w.inflight.end(), [&](const InFlight& e) { return e.job.seq == seq; }))
      continue;
    w.kill = Kill::cancelled;
    w.cancel_seqs.push_back(seq);
    if (!w.force_sent) force(id, w);
    return true;
  }
  return false;
}

void Dispatcher::Impl::answer_cancels() {
  std::vector<CancelRequest*> got;
  {
    std::lock_guard<std::mutex> lock(mutex_);
    got.swap(cancels_);
  }
  for (CancelRequest* r : got) r->stopping = !stopping_ && stop_running(r->seq);
  {
    std::lock_guard<std::mutex> lock(mutex_);
    for (CancelRequest* r : got) r->answered = true;
  }
  cv_.notify_all();
}

void Dispatcher::Impl::answer_stats() {
  std::vector<std::shared_ptr<StatsRequest>> got;
  std::size_t not_taken;
  {
    std::lock_guard<std::mutex> lock(mutex_);
    got.swap(stats_requests_);
    not_taken = submitted_.size();
  }
  BackendStats snapshot;
  fill_snapshot(snapshot, not_taken);
  {
    std::lock_guard<std::mutex> lock(mutex_);
    for (std::size_t i = 0; i < got.size(); ++i) {
      got[i]->result = i + 1 < got.size() ? snapshot : std::move(snapshot);
      got[i]->answered = true;
    }
  }
  cv_.notify_all();
}

// The snapshot, on the dispatcher's thread (or once it is gone). not_taken: tasks submitted and not
// yet taken into the queue.
void Dispatcher::Impl::fill_snapshot(BackendStats& out, std::size_t not_taken) {
  const auto now = Clock::now();
  const auto seconds = [](Clock::duration d) { return std::chrono::duration<double>(d).count(); };
  out = BackendStats{};
  out.queued = ready_total() + not_taken;
  out.retried = retried_;
  out.workers.reserve(workers_.size());
  for (WorkerId id = 0; id < workers_.size(); ++id) {
    const Worker& w = workers_[id];
    if (w.state == State::none) continue;
    WorkerStats s;
    s.index = w.identity.index >= 0 ? w.identity.index : static_cast<std::int32_t>(id);
    s.pid = w.identity.pid;
    s.rank = w.identity.rank;
    s.host = w.identity.host;
    switch (w.state) {
      case State::ready: s.state = w.inflight.empty() ? WM_WORKER_IDLE : WM_WORKER_BUSY; break;
      case State::lost:
      case State::disabled: s.state = WM_WORKER_LOST; break;
      default: s.state = WM_WORKER_STARTING; break;
    }
    if (w.state == State::ready && !w.inflight.empty()) {
      // A worker runs its tasks in order: the first one runs, since it was sent or since the
      // reply before it came, whichever was later.
      const InFlight& running = w.inflight.front();
      wm_task_info info{};
      info.struct_size = sizeof info;
      services_.task_info(running.job.task, &info);
      s.task_sequence = running.job.seq;
      s.task_name = info.name != nullptr ? info.name : "";
      s.task_seconds = seconds(now - std::max(running.sent_at, w.last_reply));
    }
    s.tasks_done = w.done;
    s.restarts = w.restarts;
    s.in_flight = static_cast<std::uint32_t>(w.inflight.size());
    s.busy_seconds = seconds(w.busy_time + (w.inflight.empty() ? Clock::duration{} : now - w.busy_since));
    s.up_seconds = seconds(now - w.first_start);
    s.bytes_sent = w.bytes_sent;
    s.bytes_received = w.bytes_received;
    out.in_flight += w.inflight.size();
    out.bytes_sent += w.bytes_sent;
    out.bytes_received += w.bytes_received;
    out.workers.push_back(std::move(s));
  }
}

void Dispatcher::Impl::send(WorkerId id, Worker& w, const Job& job, Clock::time_point now) {
  try {
    link(id).send_request(job.seq, job.size, TaskEncoder(services_, job.task));
  } catch (const std::exception& e) {
    fail(job, WM_FAIL_BACKEND, task_label(job) + " could not be encoded when it was sent: " + e.what());
    return;
  }
  if (job.size >= large_) {
    big_held_ = true;
    last_large_ = now;
  }
  w.inflight.push_back(InFlight{job, now});
  w.bytes_sent += job.size;
  if (w.inflight.size() == 1) {
    w.busy_since = now;
    rearm_timeout(id, w);
    classify_spin(w);
  }
  mark_dirty(id, w);
  last_activity_ = now;
}

void Dispatcher::Impl::mark_dirty(WorkerId id, Worker& w) {
  if (w.dirty) return;
  w.dirty = true;
  dirty_.push_back(id);
}

void Dispatcher::Impl::flush_dirty() {
  for (WorkerId id : dirty_) {
    Worker& w = workers_[id];
    w.dirty = false;
    if (w.state == State::starting || w.state == State::ready) transport_->flush(id);
  }
  dirty_.clear();
}

void Dispatcher::Impl::run_timers(Clock::time_point now) {
  while (!timeouts_.empty() && timeouts_.begin()->first <= now) {
    const WorkerId id = timeouts_.begin()->second;
    timeouts_.erase(timeouts_.begin());
    Worker& w = workers_[id];
    w.has_timeout = false;
    if (w.state != State::ready || w.kill != Kill::none || w.inflight.empty()) continue;
    w.kill = Kill::timeout;
    force(id, w);
  }
  if (stopping_ && !deadline_forced_ && now >= stop_deadline_) {
    deadline_forced_ = true;
    force_all(Kill::shutdown);
  }
  if (options_.elastic && options_.no_worker_timeout > 0 && alive_ == 0 && ready_total() != 0 &&
      now - no_worker_since_ >= std::chrono::duration<double>(options_.no_worker_timeout))
    fail_ready(WM_FAIL_BACKEND, "no worker joined the " + name_ + " work manager within " +
                                    seconds_text(options_.no_worker_timeout) +
                                    " (start nodes that connect to this master, or raise the timeout)");
  if (big_held_ && now - last_large_ >= kIdleRelease) {
    // Idle: large buffers and storage go back, on links with nothing in them.
    big_held_ = false;
    for (WorkerId id = 0; id < links_.size(); ++id) {
      if (link(id).lending()) {
        big_held_ = true;
        continue;
      }
      link(id).release_idle();
      if (workers_[id].state == State::starting || workers_[id].state == State::ready) transport_->idle(id);
    }
    if (big_held_) last_large_ = now;
  }
}

int Dispatcher::Impl::wait_ms(Clock::time_point now) {
  // Spinning pays when a message is due soon: a reply from a worker running short tasks, or the
  // next submit right after the last reply. With only long tasks in flight it would just take a
  // core from the workers.
  if (options_.spin_us > 0 && now - last_activity_ < std::chrono::microseconds(options_.spin_us) &&
      (busy_ == 0 || fast_busy_ > 0))
    return 0;
  auto next = Clock::time_point::max();
  if (!timeouts_.empty()) next = timeouts_.begin()->first;
  if (stopping_ && !deadline_forced_) next = std::min(next, stop_deadline_);
  if (options_.elastic && options_.no_worker_timeout > 0 && alive_ == 0 && ready_total() != 0)
    next = std::min(next, no_worker_since_ + std::chrono::duration_cast<Clock::duration>(
                                                  std::chrono::duration<double>(options_.no_worker_timeout)));
  if (big_held_) next = std::min(next, last_large_ + kIdleRelease);
  if (next == Clock::time_point::max()) return -1;
  if (next <= now) return 0;
  const auto ms = std::chrono::duration_cast<std::chrono::milliseconds>(next - now).count() + 1;
  return static_cast<int>(std::min<long long>(ms, 1 << 30));
}

void Dispatcher::Impl::finish_remaining() {
  for (WorkerId id = 0; id < workers_.size(); ++id) {
    Worker& w = workers_[id];
    std::deque<InFlight> left;
    left.swap(w.inflight);
    for (const InFlight& e : left)
      fail(e.job, WM_FAIL_SHUTDOWN, task_label(e.job) + " was in flight when the " + name_ + " work manager stopped",
           &w);
  }
  fail_ready(WM_FAIL_SHUTDOWN, "the " + name_ + " work manager shut down before this task ran");
  std::vector<Job> left;
  {
    std::lock_guard<std::mutex> lock(mutex_);
    left.swap(submitted_);
    queued_.store(0);
  }
  for (const Job& j : left) fail(j, WM_FAIL_SHUTDOWN, "the " + name_ + " work manager shut down before this task ran");
}

// ---------------------------------------------------------------- bookkeeping

Dispatcher::Impl::Worker& Dispatcher::Impl::worker(WorkerId id) {
  if (id >= workers_.size()) workers_.resize(id + 1);
  while (links_.size() <= id)
    links_.push_back(std::make_unique<MasterLink>(*transport_, static_cast<WorkerId>(links_.size()), *this, large_));
  return workers_[id];
}

void Dispatcher::Impl::offer_room(WorkerId id, Worker& w) {
  // An idle worker goes first: the one that just finished is awake and warm (a worker that slept
  // costs tens of microseconds to wake), and a sequence of single tasks keeps one worker busy
  // instead of waking each in turn. One that is in the room already (behind the others, with a task
  // still running then) gets a second place, at the front, when it runs out of tasks: dispatch()
  // skips the place it no longer needs, so this costs no search.
  const bool idle = w.inflight.empty();
  if (w.room_places >= 2 || (w.room_places == 1 && !idle)) return;
  ++w.room_places;
  placed_stale_ = true;
  if (idle)
    room_.push_front(id);
  else
    room_.push_back(id);
}

void Dispatcher::Impl::rearm_timeout(WorkerId id, Worker& w) {
  if (options_.task_timeout <= 0) return;
  if (w.has_timeout) timeouts_.erase({w.timeout_at, id});
  w.has_timeout = false;
  if (w.inflight.empty() || w.kill != Kill::none) return;
  // The front task started when it was sent, or when the task before it replied.
  const auto started = std::max(w.inflight.front().sent_at, w.last_reply);
  w.timeout_at = started + std::chrono::duration_cast<Clock::duration>(std::chrono::duration<double>(options_.task_timeout));
  timeouts_.insert({w.timeout_at, id});
  w.has_timeout = true;
}

// busy_ and fast_busy_ count workers (what wait_ms asks, without a scan); each worker's part is
// remembered in its flags.
void Dispatcher::Impl::classify_spin(Worker& w) {
  const bool busy = !w.inflight.empty();
  const bool fast = busy && w.avg_us < 4.0 * options_.spin_us;
  if (w.busy != busy) {
    busy ? ++busy_ : --busy_;
    w.busy = busy;
  }
  if (w.fast != fast) {
    fast ? ++fast_busy_ : --fast_busy_;
    w.fast = fast;
  }
}

void Dispatcher::Impl::note_service_time(Worker& w, const InFlight& done) {
  // The window adapts: many tasks in flight when they are tiny (throughput), one when they are
  // long (no task waits behind a long one while another worker idles).
  const auto now = Clock::now();
  const auto started = std::max(done.sent_at, w.last_reply);
  w.last_reply = now;
  const double us = std::chrono::duration<double, std::micro>(now - started).count();
  w.avg_us = 0.75 * w.avg_us + 0.25 * us;
  const double extra = 500.0 / std::max(w.avg_us, 0.5);
  w.window = 1 + static_cast<std::size_t>(std::min<double>(extra, double(options_.max_window - 1)));
}

// Starts a worker in slot id: at first, or in place of a lost one (`replacing`: what happened to
// it). The transport launches it; the setup goes first on its link. A worker that cannot be started
// counts as one that died before it was ready.
void Dispatcher::Impl::start_slot(WorkerId id, Worker& w, const std::string& replacing) {
  const bool in_process = transport_->capabilities().in_process;
  if (!replacing.empty()) ++w.restarts;
  for (;;) {
    WorkerSetup setup;
    setup.index = static_cast<std::int32_t>(id);
    setup.seed = in_process ? 0 : (seeds_() | 1);
    setup.spin_us = options_.spin_us;
    setup.keep_memory_mib = in_process ? 0 : options_.keep_memory_mib;
    setup.share_memory = !in_process && options_.share_memory;
    bool launched = false;
    try {
      launched = transport_->launch(id, setup);
    } catch (const std::exception& e) {
      w.last_status = e.what();
      if (++w.early_deaths < options_.early_death_limit) continue;
      return give_up(id, w,
                     "worker " + std::to_string(id) + " " + e.what() + ", " + std::to_string(options_.early_death_limit) +
                         " times in a row; giving up on this worker slot");
    }
    if (!launched) {
      return give_up(id, w, replacing.empty() ? "worker " + std::to_string(id) + " cannot be started"
                                              : replacing + "; it cannot be replaced, the " + name_ +
                                                    " work manager goes on with " +
                                                    std::to_string(n_workers_.load() - 1) + " worker(s)");
    }
    w.state = State::starting;
    ++alive_;
    link(id).reset();
    link(id).send_setup(setup);
    mark_dirty(id, w);
    return;
  }
}

void Dispatcher::Impl::check_startup() {
  if (settled_seen_) return;
  if (!stopping_ && (workers_.empty() || alive_ != ready_count_)) return;
  settled_seen_ = true;
  {
    std::lock_guard<std::mutex> lock(mutex_);
    startup_settled_ = true;
    // A worker that does not know the master's tasks fails the startup: better now, with the
    // report, than odd failures later.
    if (!registry_refusal_.empty() && startup_error_.empty()) startup_error_ = registry_refusal_;
    if (ready_count_ == 0 && startup_error_.empty())
      startup_error_ = stopping_ ? "the " + name_ + " work manager was shut down during startup"
                                 : (!dead_reason_.empty() ? dead_reason_ : "no worker of the " + name_ + " work manager started");
  }
  cv_.notify_all();
}

void Dispatcher::Impl::check_dead() {
  if (options_.elastic || dead_ || workers_.empty() || n_workers_.load() != 0) return;
  dead_ = true;
  std::string last;
  for (const Worker& w : workers_)
    if (!w.last_status.empty()) last = w.last_status;
  std::string reason = "no worker of the " + name_ + " work manager is left" + (last.empty() ? "" : ": the last one " + last);
  if (!options_.dead_hint.empty()) reason += " (" + options_.dead_hint + ")";
  {
    std::lock_guard<std::mutex> lock(mutex_);
    dead_reason_ = reason;
  }
  dead_text_ = reason;
  fail_ready(WM_FAIL_BACKEND, reason);
}

void Dispatcher::Impl::give_up(WorkerId id, Worker& w, const std::string& why, wm_log_level level) {
  (void)id;
  w.state = State::disabled;
  n_workers_.fetch_sub(1, std::memory_order_relaxed);
  services_.log(level, name_.c_str(), why.c_str());
}

void Dispatcher::Impl::protocol_error(WorkerId id, const std::string& why) {
  Worker& w = worker(id);
  if (w.state != State::starting && w.state != State::ready) return;
  if (w.kill == Kill::none) {
    w.kill = Kill::protocol;
    w.kill_note = worker_label(id, w) + " sent bytes that are not a valid reply (" + why + "); the worker was stopped";
    services_.log(WM_LOG_ERROR, name_.c_str(), w.kill_note.c_str());
  }
  if (!w.force_sent) force(id, w);
}

void Dispatcher::Impl::fail(const Job& j, wm_failure_kind kind, const std::string& message, Worker* on,
                            std::uint32_t attempts) {
  const wm_worker_identity where = on != nullptr ? on->identity.c() : wm_worker_identity{};
  ++stats_.completed;
  if (on != nullptr) ++on->done;
  services_.fail(j.task, kind, message.c_str(), on != nullptr ? &where : nullptr, attempts);
}

void Dispatcher::Impl::fail_ready(wm_failure_kind kind, const std::string& message) {
  std::deque<Job> left;
  left.swap(ready_);
  for (Placement& p : placements_) {
    left.insert(left.end(), p.jobs.begin(), p.jobs.end());
    p.jobs.clear();
  }
  placed_waiting_ = 0;
  for (const Job& j : left) fail(j, kind, message);
}

std::string Dispatcher::Impl::task_label(const Job& j) const {
  const wm_task_info info = task_info(j.task);
  return std::string("task '") + (info.name != nullptr && *info.name ? info.name : "?") + "'";
}

std::string Dispatcher::Impl::worker_label(WorkerId id, const Worker& w) const {
  const WorkerIdentity& i = w.identity;
  if (i.pid == 0) return "worker " + std::to_string(id);
  std::string s = "worker " + std::to_string(i.index >= 0 ? i.index : static_cast<std::int32_t>(id)) + " (";
  if (i.rank >= 0) s += "rank " + std::to_string(i.rank) + ", ";
  s += "pid " + std::to_string(i.pid);
  if (!i.host.empty() && i.host != this_host()) s += " on " + i.host;
  return s + ")";
}

// ---------------------------------------------------------------- events

void Dispatcher::Impl::worker_added(WorkerId id) {
  Worker& w = worker(id);
  w = Worker{};
  w.first_start = Clock::now();
  n_workers_.fetch_add(1, std::memory_order_relaxed);
  start_slot(id, w, "");
}

void Dispatcher::Impl::hello(WorkerId id, const char* data, std::size_t size) {
  Worker& w = worker(id);
  if (w.state != State::starting || w.kill != Kill::none) return;
  Hello h;
  std::string why;
  if (!parse_hello(data, size, h, why)) return protocol_error(id, why);
  if (h.index != static_cast<std::int32_t>(id))
    return protocol_error(id, "its hello says it is worker " + std::to_string(h.index) + ", and it was set up as worker " +
                                  std::to_string(id));
  w.state = State::ready;
  w.identity = WorkerIdentity{h.index, h.pid, h.rank, h.host};
  w.early_deaths = 0;
  w.last_reply = Clock::now();
  transport_->identified(id, w.identity);
  if (h.registry_digest != own_tasks_.digest) {
    // The registry handshake: a worker that does not know the master's tasks as the master does is
    // never sent one.
    TaskListing theirs;
    if (!TaskListing::parse(h.extension.data(), h.extension.size(), theirs, why))
      return protocol_error(id, "its hello carries " + why);
    const std::string report = compare_listings(own_tasks_, theirs, worker_label(id, w));
    if (!report.empty()) {
      // One event, one line: the first refusal is said once, and not at all where the startup
      // fails with it (the host gets the report in the error); later workers refused alike (every
      // worker, when the master loaded a task library after the work manager was made) at debug.
      const bool thrown = !options_.elastic && !settled_seen_;
      services_.log(registry_refusal_.empty() && !thrown ? WM_LOG_ERROR : WM_LOG_DEBUG, name_.c_str(), report.c_str());
      if (registry_refusal_.empty()) registry_refusal_ = report;
      w.state = State::starting;  // never counted ready
      w.kill = Kill::refused;
      w.kill_note = report;
      force(id, w);
      return;
    }
  }
  Resources has;
  for (const auto& [resource, amount] : h.resources) has.set(resource, amount);
  const auto known = std::find(kinds_.begin(), kinds_.end(), has);
  w.kind = static_cast<std::uint32_t>(known - kinds_.begin());
  const bool new_kind = known == kinds_.end();
  if (new_kind) kinds_.push_back(std::move(has));
  ++ready_count_;
  {
    std::lock_guard<std::mutex> lock(mutex_);
    ready_shared_ = static_cast<unsigned>(ready_count_);
    if (new_kind) kinds_shared_ = kinds_;
  }
  cv_.notify_all();
  if (stopping_) {
    if (!w.stop_sent) {  // it joined while the work manager stops
      w.stop_sent = true;
      link(id).send_stop();
      mark_dirty(id, w);
    }
    if (deadline_forced_ && !w.force_sent) {
      w.kill = Kill::shutdown;
      force(id, w);
    }
  } else {
    offer_room(id, w);
  }
  check_startup();
}

void Dispatcher::Impl::reply(WorkerId id, std::uint64_t seq, const char* data, std::size_t size,
                             const wm_shared_block* block) {
  Worker& w = worker(id);
  if (w.inflight.empty() || w.inflight.front().job.seq != seq) {
    protocol_error(id, "a reply for task number " + std::to_string(seq) + " came when " +
                           (w.inflight.empty() ? std::string("no task was running")
                                               : "task number " + std::to_string(w.inflight.front().job.seq) +
                                                     " was expected"));
    return;
  }
  const InFlight done = w.inflight.front();
  w.inflight.pop_front();
  note_service_time(w, done);
  w.bytes_received += size;
  if (w.inflight.empty()) w.busy_time += w.last_reply - w.busy_since;  // note_service_time read the clock
  rearm_timeout(id, w);
  classify_spin(w);
  if (usable(id, w) && w.inflight.size() <= w.window) offer_room(id, w);
  if (size >= large_) {
    big_held_ = true;
    last_large_ = Clock::now();
  }
  if (w.kill == Kill::cancelled &&
      std::find(w.cancel_seqs.begin(), w.cancel_seqs.end(), seq) != w.cancel_seqs.end()) {
    // Its reply came before the stop took effect: cancel() said it would fail as cancelled.
    w.cancel_seqs.erase(std::find(w.cancel_seqs.begin(), w.cancel_seqs.end(), seq));
    fail(done.job, WM_FAIL_CANCELLED, "stopped while it ran (cancel(wm::kill_running)); it ended before the stop", &w);
    return;
  }
  ++stats_.completed;
  ++w.done;
  const wm_worker_identity where = w.identity.c();
  // Done-callbacks run inside: they may submit (a queue under mutex_, not held here) or stop.
  if (block != nullptr) {
    // Received into pooled memory: a large shared array in it is kept there, not copied.
    services_.decode_from_block(block);
    services_.complete_encoded(done.job.task, data, size, &where);
    services_.decode_from_block(nullptr);
  } else {
    services_.complete_encoded(done.job.task, data, size, &where);
  }
}

void Dispatcher::Impl::worker_lost(WorkerId id, const std::string& status) {
  Worker& w = worker(id);
  if (w.state != State::starting && w.state != State::ready) return;
  const bool was_ready = w.state == State::ready;
  if (was_ready) {
    --ready_count_;
    std::lock_guard<std::mutex> lock(mutex_);
    ready_shared_ = static_cast<unsigned>(ready_count_);
  }
  --alive_;
  w.state = State::lost;
  w.last_status = status;
  if (w.has_timeout) timeouts_.erase({w.timeout_at, id});
  w.has_timeout = false;
  if (!w.inflight.empty()) w.busy_time += Clock::now() - w.busy_since;
  std::deque<InFlight> lost;
  lost.swap(w.inflight);
  classify_spin(w);
  link(id).reset();
  if (alive_ == 0) no_worker_since_ = Clock::now();
  const std::string who = worker_label(id, w);
  if (options_.on_worker_lost && w.kill == Kill::none && (!w.stop_sent || !lost.empty()))
    options_.on_worker_lost(who, status, lost.empty() ? std::string() : task_label(lost.front().job));
  const Kill kill = w.kill;
  const std::string kill_note = w.kill_note;
  std::vector<std::uint64_t> cancelled;
  cancelled.swap(w.cancel_seqs);
  w.kill = Kill::none;
  w.kill_note.clear();
  w.stop_sent = w.force_sent = false;

  // The slot first (replaced, or given up), so that whoever learns of the failures below (a
  // done-callback) sees the work manager as it now is.
  if (!stopping_) {
    if (kill == Kill::refused) {
      give_up(id, w, kill_note + " It is not replaced (a replacement would be the same).", WM_LOG_DEBUG);
    } else if (!was_ready && ++w.early_deaths >= options_.early_death_limit) {
      give_up(id, w,
              "worker " + std::to_string(id) + " " + status + " before it was ready, " +
                  std::to_string(options_.early_death_limit) + " times in a row; giving up on this worker slot");
    } else {
      start_slot(id, w, who + " " + status);
    }
  }
  check_dead();
  if (kill == Kill::none && !stopping_ && lost.empty() && was_ready)
    services_.log(WM_LOG_WARNING, name_.c_str(), (who + " " + status + " while idle").c_str());

  // Then its tasks, by the blame rules: the task it was running pays for how it ended; the ones
  // queued behind it had not started and run elsewhere.
  std::vector<Job> requeue;
  for (std::size_t i = 0; i < lost.size(); ++i) {
    Job j = lost[i].job;
    const bool running = i == 0;  // a worker runs its tasks in order: the first one was running
    if (kill == Kill::cancelled && std::find(cancelled.begin(), cancelled.end(), j.seq) != cancelled.end()) {
      fail(j, WM_FAIL_CANCELLED,
           std::string(running ? "stopped while it ran" : "stopped while it waited behind another task") +
               " (cancel(wm::kill_running)); " + who + " was stopped",
           &w);
    } else if (kill == Kill::cancelled && !stopping_) {
      requeue.push_back(j);  // stopped for another task: it runs again elsewhere, no attempt counted
    } else if (kill == Kill::cancelled) {
      fail(j, WM_FAIL_SHUTDOWN, task_label(j) + " was on " + who + ", stopped for a cancelled task while the " + name_ +
                                    " work manager shut down");
    } else if (kill == Kill::shutdown) {
      fail(j, WM_FAIL_SHUTDOWN,
           task_label(j) + (stopping_now_ ? " was stopped with the " + name_ + " work manager (shut down at once)"
                                          : " did not finish within the shutdown timeout of " +
                                                seconds_text(options_.shutdown_timeout)) +
               "; " + who + " was stopped",
           &w);
    } else if (running && kill == Kill::protocol) {
      fail(j, WM_FAIL_PROTOCOL, task_label(j) + " was running when " + kill_note, &w);
    } else if (running && kill == Kill::timeout) {
      fail(j, WM_FAIL_TIMEOUT,
           task_label(j) + " ran longer than the per-task timeout of " + seconds_text(options_.task_timeout) + " on " +
               who + "; the worker was stopped",
           &w);
    } else if (running) {
      const std::uint32_t attempts = j.attempts + 1;
      if (!stopping_ && attempts <= options_.retries) {
        services_.log(WM_LOG_WARNING, name_.c_str(),
                      (who + " " + status + " while running " + task_label(j) + "; running it again (attempt " +
                       std::to_string(attempts + 1) + " of " + std::to_string(options_.retries + 1) + ")")
                          .c_str());
        j.attempts = attempts;
        ++retried_;
        requeue.push_back(j);
      } else {
        fail(j, WM_FAIL_WORKER_LOST,
             who + " " + status + " while running " + task_label(j) + "; attempts made: " + std::to_string(attempts) +
                 (options_.retries == 0 ? " (" + options_.retries_hint + ")"
                                        : " of " + std::to_string(options_.retries + 1)),
             &w, attempts);
      }
    } else if (stopping_) {
      fail(j, WM_FAIL_SHUTDOWN, task_label(j) + " had not started when the " + name_ + " work manager shut down");
    } else {
      requeue.push_back(j);  // it had not started: it runs elsewhere
    }
  }
  for (auto it = requeue.rbegin(); it != requeue.rend(); ++it) enqueue(*it, true);
  if (dead_) fail_ready(WM_FAIL_BACKEND, dead_text_);
  check_startup();
}

}  // namespace wm::sdk::remote
