// SPDX-License-Identifier: MIT
// task_state.cpp: finishing, waiting on and listening to tasks; futures, completion queues and
// FutureWatcher. Waiting spins for a few microseconds (short tasks end sooner than a sleeping
// thread wakes), then sleeps on a futex; nothing polls.
#include "backend_link.hpp"
#include "internal.hpp"
#include "link_stats.hpp"

#include <wm/future.hpp>
#include <wm/future_watcher.hpp>
#include <wm/task.hpp>
#include <wm/work_manager.hpp>

#include <linux/futex.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <algorithm>
#include <climits>
#include <cmath>
#include <condition_variable>
#include <cstdio>
#include <ctime>
#include <deque>
#include <mutex>
#include <random>

#if defined(__x86_64__) || defined(__i386__)
#include <immintrin.h>
#define WM_CPU_RELAX() _mm_pause()
#else
#define WM_CPU_RELAX() ((void)0)
#endif

namespace wm::detail {
namespace {

long futex(std::atomic<std::uint32_t>* addr, int op, std::uint32_t value, const timespec* timeout) {
  return syscall(SYS_futex, reinterpret_cast<std::uint32_t*>(addr), op, value, timeout, nullptr, 0);
}

// Spins until pred() or about `micros` microseconds pass; true if pred() held.
template <class Pred>
bool spin_for(Pred pred, int micros) {
  const auto until = std::chrono::steady_clock::now() + std::chrono::microseconds(micros);
  for (;;) {
    for (int i = 0; i < 64; ++i) {
      if (pred()) return true;
      WM_CPU_RELAX();
    }
    if (std::chrono::steady_clock::now() >= until) return pred();
  }
}

constexpr int kWaitSpinMicros = 20;

// The listener list of a finished task: add_listener() then calls the listener at once. Never
// dereferenced.
ListenerNode* closed_list() noexcept { return reinterpret_cast<ListenerNode*>(std::uintptr_t(1)); }

// A failure whose record could not be allocated (out of memory): get_result() says so.
const Failure kUnrecordedFailure{};

void finish(TaskState* s, std::uint32_t status) noexcept {
  // Counted before it is published: a waiter that wakes and asks for the statistics sees it.
  count_finish(s, status);
  std::uint32_t old = s->word.load(std::memory_order_relaxed);
  do {
    if ((old & TaskState::status_mask) != TaskState::pending) {
      count_finish(s, status, true);
      log(WM_LOG_ERROR, "core", "a backend finished task " + std::to_string(s->sequence) +
                                    " twice; the second outcome is ignored");
      return;
    }
  } while (!s->word.compare_exchange_weak(old, status, std::memory_order_seq_cst));
  if (old & TaskState::waiters) futex(&s->word, FUTEX_WAKE_PRIVATE, INT_MAX, nullptr);
  // Closing the list hands every listener added so far to this thread; later ones see it closed
  // and run at once in add_listener(). The list is newest first: reverse it to call in order.
  ListenerNode* list = s->listeners.exchange(closed_list(), std::memory_order_acq_rel);
  if (list != nullptr) {
    ListenerNode* in_order = nullptr;
    while (list != nullptr) {
      ListenerNode* next = list->next;
      list->next = in_order;
      in_order = list;
      list = next;
    }
    UserCodeScope scope(UserCodeScope::callback);
    while (in_order != nullptr) {
      std::unique_ptr<ListenerNode> node(in_order);
      in_order = node->next;
      node->listener->on_done(s);
    }
  }
  // The arguments and the encoded request are the backend's until the task is finished
  // (wm/abi.h) and nobody's after: a future kept for its result must not keep large arguments
  // alive. Freed after the waiters are woken, so the caller has its result while this thread
  // gives the memory back.
  s->release_arguments();
}

long result_futex(TaskState* s, int op, std::uint32_t value) {
  return futex(&s->result_guard, op, value, nullptr);
}

}  // namespace

TaskState::TaskState() noexcept : sequence(next_sequence()) {}

TaskState::~TaskState() {
  if (failure != &kUnrecordedFailure) delete failure;
  delete needs;
  ListenerNode* list = listeners.load(std::memory_order_acquire);
  while (list != nullptr && list != closed_list()) delete std::exchange(list, list->next);
}

std::uint64_t next_sequence() noexcept {
  static std::atomic<std::uint64_t> counter{0};
  return counter.fetch_add(1, std::memory_order_relaxed) + 1;
}

void finish_success(TaskState* s) noexcept { finish(s, TaskState::succeeded); }

bool claim_start(TaskState* s) noexcept {
  std::uint8_t v = s->run_state.load(std::memory_order_acquire);
  while (v == TaskState::run_queued)
    if (s->run_state.compare_exchange_weak(v, TaskState::run_started, std::memory_order_acq_rel)) return true;
  return v == TaskState::run_started;
}

bool cancel(TaskState* s, bool kill_running) {
  if (!s->submitted.load(std::memory_order_acquire)) return false;  // a task not submitted is not queued
  std::uint8_t v = TaskState::run_queued;
  if (s->run_state.compare_exchange_strong(v, TaskState::run_cancelled, std::memory_order_acq_rel)) {
    // No backend will start it now: its reference is dropped when the backend comes to it.
    finish_with(s, FailureKind::cancelled, "cancelled before it started (Future::cancel)");
    return true;
  }
  if (v == TaskState::run_cancelled) return true;
  if (!kill_running || s->done()) return false;
  return stop_running_task(s);
}

namespace {
bool valid_resource_name(std::string_view n) {
  if (n.empty() || n.size() > 64) return false;
  for (char c : n)
    if (!((c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '_' || c == '-')) return false;
  return true;
}
}  // namespace

void set_needs(TaskState* s, const std::pair<std::string_view, double>* amounts, std::size_t n) {
  if (s->submitted.load(std::memory_order_acquire))
    throw Error("needs(): task '" + s->display_name() + "' was submitted already; set its needs before submitting it");
  auto needs = std::make_unique<Needs>();
  std::vector<std::pair<std::string, double>> sorted;
  for (std::size_t i = 0; i < n; ++i) {
    const auto& [name, amount] = amounts[i];
    if (!valid_resource_name(name))
      throw Error("needs(): '" + std::string(name) + "' is not a resource name (lower case letters, digits, '_' and "
                  "'-', e.g. gpu, cpu, mem)");
    if (!std::isfinite(amount) || amount <= 0)
      throw Error("needs(): " + std::string(name) + "=" + std::to_string(amount) +
                  " is not an amount (a finite number > 0; leave the resource out to need none)");
    sorted.emplace_back(std::string(name), amount);
  }
  std::sort(sorted.begin(), sorted.end());
  for (std::size_t i = 1; i < sorted.size(); ++i)
    if (sorted[i].first == sorted[i - 1].first)
      throw Error("needs(): resource '" + sorted[i].first + "' is given twice");
  needs->names.reserve(sorted.size());
  for (auto& e : sorted) needs->names.push_back(std::move(e.first));
  for (std::size_t i = 0; i < sorted.size(); ++i)
    needs->amounts.push_back(wm_resource_amount{needs->names[i].c_str(), sorted[i].second});
  delete s->needs;
  s->needs = sorted.empty() ? nullptr : needs.release();
}

std::string Needs::text() const {
  std::string out;
  for (const wm_resource_amount& a : amounts) {
    char buf[64];
    std::snprintf(buf, sizeof buf, "%.15g", a.amount);
    out += (out.empty() ? "" : ", ") + std::string(a.name) + "=" + buf;
  }
  return out;
}

void finish_failure(TaskState* s, std::exception_ptr error, std::optional<ErrorInfo> info) noexcept {
  if (s->done()) {
    log(WM_LOG_ERROR, "core", "a backend failed an already finished task; ignored");
    return;
  }
  const Failure* record = &kUnrecordedFailure;
  try {
    record = new Failure{std::move(error), std::move(info)};
  } catch (...) {
    // Out of memory: the task still finishes (failed), so nobody waits forever.
  }
  s->failure = record;
  finish(s, TaskState::failed);
}

void fail_task(TaskState* s, ErrorInfo info, std::exception_ptr original) noexcept {
  try {
    std::exception_ptr error = make_failure(info, original);
    finish_failure(s, std::move(error), std::move(info));
  } catch (...) {
    // Out of memory while describing the failure.
    finish_failure(s, original ? original : std::current_exception(), std::nullopt);
  }
}

void finish_with(TaskState* s, FailureKind kind, std::string message, const wm_worker_identity* where,
                 std::uint32_t attempts) noexcept {
  try {
    ErrorInfo info;
    info.kind = kind;
    info.task_name = s->display_name();
    info.message = std::move(message);
    fill_where(info, where);
    if (where == nullptr) info.worker_index = -1;  // not run by a worker: the master's own record
    info.attempts = attempts == 0 ? 1 : attempts;
    info.backend = s->backend_name != nullptr ? *s->backend_name : process_backend();
    fail_task(s, std::move(info));
  } catch (...) {
    finish_failure(s, std::current_exception(), std::nullopt);
  }
}

void execute_local(TaskState* s) noexcept {
  try {
    UserCodeScope scope(UserCodeScope::task);
    s->run_local();
  } catch (const TaskFailure& f) {
    try {
      finish_failure(s, std::current_exception(), f.info());
    } catch (...) {
      finish_failure(s, std::current_exception(), std::nullopt);
    }
    return;
  } catch (...) {
    std::exception_ptr original = std::current_exception();
    try {
      ErrorInfo info = current_exception_info(s->display_name());
      if (s->backend_name != nullptr) info.backend = *s->backend_name;
      fail_task(s, std::move(info), original);
    } catch (...) {
      finish_failure(s, original, std::nullopt);
    }
    return;
  }
  finish_success(s);
}

void wait(TaskState* s) noexcept {
  if (s->done()) return;
  if (s->wait_spin_us != 0 && spin_for([s] { return s->done(); }, s->wait_spin_us)) return;
  std::uint32_t w = s->word.load(std::memory_order_acquire);
  while ((w & TaskState::status_mask) == TaskState::pending) {
    if (!(w & TaskState::waiters) &&
        !s->word.compare_exchange_weak(w, w | TaskState::waiters, std::memory_order_acq_rel))
      continue;
    futex(&s->word, FUTEX_WAIT_PRIVATE, TaskState::pending | TaskState::waiters, nullptr);
    w = s->word.load(std::memory_order_acquire);
  }
}

bool wait_until(TaskState* s, std::chrono::steady_clock::time_point deadline) noexcept {
  if (s->done()) return true;
  std::uint32_t w = s->word.load(std::memory_order_acquire);
  while ((w & TaskState::status_mask) == TaskState::pending) {
    const auto now = std::chrono::steady_clock::now();
    if (now >= deadline) return false;
    if (!(w & TaskState::waiters) &&
        !s->word.compare_exchange_weak(w, w | TaskState::waiters, std::memory_order_acq_rel))
      continue;
    const auto left = std::chrono::duration_cast<std::chrono::nanoseconds>(deadline - now).count();
    timespec ts{static_cast<time_t>(left / 1000000000), static_cast<long>(left % 1000000000)};
    futex(&s->word, FUTEX_WAIT_PRIVATE, TaskState::pending | TaskState::waiters, &ts);
    w = s->word.load(std::memory_order_acquire);
  }
  return true;
}

void add_listener(TaskState* s, std::shared_ptr<Listener> listener) {
  ListenerNode* head = s->listeners.load(std::memory_order_acquire);
  if (head != closed_list()) {
    auto node = std::make_unique<ListenerNode>(ListenerNode{std::move(listener), head});
    for (;;) {
      // Once pushed, the node is the finishing thread's: it is not touched here again.
      if (s->listeners.compare_exchange_weak(head, node.get(), std::memory_order_acq_rel,
                                             std::memory_order_acquire)) {
        node.release();
        return;
      }
      if (head == closed_list()) break;
      node->next = head;
    }
    listener = std::move(node->listener);
  }
  UserCodeScope scope(UserCodeScope::callback);
  listener->on_done(s);
}

bool begin_copy(TaskState* s) noexcept {
  // Acquire: the copy reads the result the finishing thread wrote.
  const std::uint32_t v = s->result_guard.fetch_add(1, std::memory_order_acquire);
  if (!(v & TaskState::result_taken)) return true;
  end_copy(s);
  return false;
}

void end_copy(TaskState* s) noexcept {
  // Release: the copy's reads happen before the taker's move.
  const std::uint32_t v = s->result_guard.fetch_sub(1, std::memory_order_release);
  if ((v & TaskState::result_taken) && (v & TaskState::result_copiers) == 1)
    result_futex(s, FUTEX_WAKE_PRIVATE, INT_MAX);
}

bool begin_take(TaskState* s) noexcept {
  std::uint32_t v = s->result_guard.fetch_or(TaskState::result_taken, std::memory_order_acquire);
  if (v & TaskState::result_taken) return false;
  v |= TaskState::result_taken;
  while (v & TaskState::result_copiers) {
    result_futex(s, FUTEX_WAIT_PRIVATE, v);
    v = s->result_guard.load(std::memory_order_acquire);
  }
  return true;
}

void throw_result_taken(const TaskState* s) {
  throw std::logic_error("get_result: the result of task '" + s->display_name() +
                         "' was already taken with discard=true");
}

void throw_result_not_copyable(const TaskState* s, const char* what) {
  throw std::logic_error("the result of task '" + s->display_name() + "' is a " +
                         demangle(s->result_type().name()) + ", which cannot be copied: " + what);
}

void throw_no_task() {
  throw std::logic_error("this wm::WMFuture refers to no task (default-constructed or moved from)");
}

std::string task_uuid(const TaskState* s) { return task_uuid_of(s->sequence); }

std::string task_uuid_of(std::uint64_t sequence) {
  // Per-process random key; the low half is key XOR sequence, so ids never repeat in a process,
  // and the random key keeps processes apart. Version 4 / RFC 4122 variant bits are set.
  static const std::pair<std::uint64_t, std::uint64_t> key = [] {
    std::random_device rd;
    auto r64 = [&] { return (std::uint64_t(rd()) << 32) ^ rd(); };
    return std::make_pair(r64(), r64());
  }();
  std::uint64_t hi = key.first ^ (sequence * 0x9e3779b97f4a7c15ull);
  std::uint64_t lo = key.second ^ sequence;
  hi = (hi & ~0xf000ull) | 0x4000ull;
  lo = (lo & ~(3ull << 62)) | (2ull << 62);
  char buf[40];
  std::snprintf(buf, sizeof buf, "%08x-%04x-%04x-%04x-%012llx", unsigned(hi >> 32),
                unsigned((hi >> 16) & 0xffff), unsigned(hi & 0xffff), unsigned(lo >> 48),
                static_cast<unsigned long long>(lo & 0xffffffffffffull));
  return buf;
}

// ---- submit_as_completed ----

void submit_states_to(const std::weak_ptr<BackendLink>& weak, const std::string& backend,
                      const StatePtr* states, std::size_t n) {
  if (std::shared_ptr<BackendLink> link = weak.lock()) return link->submit(states, n);
  ErrorInfo info;
  info.kind = FailureKind::shutdown;
  info.message = "work manager '" + backend + "' was destroyed before this submit_as_completed range " +
                 "finished; keep the work manager alive while iterating";
  info.task_name = n == 1 ? states[0]->display_name() : std::string("<many>");
  info.host = host_name();
  info.pid = static_cast<std::int64_t>(getpid());
  info.backend = backend;
  throw ShutdownError(std::move(info));
}

void fail_unsubmitted(const StatePtr* states, std::size_t n, std::exception_ptr error) noexcept {
  FailureKind kind = FailureKind::backend;
  std::string message;
  try {
    try {
      std::rethrow_exception(error);
    } catch (const TaskFailure& f) {
      kind = f.kind();
      message = f.what();
    } catch (const std::exception& e) {
      message = e.what();
    } catch (...) {
      message = "unknown error";
    }
    message = "the task could not be submitted: " + message;
  } catch (...) {
    // Out of memory: the tasks still fail, without the reason.
  }
  for (std::size_t i = 0; i < n; ++i) {
    // Claimed first: a task the backend did take (the generator returned it twice) is the backend's.
    TaskState* s = states[i].get();
    if (s == nullptr || s->submitted.exchange(true)) continue;
    try {
      finish_with(s, kind, message);
    } catch (...) {
      finish_with(s, kind, std::string());  // the copy of the message did not fit in memory
    }
  }
}

// ---- CompletionQueue ----

struct CompletionQueue::Impl {
  std::mutex mutex;
  std::condition_variable cv;
  std::vector<StatePtr> ready;       // filled by finishing threads (under mutex)
  std::vector<StatePtr> local;       // taken in one swap by the consumer
  std::size_t local_pos = 0;
  std::atomic<std::size_t> ready_count{0};
  std::atomic<std::size_t> outstanding{0};
  bool sleeping = false;
  int spin_us = kWaitSpinMicros;  // consumer's spin window, adapted in pop()
};

CompletionQueue::CompletionQueue() : impl_(std::make_unique<Impl>()) {}
CompletionQueue::~CompletionQueue() = default;

void CompletionQueue::watch(const StatePtr& state) {
  if (!state) throw_no_task();
  impl_->outstanding.fetch_add(1, std::memory_order_relaxed);
  if (state->done()) {  // common in as_completed: skip the listener
    on_done(state.get());
    return;
  }
  add_listener(state.get(), shared_from_this());
}

void CompletionQueue::on_done(TaskState* state) noexcept {
  Impl& q = *impl_;
  bool wake;
  {
    std::lock_guard<std::mutex> lock(q.mutex);
    q.ready.emplace_back(state);
    q.ready_count.fetch_add(1, std::memory_order_release);
    wake = q.sleeping;
  }
  if (wake) q.cv.notify_one();
}

StatePtr CompletionQueue::pop() {
  Impl& q = *impl_;
  if (q.outstanding.load(std::memory_order_relaxed) == 0) return nullptr;
  if (q.local_pos == q.local.size()) {
    q.local.clear();
    q.local_pos = 0;
    // Adaptive spin: worth it when results arrive within microseconds of each other (tiny
    // tasks), wasted when they are tens of microseconds apart: then the consumer would take a
    // core from the workers at every result. So the window follows how long waits turn out.
    const auto t0 = std::chrono::steady_clock::now();
    const bool caught =
        spin_for([&q] { return q.ready_count.load(std::memory_order_acquire) != 0; }, q.spin_us);
    std::unique_lock<std::mutex> lock(q.mutex);
    bool slept = false;
    while (q.ready.empty()) {
      q.sleeping = true;
      q.cv.wait(lock);
      q.sleeping = false;
      slept = true;
    }
    if (caught) {
      q.spin_us = std::min(q.spin_us + 2, kWaitSpinMicros);
    } else if (slept) {
      const auto waited = std::chrono::steady_clock::now() - t0;
      q.spin_us = waited < std::chrono::microseconds(kWaitSpinMicros) ? std::max(2 * q.spin_us, 2)
                                                                       : q.spin_us / 2;
      q.spin_us = std::min(q.spin_us, kWaitSpinMicros);
    }
    q.local.swap(q.ready);
    q.ready_count.store(0, std::memory_order_relaxed);
  }
  q.outstanding.fetch_sub(1, std::memory_order_relaxed);
  return std::move(q.local[q.local_pos++]);
}

std::size_t CompletionQueue::outstanding() const noexcept {
  return impl_->outstanding.load(std::memory_order_relaxed);
}

// ---- WatcherCore (FutureWatcher) ----

class WatcherCore final : public Listener, public std::enable_shared_from_this<WatcherCore> {
 public:
  explicit WatcherCore(std::size_t threshold) : threshold_(threshold == 0 ? 1 : threshold) {}

