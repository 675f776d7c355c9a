// mpi_port.cpp: a worker rank's port (see mpi_port.hpp and README.md, "Transport").
#include "mpi_port.hpp"


#include <wm/abi.h>

#include <poll.h>
#include <sched.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstring>
#include <stdexcept>

namespace wm_mpi {

MpiPort::MpiPort(MPI_Comm comm, int doorbell, std::string me, remote::Log log)
    : comm_(comm), fd_(doorbell), me_(std::move(me)), log_(std::move(log)) {
  out_ = pool_.take();
  watcher_ = std::thread([this] { watch(); });
  post_receive();
}

MpiPort::~MpiPort() {
  if (watcher_.joinable()) {
    stop_.ring();
    watcher_.join();
  }
  if (fd_ >= 0) close(fd_);
}

remote::Capabilities MpiPort::capabilities() const {
  remote::Capabilities c;
  c.batch_limit = kMessageBytes;
  c.payloads = true;
  return c;
}

void MpiPort::leave(int code, const std::string& why) {
  if (!why.empty()) log_(WM_LOG_ERROR, me_ + why);
  std::fflush(nullptr);
  _exit(code);
}

// ---------------------------------------------------------------- the watcher

// The doorbell's only reader, on a thread of its own, asleep in poll(). Rings wake the loop
// (through wake_, on which the loop sleeps); rank 0's other bytes and its end of file are acted
// on here at once, whatever the loop is doing (a task can run for hours).
void MpiPort::watch() {
  pollfd fds[2] = {{stop_.fd(), POLLIN, 0}, {fd_, POLLIN | POLLRDHUP, 0}};
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
    for (char c : doorbell::drain(fd_, eof)) {
      if (c == kKill)
        leave(1, force + (in_task_ ? " while it ran a task" : "") + "; leaving at once, without MPI_Finalize");
      if (c == kPark && !parked_.exchange(true))
        log_(WM_LOG_ERROR, me_ + force + (in_task_ ? " while it ran a task" : "") +
                               "; it runs no more tasks, and leaves without MPI_Finalize when rank 0's program ends "
                               "(leaving now would make mpirun end the whole job)");
      if (c == kFinalize || c == kExit || c == kStay || c == kNext) verdict_ = c;
      if (c == doorbell::kRing) told_asleep_.store(false);  // rank 0 rings no more until it is told again
      if (c != doorbell::kRing) rang = true;  // anything else wakes the loop whatever it does
    }
    if (eof) {
      if (verdict_ == kFinalize) {  // the orderly end: the loop's thread finalizes
        wake_.ring();
        return;
      }
      if (verdict_ == kExit) leave(0, "");  // rank 0's program ended, and nobody finalizes
      if (parked_) leave(1, ", stopped by force earlier, leaves now that rank 0's program has ended");
      gone_ = true;
      leave(1, std::string(": rank 0 is gone (its doorbell closed: it crashed, or mpirun ended it)") +
                   (in_task_ ? " while this rank ran a task" : "") + "; leaving without MPI_Finalize");
    }
    if (rang) wake_.ring();
  }
}

// The loop asleep: on wake_, which the watcher rings when rank 0 rang (or said more).
void MpiPort::sleep(int timeout_ms) {
  pollfd p{wake_.fd(), POLLIN, 0};
  if (poll(&p, 1, timeout_ms) > 0) wake_.drain();
}

// Rank 0 rings a worker rank only after it said that it sleeps: before its last look at MPI, the
// rank tells it so, with the number of bytes messages it has taken; rank 0 rings at once if it
// sent more, and otherwise with its next message. Said once per ring: a rank woken by a timeout
// (and not rung) is still known to sleep.
void MpiPort::tell_asleep() {
  if (!told_asleep_.exchange(true)) doorbell::tell_asleep(fd_, taken_);  // a broken doorbell shows at the watcher
}

// ---------------------------------------------------------------- MPI

void MpiPort::post_receive() {
  remote::Buffer& b = rbuf_[posted_];
  b.reserve(kMessageBytes);
  const int rc = MPI_Irecv(b.data, static_cast<int>(kMessageBytes), MPI_BYTE, 0, kTagBytes, comm_, &rreq_);
  if (rc != MPI_SUCCESS) {
    log_(WM_LOG_ERROR, me_ + ": cannot post a receive for rank 0: " + mpi_error_text(rc));
    broken_ = true;
  }
}

// The message the posted receive got goes to the engine, which runs its tasks there; the next
// receive is posted into the other buffer first. A message came: the looks again for one that was
// rung end.
int MpiPort::take_message(const MPI_Status& st) {
  late_ring_.store(false);
  recheck_ms_ = 0;
  int len = 0;
  MPI_Get_count(&st, MPI_BYTE, &len);
  const int got = posted_;
  ++taken_;
  posted_ ^= 1;
  post_receive();
  in_task_ = true;
  host_->received(rbuf_[got].data, static_cast<std::size_t>(len));
  in_task_ = false;
  return 1;
}

