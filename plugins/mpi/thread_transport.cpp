// thread_transport.cpp: the mpi backend with one rank (see thread_transport.hpp).
#include "thread_transport.hpp"

#include <poll.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <condition_variable>
#include <cstring>
#include <mutex>
#include <optional>
#include <stdexcept>

namespace wm_mpi {

using remote::FrameCursor;
using remote::FrameHeader;

struct ThreadTransport::Link {
  std::mutex mutex;
  std::condition_variable cv;  // the task thread waits on it
  remote::Buffer to_worker, to_master;
  bool closed = false;  // stopped by force: the task thread leaves after its task, unheard
  bool ended = false;   // the task thread's loop returned
  int master_fd = -1;   // the dispatcher's eventfd, rung when there is something for it
};

namespace {

// Hands `from` over to `to` (swapping when `to` is empty: no copy).
void hand_over(remote::Buffer& from, remote::Buffer& to) {
  if (from.size == 0) return;
  if (to.size == 0)
    to.swap(from);
  else
    to.append(from.data, from.size);
  from.size = 0;
}

void ring(int fd) {
  const std::uint64_t one = 1;
  if (fd >= 0) [[maybe_unused]] ssize_t r = write(fd, &one, sizeof one);
}

// The task thread's end of the link.
class ThreadChannel final : public remote::WorkerChannel {
 public:
  explicit ThreadChannel(std::shared_ptr<ThreadTransport::Link> link) : link_(std::move(link)) {}

  void send_hello(const remote::Hello& hello) override {
    const std::string payload = remote::encode_hello(hello);
    const FrameHeader h = remote::make_header(remote::kFrameHello, 0, payload.size());
    out_.append(&h, sizeof h);
    out_.append(payload.data(), payload.size());
  }

  remote::Incoming receive(int timeout_ms) override {
    remote::Incoming in;
    for (;;) {
      FrameHeader h;
      const char* p = nullptr;
      const FrameCursor::Status st = cursor_.next(h, p, in.why);
      if (st == FrameCursor::Status::bad) {
        in.kind = remote::Incoming::closed;
        return in;
      }
      if (st == FrameCursor::Status::frame) {
        if (h.type == remote::kFrameStop) {
          in.kind = remote::Incoming::stop;
          return in;
        }
        if (h.type != remote::kFrameTask) return remote::Incoming::unexpected_frame(h.type, "the dispatcher");
        return remote::Incoming::task_from(h, p);
      }
      // This batch is read: take the next one, or wait for it.
      in_.size = 0;
      std::unique_lock<std::mutex> lock(link_->mutex);
      auto has = [&] { return link_->to_worker.size != 0 || link_->closed; };
      if (!has()) {
        if (timeout_ms == 0) return in;
        if (timeout_ms < 0)
          link_->cv.wait(lock, has);
        else if (!link_->cv.wait_for(lock, std::chrono::milliseconds(timeout_ms), has))
          return in;
      }
      if (link_->closed) {
        in.kind = remote::Incoming::closed;
        return in;
      }
      hand_over(link_->to_worker, in_);
      cursor_ = FrameCursor(in_.data, in_.size);
    }
  }

  wm_byte_buffer& begin_reply(const remote::Incoming&) override {
    at_ = out_.size;
    const FrameHeader h{};
    out_.append(&h, sizeof h);  // filled in by end_reply, once the length is known
    writer_.emplace(out_);
    return *writer_;
  }

  void end_reply(const remote::Incoming& task) override {
    writer_->commit();
    writer_.reset();
    const FrameHeader h = remote::make_header(remote::kFrameReply, task.seq, out_.size - at_ - sizeof h);
    std::memcpy(out_.data + at_, &h, sizeof h);
  }

  std::size_t pending() const override { return out_.size; }

  bool flush() override {
    int fd;
    {
      std::lock_guard<std::mutex> lock(link_->mutex);
      if (link_->closed) return false;
      hand_over(out_, link_->to_master);
      fd = link_->master_fd;
    }
    ring(fd);
    return true;
  }