  void add(const WMFuture& f) {
    if (!f.valid()) throw_no_task();
    {
      std::lock_guard<std::mutex> lock(mutex_);
      ++watching_;
    }
    add_listener(f.state().get(), shared_from_this());
  }
  void signal(const WMFuture& f) {
    bool wake;
    {
      std::lock_guard<std::mutex> lock(mutex_);
      completed_.push_back(f);
      wake = ready_locked();
    }
    if (wake) cv_.notify_all();
  }
  void on_done(TaskState* s) noexcept override {
    try {
      signal(WMFuture(StatePtr(s)));
    } catch (...) {
      log(WM_LOG_ERROR, "core", "FutureWatcher: out of memory while recording a finished future");
    }
  }
  std::vector<WMFuture> wait(std::optional<std::chrono::steady_clock::time_point> deadline) {
    std::unique_lock<std::mutex> lock(mutex_);
    auto ready = [this] { return ready_locked() || watching_ == 0; };
    if (deadline)
      cv_.wait_until(lock, *deadline, ready);
    else
      cv_.wait(lock, ready);
    return reset_locked();
  }
  std::vector<WMFuture> reset() {
    std::lock_guard<std::mutex> lock(mutex_);
    return reset_locked();
  }
  std::size_t threshold() const noexcept { return threshold_; }
  std::size_t pending() const noexcept {
    std::lock_guard<std::mutex> lock(mutex_);
    return watching_;
  }

