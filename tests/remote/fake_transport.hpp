// fake_transport.hpp: the remote engine's dispatcher driven without the core and without processes:
// fake core services (tasks that know what they should return, a record of every completion and
// failure) and a fake transport whose workers answer in progress() and can be told to misbehave:
// delays, lost workers, duplicate, corrupt and out-of-order replies (after spdlog's tests/test_sink.h).
// Used by the dispatcher's tests and by the dispatcher's scaling bench.
#pragma once

#include <wm/sdk/remote/dispatcher.hpp>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <cstring>
#include <deque>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <set>
#include <string>
#include <vector>

namespace fake {

namespace remote = wm::sdk::remote;

/** A task as the fake core sees it: its request is "task <id>", an ok reply echoes the request. */
struct Task {
  std::uint64_t id = 0;
  std::string name = "fake_task";
  bool encode_throws = false;
};

/** What happened to a task. */
struct Outcome {
  enum Kind { pending, completed, failed } kind = pending;
  std::string reply;         // completed: the reply bytes
  std::int32_t failure = 0;  // failed: wm_failure_kind
  std::string message;       // failed: the message
  std::int32_t worker_index = -1;
  std::int64_t pid = 0;
  std::int32_t rank = -1;
  std::string host;
  std::uint32_t attempts = 0;
  int times = 0;  // how often the task was finished (must end at 1)
};

/** Fake core services: tasks are fake::Task; every completion or failure is recorded. */
class Core {
 public:
  Core() {
    services_.abi_version = WM_ABI_VERSION;
    services_.struct_size = sizeof services_;
    services_.large_payload_bytes = 1 << 20;
    services_.task_info = &task_info;
    services_.encode = &encode;
    services_.complete_encoded = &complete;
    services_.fail = &fail;
    services_.list_tasks = [](void (*)(void*, const wm_task_entry*), void*) {};
    services_.log = [](std::int32_t, const char*, const char*) {};
    services_.set_worker = [](const wm_worker_identity*, std::uint64_t) {};
    services_.execute = [](wm_task*) {};
    services_.execute_encoded = [](const void*, std::size_t, wm_byte_buffer*) {};
    current() = this;
  }
  ~Core() { current() = nullptr; }

  const wm_core_services& services() const { return services_; }

  /** Makes n tasks (ids from 0 on) and returns them as wm_task pointers to submit. */
  std::vector<wm_task*> make(std::size_t n) {
    std::vector<wm_task*> out;
    std::lock_guard<std::mutex> lock(mutex_);
    for (std::size_t i = 0; i < n; ++i) {
      tasks_.push_back(std::make_unique<Task>());
      tasks_.back()->id = tasks_.size() - 1;
      outcomes_.emplace_back();
      out.push_back(reinterpret_cast<wm_task*>(tasks_.back().get()));
    }
    return out;
  }
  Task& task(wm_task* t) { return *reinterpret_cast<Task*>(t); }

  /** Called (outside any lock of the fake) each time a task finishes: done-callbacks. */
  std::function<void(std::uint64_t id, const Outcome&)> on_done;

  Outcome outcome(std::uint64_t id) const {
    std::lock_guard<std::mutex> lock(mutex_);
    return outcomes_.at(id);
  }
  std::size_t finished() const {
    std::lock_guard<std::mutex> lock(mutex_);
    return finished_;
  }
  /** Waits until n tasks finished (false after the limit). */
  bool wait_finished(std::size_t n, std::chrono::milliseconds limit = std::chrono::seconds(20)) {
    std::unique_lock<std::mutex> lock(mutex_);
    return cv_.wait_for(lock, limit, [&] { return finished_ >= n; });
  }
  /** Tasks finished more than once (must stay 0). */
  int finished_twice() const {
    std::lock_guard<std::mutex> lock(mutex_);
    int n = 0;
    for (const auto& o : outcomes_) n += o.times > 1;
    return n;
  }

  static std::string request_of(std::uint64_t id) { return "task " + std::to_string(id); }