 private:
  std::shared_ptr<ThreadTransport::Link> link_;
  remote::Buffer in_, out_;
  FrameCursor cursor_{nullptr, 0};
  std::size_t at_ = 0;
  std::optional<remote::BufferWriter> writer_;
};

}  // namespace

ThreadTransport::ThreadTransport(const wm_core_services& services, std::string backend, wm::sdk::WorkerIdentity me,
                                 remote::WorkerLoopOptions options)
    : services_(services), backend_(std::move(backend)), me_(std::move(me)), options_(options) {}

ThreadTransport::~ThreadTransport() {
  if (thread_.joinable() && link_) {
    bool ended;
    {
      std::lock_guard<std::mutex> lock(link_->mutex);
      link_->closed = true;
      ended = link_->ended;
    }
    link_->cv.notify_all();
    if (ended)
      thread_.join();
    else
      thread_.detach();  // it owns what it uses (the link); it leaves when its task returns
  }
  if (wake_fd_ >= 0) {
    if (link_) {
      std::lock_guard<std::mutex> lock(link_->mutex);
      link_->master_fd = -1;
    }
    close(wake_fd_);
  }
}

void ThreadTransport::launch() {
  gone_reported_ = false;
  link_ = std::make_shared<Link>();
  link_->master_fd = wake_fd_;
  thread_ = std::thread([link = link_, &services = services_, backend = backend_, me = me_, options = options_] {
    ThreadChannel channel(link);
    // Seed 0: the host's generators are this process's own; they are not reseeded.
    remote::run_worker_loop(channel, services, backend.c_str(), me, 0, options);
    int fd;
    {
      std::lock_guard<std::mutex> lock(link->mutex);
      link->ended = true;
      fd = link->master_fd;
    }
    ring(fd);
  });
}

void ThreadTransport::start(remote::TransportEvents& events) {
  events_ = &events;
  wake_fd_ = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
  if (wake_fd_ < 0) throw std::runtime_error(std::string("eventfd failed: ") + std::strerror(errno));
  events.worker_added(0);
  launch();
}

bool ThreadTransport::restart_worker(remote::WorkerId) {
  if (thread_.joinable()) thread_.detach();
  out_.size = in_.size = 0;
  launch();
  return true;
}

bool ThreadTransport::send_task(remote::WorkerId, std::uint64_t seq, std::size_t size, const remote::Encoder& encode) {
  if (lost_pending_) return false;
  remote::append_task_frame(out_, seq, size, encode);
  return true;
}

void ThreadTransport::flush(remote::WorkerId) {
  if (out_.size == 0 || lost_pending_) return;
  {
    std::lock_guard<std::mutex> lock(link_->mutex);
    hand_over(out_, link_->to_worker);
  }
  link_->cv.notify_one();
}

void ThreadTransport::stop_worker(remote::WorkerId id, remote::StopMode mode) {
  if (lost_pending_) return;
  if (mode == remote::StopMode::graceful) {
    const FrameHeader h = remote::make_header(remote::kFrameStop, 0, 0);
    out_.append(&h, sizeof h);
    flush(id);
    return;
  }
  // A thread cannot be killed: it is told to leave once its task returns, and left to it.
  {
    std::lock_guard<std::mutex> lock(link_->mutex);
    link_->closed = true;
    link_->master_fd = -1;
  }
  link_->cv.notify_all();
  if (thread_.joinable()) thread_.detach();
  lost_pending_ = true;
  lost_status_ = "was stopped by force (its thread finishes the task it runs on its own: a thread cannot be killed)";
  ring(wake_fd_);
}

int ThreadTransport::progress(int timeout_ms) {
  for (int round = 0;; ++round) {
    int events = 0;
    bool ended = false;
    {
      std::lock_guard<std::mutex> lock(link_->mutex);
      hand_over(link_->to_master, in_);
      ended = link_->ended;  // it handed over everything before it said so
    }
    FrameCursor cursor(in_.data, in_.size);
    FrameHeader h;
    const char* p = nullptr;
    std::string why;
    while (!lost_pending_) {
      const FrameCursor::Status st = cursor.next(h, p, why);
      if (st == FrameCursor::Status::end) break;
      ++events;
      remote::Hello hello;
      if (st == FrameCursor::Status::bad) {
        events_->protocol_error(0, why);
      } else if (h.type == remote::kFrameHello) {
        if (remote::parse_hello(p, h.len, hello, why))
          events_->worker_ready(0, hello);
        else
          events_->protocol_error(0, why);
      } else if (h.type == remote::kFrameReply) {
        events_->reply(0, h.seq, p, static_cast<std::size_t>(h.len));
        continue;
      } else {
        events_->protocol_error(0, "a frame of type " + std::to_string(h.type) + " came from the task thread");
      }
      if (st == FrameCursor::Status::bad || h.type != remote::kFrameHello) break;
    }
    in_.size = 0;
    if (lost_pending_) {
      lost_pending_ = false;
      ++events;
      events_->worker_lost(0, lost_status_);  // may start a new thread (restart_worker)
    } else if (ended && !gone_reported_) {
      if (thread_.joinable()) thread_.join();
      gone_reported_ = true;
      ++events;
      events_->worker_lost(0, "left");
    }
    if (events > 0 || timeout_ms == 0 || round > 0) return events;
    pollfd pfd{wake_fd_, POLLIN, 0};
    if (poll(&pfd, 1, timeout_ms) > 0) {
      std::uint64_t v;
      [[maybe_unused]] ssize_t r = read(wake_fd_, &v, sizeof v);
    }
  }
}

void ThreadTransport::wake() { ring(wake_fd_); }

}  // namespace wm_mpi
