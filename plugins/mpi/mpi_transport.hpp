// SPDX-License-Identifier: MIT
// mpi_transport.hpp: rank 0's side of the mpi backend, a transport of the remote engine: the engine's
// bytes go to and from the worker ranks as MPI messages; it sleeps in poll() on one doorbell per
// worker rank, whose end of file shows the rank's death (see README.md, "How it works").
#pragma once

#include "mpi_wire.hpp"

#include <wm/sdk/remote/parting.hpp>
#include <wm/sdk/remote/waker.hpp>

#include <sys/socket.h>
#include <unistd.h>

#include <atomic>
#include <cstdio>
#include <memory>
#include <stdexcept>

namespace wm_mpi {

class MpiTransport final : public remote::Transport {
 public:
  /** The ranks connect to acceptor (connect_limit s each), or are connected already (doorbells). park:
   *  a rank stopped by force stays until rank 0 ends (without --enable-recovery, one that leaves makes
   *  mpirun end the whole job). */
  MpiTransport(MPI_Comm comm, int size, std::unique_ptr<doorbell::Acceptor> acceptor, std::vector<int> doorbells,
               double connect_limit, bool park, remote::Log log)
      : acceptor_(std::move(acceptor)), connect_limit_(connect_limit), park_(park), log_(std::move(log)),
        slots_(static_cast<std::size_t>(size - 1)), rreqs_(slots_.size(), MPI_REQUEST_NULL), indices_(slots_.size()),
        statuses_(slots_.size()),
        connect_until_(Clock::now() +
                       std::chrono::duration_cast<Clock::duration>(std::chrono::duration<double>(connect_limit))) {
    for (std::size_t id = 0; id < slots_.size(); ++id) {
      slots_[id].ch = Channel{comm, static_cast<int>(id) + 1, &rreqs_[id]};
      if (id < doorbells.size()) slots_[id].fd = doorbells[id];  // connected in an earlier work manager
    }
  }

  ~MpiTransport() override {
    if (!finished_) drop_all();  // a failed start-up: MPI is still initialised (after finish() it may not be)
    for (auto& s : slots_)
      if (s.fd >= 0) close(s.fd);
  }

  remote::Capabilities capabilities() const override { return wm_mpi::capabilities(); }
  remote::Buffer& outbox(remote::WorkerId id) override { return slots_.at(id).ch.out; }
  // A rank serves from the start and cannot be started again (once lost, it is never waiting again).
  bool launch(remote::WorkerId id, const remote::WorkerSetup&) override { return slots_[id].state == State::waiting; }
  void wake() override {
    woken_.store(true);
    waker_.ring();
  }

  void start(remote::TransportHost& host) override {
    host_ = &host;
    for (Slot& s : slots_) posted(s, s.ch.post());
    for (remote::WorkerId id = 0; id < slots_.size(); ++id) host.worker_added(id);
  }
  void identified(remote::WorkerId id, const wm::sdk::WorkerIdentity& w) override {
    Slot& s = slots_.at(id);
    s.host = w.host;
    s.pid = w.pid;
    if (s.state == State::waiting) s.state = State::serving;
  }

  void flush(remote::WorkerId id) override {
    Slot& s = slots_.at(id);
    if (s.ch.out.size == 0) return;
    if (!in_service(s)) return void(s.ch.out.size = 0);  // dropped: the rank serves no more
    // (On an error the tasks in it wait for that rank's end, which the doorbell shows.)
    if (const int rc = s.ch.send(); rc != MPI_SUCCESS)
      log_(WM_LOG_ERROR, "cannot send to " + who(s) + ": " + mpi_error_text(rc));
    // A worker rank that is awake (in a task, or looking for the next message) takes the message
    // without a ring; one that sleeps has said so; one not connected yet is rung when it connects.
    if (s.fd >= 0 && std::exchange(s.asleep, false)) doorbell::ring(s.fd, doorbell::kRing);
  }