bool MpiPort::wait_all(std::vector<MPI_Request>& reqs) {
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
bool MpiPort::test_sends(bool wait) {
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

void MpiPort::send_batch() {
  if (out_.size == 0 || broken_) return;
  Sending m;
  m.buf = std::move(out_);
  out_ = pool_.take();
  const int rc = isend_pieces(m.buf.data, m.buf.size, kMessageBytes, 0, kTagBytes, comm_, m.reqs);
  if (rc != MPI_SUCCESS) {
    log_(WM_LOG_ERROR, me_ + ": cannot send to rank 0: " + mpi_error_text(rc));
    broken_ = true;
  }
  sending_.push_back(std::move(m));
  // Rank 0 may be asleep whatever this rank did last: always ring (a full doorbell counts as rung;
  // a broken one shows at the watcher).
  doorbell::ring(fd_, doorbell::kRing);
}

// ---------------------------------------------------------------- the engine's calls

bool MpiPort::flush() {
  if (ended()) return false;
  send_batch();
  return !broken_;
}

// A large reply, after its announcement (flushed): sent from where it was encoded; this rank waits
// until it is through (rank 0 receives it as soon as it reads the announcement).
bool MpiPort::send_payload(const char* data, std::size_t size) {
  if (ended()) return false;
  std::vector<MPI_Request> reqs;
  const int rc = isend_pieces(data, size, kChunk, 0, kTagPayload, comm_, reqs);
  if (rc != MPI_SUCCESS) {
    log_(WM_LOG_ERROR, me_ + ": cannot send a reply's payload to rank 0: " + mpi_error_text(rc));
    broken_ = true;
    return false;
  }
  if (wait_all(reqs)) return true;
  for (auto& r : reqs) release_send(r);  // the rank leaves: nothing reuses the memory
  return false;
}

// A large task: its payload is a message of its own, received into memory of its size.
bool MpiPort::receive_payload(char* into, std::size_t size) {
  std::vector<MPI_Request> reqs;
  const int rc = irecv_payload(into, size, 0, comm_, reqs);
  if (rc != MPI_SUCCESS) {
    log_(WM_LOG_ERROR, me_ + ": cannot receive a task's payload: " + mpi_error_text(rc));
    broken_ = true;
    return false;
  }
  doorbell::ring(fd_, kPull);  // rank 0 may need to push it (and may be asleep)
  if (wait_all(reqs)) return true;
  for (auto& r : reqs) cancel_receive(r);  // the rank leaves: nothing reuses the memory
  return false;
}

int MpiPort::progress(int timeout_ms) {
  for (;;) {
    if (ended()) {
      if (closed_) return 0;
      closed_ = true;
      host_->closed(broken_ ? "an MPI call failed (see above)" : "");
      return 1;
    }
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
      log_(WM_LOG_ERROR, me_ + ": a message from rank 0 could not be received: " + mpi_error_text(rc));
      broken_ = true;
      continue;
    }
    if (done) return take_message(st);
    if (timeout_ms == 0) {
      test_sends(false);
      return 0;
    }
    // Asleep until the watcher says rank 0 rang (or the engine's timeout).
    int wait = timeout_ms;
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
      if (done && rc == MPI_SUCCESS) return take_message(st);
      if (recheck_ms_ == 0) recheck_ms_ = 1;  // rung, and MPI does not show the message yet: look again soon
      continue;  // an error shows at the next test
    }
    if (wait == timeout_ms) return 0;  // the engine's timeout (not a recheck's) passed
  }
}

// ---------------------------------------------------------------- the end

MpiPort::Verdict MpiPort::finish() {
  const bool sent = test_sends(true);
  if (!cancel_receive(rreq_)) keep_for_mpi(std::move(rbuf_[posted_]));
  if (!sent) return Verdict::leave;
  // Asleep until rank 0 says what comes next: it knows once every worker has left. A rank told to
  // stay waits, asleep, for rank 0's next work manager or the end of the job.
  sleeping_.store(true);
  while ((verdict_ == 0 || verdict_ == kStay) && !ended()) sleep(-1);
  if (ended() || verdict_ == kExit) return Verdict::leave;
  if (verdict_ == kNext) {
    verdict_ = 0;
    taken_ = 0;  // rank 0 counts the messages of each work manager afresh
    told_asleep_.store(false);
    post_receive();
    return Verdict::serve;
  }
  stop_.ring();
  watcher_.join();
  close(fd_);
  fd_ = -1;
  return Verdict::finalize;
}

void MpiPort::give_up() {
  if (!ended() && verdict_ == 0 && fd_ >= 0) ::shutdown(fd_, SHUT_WR);
}

void MpiPort::wait_for_the_end() {
  // What is posted stays posted: this rank never finalizes, and the watcher ends the process.
  sleeping_.store(true);
  for (;;) sleep(-1);
}

}  // namespace wm_mpi