 private:
  static Core*& current() {
    static Core* c = nullptr;
    return c;
  }
  static void task_info(wm_task* t, wm_task_info* info) {
    auto* task = reinterpret_cast<Task*>(t);
    info->name = task->name.c_str();
    info->sequence = task->id + 1;
    info->encoded_size = request_of(task->id).size();
  }
  static int encode(wm_task* t, wm_byte_buffer* out, wm_error* err) {
    auto* task = reinterpret_cast<Task*>(t);
    if (task->encode_throws) {
      err->code = 1;
      std::snprintf(err->message, sizeof err->message, "fake encoding failure");
      return 1;
    }
    const std::string r = request_of(task->id);
    if (out->capacity - out->size < r.size() && out->grow(out, out->size + r.size()) != 0) return 1;
    std::memcpy(out->data + out->size, r.data(), r.size());
    out->size += r.size();
    return 0;
  }
  static void record(wm_task* t, const std::function<void(Outcome&)>& fill) {
    Core* c = current();
    const std::uint64_t id = reinterpret_cast<Task*>(t)->id;
    Outcome copy;
    {
      std::lock_guard<std::mutex> lock(c->mutex_);
      Outcome& o = c->outcomes_.at(id);
      fill(o);
      if (++o.times == 1) ++c->finished_;
      copy = o;
    }
    c->cv_.notify_all();
    if (c->on_done) c->on_done(id, copy);
  }
  static void where(Outcome& o, const wm_worker_identity* w) {
    if (w == nullptr) return;
    o.worker_index = w->index;
    o.pid = w->pid;
    o.rank = w->rank;
    o.host = w->host != nullptr ? w->host : "";
  }
  static void complete(wm_task* t, const void* reply, std::size_t size, const wm_worker_identity* w) {
    record(t, [&](Outcome& o) {
      o.kind = Outcome::completed;
      o.reply.assign(static_cast<const char*>(reply), size);
      where(o, w);
    });
  }
  static void fail(wm_task* t, std::int32_t kind, const char* message, const wm_worker_identity* w, std::uint32_t attempts) {
    record(t, [&](Outcome& o) {
      o.kind = Outcome::failed;
      o.failure = kind;
      o.message = message;
      o.attempts = attempts;
      where(o, w);
    });
  }

  wm_core_services services_{};
  mutable std::mutex mutex_;
  std::condition_variable cv_;
  std::vector<std::unique_ptr<Task>> tasks_;
  std::vector<Outcome> outcomes_;
  std::size_t finished_ = 0;
};

/**
 * Workers that live in progress(): each says hello once started and answers its tasks in order,
 * echoing the request. Everything the dispatcher asks is counted; misbehaviour is injected through
 * the public members, from the test's thread (they are read under the fake's mutex).
 */
class Transport final : public remote::Transport {
 public:
  struct Stats {
    std::size_t sends = 0, flushes = 0, graceful_stops = 0, forced_stops = 0, restarts = 0, starts = 0;
  };
  /** What a worker does with the task whose request is "task <id>". */
  enum class Act { reply, hold, die, die_always, duplicate, corrupt_seq, garbage };

  explicit Transport(unsigned workers, bool hello_at_once = true) : n_(workers), hello_at_once_(hello_at_once) {}

  // ---- set by the test (any thread) ----
  /** How worker slots answer: by task id (default: reply). */
  void act(std::uint64_t task_id, Act a) {
    std::lock_guard<std::mutex> lock(mutex_);
    acts_[task_id] = a;
  }
  /** Replies are held until this many progress() calls passed since the task was sent. */
  void reply_after(int calls) {
    std::lock_guard<std::mutex> lock(mutex_);
    delay_ = calls;
  }
  /** restart_worker fails from now on (a rank cannot be restarted). */
  void refuse_restarts() {
    std::lock_guard<std::mutex> lock(mutex_);
    refuse_restarts_ = true;
  }
  /** Workers die before their hello this many times after each start or restart. */
  void die_before_hello(int times) {
    std::lock_guard<std::mutex> lock(mutex_);
    early_deaths_ = times;
  }
  /** Workers say in their hello that they know this task too (the master does not). */
  void extra_task(const std::string& name) {
    std::lock_guard<std::mutex> lock(mutex_);
    extra_task_ = name;
  }
  /** A new worker joins (elastic), with hello on the next progress(). */
  void add_worker() {
    std::lock_guard<std::mutex> lock(mutex_);
    ++to_add_;
  }
  /** Releases the tasks held with Act::hold: they are answered now. */
  void release_held() {
    std::lock_guard<std::mutex> lock(mutex_);
    for (auto& [id, a] : acts_)
      if (a == Act::hold) a = Act::reply;
  }
  Stats stats() const {
    std::lock_guard<std::mutex> lock(mutex_);
    return stats_;
  }
  /** Most tasks in flight seen on one worker at once. */
  std::size_t max_in_flight() const {
    std::lock_guard<std::mutex> lock(mutex_);
    return max_in_flight_;
  }