  void send_payload(remote::WorkerId id, remote::Buffer&& payload) override {
    Slot& s = slots_.at(id);
    if (!in_service(s)) return host_->payload_sent(id, std::move(payload));
    Channel::Sending& m = s.ch.sending.emplace_back();
    m.buf = std::move(payload);
    m.payload = true;
    const int rc = post_pieces(true, m.buf.data, m.buf.size, kChunk, s.ch.peer, kTagPayload, s.ch.comm, m.reqs);
    if (rc != MPI_SUCCESS) log_(WM_LOG_ERROR, "cannot send a payload to " + who(s) + ": " + mpi_error_text(rc));
  }

  bool receive_payload(remote::WorkerId id, remote::Buffer&& into) override {
    Slot& s = slots_.at(id);
    s.lbuf = std::move(into);
    const int rc = post_pieces(false, s.lbuf.data, s.lbuf.size, kChunk, s.ch.peer, kTagPayload, s.ch.comm, s.lreqs);
    if (rc != MPI_SUCCESS) log_(WM_LOG_ERROR, "cannot receive a payload from " + who(s) + ": " + mpi_error_text(rc));
    return rc == MPI_SUCCESS;
  }

  void stop_worker(remote::WorkerId id) override {
    Slot& s = slots_.at(id);
    if (!in_service(s)) return;
    // The rank may be deep in a task: its watcher thread acts on the byte at once. It leaves, or,
    // where that would make mpirun end the job, runs nothing more and stays until rank 0 ends.
    clean_ = false;
    drop_receives(s);
    s.state = park_ ? State::parked : State::forced;
    s.forced_at = Clock::now();
    if (s.fd >= 0) tell_stopped(s);
    if (park_)
      lost_later_.emplace_back(id, "was stopped by force (it runs no more tasks; it stays until rank 0 ends, since a "
                                   "rank that leaves makes mpirun end the whole job)");
  }

  void said_goodbye(remote::WorkerId id) override {
    // Everything it sent came before this (one tag, in order): it has replied to all it got.
    drop_receives(slots_.at(id));
    slots_[id].state = State::left;
    lost_later_.emplace_back(id, "left");
  }

  int progress(int timeout_ms) override {
    int events = 0;
    for (auto& [id, status] : std::exchange(lost_later_, {})) {
      ++events;
      host_->worker_lost(id, status);
    }
    events += poll_mpi();
    // Doorbells are looked at every millisecond while spinning, so a death is seen under load too.
    const auto now = Clock::now();
    if (now - last_look_ >= kLookEvery) events += look(0);
    timers(now, events);
    if (events > 0 || timeout_ms == 0) return events;
    if (must_spin()) {  // a payload is moving: MPI needs this side's calls to move it
      const auto until = timeout_ms > 0 ? now + std::chrono::milliseconds(timeout_ms) : Clock::time_point::max();
      while (events == 0 && must_spin() && !woken_.exchange(false) && Clock::now() < until) {
        sched_yield();
        events += poll_mpi();
        if (Clock::now() - last_look_ >= kLookEvery) events += look(0);
      }
      return events;
    }
    // The last look before sleeping, twice: Open MPI's MPI_Testsome reports what its own progress
    // completed only at the next call, and a ring read since then stands for a message that is there.
    events += poll_mpi();
    if (events == 0) events += poll_mpi();
    const int own = timers(now, events);
    // A wake() since the last sleep stands, even when a look above has read its ring.
    if (events > 0 || woken_.exchange(false)) return events;
    events += look(own >= 0 && (timeout_ms < 0 || own < timeout_ms) ? own : timeout_ms);  // asleep
    events += poll_mpi();
    timers(Clock::now(), events);
    return events;
  }

  /** Once the engine's thread is gone: tells the worker ranks what comes next; returns clean: no rank
   *  died, was stopped by force or given up (after a death, Open MPI's MPI_Finalize may wait forever).
   *  If stay and clean, the ranks wait for this process's next work manager (their doorbells are
   *  handed over); otherwise they finalize MPI (if clean) or leave without it when rank 0 ends. */
  bool finish(bool stay, std::vector<int>& doorbells) {
    if (std::exchange(finished_, true)) return clean_;
    drop_all();
    if (stay && clean_) {  // every rank left in order: it waits for this process's next work manager
      for (Slot& s : slots_) {
        doorbell::ring(s.fd, kStay);
        doorbells.push_back(std::exchange(s.fd, -1));
      }
      return true;
    }
    std::vector<int> left;
    for (Slot& s : slots_) {
      // Unfinalized, a parked rank's doorbell stays open until rank 0's process ends: a rank leaving
      // unfinalized while rank 0's program runs makes mpirun end the job, rank 0 included.
      if (s.fd >= 0 && s.state == State::left) left.push_back(s.fd);
      else if (s.fd >= 0 && (clean_ || s.state != State::parked)) close(s.fd);
      s.fd = -1;
    }
    if (clean_)  // the verdict: every rank finalizes MPI (waits up to 5 s for them to have read it)
      remote::say_last(std::move(left), kFinalize, 5);
    else  // or leaves without it when rank 0's process ends (their doorbells are left open until then)
      for (int fd : left) doorbell::ring(fd, kExit);
    return clean_;
  }

