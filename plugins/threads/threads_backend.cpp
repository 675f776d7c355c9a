// SPDX-License-Identifier: MIT
// threads_backend.cpp: the "threads" backend: a pool of threads in this process sharing one queue.
#include <wm/sdk/backend.hpp>

#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <condition_variable>
#include <deque>
#include <mutex>
#include <thread>
#include <vector>

#if defined(__x86_64__) || defined(__i386__)
#include <immintrin.h>
#define WM_CPU_RELAX() _mm_pause()
#else
#define WM_CPU_RELAX() ((void)0)
#endif

namespace {

class ThreadsBackend final : public wm::sdk::Backend {
 public:
  ThreadsBackend(const wm_core_services* s, const wm_backend_config* c, const char* name)
      : Backend(s, c, name) {
    n_workers_ = requested_workers();
    if (n_workers_ == 0) n_workers_ = std::max(1u, std::thread::hardware_concurrency());
    spin_us_ = static_cast<int>(option_int("spin-us"));
  }

  // The core destroys a backend only after a waiting shutdown, never from one of its threads.
  ~ThreadsBackend() override { join_workers(); }

 protected:
  void do_startup() override {
    workers_.reserve(n_workers_);
    for (unsigned i = 0; i < n_workers_; ++i) workers_.emplace_back([this, i] { work(static_cast<int>(i)); });
  }

  void do_submit(wm_task* const* tasks, std::size_t n) override {
    // What a task needs is looked at before the lock (the queue's lock is the pool's hot spot); one
    // that needs more than a worker has fails below, once accepted, without the lock (a failure
    // runs callbacks).
    std::vector<wm_task*> unfit;
    for (std::size_t i = 0; i < n; ++i)
      if (!workers_cover(tasks[i])) unfit.push_back(tasks[i]);
    bool wake_all;
    bool wake_one;
    {
      std::lock_guard<std::mutex> lock(mutex_);
      if (stopping_) throw std::runtime_error("the threads work manager is shut down");
      if (unfit.empty()) {
        queue_.insert(queue_.end(), tasks, tasks + n);
      } else {
        for (std::size_t i = 0; i < n; ++i)
          if (workers_cover(tasks[i])) queue_.push_back(tasks[i]);
      }
      queued_.store(queue_.size(), std::memory_order_release);
      // A worker that spins takes the task without a wake-up; waking a sleeper as well would only
      // take a core from it (and from the host) to find the queue empty.
      const std::size_t unclaimed = n > spinners_ ? n - spinners_ : 0;
      wake_all = sleepers_ > 1 && unclaimed > 1;
      wake_one = sleepers_ > 0 && unclaimed > 0;
    }
    if (wake_all)
      cv_.notify_all();
    else if (wake_one)
      cv_.notify_one();
    for (wm_task* t : unfit) fail_unfit(t);
  }

  // Tasks not started fail at once; running ones finish (a thread cannot be stopped safely, so
  // `now` changes nothing: a shutdown that must not wait for them simply does not join).
  void do_stop(bool) override {
    std::deque<wm_task*> left;
    {
      std::lock_guard<std::mutex> lock(mutex_);
      stopping_ = true;
      left.swap(queue_);
      queued_.store(0);
    }
    cv_.notify_all();
    for (wm_task* t : left)
      fail(t, WM_FAIL_SHUTDOWN, "the threads work manager shut down before this task started");
  }

  void do_join() override { join_workers(); }

  unsigned do_n_workers() const override { return n_workers_; }

 private:
  void join_workers() {
    {
      std::lock_guard<std::mutex> lock(mutex_);
      stopping_ = true;
    }
    cv_.notify_all();
    for (auto& t : workers_)
      if (t.joinable()) t.join();
    workers_.clear();
  }

  // Waits briefly for work without the lock: a burst of tiny tasks, or the next task of a host that
  // submits one at a time, arrives sooner than a sleeping thread wakes.
  void spin_for_work() {
    const auto until = std::chrono::steady_clock::now() + std::chrono::microseconds(spin_us_);
    do {
      for (int i = 0; i < 64; ++i) {
        if (queued_.load(std::memory_order_acquire) != 0) return;
        WM_CPU_RELAX();
      }
    } while (std::chrono::steady_clock::now() < until);
  }

  void work(int index) {
    const wm::sdk::WorkerIdentity me{index, static_cast<std::int64_t>(getpid()), -1, {}};
    const wm_worker_identity id = me.c();
    services().set_worker(&id, 0);
    // Its cores and GPUs (WM_CPUS_PER_WORKER, WM_GPUS_PER_WORKER), and wm::this_worker() on this thread.
    if (services().struct_size > offsetof(wm_core_services, bind_worker_thread) && services().bind_worker_thread)
      services().bind_worker_thread(index, n_workers_);
    std::vector<wm_task*> batch;
    for (;;) {
      batch.clear();
      {
        std::unique_lock<std::mutex> lock(mutex_);
        while (queue_.empty() && !stopping_) {
          if (spin_us_ > 0) {
            ++spinners_;  // counted under the lock: a submit that sees it leaves this one to take its task
            lock.unlock();
            spin_for_work();
            lock.lock();
            --spinners_;
          }
          if (!queue_.empty() || stopping_) break;
          ++sleepers_;
          cv_.wait(lock);
          --sleepers_;
        }
        if (queue_.empty()) return;  // stopping
        // Take a share of the queue: fewer lock round trips for tiny tasks, and small enough
        // near the end that no worker sits on a backlog while another idles.
        std::size_t take = std::clamp<std::size_t>(queue_.size() / (4 * n_workers_), 1, 64);
        for (std::size_t i = 0; i < take; ++i) {
          batch.push_back(queue_.front());
          queue_.pop_front();
        }
        queued_.store(queue_.size(), std::memory_order_release);
      }
      for (wm_task* t : batch) execute(t);
    }
  }

  unsigned n_workers_ = 1;
  int spin_us_ = 0;
  std::vector<std::thread> workers_;
  std::mutex mutex_;
  std::condition_variable cv_;
  std::deque<wm_task*> queue_;
  std::atomic<std::size_t> queued_{0};
  int sleepers_ = 0;
  std::size_t spinners_ = 0;  // workers in spin_for_work()
  bool stopping_ = false;
};

}  // namespace

WM_DECLARE_BACKEND(threads, ThreadsBackend, "1.0.0",
                   "Runs tasks on a pool of threads in this process (n_workers defaults to the cores)",
                   WM_CAP_IN_PROCESS,
                   wm::sdk::option_int("spin-us", "50", 0, 100000,
                                       "microseconds a worker that ran out of work keeps looking "
                                       "before it sleeps (0: sleep at once)"))
