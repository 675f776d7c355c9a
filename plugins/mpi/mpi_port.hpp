// SPDX-License-Identifier: MIT
// mpi_port.hpp: a worker rank's side of the mpi backend, a Port of the remote engine: its bytes come
// and go as MPI messages; a watcher thread owns the doorbell: it wakes the loop when rank 0 rings,
// and ends the process when rank 0 stops this rank by force or is gone (see README.md, "How it works").
#pragma once

#include "mpi_wire.hpp"

#include <wm/sdk/remote/waker.hpp>
#include <wm/sdk/remote/worker_loop.hpp>

#include <sys/socket.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <cstdio>
#include <functional>
#include <thread>

namespace wm_mpi {

class MpiPort final : public remote::Port {
 public:
  /** doorbell: connected to rank 0 (the port closes it); me: "rank R (pid P on H)", for its messages. */
  MpiPort(MPI_Comm comm, int doorbell, std::string me, remote::Log log)
      : ch_{comm, 0, &rreq_}, fd_(doorbell), me_(std::move(me)), log_(std::move(log)) {
    watcher_ = std::thread([this] { watch(); });
    post_receive();
  }

  ~MpiPort() override {  // no MPI call: MPI may be finalized by then
    if (watcher_.joinable()) {
      stop_.ring();
      watcher_.join();
    }
    if (fd_ >= 0) close(fd_);
  }

  remote::Capabilities capabilities() const override { return wm_mpi::capabilities(); }
  void start(remote::PortHost& host) override { host_ = &host; }
  remote::Buffer& outbox() override { return ch_.out; }
  bool send_payload(const char* p, std::size_t size) override { return payload(true, const_cast<char*>(p), size); }
  bool receive_payload(char* into, std::size_t size) override { return payload(false, into, size); }

  bool flush() override {
    if (ended()) return false;
    if (ch_.out.size == 0) return true;
    if (const int rc = ch_.send(); rc != MPI_SUCCESS) return fail("cannot send to rank 0", rc);
    // Rank 0 may be asleep whatever this rank did last: always ring (a full doorbell counts as
    // rung; a broken one shows at the watcher).
    doorbell::ring(fd_, doorbell::kRing);
    return true;
  }

  int progress(int timeout_ms) override {
    for (;;) {
      if (ended()) {
        if (std::exchange(closed_, true)) return 0;
        host_->closed(broken_ ? "an MPI call failed (see above)" : "");
        return 1;
      }
      int done = 0;
      MPI_Status st;
      int rc = MPI_Test(&rreq_, &done, &st);
      if (rc == MPI_SUCCESS && !done && timeout_ms != 0) {
        // About to sleep: never with a send under way, and after a second look, made once the
        // watcher knows that rings must wake this thread. Rank 0 rings only a rank that said it
        // sleeps (once per ring), with the number of messages it took: at once if it sent more.
        if (!complete_sends()) continue;
        if (!told_asleep_.exchange(true)) doorbell::tell_asleep(fd_, ch_.taken);  // if broken, the watcher sees it
        sleeping_.store(true);
        rc = MPI_Test(&rreq_, &done, &st);
        if (done || rc != MPI_SUCCESS) sleeping_.store(false);
      }
      if (rc != MPI_SUCCESS) {
        fail("a message from rank 0 could not be received", rc);
        continue;
      }
      if (done) return take_message(st);
      if (timeout_ms == 0) {
        ch_.test_sends();
        return 0;
      }
      // Asleep until rank 0 rings (or the engine's timeout). Rung while awake, and still no message:
      // look again after 1, 2, 4 ... ms (up to 1 s in all), never asleep for good while one may come.
      int wait = timeout_ms;
      if (late_ring_.exchange(false)) recheck_ms_ = 1;
      if (recheck_ms_ > 0 && (wait < 0 || wait > recheck_ms_)) {
        wait = recheck_ms_;
        recheck_ms_ = recheck_ms_ >= 512 ? 0 : 2 * recheck_ms_;
      }
      const bool woken = sleep(wait);
      sleeping_.store(false);
      if (!woken && wait == timeout_ms) return 0;  // the engine's timeout (not a recheck's) passed
      if (!woken) continue;
      // Rung: the message is there; a few looks, in case MPI needs more than one call to show it.
      for (int i = 0; i < 8 && !done && rc == MPI_SUCCESS; ++i) {
        rc = MPI_Test(&rreq_, &done, &st);
        if (!done) sched_yield();
      }
      if (done && rc == MPI_SUCCESS) return take_message(st);
      if (recheck_ms_ == 0) recheck_ms_ = 1;  // rung, and MPI does not show the message yet: look again soon
    }
  }