 private:
  static constexpr auto kForceGrace = std::chrono::seconds(3);      // a rank stopped by force has this long to go
  static constexpr auto kLookEvery = std::chrono::milliseconds(1);  // doorbells looked at while spinning
  static constexpr auto kSendLook = std::chrono::milliseconds(10);  // MPI called this often while a send waits
  enum class State { waiting, serving, forced, parked, left, gone };
  struct Slot {
    State state = State::waiting;
    int fd = -1;  // the doorbell, once the rank connected
    doorbell::Reader reader;
    std::string host;
    long long pid = 0;
    Channel ch;
    bool pulled = false;  // the worker waits for its payloads: push them (spin) until sent
    bool asleep = false;  // it said it sleeps and was not rung since: the next message rings
    int ready = -1;       // the length of a message that came
    std::vector<MPI_Request> lreqs;  // a payload being received into lbuf
    remote::Buffer lbuf;
    Clock::time_point forced_at{};
  };

  // Connected or connecting, and not stopped: its doorbell bytes are read as rings and notices.
  static bool in_service(const Slot& s) { return s.state == State::serving || s.state == State::waiting; }
  bool must_spin() const {
    return std::any_of(slots_.begin(), slots_.end(), [](const Slot& s) { return s.pulled || !s.lreqs.empty(); });
  }
  static std::string who(const Slot& s) {
    return "rank " + std::to_string(s.ch.peer) +
           (s.pid == 0 ? "" : " (pid " + std::to_string(s.pid) + (s.host.empty() ? "" : " on " + s.host) + ")");
  }
  static void posted(const Slot& s, int rc) {
    if (rc != MPI_SUCCESS) throw std::runtime_error("cannot post a receive for " + who(s) + ": " + mpi_error_text(rc));
  }
  static void tell_stopped(const Slot& s) {
    doorbell::ring(s.fd, s.state == State::parked ? kPark : kKill);
    if (s.state == State::forced) ::shutdown(s.fd, SHUT_WR);
  }
  void drop_all() {
    for (Slot& s : slots_) drop_receives(s), s.ch.abandon();
  }
  void drop_receives(Slot& s) {  // and the message that came
    s.ch.cancel();
    bool all = true;
    for (auto& r : s.lreqs) all = cancel_receive(r) && all;
    if (!all) keep_for_mpi(std::move(s.lbuf));  // MPI may still write into it
    s.lreqs.clear();
    s.ready = -1;
  }

  // What came from the ranks (a message only once rank 0 can see the rank's end on its doorbell),
  // the payloads they announced, and the sends MPI is done with.
  int poll_mpi() {
    int events = 0, count = 0;
    int rc = MPI_Testsome(static_cast<int>(rreqs_.size()), rreqs_.data(), &count, indices_.data(), statuses_.data());
    for (int k = 0; count != MPI_UNDEFINED && k < count; ++k) {
      const auto id = static_cast<remote::WorkerId>(indices_[k]);
      if (rc != MPI_ERR_IN_STATUS || statuses_[k].MPI_ERROR == MPI_SUCCESS) {
        MPI_Get_count(&statuses_[k], MPI_BYTE, &slots_[id].ready);
        continue;
      }
      ++events;
      host_->broken(id, "a message could not be received: " + mpi_error_text(statuses_[k].MPI_ERROR));
    }
    for (remote::WorkerId id = 0; id < slots_.size(); ++id) {
      Slot& s = slots_[id];
      int done = 0;
      if (!s.lreqs.empty())
        rc = MPI_Testall(static_cast<int>(s.lreqs.size()), s.lreqs.data(), &done, MPI_STATUSES_IGNORE);
      if (!s.lreqs.empty() && rc != MPI_SUCCESS) {
        ++events;
        host_->broken(id, "a reply's payload could not be received: " + mpi_error_text(rc));
      } else if (!s.lreqs.empty() && done) {
        s.lreqs.clear();
        ++events;
        host_->payload_received(id, std::move(s.lbuf));
      }
      if (s.ready >= 0 && s.fd >= 0) {
        const auto len = static_cast<std::size_t>(std::exchange(s.ready, -1));
        const char* message = s.ch.took();
        posted(s, s.ch.post());
        ++events;
        host_->received(id, message, len);
      }
      s.ch.test_sends([&](remote::Buffer&& b) { host_->payload_sent(id, std::move(b)); });  // kept warm by the engine
      s.pulled = s.pulled && std::any_of(s.ch.sending.begin(), s.ch.sending.end(), [](auto& m) { return m.payload; });
    }
    return events;
  }

