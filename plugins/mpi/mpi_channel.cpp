// mpi_channel.cpp: a worker rank's channel (see mpi_channel.hpp and README.md, "Transport").
#include "mpi_channel.hpp"

#include "doorbell.hpp"

#include <wm/abi.h>

#include <poll.h>
#include <sched.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstring>
#include <new>
#include <stdexcept>

namespace wm_mpi {
namespace {

using remote::FrameCursor;
using remote::FrameHeader;

constexpr int kIdleReleaseMs = 2000;  // large buffers go back after this much idling
const std::uint64_t kOne = 1;

}  // namespace

MpiChannel::MpiChannel(MPI_Comm comm, int doorbell, std::string me, Log log)
    : comm_(comm), fd_(doorbell), me_(std::move(me)), log_(std::move(log)) {
  out_ = pool_.take();
  wake_fd_ = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
  stop_fd_ = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
  if (wake_fd_ < 0 || stop_fd_ < 0) throw std::runtime_error(std::string("eventfd failed: ") + std::strerror(errno));
  watcher_ = std::thread([this] { watch(); });
  post_receive();
}

MpiChannel::~MpiChannel() {
  if (watcher_.joinable()) {
    [[maybe_unused]] ssize_t w = write(stop_fd_, &kOne, sizeof kOne);
    watcher_.join();
  }
  if (fd_ >= 0) close(fd_);
  close(wake_fd_);
  close(stop_fd_);
}

void MpiChannel::leave(int code, const std::string& why) {
  if (!why.empty()) log_(WM_LOG_ERROR, me_ + why);
  std::fflush(nullptr);
  _exit(code);
}

// ---------------------------------------------------------------- the watcher

// The doorbell's only reader, on a thread of its own, asleep in poll(). Rings wake the loop
// (through wake_fd_, on which the loop sleeps); rank 0's other bytes and its end of file are acted
// on here at once, whatever the loop is doing (a task can run for hours).
void MpiChannel::watch() {
  pollfd fds[2] = {{stop_fd_, POLLIN, 0}, {fd_, POLLIN | POLLRDHUP, 0}};
  const std::string force = " was stopped by force by rank 0 (its shutdown deadline, a task timeout, or bytes it could not read)";
  for (;;) {
    if (poll(fds, 2, -1) < 0) {
      if (errno == EINTR) continue;
      return;
    }
    if (fds[0].revents != 0) return;
    if (fds[1].revents == 0) continue;
    bool eof = false;
    // A ring wakes the loop only if it sleeps: it sets sleeping_ before its last look at MPI, and
    // the message a ring stands for was there before the ring, so that look finds it otherwise.
    bool rang = sleeping_.load();
    // A ring while the loop is awake stands for a message it will look for before it sleeps; if
    // MPI does not show it yet then (rank 0's MPI may still hold it), the loop must not sleep for
    // good: it is told, and looks again every so often until a message comes (late_ring_). Looked
    // at again after telling: a loop that fell asleep meanwhile, without seeing it, is woken.
    if (!rang) {
      late_ring_.store(true);
      rang = sleeping_.load();
    }
    for (char c : drain(fd_, eof)) {
      if (c == kKill)
        leave(1, force + (in_task_ ? " while it ran a task" : "") + "; leaving at once, without MPI_Finalize");
      if (c == kPark && !parked_.exchange(true))
        log_(WM_LOG_ERROR, me_ + force + (in_task_ ? " while it ran a task" : "") +
                               "; it runs no more tasks, and leaves without MPI_Finalize when rank 0's program ends "
                               "(leaving now would make mpirun end the whole job)");
      if (c == kFinalize || c == kExit) verdict_ = c;
      if (c == kRing) told_asleep_.store(false);  // rank 0 rings no more until it is told again
      if (c != kRing) rang = true;  // anything else wakes the loop whatever it does
    }
    if (eof) {
      if (verdict_ == kFinalize) {  // the orderly end: the loop's thread finalizes
        [[maybe_unused]] ssize_t w = write(wake_fd_, &kOne, sizeof kOne);
        return;
      }
      if (verdict_ == kExit) leave(0, "");  // rank 0's program ended, and nobody finalizes
      if (parked_) leave(1, ", stopped by force earlier, leaves now that rank 0's program has ended");
      gone_ = true;
      leave(1, std::string(": rank 0 is gone (its doorbell closed: it crashed, or mpirun ended it)") +
                   (in_task_ ? " while this rank ran a task" : "") + "; leaving without MPI_Finalize");
    }
    if (rang) [[maybe_unused]] ssize_t w = write(wake_fd_, &kOne, sizeof kOne);
  }
}

// The loop asleep: on wake_fd_, which the watcher writes when rank 0 rang (or said more).
void MpiChannel::sleep(int timeout_ms) {
  pollfd p{wake_fd_, POLLIN, 0};
  if (poll(&p, 1, timeout_ms) > 0) {
    std::uint64_t v;
    [[maybe_unused]] ssize_t r = read(wake_fd_, &v, sizeof v);
  }
}

// Rank 0 rings a worker rank only after it said that it sleeps: before its last look at MPI, the
// rank tells it so, with the number of frames messages it has taken; rank 0 rings at once if it
// sent more, and otherwise with its next message. Said once per ring: a rank woken by a timeout
// (and not rung) is still known to sleep.
void MpiChannel::tell_asleep() {
  if (told_asleep_.exchange(true)) return;
  char notice[1 + sizeof taken_];
  notice[0] = kAsleep;
  std::memcpy(notice + 1, &taken_, sizeof taken_);
  send_all(fd_, notice, sizeof notice);  // a broken doorbell shows at the watcher
}

// ---------------------------------------------------------------- MPI

void MpiChannel::post_receive() {
  remote::Buffer& b = rbuf_[posted_];
  b.reserve(kMessageBytes);
  const int rc = MPI_Irecv(b.data, static_cast<int>(kMessageBytes), MPI_BYTE, 0, kTagFrames, comm_, &rreq_);
  if (rc != MPI_SUCCESS) {
    log_(WM_LOG_ERROR, me_ + ": cannot post a receive for rank 0: " + mpi_error_text(rc));
    broken_ = true;
  }
}

// The message the posted receive got: its frames are read next; the receive goes to the other
// buffer (the frames returned from the one before are done with by now). A message came: the
// looks again for one that was rung end.
void MpiChannel::take_message(const MPI_Status& st) {
  late_ring_.store(false);
  recheck_ms_ = 0;
  int len = 0;
  MPI_Get_count(&st, MPI_BYTE, &len);
  cursor_ = FrameCursor(rbuf_[posted_].data, static_cast<std::size_t>(len));
  ++taken_;
  parsing_ = true;
  posted_ ^= 1;
  post_receive();
}

bool MpiChannel::wait_all(std::vector<MPI_Request>& reqs) {
  for (;;) {
    int done = 0;
    const int rc = MPI_Testall(static_cast<int>(reqs.size()), reqs.data(), &done, MPI_STATUSES_IGNORE);
    if (rc != MPI_SUCCESS) {
      log_(WM_LOG_ERROR, me_ + ": a message to or from rank 0 failed: " + mpi_error_text(rc));
      broken_ = true;
      return false;
    }
    if (done) return true;
    if (ended()) return false;
    sched_yield();
  }
}

// Tests the sends under way, or (wait) waits for all of them: a rank never sleeps while MPI may
// need its calls to move its messages. False if it cannot go on.
bool MpiChannel::test_sends(bool wait) {
  while (!sending_.empty()) {
    Sending& m = sending_.front();
    int done = 0;
    if (wait) {
      if (!wait_all(m.reqs)) return false;
      done = 1;
    } else {
      MPI_Testall(static_cast<int>(m.reqs.size()), m.reqs.data(), &done, MPI_STATUSES_IGNORE);
    }
    if (!done) return true;
    pool_.give(std::move(m.buf));
    sending_.pop_front();
  }
  return true;
}

void MpiChannel::send_batch() {
  if (out_.size == 0 || broken_) return;
  Sending m;
  m.buf = std::move(out_);
  out_ = pool_.take();
  MPI_Request r = MPI_REQUEST_NULL;
  const int rc = MPI_Isend(m.buf.data, static_cast<int>(m.buf.size), MPI_BYTE, 0, kTagFrames, comm_, &r);
  if (rc != MPI_SUCCESS) {
    log_(WM_LOG_ERROR, me_ + ": cannot send to rank 0: " + mpi_error_text(rc));
    broken_ = true;
    return;
  }
  m.reqs.push_back(r);
  sending_.push_back(std::move(m));
  // Rank 0 may be asleep whatever this rank did last: always ring (a full doorbell counts as rung;
  // a broken one shows at the watcher).
  ring(fd_, kRing);
}

// ---------------------------------------------------------------- the engine's calls

void MpiChannel::send_hello(const remote::Hello& hello) {
  const std::string payload = remote::encode_hello(hello);
  append_frame(out_, remote::kFrameHello, 0, payload.data(), payload.size());
}

bool MpiChannel::flush() {
  if (ended()) return false;
  send_batch();
  return !broken_;
}

remote::Incoming MpiChannel::receive(int timeout_ms) {
  remote::Incoming in;
  for (;;) {
    if (ended()) {
      in.kind = remote::Incoming::closed;
      return in;
    }
    if (parsing_) {
      FrameHeader h;
      const char* p = nullptr;
      const FrameCursor::Status st = cursor_.next(h, p, in.why);
      if (st == FrameCursor::Status::end) {
        parsing_ = false;
        continue;
      }
      if (st == FrameCursor::Status::bad) {
        in.kind = remote::Incoming::closed;
        return in;
      }
      if (h.type == remote::kFrameStop) {
        in.kind = remote::Incoming::stop;
        return in;
      }
      if (h.type == remote::kFrameTaskLent) {
        // A large task: its payload is a message of its own, received into a buffer of its size.
        std::uint64_t len = 0;
        if (!remote::lent_length(h, p, len) || len <= kInlineMax || len > remote::kMaxFrameLen) {
          in.kind = remote::Incoming::closed;
          in.why = "a task announces a payload of a size that is not valid (" + std::to_string(len) + " bytes)";
          return in;
        }
        large_.size = 0;
        try {
          large_.reserve(static_cast<std::size_t>(len));
        } catch (const std::bad_alloc&) {
          in.kind = remote::Incoming::closed;
          in.why = "no memory for a task of " + std::to_string(len) + " bytes";
          return in;
        }
        std::vector<MPI_Request> reqs;
        const int rc = irecv_payload(large_.data, static_cast<std::size_t>(len), 0, comm_, reqs);
        if (rc != MPI_SUCCESS) {
          in.kind = remote::Incoming::closed;
          in.why = "cannot receive a task's payload: " + mpi_error_text(rc);
          return in;
        }
        ring(fd_, kPull);  // rank 0 may need to push it (and may be asleep)
        if (!wait_all(reqs)) {
          bool all = true;
          for (auto& r : reqs) all = cancel_receive(r) && all;
          if (!all) keep_for_mpi(std::move(large_));
          in.kind = remote::Incoming::closed;
          return in;
        }
        last_large_ = Clock::now();
        h.len = len;
        p = large_.data;
      } else if (h.type != remote::kFrameTask) {
        return remote::Incoming::unexpected_frame(h.type, "rank 0");
      }
      return remote::Incoming::task_from(h, p);
    }
    // The next message.
    int done = 0;
    MPI_Status st;
    int rc = MPI_Test(&rreq_, &done, &st);
    if (rc == MPI_SUCCESS && !done && timeout_ms != 0) {
      // About to sleep: never with a send under way, and after a second look, made once the
      // watcher knows that rings must wake this thread.
      if (!test_sends(true)) continue;
      tell_asleep();
      sleeping_.store(true);
      rc = MPI_Test(&rreq_, &done, &st);
      if (done || rc != MPI_SUCCESS) sleeping_.store(false);
    }
    if (rc != MPI_SUCCESS) {
      in.kind = remote::Incoming::closed;
      in.why = "a message from rank 0 could not be received: " + mpi_error_text(rc);
      return in;
    }
    if (done) {
      take_message(st);
      continue;
    }
    if (timeout_ms == 0) {
      test_sends(false);
      return in;
    }
    // Asleep until the watcher says rank 0 rang; holding large buffers, waking after 2 s to give
    // them back.
    const bool big = large_.capacity >= remote::Buffer::kHuge || reply_.capacity >= remote::Buffer::kHuge;
    int wait = big && (timeout_ms < 0 || timeout_ms > kIdleReleaseMs) ? kIdleReleaseMs : timeout_ms;
    // Rung while awake, and still no message: look again after 1, 2, 4 ... ms (up to 1 s in all),
    // never asleep for good while a message may be on its way.
    if (late_ring_.exchange(false)) recheck_ms_ = 1;
    if (recheck_ms_ > 0 && (wait < 0 || wait > recheck_ms_)) {
      wait = recheck_ms_;
      recheck_ms_ = recheck_ms_ >= 512 ? 0 : 2 * recheck_ms_;
    }
    const auto before = Clock::now();
    sleep(wait);
    sleeping_.store(false);
    const bool woken = wait < 0 || Clock::now() - before < std::chrono::milliseconds(wait);
    if (woken) {
      // Rung: the message is there. A few looks before sleeping again, in case MPI needs more
      // than one call to show it.
      for (int i = 0; i < 8 && !done && rc == MPI_SUCCESS; ++i) {
        rc = MPI_Test(&rreq_, &done, &st);
        if (!done) sched_yield();
      }
      if (done && rc == MPI_SUCCESS) {
        take_message(st);
      } else if (recheck_ms_ == 0) {
        recheck_ms_ = 1;  // rung, and MPI does not show the message yet: look again soon
      }
      continue;  // an error shows at the next test
    }
    if (big && Clock::now() - last_large_ >= std::chrono::milliseconds(kIdleReleaseMs)) {
      large_.release();
      reply_.release();
    }
    if (timeout_ms > 0) return in;
  }
}

wm_byte_buffer& MpiChannel::begin_reply(const remote::Incoming&) {
  in_task_ = true;
  reply_.size = 0;
  writer_.emplace(reply_);
  return *writer_;
}

void MpiChannel::end_reply(const remote::Incoming& task) {
  in_task_ = false;
  writer_->commit();
  writer_.reset();
  if (ended()) return;  // stopped by force meanwhile: nobody waits for this reply
  const std::size_t len = reply_.size;
  if (len <= kInlineMax) {
    if (out_.size + sizeof(FrameHeader) + len > kMessageBytes) send_batch();
    append_frame(out_, remote::kFrameReply, task.seq, reply_.data, len);
    return;
  }
  // A large reply goes from the buffer it was encoded into, announced by a frame; this rank waits
  // until it is through (rank 0 receives it as soon as it reads the announcement).
  const std::uint64_t n = len;
  if (out_.size + sizeof(FrameHeader) + sizeof n > kMessageBytes) send_batch();
  append_frame(out_, remote::kFrameReplyLent, task.seq, &n, sizeof n);
  send_batch();
  std::vector<MPI_Request> reqs;
  const int rc = isend_payload(reply_.data, len, 0, comm_, reqs);
  if (rc != MPI_SUCCESS) {
    log_(WM_LOG_ERROR, me_ + ": cannot send a reply's payload to rank 0: " + mpi_error_text(rc));
    broken_ = true;
    return;
  }
  if (!wait_all(reqs)) {
    for (auto& r : reqs) release_send(r);
    keep_for_mpi(std::move(reply_));
  }
  last_large_ = Clock::now();
}

// ---------------------------------------------------------------- the end

bool MpiChannel::finish() {
  append_frame(out_, kFrameBye, 0, nullptr, 0);
  send_batch();
  const bool sent = test_sends(true);
  if (!cancel_receive(rreq_)) keep_for_mpi(std::move(rbuf_[posted_]));
  if (!sent) return false;
  // Asleep until rank 0 says whether every rank finalizes: it knows once every worker has left.
  sleeping_.store(true);
  while (verdict_ == 0 && !ended()) sleep(-1);
  if (verdict_ != kFinalize || ended()) return false;
  [[maybe_unused]] ssize_t w = write(stop_fd_, &kOne, sizeof kOne);
  watcher_.join();
  close(fd_);
  fd_ = -1;
  return true;
}

void MpiChannel::give_up() {
  if (!ended() && verdict_ == 0 && fd_ >= 0) ::shutdown(fd_, SHUT_WR);
}

void MpiChannel::wait_for_the_end() {
  // What is posted stays posted: this rank never finalizes, and the watcher ends the process.
  sleeping_.store(true);
  for (;;) sleep(-1);
}

}  // namespace wm_mpi
