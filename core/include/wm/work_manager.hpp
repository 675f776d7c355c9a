// SPDX-License-Identifier: MIT
// wm/work_manager.hpp: WorkManager, the one interface to every backend.
//
// @code
//   #include <wm/wm.hpp>
//   #include <wm/task.hpp>   // WM_TASK and binding calls (wm::task, submit(fn, args...))
//
//   int square(int x) { return x * x; }
//   WM_TASK(square);
//
//   int main(int argc, char** argv) {
//     auto wm = wm::make_work_manager(argc, argv);  // WM_WORK_MANAGER / --work-manager pick the backend
//     std::vector<wm::TaskSpec<int>> tasks;
//     for (int i = 0; i < 100; ++i) tasks.push_back(wm::task(square, i));
//     long total = 0;
//     for (wm::Future<int> f : wm->as_completed(wm->submit_many(std::move(tasks)))) total += f.get_result();
//   }  // the work manager shuts down here
// @endcode
//
// Holding, waiting on and reading futures needs this header only. Binding a call (wm::task,
// wm::task_by_name, submit(fn, args...), submit<R>("name", args...)) encodes its arguments with
// cereal and needs <wm/task.hpp>; without it those calls stop at a static_assert saying so.
#pragma once

#include <wm/detail/task_decl.hpp>
#include <wm/future.hpp>

#include <cstddef>
#include <exception>
#include <iterator>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <tuple>
#include <type_traits>
#include <utility>
#include <vector>

namespace wm {

struct Stats;  // <wm/stats.hpp>

namespace detail {
class BackendLink;

/** Collects finished tasks in the order they finish; one consumer blocks on it (futex, no polling). */
class CompletionQueue final : public Listener, public std::enable_shared_from_this<CompletionQueue> {
 public:
  CompletionQueue();
  ~CompletionQueue() override;
  /** Starts watching a task. */
  void watch(const StatePtr& state);
  /** Blocks until a watched task finishes and returns it; null when nothing is left to watch. */
  StatePtr pop();
  /** Tasks watched and not yet popped. */
  std::size_t outstanding() const noexcept;
  void on_done(TaskState* state) noexcept override;

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

/** Submits to the backend behind link; throws ShutdownError naming `backend` if it is gone. */
void submit_states_to(const std::weak_ptr<BackendLink>& link, const std::string& backend,
                      const StatePtr* states, std::size_t n);
/** Fails (with the reason `error` gives) every unfinished task of a batch that could not be submitted. */
void fail_unsubmitted(const StatePtr* states, std::size_t n, std::exception_ptr error) noexcept;

template <class T, class = void>
struct has_size : std::false_type {};
template <class T>
struct has_size<T, std::void_t<decltype(std::size(std::declval<const T&>()))>> : std::true_type {};

template <class T>
struct is_task_spec : std::false_type {};
template <class R>
struct is_task_spec<TaskSpec<R>> : std::true_type {};

/** The input iterator of a single-pass range whose next() returns std::optional<Value> (nullopt at
 *  its end): as_completed, submit_as_completed, wm::progress. */
template <class Range, class Value>
class NextIterator {
 public:
  using iterator_category = std::input_iterator_tag;
  using value_type = Value;
  using difference_type = std::ptrdiff_t;
  using pointer = const Value*;
  using reference = const Value&;
  NextIterator() = default;
  explicit NextIterator(Range* owner) : owner_(owner) { ++*this; }
  reference operator*() const { return *current_; }
  pointer operator->() const { return &*current_; }
  NextIterator& operator++() {
    current_ = owner_->next();
    if (!current_) owner_ = nullptr;
    return *this;
  }
  friend bool operator==(const NextIterator& a, const NextIterator& b) { return a.owner_ == b.owner_; }
  friend bool operator!=(const NextIterator& a, const NextIterator& b) { return a.owner_ != b.owner_; }

 private:
  Range* owner_ = nullptr;
  std::optional<Value> current_;
};
}  // namespace detail

/** Range of futures in the order they finish (WorkManager::as_completed). Single pass. */
template <class T>
class AsCompleted {
 public:
  explicit AsCompleted(std::vector<Future<T>> futures)
      : queue_(std::make_shared<detail::CompletionQueue>()) {
    for (const auto& f : futures) queue_->watch(f.state());
  }
  /** Blocks until the next future finishes; nullopt when all have been returned. */
  std::optional<Future<T>> next() {
    detail::StatePtr s = queue_->pop();
    if (!s) return std::nullopt;
    return Future<T>(std::move(s));
  }
  std::size_t remaining() const noexcept { return queue_->outstanding(); }

  using iterator = detail::NextIterator<AsCompleted, Future<T>>;
  iterator begin() { return iterator(this); }
  iterator end() { return iterator(); }