  // ---- remote::Transport ----
  void start(remote::TransportEvents& events) override {
    events_ = &events;
    for (unsigned i = 0; i < n_; ++i) add(events);
  }
  bool restart_worker(remote::WorkerId id) override {
    std::lock_guard<std::mutex> lock(mutex_);
    if (refuse_restarts_) return false;
    ++stats_.restarts;
    W& w = workers_.at(id);
    w = W{};
    w.alive = true;
    w.pid = next_pid_++;
    w.early_deaths_left = early_deaths_;
    activate(id);
    return true;
  }
  bool send_task(remote::WorkerId id, std::uint64_t seq, std::size_t size, const remote::Encoder& encode) override {
    remote::Buffer b;
    remote::BufferWriter out(b);
    encode(out);
    out.commit();
    std::lock_guard<std::mutex> lock(mutex_);
    W& w = workers_.at(id);
    if (!w.alive || w.stopping) return false;
    ++stats_.sends;
    if (b.size != size) throw std::runtime_error("fake: encoded size differs from the announced one");
    w.queue.push_back(Sent{seq, std::string(b.data, b.size), calls_});
    max_in_flight_ = std::max(max_in_flight_, w.queue.size());
    activate(id);
    return true;
  }
  void flush(remote::WorkerId) override {
    std::lock_guard<std::mutex> lock(mutex_);
    ++stats_.flushes;
  }
  void stop_worker(remote::WorkerId id, remote::StopMode mode) override {
    std::lock_guard<std::mutex> lock(mutex_);
    W& w = workers_.at(id);
    if (mode == remote::StopMode::graceful) {
      ++stats_.graceful_stops;
      w.stopping = true;
    } else {
      ++stats_.forced_stops;
      w.killed = true;
    }
    activate(id);
  }
  int progress(int timeout_ms) override {
    int events = 0;
    std::vector<std::function<void()>> todo;  // events, delivered without the fake's lock
    {
      std::unique_lock<std::mutex> lock(mutex_);
      ++calls_;
      while (to_add_ > 0) {
        --to_add_;
        const remote::WorkerId id = static_cast<remote::WorkerId>(workers_.size());
        todo.push_back([this, id] { events_->worker_added(id); });
        workers_.push_back(W{});
        workers_.back().alive = true;
        workers_.back().pid = next_pid_++;
        activate(id);
      }
      // Only workers with something to do take a turn: the fake costs the same per task whether it
      // simulates 2 workers or 1,024 (the dispatcher's scaling bench relies on it).
      std::vector<remote::WorkerId> turn;
      turn.swap(active_);
      for (remote::WorkerId id : turn) {
        workers_[id].active = false;
        step(id, todo);
        const W& w = workers_[id];
        if (w.alive && (!w.queue.empty() || !w.said_hello || w.stopping || w.killed)) activate(id);
      }
      if (todo.empty() && timeout_ms != 0) {
        // Nothing to do: sleep like a real transport until woken (bounded, so timers fire).
        const auto limit = std::chrono::milliseconds(timeout_ms < 0 ? 50 : std::min(timeout_ms, 50));
        cv_.wait_for(lock, limit, [this] { return woken_; });
        woken_ = false;
      }
    }
    for (auto& f : todo) {
      f();
      ++events;
    }
    return events;
  }
  void wake() override {
    {
      std::lock_guard<std::mutex> lock(mutex_);
      woken_ = true;
    }
    cv_.notify_all();
  }

 private:
  struct Sent {
    std::uint64_t seq;
    std::string request;
    long at_call;
  };
  struct W {
    bool alive = false, said_hello = false, stopping = false, killed = false, active = false;
    std::int64_t pid = 0;
    int early_deaths_left = 0;
    std::deque<Sent> queue;
  };