  /** After the engine's worker loop ended (how: end): serves rank 0's next work managers (serve runs
   *  the loop) and returns once MPI is finalized; or never, when this rank must not finalize: its
   *  watcher thread ends the process when rank 0 ends, or at once if rank 0 says so. */
  void serve_until_the_end(remote::WorkerEnd end, const std::function<remote::WorkerEnd()>& serve) {
    for (;; end = serve()) {
      if (end == remote::WorkerEnd::broken) {  // rank 0 is told: this side of the doorbell closes, as at a death
        log_(WM_LOG_ERROR, me_ + " cannot go on serving; it leaves without MPI_Finalize when rank 0 ends");
        if (!ended() && verdict_ == 0) ::shutdown(fd_, SHUT_WR);
      }
      if (end != remote::WorkerEnd::stopped) wait_for_the_end();
      // The loop ended on the stop (its goodbye is sent): asleep until rank 0, once every rank has
      // left, says what comes next (a rank told to stay waits for its next work manager or the end).
      const bool sent = complete_sends();
      ch_.cancel();
      if (!sent) wait_for_the_end();
      sleeping_.store(true);
      while ((verdict_ == 0 || verdict_ == kStay) && !ended()) sleep(-1);
      if (ended() || verdict_ == kExit) wait_for_the_end();
      if (verdict_ == kFinalize) break;
      verdict_ = 0;   // kNext: serve rank 0's next work manager
      ch_.taken = 0;  // rank 0 counts the messages of each work manager afresh
      told_asleep_.store(false);
      post_receive();
    }
    stop_.ring();
    watcher_.join();
    close(std::exchange(fd_, -1));
    MPI_Finalize();  // on the thread that initialised MPI: the one serving since start-up
  }

 private:
  bool ended() const { return broken_ || parked_.load(); }

  bool fail(const std::string& what, int rc) {
    log_(WM_LOG_ERROR, me_ + ": " + what + ": " + mpi_error_text(rc));
    broken_ = true;
    return false;
  }

  // Until the watcher ends the process (what is posted stays posted: this rank never finalizes).
  [[noreturn]] void wait_for_the_end() {
    sleeping_.store(true);
    for (;;) sleep(-1);
  }

  [[noreturn]] void leave(int code, const std::string& why) {
    if (!why.empty()) log_(WM_LOG_ERROR, me_ + why);
    std::fflush(nullptr);
    _exit(code);
  }

  // The doorbell's only reader, asleep in poll(). Rings wake the loop (through wake_); rank 0's other
  // bytes and its end of file are acted on here at once, whatever the loop does (a task can run for hours).
  void watch() {
    pollfd fds[2] = {{stop_.fd(), POLLIN, 0}, {fd_, POLLIN | POLLRDHUP, 0}};
    const std::string force =
        " was stopped by force by rank 0 (its shutdown deadline, a task timeout, or bytes it could not read)";
    for (;;) {
      if (poll(fds, 2, -1) < 0) {
        if (errno == EINTR) continue;
        return;
      }
      if (fds[0].revents != 0) return;
      if (fds[1].revents == 0) continue;
      // A ring wakes the loop only if it sleeps: it sets sleeping_ before its last look at MPI, and
      // the message a ring stands for was there before the ring, so that look finds it otherwise.
      // If MPI does not show it yet then (rank 0's MPI may still hold it), the loop must not sleep
      // for good: it is told (late_ring_), and looks again every so often until a message comes;
      // sleeping_ is read again after telling, so a loop that fell asleep meanwhile is woken.
      bool rang = sleeping_.load(), eof = false;
      if (!rang) {
        late_ring_.store(true);
        rang = sleeping_.load();
      }
      for (char c : doorbell::drain(fd_, eof)) {
        if (c == kKill || (c == kPark && !parked_.exchange(true))) {
          const std::string what = force + (in_task_ ? " while it ran a task" : "");
          if (c == kKill) leave(1, what + "; leaving at once, without MPI_Finalize");
          log_(WM_LOG_ERROR, me_ + what +
                                 "; it runs no more tasks, and leaves without MPI_Finalize when rank 0's program "
                                 "ends (leaving now would make mpirun end the whole job)");
        }
        if (c == kFinalize || c == kExit || c == kStay || c == kNext) verdict_ = c;
        if (c == doorbell::kRing) told_asleep_.store(false);  // rank 0 rings no more until it is told again
        if (c != doorbell::kRing) rang = true;  // anything else wakes the loop whatever it does
      }
      if (eof && verdict_ == kFinalize) {  // the orderly end: the loop's thread finalizes
        wake_.ring();
        return;
      }
      if (eof && verdict_ == kExit) leave(0, "");             // rank 0's program ended, and nobody finalizes
      if (eof && parked_) leave(1, ", stopped by force earlier, leaves now that rank 0's program has ended");
      if (eof)
        leave(1, std::string(": rank 0 is gone (its doorbell closed: it crashed, or mpirun ended it)") +
                     (in_task_ ? " while this rank ran a task" : "") + "; leaving without MPI_Finalize");
      if (rang) wake_.ring();
    }
  }

