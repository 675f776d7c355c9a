// SPDX-License-Identifier: MIT
// loopback_backend.cpp: test-only backend that sends every task through the remote path in one
// process: encode -> execute by name on a worker thread -> decode. It tests everything a remote
// backend relies on before any remote backend exists, and can corrupt replies on request.
#include <wm/sdk/backend.hpp>

#include <unistd.h>

#include <algorithm>
#include <condition_variable>
#include <cstring>
#include <deque>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

namespace {

class LoopbackBackend final : public wm::sdk::Backend {
 public:
  LoopbackBackend(const wm_core_services* s, const wm_backend_config* c, const char* name)
      : Backend(s, c, name) {
    n_workers_ = requested_workers() == 0 ? 2 : requested_workers();
    corrupt_ = option_string("corrupt");
  }
  ~LoopbackBackend() override { join(); }

 protected:
  void do_startup() override {
    for (unsigned i = 0; i < n_workers_; ++i) threads_.emplace_back([this, i] { work(static_cast<int>(i)); });
  }

  void do_submit(wm_task* const* tasks, std::size_t n) override {
    std::vector<wm_task*> unfit;
    {
      std::lock_guard<std::mutex> lock(mutex_);
      if (stopping_) throw std::runtime_error("the loopback work manager is shut down");
      for (std::size_t i = 0; i < n; ++i) {
        if (workers_cover(tasks[i]))
          queue_.push_back(Job{tasks[i], {}});
        else
          unfit.push_back(tasks[i]);
      }
    }
    cv_.notify_all();
    for (wm_task* t : unfit) fail_unfit(t);
  }

  void do_stop(bool) override {
    std::deque<Job> left;
    {
      std::lock_guard<std::mutex> lock(mutex_);
      stopping_ = true;
      left.swap(queue_);
    }
    cv_.notify_all();
    for (auto& j : left) fail(j.task, WM_FAIL_SHUTDOWN, "the loopback work manager shut down first");
  }
  void do_join() override { join(); }

  unsigned do_n_workers() const override { return n_workers_; }

 private:
  struct Job {
    wm_task* task;
    std::string request;
  };

  void join() {
    {
      std::lock_guard<std::mutex> lock(mutex_);
      stopping_ = true;
    }
    cv_.notify_all();
    for (auto& t : threads_)
      if (t.joinable()) t.join();
    threads_.clear();
  }

  // Growable bytes lent to the core (a std::string behind a wm_byte_buffer).
  struct Bytes : wm_byte_buffer {
    std::string storage;
    Bytes() : wm_byte_buffer{nullptr, 0, 0, nullptr, &grow} {}
    static int grow(wm_byte_buffer* b, std::size_t need) {
      auto* self = static_cast<Bytes*>(b);
      self->storage.resize(std::max(need, 2 * self->storage.size()));
      b->data = self->storage.data();
      b->capacity = self->storage.size();
      return 0;
    }
    std::string str() const { return std::string(data != nullptr ? data : "", size); }
  };

  void work(int index) {
    const wm_worker_identity me{sizeof(wm_worker_identity), index, static_cast<std::int64_t>(getpid()), -1, 0, nullptr};
    services().set_worker(&me, 0);
    for (;;) {
      Job job;
      {
        std::unique_lock<std::mutex> lock(mutex_);
        cv_.wait(lock, [this] { return stopping_ || !queue_.empty(); });
        if (queue_.empty()) return;
        job = std::move(queue_.front());
        queue_.pop_front();
      }
      // A private copy of the request, made when it is "sent", as a transport would (a task
      // cancelled before is refused here, and dropped).
      {
        Bytes request;
        wm_error err{};
        if (services().encode(job.task, &request, &err) != 0) {
          fail(job.task, WM_FAIL_BACKEND, err.message);
          continue;
        }
        job.request = request.str();
      }
      if (corrupt_ == "request" && !job.request.empty()) job.request[0] ^= 0x5a;
      Bytes out;
      execute_encoded(job.request.data(), job.request.size(), out);
      std::string reply = out.str();
      if (corrupt_ == "reply" && reply.size() > 8) reply.resize(reply.size() / 2 + 1), reply[0] ^= 0x5a;
      if (corrupt_ == "truncate" && reply.size() > 6) reply.resize(6);
      complete_encoded(job.task, reply.data(), reply.size());
    }
  }

  unsigned n_workers_ = 2;
  std::string corrupt_;
  std::vector<std::thread> threads_;
  std::mutex mutex_;
  std::condition_variable cv_;
  std::deque<Job> queue_;
  bool stopping_ = false;
};

}  // namespace

WM_DECLARE_BACKEND(loopback, LoopbackBackend, "1.0.0",
                   "Test backend: every task is encoded, executed by name on a thread, and decoded",
                   WM_CAP_REMOTE,
                   wm::sdk::option_string("corrupt", "",
                                          "test hook: 'request', 'reply' or 'truncate' corrupts bytes"))