  void add(remote::TransportEvents& events) {
    const remote::WorkerId id = static_cast<remote::WorkerId>(workers_.size());
    {
      std::lock_guard<std::mutex> lock(mutex_);
      workers_.push_back(W{});
      workers_.back().alive = true;
      workers_.back().pid = next_pid_++;
      workers_.back().early_deaths_left = early_deaths_;
      ++stats_.starts;
      activate(id);
    }
    events.worker_added(id);
  }

  void activate(remote::WorkerId id) {  // under the lock
    if (workers_[id].active) return;
    workers_[id].active = true;
    active_.push_back(id);
  }

  static std::uint64_t id_of(const std::string& request) { return std::stoull(request.substr(5)); }

  // One worker's turn (under the lock): what it does is queued as events in todo.
  void step(remote::WorkerId id, std::vector<std::function<void()>>& todo) {
    W& w = workers_[id];
    if (!w.alive) return;
    auto lost = [&](const std::string& status) {
      w.alive = false;
      w.queue.clear();
      todo.push_back([this, id, status] { events_->worker_lost(id, status); });
    };
    if (w.killed) return lost("was killed by signal 9 (Killed)");
    if (!w.said_hello) {
      if (w.early_deaths_left > 0) {
        --w.early_deaths_left;
        return lost("exited with code 7");
      }
      if (!hello_at_once_) return;
      w.said_hello = true;
      remote::Hello h;
      h.index = static_cast<std::int32_t>(id);
      h.pid = w.pid;
      h.host = "fakehost";
      // The fake core registers no task; a worker may know one more.
      remote::TaskListing tasks;
      if (!extra_task_.empty()) tasks.tasks.push_back({extra_task_, 42, "int (int)", ""});
      h.extension = tasks.encode();
      std::string why;
      remote::TaskListing::parse(h.extension.data(), h.extension.size(), tasks, why);
      h.registry_digest = tasks.digest;
      h.n_tasks = static_cast<std::uint32_t>(tasks.tasks.size());
      todo.push_back([this, id, h] { events_->worker_ready(id, h); });
      return;
    }
    while (!w.queue.empty()) {
      const Sent s = w.queue.front();
      if (calls_ - s.at_call < delay_) break;
      const std::uint64_t task = id_of(s.request);
      const auto it = acts_.find(task);
      const Act a = it == acts_.end() ? Act::reply : it->second;
      if (a == Act::hold) break;
      w.queue.pop_front();
      switch (a) {
        case Act::reply:
          todo.push_back([this, id, s] { events_->reply(id, s.seq, s.request.data(), s.request.size()); });
          break;
        case Act::duplicate:
          todo.push_back([this, id, s] { events_->reply(id, s.seq, s.request.data(), s.request.size()); });
          todo.push_back([this, id, s] { events_->reply(id, s.seq, s.request.data(), s.request.size()); });
          acts_.erase(task);
          break;
        case Act::corrupt_seq:
          todo.push_back([this, id, s] { events_->reply(id, s.seq + 1000000, s.request.data(), s.request.size()); });
          acts_.erase(task);
          break;
        case Act::garbage:
          todo.push_back([this, id] { events_->protocol_error(id, "fake garbage"); });
          acts_.erase(task);
          break;
        case Act::die:
          acts_.erase(task);
          return lost("was killed by signal 6 (Aborted)");
        case Act::die_always:
          return lost("was killed by signal 6 (Aborted)");
        case Act::hold:
          break;
      }
    }
    if (w.stopping && w.queue.empty()) lost("exited with code 0");
  }

  const unsigned n_;
  const bool hello_at_once_;
  remote::TransportEvents* events_ = nullptr;
  mutable std::mutex mutex_;
  std::condition_variable cv_;
  bool woken_ = false;
  std::vector<W> workers_;
  std::vector<remote::WorkerId> active_;  // workers with something to do
  std::map<std::uint64_t, Act> acts_;
  long calls_ = 0;
  long delay_ = 0;
  bool refuse_restarts_ = false;
  int early_deaths_ = 0;
  std::string extra_task_;
  int to_add_ = 0;
  std::int64_t next_pid_ = 1000;
  std::size_t max_in_flight_ = 0;
  Stats stats_;
};

}  // namespace fake