 private:
  // Ready once `threshold` finished, or once every watched future has (fewer may remain).
  bool ready_locked() const {
    return !completed_.empty() && (completed_.size() >= threshold_ || completed_.size() >= watching_);
  }
  std::vector<WMFuture> reset_locked() {
    std::vector<WMFuture> out;
    out.swap(completed_);
    watching_ -= std::min(watching_, out.size());
    return out;
  }

  const std::size_t threshold_;
  mutable std::mutex mutex_;
  std::condition_variable cv_;
  std::vector<WMFuture> completed_;
  std::size_t watching_ = 0;
};

}  // namespace wm::detail

namespace wm {

// ---- WMFuture ----

std::string WMFuture::task_id() const { return detail::task_uuid(checked()); }
std::string WMFuture::task_name() const { return checked()->display_name(); }

std::exception_ptr WMFuture::get_exception() const {
  wait();
  const detail::TaskState& s = *state_;
  return s.status() == detail::TaskState::failed ? s.failure->error : nullptr;
}

std::string WMFuture::get_traceback() const {
  wait();
  const detail::TaskState& s = *state_;
  if (s.status() != detail::TaskState::failed || !s.failure->info) return {};
  return s.failure->info->stacktrace;
}

std::optional<ErrorInfo> WMFuture::error_info() const {
  wait();
  const detail::TaskState& s = *state_;
  if (s.status() != detail::TaskState::failed) return std::nullopt;
  if (s.failure->info) return *s.failure->info;
  return ErrorInfo{};
}

detail::TaskState* WMFuture::succeeded_state(const std::type_info* want) const {
  detail::TaskState* s = checked();
  detail::wait(s);
  if (s->status() == detail::TaskState::failed) {
    if (s->failure->error) std::rethrow_exception(s->failure->error);
    throw Error("task failed and its failure could not be recorded (out of memory)");
  }
  if (want != nullptr && s->result_type() != *want)
    throw std::logic_error("a wm::Future<" + detail::demangle(want->name()) + "> refers to task '" +
                           s->display_name() + "', whose result is a " +
                           detail::demangle(s->result_type().name()));
  return s;
}

namespace {
class CallbackListener final : public detail::Listener {
 public:
  explicit CallbackListener(std::function<void(const WMFuture&)> fn) : fn_(std::move(fn)) {}
  void on_done(detail::TaskState* s) noexcept override {
    try {
      fn_(WMFuture(detail::StatePtr(s)));
    } catch (const std::exception& e) {
      detail::log(WM_LOG_WARNING, "core", std::string("a done-callback threw (ignored): ") + e.what());
    } catch (...) {
      detail::log(WM_LOG_WARNING, "core", "a done-callback threw a non-std exception (ignored)");
    }
  }

