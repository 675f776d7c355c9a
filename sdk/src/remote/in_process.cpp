// SPDX-License-Identifier: MIT
// in_process.cpp: one worker that is a thread of this process (see in_process.hpp).
#include <wm/sdk/remote/in_process.hpp>

#include <poll.h>

#include <chrono>
#include <condition_variable>
#include <mutex>

namespace wm::sdk::remote {

struct InProcessTransport::Link {
  std::mutex mutex;
  std::condition_variable cv;  // the task thread waits on it
  Buffer to_worker, to_master;
  bool closed = false;  // stopped by force: the task thread leaves after its task, unheard
  bool ended = false;   // the task thread's loop returned
  const Waker* master = nullptr;  // rung when there is something for the engine's thread
};

namespace {

// Hands `from` over to `to` (swapping when `to` is empty: no copy).
void hand_over(Buffer& from, Buffer& to) {
  if (from.size == 0) return;
  if (to.size == 0)
    to.swap(from);
  else
    to.append(from.data, from.size);
  from.size = 0;
}

// The task thread's end of the link.
class ThreadPort final : public Port {
 public:
  explicit ThreadPort(std::shared_ptr<InProcessTransport::Link> link) : link_(std::move(link)) {}

  Capabilities capabilities() const override {
    Capabilities c;
    c.in_process = true;
    return c;
  }
  void start(PortHost& host) override { host_ = &host; }

  int progress(int timeout_ms) override {
    {
      std::unique_lock<std::mutex> lock(link_->mutex);
      auto has = [&] { return link_->to_worker.size != 0 || link_->closed; };
      if (!has()) {
        if (timeout_ms == 0) return 0;
        if (timeout_ms < 0)
          link_->cv.wait(lock, has);
        else if (!link_->cv.wait_for(lock, std::chrono::milliseconds(timeout_ms), has))
          return 0;
      }
      if (link_->closed) {
        lock.unlock();
        host_->closed("");
        return 1;
      }
      in_.size = 0;
      hand_over(link_->to_worker, in_);
    }
    host_->received(in_.data, in_.size);
    return 1;
  }

  Buffer& outbox() override { return out_; }

  bool flush() override {
    const Waker* master;
    {
      std::lock_guard<std::mutex> lock(link_->mutex);
      if (link_->closed) return false;
      hand_over(out_, link_->to_master);
      master = link_->master;
    }
    if (master != nullptr) master->ring();
    return true;
  }

 private:
  std::shared_ptr<InProcessTransport::Link> link_;
  PortHost* host_ = nullptr;
  Buffer in_, out_;
};

}  // namespace

InProcessTransport::InProcessTransport(const wm_core_services& services, std::string backend, WorkerIdentity me,
                                       WorkerLoopOptions options)
    : services_(services), backend_(std::move(backend)), me_(std::move(me)), options_(options) {}

InProcessTransport::~InProcessTransport() {
  if (link_) {
    bool ended;
    {
      std::lock_guard<std::mutex> lock(link_->mutex);
      link_->closed = true;
      link_->master = nullptr;
      ended = link_->ended;
    }
    link_->cv.notify_all();
    if (thread_.joinable()) {
      if (ended)
        thread_.join();
      else
        thread_.detach();  // it owns what it uses (the link); it leaves when its task returns
    }
  }
}

Capabilities InProcessTransport::capabilities() const {
  Capabilities c;
  c.in_process = true;
  return c;
}

void InProcessTransport::start(TransportHost& host) {
  host_ = &host;
  waker_ = std::make_unique<Waker>();
  host.worker_added(0);
}

bool InProcessTransport::launch(WorkerId, const WorkerSetup&) {
  if (thread_.joinable()) thread_.detach();  // a thread stopped by force finishes on its own
  out_.size = in_.size = 0;
  lost_pending_ = gone_reported_ = false;
  link_ = std::make_shared<Link>();
  link_->master = waker_.get();
  thread_ = std::thread([link = link_, &services = services_, backend = backend_, me = me_, options = options_] {
    ThreadPort port(link);
    run_worker_loop(port, services, backend.c_str(), me, options);
    const Waker* master;
    {
      std::lock_guard<std::mutex> lock(link->mutex);
      link->ended = true;
      master = link->master;
    }
    if (master != nullptr) master->ring();
  });
  return true;
}

Buffer& InProcessTransport::outbox(WorkerId) { return out_; }

void InProcessTransport::flush(WorkerId) {
  if (out_.size == 0 || lost_pending_) return;
  {
    std::lock_guard<std::mutex> lock(link_->mutex);
    hand_over(out_, link_->to_worker);
  }
  link_->cv.notify_one();
}

void InProcessTransport::stop_worker(WorkerId) {
  if (lost_pending_ || gone_reported_) return;
  // A thread cannot be killed: it is told to leave once its task returns, and left to it.
  {
    std::lock_guard<std::mutex> lock(link_->mutex);
    link_->closed = true;
    link_->master = nullptr;
  }
  link_->cv.notify_all();
  lost_pending_ = true;
  lost_status_ = "was stopped by force (its thread finishes the task it runs on its own: a thread cannot be killed)";
  waker_->ring();
}

int InProcessTransport::progress(int timeout_ms) {
  for (int round = 0;; ++round) {
    int events = 0;
    bool ended = false;
    if (!lost_pending_ && !gone_reported_) {
      {
        std::lock_guard<std::mutex> lock(link_->mutex);
        hand_over(link_->to_master, in_);
        ended = link_->ended;  // it handed over everything before it said so
      }
      if (in_.size != 0) {
        ++events;
        host_->received(0, in_.data, in_.size);
        in_.size = 0;
      }
    }
    if (lost_pending_) {
      lost_pending_ = false;
      gone_reported_ = true;
      ++events;
      host_->worker_lost(0, lost_status_);  // may start a new thread (launch)
    } else if (ended && !gone_reported_) {
      thread_.join();
      gone_reported_ = true;
      ++events;
      host_->worker_lost(0, "left");
    }
    if (events > 0 || timeout_ms == 0 || round > 0) return events;
    pollfd pfd{waker_->fd(), POLLIN, 0};
    if (poll(&pfd, 1, timeout_ms) > 0) waker_->drain();
  }
}

void InProcessTransport::wake() {
  if (waker_) waker_->ring();
}

}  // namespace wm::sdk::remote