 private:
  std::shared_ptr<detail::CompletionQueue> queue_;
};

template <class R, class Gen>
class SubmitAsCompleted;

/**
 * Runs tasks on one backend. Made by make_work_manager() or WMEnvironment::make_work_manager().
 * Thread-safe: any thread may submit and wait. The destructor shuts down and never throws.
 */
class WorkManager {
 public:
  explicit WorkManager(std::shared_ptr<detail::BackendLink> link);
  ~WorkManager();
  WorkManager(const WorkManager&) = delete;
  WorkManager& operator=(const WorkManager&) = delete;

  /** Name of the backend ("serial", "threads", ...). */
  const std::string& name() const noexcept;
  /** Starts workers. submit() calls it if you did not. */
  void startup();
  /** Finishes every pending future (failing those that did not run with ShutdownError) and stops
   *  the workers. Idempotent. submit() afterwards throws ShutdownError. */
  void shutdown();
  /** Worker role: serves tasks until the master stops them. Master: returns at once. */
  void run();
  /** True in the process that submits tasks (false in MPI ranks > 0, worker processes). */
  bool is_master() const;
  /** Number of workers tasks run on. */
  unsigned n_workers() const;
  /** True if tasks run in this process (so lambdas are accepted). */
  bool runs_in_process() const noexcept;
  /** What it is doing: tasks by outcome, queue, rate, each worker and the task it runs
   *  (<wm/stats.hpp>). Cheap enough to call ten times a second during a run; from any thread. */
  Stats stats() const;

  /** Submits a bound call (see wm::task). */
  template <class R>
  Future<R> submit(TaskSpec<R> spec) {
    submit_states(&spec.state(), 1);
    return Future<R>(spec.state());
  }
  /** Submits fn(args...). fn must be registered with WM_TASK unless the backend runs in process. */
  template <class F, class... Args,
            class = std::enable_if_t<!detail::is_task_spec<std::decay_t<F>>::value &&
                                     !std::is_convertible_v<F&&, std::string_view>>>
  auto submit(F&& fn, Args&&... args) {
    static_assert(detail::task_header_included<F>::value,
                  "wm::WorkManager::submit(fn, args...) needs #include <wm/task.hpp>: binding a call "
                  "encodes its arguments with cereal, which <wm/wm.hpp> leaves out");
    if constexpr (detail::task_header_included<F>::value)
      return submit(wm::task(std::forward<F>(fn), std::forward<Args>(args)...));
    else
      return Future<detail::bound_result_t<F, Args...>>();
  }
  /** Submits a task by registered name; R and the argument types must match its signature. */
  template <class R, class... Args>
  Future<R> submit(std::string_view name, Args&&... args) {
    return submit(task_by_name<R>(name, std::forward<Args>(args)...));
  }

  /** Submits many bound calls at once (one hand-over to the backend). */
  template <class R>
  std::vector<Future<R>> submit_many(std::vector<TaskSpec<R>> specs) {
    std::vector<detail::StatePtr> states;
    states.reserve(specs.size());
    for (auto& s : specs) states.push_back(s.state());
    submit_states(states.data(), states.size());
    std::vector<Future<R>> futures;
    futures.reserve(states.size());
    for (auto& s : states) futures.emplace_back(std::move(s));
    return futures;
  }
  /** Submits fn(args...) for every tuple of arguments. */
  template <class F, class... Args>
  auto submit_many(F fn, const std::vector<std::tuple<Args...>>& arg_list) {
    static_assert(detail::task_header_included<F>::value,
                  "wm::WorkManager::submit_many(fn, argument tuples) needs #include <wm/task.hpp>: "
                  "binding a call encodes its arguments with cereal, which <wm/wm.hpp> leaves out");
    if constexpr (detail::task_header_included<F>::value) {
      using Spec = decltype(wm::task(fn, std::declval<const Args&>()...));
      std::vector<Spec> specs;
      specs.reserve(arg_list.size());
      for (const auto& args : arg_list)
        specs.push_back(std::apply([&](const Args&... a) { return wm::task(fn, a...); }, args));
      return submit_many(std::move(specs));
    } else {
      return std::vector<Future<detail::bound_result_t<F, const Args&...>>>();
    }
  }

  /**
   * Submits fn(input) for every element of inputs (any range: a vector, an array, ...) in one
   * hand-over, and returns the futures in input order (concurrent.futures' Executor.map). For
   * several arguments per call, use submit_many(fn, argument tuples).
   */
  template <class F, class Range>
  auto map(F fn, const Range& inputs) {
    static_assert(detail::task_header_included<F>::value,
                  "wm::WorkManager::map(fn, inputs) needs #include <wm/task.hpp>: binding a call "
                  "encodes its arguments with cereal, which <wm/wm.hpp> leaves out");
    using Input = decltype(*std::begin(inputs));
    if constexpr (detail::task_header_included<F>::value) {
      using Spec = decltype(wm::task(fn, std::declval<Input>()));
      std::vector<Spec> specs;
      if constexpr (detail::has_size<Range>::value) specs.reserve(static_cast<std::size_t>(std::size(inputs)));
      for (auto&& input : inputs) specs.push_back(wm::task(fn, input));
      return submit_many(std::move(specs));
    } else {
      return std::vector<Future<detail::bound_result_t<F, Input>>>();
    }
  }