  void lost(remote::WorkerId id, const std::string& status, int& events) {
    Slot& s = slots_[id];
    drop_receives(s);
    s.state = State::gone;
    clean_ = false;
    if (s.fd >= 0) close(std::exchange(s.fd, -1));
    ++events;
    host_->worker_lost(id, status);
  }

  void on_eof(remote::WorkerId id, int& events) {
    Slot& s = slots_[id];
    // Between its bye and the verdict: it did not wait for the verdict, so it may not finalize.
    if (s.state == State::left) clean_ = false;
    // Dead? What it sent before it died is in MPI already (it rang after sending): taken first, so
    // that a reply it sent is not blamed on its death. Open MPI may need a second look to show a
    // message: stop after two quiet ones.
    for (int quiet = 0, round = 0; quiet < 2 && round < 64 && in_service(s); ++round) {
      const int got = poll_mpi();
      events += got;
      quiet = got == 0 ? quiet + 1 : 0;
    }
    if (s.fd >= 0) close(std::exchange(s.fd, -1));
    if (s.state == State::forced) return lost(id, "was stopped by force", events);
    if (!in_service(s)) return;
    std::string status = "died: its connection to rank 0 closed (killed, crashed or exited)";
    if (!s.host.empty() && s.host == remote::this_host()) status = "on host " + s.host + " " + status;
    lost(id, status, events);
  }

  // A worker rank connected its doorbell; what came after its hail is read like any later byte.
  void connected(const doorbell::Hail& hail, int fd, const std::string& after, int& events) {
    const auto id = static_cast<remote::WorkerId>(hail.id - 1);
    if (id >= slots_.size() || slots_[id].fd >= 0 || slots_[id].state == State::gone) {
      log_(WM_LOG_WARNING, "a connection to the doorbell port was not from a rank of this job; closed");
      close(fd);
      return;
    }
    Slot& s = slots_[id];
    s.fd = fd;
    if (s.pid == 0) s.pid = hail.pid;
    // What was sent before it connected went unrung. (This ring may carry no message; the rank says
    // when it sleeps again, and is rung for the next one then.)
    if (in_service(s)) doorbell::ring(s.fd, doorbell::kRing);
    else tell_stopped(s);
    take_bytes(id, after, events);
  }

  // Bytes a worker rank wrote on its doorbell: rings, sleep notices, pulls, or (broken) anything else.
  void take_bytes(remote::WorkerId id, const std::string& bytes, int& events) {
    Slot& s = slots_[id];
    char bad = 0;
    const bool ok = s.reader.feed(
        bytes,
        [&](std::uint32_t taken) {
          // It sleeps, having taken `taken` messages: if more were sent since, one may have
          // reached MPI after its last look, so it is rung now; otherwise with the next one.
          s.asleep = taken == s.ch.sent;
          if (!s.asleep && in_service(s)) doorbell::ring(s.fd, doorbell::kRing);
        },
        [&](char c) {
          if (c == kPull) s.pulled = true;
          bad = c;
          return c == kPull || !in_service(s);
        });
    if (ok) return;
    char hex[8];
    std::snprintf(hex, sizeof hex, "0x%02x", static_cast<unsigned char>(bad));
    ++events;
    host_->broken(id, std::string("its doorbell carried the byte ") + hex + ", which is no ring");
  }