 private:
  std::function<void(const WMFuture&)> fn_;
};
}  // namespace

void WMFuture::add_done_callback(std::function<void(const WMFuture&)> fn) const {
  detail::add_listener(checked(), std::make_shared<CallbackListener>(std::move(fn)));
}

std::any WMFuture::get_result_any(bool discard) const { return succeeded_state(nullptr)->result_any(discard); }

// ---- FutureWatcher ----

FutureWatcher::FutureWatcher(std::size_t threshold)
    : core_(std::make_shared<detail::WatcherCore>(threshold)) {}
FutureWatcher::~FutureWatcher() = default;
FutureWatcher::FutureWatcher(FutureWatcher&&) noexcept = default;
FutureWatcher& FutureWatcher::operator=(FutureWatcher&&) noexcept = default;

void FutureWatcher::add_one(const WMFuture& future) { core_->add(future); }
void FutureWatcher::signal(const WMFuture& future) { core_->signal(future); }
std::vector<WMFuture> FutureWatcher::wait() { return core_->wait(std::nullopt); }
std::vector<WMFuture> FutureWatcher::wait_for(std::chrono::steady_clock::duration timeout) {
  return core_->wait(std::chrono::steady_clock::now() + timeout);
}
std::vector<WMFuture> FutureWatcher::reset() { return core_->reset(); }
std::size_t FutureWatcher::threshold() const noexcept { return core_->threshold(); }
std::size_t FutureWatcher::pending() const noexcept { return core_->pending(); }

}  // namespace wm