  /** The futures, in the order they finish. */
  template <class T>
  AsCompleted<T> as_completed(std::vector<Future<T>> futures) {
    return AsCompleted<T>(std::move(futures));
  }

  /**
   * Pulls tasks from gen (a callable returning std::optional<TaskSpec<R>>; nullopt ends it) and
   * yields their futures as they finish, with never more than queue_size submitted and not yet
   * yielded (0: all at once).
   *
   * If gen throws, the tasks it returned before are submitted all the same, the exception
   * propagates to the caller (out of next() or the range-for), and gen is not called again;
   * next() then yields the futures still in flight. The range may outlive this work manager:
   * submitting through it then throws ShutdownError.
   */
  template <class Gen>
  auto submit_as_completed(Gen gen, std::size_t queue_size = 0) {
    using Opt = std::invoke_result_t<Gen&>;
    using Spec = typename Opt::value_type;
    return SubmitAsCompleted<typename Spec::result_type, Gen>(link_, name(), std::move(gen), queue_size);
  }

  /** Blocks until any of the futures finishes and returns it. */
  template <class T>
  Future<T> wait_any(const std::vector<Future<T>>& futures) {
    for (const auto& f : futures)
      if (f.done()) return f;
    std::shared_ptr<detail::CompletionQueue> q = std::make_shared<detail::CompletionQueue>();
    for (const auto& f : futures) q->watch(f.state());
    detail::StatePtr s = q->pop();
    if (!s) throw Error("wait_any: no futures to wait on");
    return Future<T>(std::move(s));
  }
  /** Blocks until all futures finish; returns them in the order given. */
  template <class T>
  std::vector<Future<T>> wait_all(const std::vector<Future<T>>& futures) {
    for (const auto& f : futures) f.wait();
    return futures;
  }

  /**
   * On Ctrl-C (SIGINT): shuts this work manager down (pending futures fail with ShutdownError,
   * workers are stopped), then hands the signal to the handler that was installed before.
   */
  void install_sigint_handler();

  /** Submits already-bound tasks (the non-template core of every submit). */
  void submit_states(const detail::StatePtr* states, std::size_t n);

  const std::shared_ptr<detail::BackendLink>& link() const noexcept { return link_; }

 private:
  std::shared_ptr<detail::BackendLink> link_;
};

/** Range returned by WorkManager::submit_as_completed. Single pass. */
template <class R, class Gen>
class SubmitAsCompleted {
 public:
  SubmitAsCompleted(std::weak_ptr<detail::BackendLink> link, const std::string& backend, Gen gen,
                    std::size_t queue_size)
      : link_(std::move(link)), backend_(&backend), gen_(std::move(gen)), queue_size_(queue_size),
        queue_(std::make_shared<detail::CompletionQueue>()) {}

  /** Submits more tasks while there is room, then blocks for the next finished one. */
  std::optional<Future<R>> next() {
    refill();
    detail::StatePtr s = queue_->pop();
    if (!s) return std::nullopt;
    return Future<R>(std::move(s));
  }
  /** Tasks submitted and not yet yielded. */
  std::size_t in_flight() const noexcept { return queue_->outstanding(); }

  using iterator = detail::NextIterator<SubmitAsCompleted, Future<R>>;
  iterator begin() { return iterator(this); }
  iterator end() { return iterator(); }

 private:
  // Pulls tasks while there is room and submits them as one batch. Whatever the generator returned
  // is submitted (or, if submitting fails, failed) and watched before any exception goes on.
  void refill() {
    if (exhausted_) return;
    std::vector<detail::StatePtr> batch;
    std::exception_ptr error;
    try {
      while (queue_size_ == 0 || queue_->outstanding() + batch.size() < queue_size_) {
        auto spec = gen_();
        if (!spec) {
          exhausted_ = true;
          break;
        }
        if (spec->state()) batch.push_back(spec->state());
      }
    } catch (...) {
      error = std::current_exception();
      exhausted_ = true;
    }
    if (!batch.empty()) {
      try {
        detail::submit_states_to(link_, *backend_, batch.data(), batch.size());
      } catch (...) {
        detail::fail_unsubmitted(batch.data(), batch.size(), std::current_exception());
        if (!error) error = std::current_exception();
        exhausted_ = true;  // the work manager refuses: pulling more would only fail them too
      }
      for (const auto& s : batch) queue_->watch(s);
    }
    if (error) std::rethrow_exception(error);
  }

  std::weak_ptr<detail::BackendLink> link_;  // not owned: the range may outlive its work manager
  const std::string* backend_;               // interned by the core, never freed
  Gen gen_;
  std::size_t queue_size_;
  std::shared_ptr<detail::CompletionQueue> queue_;
  bool exhausted_ = false;
};

/**
 * If this process was started by a backend as one of its workers, serves tasks and exits the
 * process; otherwise returns at once. make_work_manager() calls it first thing; call it yourself
 * at the top of main() if your program does work before creating its work manager.
 */
void serve_if_worker();

}  // namespace wm