  // Looks at the waker, new connections and the doorbells for up to timeout_ms.
  int look(int timeout_ms) {
    fds_.assign(1, pollfd{waker_.fd(), POLLIN, 0});
    if (acceptor_) acceptor_->add_fds(fds_);
    const std::size_t fixed = fds_.size();
    for (const Slot& s : slots_) fds_.push_back(pollfd{s.state == State::parked ? -1 : s.fd, POLLIN, 0});
    last_look_ = Clock::now();
    int events = 0;
    const int n = poll(fds_.data(), fds_.size(), timeout_ms);
    if (n < 0) return 0;
    if (fds_[0].revents != 0) waker_.drain();
    // A connection that said nothing is closed at its deadline, which no event announces.
    if (acceptor_ && fixed > 1 && (n > 0 || acceptor_->timeout_ms(Clock::now()) == 0) && acceptor_->take([&](const doorbell::Hail& h, int fd, const std::string& after) {
          connected(h, fd, after, events);
        }) > 0)
      log_(WM_LOG_WARNING, "a connection to the doorbell port was not from a rank of this job; closed");
    for (remote::WorkerId id = 0; id < slots_.size(); ++id) {
      const pollfd& p = fds_[fixed + id];
      if (p.revents == 0 || slots_[id].fd != p.fd) continue;
      bool eof = false;
      take_bytes(id, doorbell::drain(p.fd, eof), events);
      if (eof && slots_[id].fd >= 0) on_eof(id, events);
    }
    return events;
  }

  // The transport's own deadlines: a rank stopped by force or not connected in time is given up
  // now; returns the milliseconds to the next deadline (-1: none).
  int timers(Clock::time_point now, int& events) {
    auto next = Clock::time_point::max();
    for (remote::WorkerId id = 0; id < slots_.size(); ++id) {
      Slot& s = slots_[id];
      if (s.state == State::forced && now >= s.forced_at + kForceGrace)
        lost(id, "was stopped by force and did not leave within 3 s (given up)", events);
      else if (s.state == State::waiting && s.fd < 0 && now >= connect_until_)
        lost(id,
             "did not connect to rank 0's doorbell (TCP port " + std::to_string(acceptor_ ? acceptor_->port() : 0) +
                 ") within " + std::to_string(static_cast<int>(connect_limit_)) +
                 " s: check that worker ranks can reach rank 0 over TCP, or set WM_MPI_DOORBELL_ADDRESS",
             events);
      if (s.state == State::forced) next = std::min(next, s.forced_at + kForceGrace);
      if (s.state == State::waiting && s.fd < 0) next = std::min(next, connect_until_);
      // A message MPI has not handed over may need this rank's calls to move: never asleep for
      // long while one waits (a worker busy with a long task may take it only later).
      if (!s.ch.sending.empty() && s.state == State::serving) next = std::min(next, now + kSendLook);
    }
    const auto until_next = std::chrono::duration_cast<std::chrono::milliseconds>(next - now).count() + 1;
    const int ms = next == Clock::time_point::max() ? -1 : static_cast<int>(until_next);
    const int hails = acceptor_ ? acceptor_->timeout_ms(now) : -1;
    return hails >= 0 && (ms < 0 || hails < ms) ? hails : ms;
  }

  std::unique_ptr<doorbell::Acceptor> acceptor_;  // the job's first work manager: the ranks connect here
  double connect_limit_;                          // s a worker rank has to connect its doorbell
  bool park_;
  remote::Log log_;
  remote::TransportHost* host_ = nullptr;
  std::vector<Slot> slots_;
  std::vector<MPI_Request> rreqs_;  // the posted bytes receive of each worker (for MPI_Testsome)
  std::vector<int> indices_;
  std::vector<MPI_Status> statuses_;
  std::vector<std::pair<remote::WorkerId, std::string>> lost_later_;  // reported lost at the next progress()
  std::vector<pollfd> fds_;
  remote::Waker waker_;
  std::atomic<bool> woken_{false};
  bool clean_ = true, finished_ = false;
  Clock::time_point connect_until_, last_look_{};
};

}  // namespace wm_mpi