  // The loop asleep on wake_, which the watcher rings; false after the timeout.
  bool sleep(int timeout_ms) {
    pollfd p{wake_.fd(), POLLIN, 0};
    const int n = poll(&p, 1, timeout_ms);
    if (n > 0) wake_.drain();
    return n != 0;
  }

  void post_receive() {
    if (const int rc = ch_.post(); rc != MPI_SUCCESS) fail("cannot post a receive for rank 0", rc);
  }

  // The message goes to the engine, which runs its tasks there.
  int take_message(const MPI_Status& st) {
    late_ring_.store(false);  // a message came: no more looks for a rung one
    recheck_ms_ = 0;
    int len = 0;
    MPI_Get_count(&st, MPI_BYTE, &len);
    const char* message = ch_.took();
    post_receive();
    in_task_ = true;
    host_->received(message, static_cast<std::size_t>(len));
    in_task_ = false;
    return 1;
  }

  bool wait_all(std::vector<MPI_Request>& reqs) {
    for (;;) {
      int done = 0;
      const int rc = MPI_Testall(static_cast<int>(reqs.size()), reqs.data(), &done, MPI_STATUSES_IGNORE);
      if (rc != MPI_SUCCESS) return fail("a message to or from rank 0 failed", rc);
      if (done) return true;
      if (ended()) return false;
      sched_yield();
    }
  }

  // A rank never sleeps while MPI may need its calls to move its messages. False if it cannot go on.
  bool complete_sends() {
    for (auto& m : ch_.sending)
      if (!wait_all(m.reqs)) return false;
    ch_.test_sends();
    return true;
  }

  // A payload (a large reply, sent from where it was encoded, or a large task, received into memory
  // of its size) as messages of its own; this rank waits until it is through.
  bool payload(bool send, char* data, std::size_t size) {
    if (send && ended()) return false;
    std::vector<MPI_Request> reqs;
    const int rc = post_pieces(send, data, size, kChunk, 0, kTagPayload, ch_.comm, reqs);
    if (rc != MPI_SUCCESS)
      return fail(send ? "cannot send a reply's payload to rank 0" : "cannot receive a task's payload", rc);
    if (!send) doorbell::ring(fd_, kPull);  // rank 0 may need to push it (and may be asleep)
    if (wait_all(reqs)) return true;
    for (auto& r : reqs)  // the rank leaves: nothing reuses it
      if (!send) (void)cancel_receive(r); else if (r != MPI_REQUEST_NULL) MPI_Request_free(&r);
    return false;
  }

  MPI_Request rreq_ = MPI_REQUEST_NULL;
  Channel ch_;
  int fd_;
  std::string me_;
  remote::Log log_;
  remote::PortHost* host_ = nullptr;
  bool closed_ = false;  // the host was told that the link ended
  bool broken_ = false;
  int recheck_ms_ = 0;  // the loop's next look while a rung message is missing
  // the watcher (the doorbell's only reader) and what it saw
  remote::Waker wake_, stop_;
  std::thread watcher_;
  std::atomic<bool> in_task_{false}, parked_{false}, sleeping_{false};
  std::atomic<bool> late_ring_{false};    // rank 0 rang while the loop was awake (see watch())
  std::atomic<bool> told_asleep_{false};  // rank 0 was told this rank sleeps and has not rung since
  std::atomic<char> verdict_{0};
};

}  // namespace wm_mpi
