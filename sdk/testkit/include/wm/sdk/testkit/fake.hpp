// SPDX-License-Identifier: MIT
// wm/sdk/testkit/fake.hpp: the remote engine driven without the core and without processes: fake
// core services (tasks that know what they should return, a record of every completion and
// failure) and a fake transport whose workers answer in progress() and can be told to misbehave:
// delays, lost workers, duplicate, corrupt and out-of-order replies, bytes that are not the
// protocol (after spdlog's tests/test_sink.h). Link WM::testkit. Run a Dispatcher over it to test
// the engine, or over your own Transport with FakeCore to test yours without the core.
#pragma once

#include <wm/sdk/remote/dispatcher.hpp>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <cstddef>
#include <cstring>
#include <deque>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <set>
#include <string>
#include <vector>

namespace wm::testkit {

namespace remote = wm::sdk::remote;

/** A task as the fake core sees it: its request is "task <id>", an ok reply echoes the request. */
struct Task {
  std::uint64_t id = 0;
  std::string name = "fake_task";
  bool encode_throws = false;
  /** What it needs of a worker (wm_task_info.needs), sorted by name: set with FakeCore::needs. */
  std::vector<std::string> need_names;
  std::vector<wm_resource_amount> needs;
  const std::vector<wm_resource_amount>* shared_needs = nullptr;  // FakeCore::make(n, needs)
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

/** Fake core services: tasks are Task; every completion or failure is recorded. */
class FakeCore {
 public:
  FakeCore() {
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
  ~FakeCore() { current() = nullptr; }

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
  /** Makes n tasks that all need `amounts` (sorted by name; one copy for all of them). */
  std::vector<wm_task*> make(std::size_t n, const std::vector<std::pair<std::string, double>>& amounts) {
    {
      std::lock_guard<std::mutex> lock(mutex_);
      shared_needs_.emplace_back();
      auto& [names, needs] = shared_needs_.back();
      for (const auto& a : amounts) names.push_back(a.first);
      for (std::size_t i = 0; i < amounts.size(); ++i) needs.push_back({names[i].c_str(), amounts[i].second});
    }
    auto out = make(n);
    for (wm_task* t : out) task(t).shared_needs = &shared_needs_.back().second;
    return out;
  }
  /** Says what the task needs of a worker (before it is submitted). */
  void needs(wm_task* t, std::vector<std::pair<std::string, double>> amounts) {
    std::sort(amounts.begin(), amounts.end());
    Task& k = task(t);
    k.need_names.clear();
    k.needs.clear();
    for (auto& a : amounts) k.need_names.push_back(a.first);
    for (std::size_t i = 0; i < amounts.size(); ++i) k.needs.push_back({k.need_names[i].c_str(), amounts[i].second});
  }

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
  static FakeCore*& current() {
    static FakeCore* c = nullptr;
    return c;
  }
  static void task_info(wm_task* t, wm_task_info* info) {
    auto* task = reinterpret_cast<Task*>(t);
    info->name = task->name.c_str();
    info->sequence = task->id + 1;
    info->encoded_size = request_of(task->id).size();
    if (info->struct_size >= offsetof(wm_task_info, needs) + sizeof info->needs) {
      const auto& needs = task->shared_needs != nullptr ? *task->shared_needs : task->needs;
      info->n_needs = static_cast<std::uint32_t>(needs.size());
      info->needs = needs.empty() ? nullptr : needs.data();
    }
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
    FakeCore* c = current();
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
  std::deque<std::pair<std::vector<std::string>, std::vector<wm_resource_amount>>> shared_needs_;
  std::size_t finished_ = 0;
};

/**
 * A transport whose workers live in its progress(): each reads its setup, says hello, answers its
 * tasks in order by echoing the request, and leaves when told to stop, speaking the engine's own
 * bytes (so the engine's protocol is exercised, not bypassed). Everything the engine asks is
 * counted; misbehaviour is injected through the public members, from the test's thread.
 */
class FakeTransport final : public remote::Transport {
 public:
  struct Stats {
    std::size_t sends = 0, flushes = 0, graceful_stops = 0, forced_stops = 0, restarts = 0, starts = 0;
  };
  /** What a worker does with the task whose request is "task <id>". */
  enum class Act { reply, hold, die, die_always, duplicate, corrupt_seq, garbage };

  explicit FakeTransport(unsigned workers, bool hello_at_once = true);
  ~FakeTransport() override;

  // ---- set by the test (any thread) ----
  /** How worker slots answer: by task id (default: reply). */
  void act(std::uint64_t task_id, Act a);
  /** Replies are held until this many progress() calls passed since the task was sent. */
  void reply_after(int calls);
  /** launch() refuses to start a worker again from now on (a rank cannot be restarted). */
  void refuse_restarts();
  /** Workers die before their hello this many times after each start or restart. */
  void die_before_hello(int times);
  /** Workers say in their hello that they know this task too (the master does not). */
  void extra_task(const std::string& name);
  /** What worker slot id says it has in its hellos (none by default). */
  void worker_resources(remote::WorkerId id, std::vector<std::pair<std::string, double>> amounts);
  /** A new worker joins (elastic), with hello on the next progress(). */
  void add_worker();
  /** Releases the tasks held with Act::hold: they are answered now. */
  void release_held();
  Stats stats() const;
  /** Most tasks in flight seen on one worker at once. */
  std::size_t max_in_flight() const;

  // ---- remote::Transport ----
  void start(remote::TransportHost& host) override;
  bool launch(remote::WorkerId id, const remote::WorkerSetup& setup) override;
  remote::Buffer& outbox(remote::WorkerId id) override;
  void flush(remote::WorkerId id) override;
  void stop_worker(remote::WorkerId id) override;
  int progress(int timeout_ms) override;
  void wake() override;

  struct State;

 private:
  std::unique_ptr<State> s_;
};

}  // namespace wm::testkit
