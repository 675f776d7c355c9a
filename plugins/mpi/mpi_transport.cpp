// mpi_transport.cpp: rank 0's transport (see mpi_transport.hpp and README.md, "Transport").
#include "mpi_transport.hpp"

#include <wm/abi.h>

#include <sched.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <stdexcept>

namespace wm_mpi {
namespace {

constexpr auto kForceGrace = std::chrono::seconds(3);      // a rank stopped by force has this long to go
constexpr auto kLookEvery = std::chrono::milliseconds(1);  // doorbells looked at while spinning
constexpr auto kSendLook = std::chrono::milliseconds(10);  // MPI called this often while a send waits

std::string hex_byte(char c) {
  char buf[8];
  std::snprintf(buf, sizeof buf, "0x%02x", static_cast<unsigned char>(c));
  return buf;
}

}  // namespace

MpiTransport::MpiTransport(Options options, remote::Log log) : o_(std::move(options)), log_(std::move(log)) {}

MpiTransport::~MpiTransport() {
  if (!finished_) {
    // Given up before the end (a failed start-up): MPI is still initialised; nothing is left posted.
    for (auto& s : slots_) {
      drop_receives(s);
      for (auto& m : s.sending) {
        for (auto& r : m.reqs) release_send(r);
        keep_for_mpi(std::move(m.buf));
      }
    }
  }
  for (auto& s : slots_)
    if (s.fd >= 0) close(s.fd);
  for (int fd : o_.doorbells)
    if (fd >= 0) close(fd);
}

std::string MpiTransport::who(const Slot& s) const {
  std::string w = "rank " + std::to_string(s.rank);
  if (s.pid != 0) w += " (pid " + std::to_string(s.pid) + (s.host.empty() ? "" : " on " + s.host) + ")";
  return w;
}

remote::Capabilities MpiTransport::capabilities() const {
  remote::Capabilities c;
  c.batch_limit = kMessageBytes;
  c.payloads = true;
  return c;
}

// ---------------------------------------------------------------- start

void MpiTransport::start(remote::TransportHost& host) {
  host_ = &host;
  waker_ = std::make_unique<remote::Waker>();
  const auto n = static_cast<std::size_t>(o_.size - 1);
  slots_.resize(n);
  rreqs_.assign(n, MPI_REQUEST_NULL);
  indices_.resize(n);
  statuses_.resize(n);
  connect_until_ = Clock::now() + std::chrono::duration_cast<Clock::duration>(std::chrono::duration<double>(o_.connect_limit));
  last_look_ = Clock::now();
  for (remote::WorkerId id = 0; id < n; ++id) {
    Slot& s = slots_[id];
    s.rank = static_cast<int>(id) + 1;
    s.out = pool_.take();
    if (id < o_.doorbells.size()) std::swap(s.fd, o_.doorbells[id]);  // connected in an earlier work manager
    post_receive(id);
  }
  for (remote::WorkerId id = 0; id < n; ++id) host.worker_added(id);
}

bool MpiTransport::launch(remote::WorkerId id, const remote::WorkerSetup&) {
  Slot& s = slots_.at(id);
  if (s.launched) return false;  // a rank cannot be started again
  s.launched = true;
  return true;
}

void MpiTransport::post_receive(remote::WorkerId id) {
  Slot& s = slots_[id];
  remote::Buffer& b = s.rbuf[s.posted];
  b.reserve(kMessageBytes);
  const int rc = MPI_Irecv(b.data, static_cast<int>(kMessageBytes), MPI_BYTE, s.rank, kTagBytes, o_.comm, &rreqs_[id]);
  if (rc != MPI_SUCCESS) throw std::runtime_error("cannot post a receive for " + who(s) + ": " + mpi_error_text(rc));
}

void MpiTransport::identified(remote::WorkerId id, const wm::sdk::WorkerIdentity& w) {
  Slot& s = slots_.at(id);
  s.host = w.host;
  s.pid = w.pid;
  if (s.state == State::waiting) s.state = State::serving;
}

// ---------------------------------------------------------------- sending

remote::Buffer& MpiTransport::outbox(remote::WorkerId id) { return slots_.at(id).out; }

void MpiTransport::send_batch(Slot& s) {
  if (s.out.size == 0) return;
  Sending m;
  m.buf = std::move(s.out);
  s.out = pool_.take();
  const int rc = isend_pieces(m.buf.data, m.buf.size, kMessageBytes, s.rank, kTagBytes, o_.comm, m.reqs);
  if (rc != MPI_SUCCESS) log_(WM_LOG_ERROR, "cannot send to " + who(s) + ": " + mpi_error_text(rc));
  // (On an error the tasks in it wait for that rank's end, which the doorbell shows.)
  s.sent += static_cast<std::uint32_t>(m.reqs.size());
  s.sending.push_back(std::move(m));
}

void MpiTransport::flush(remote::WorkerId id) {
  Slot& s = slots_.at(id);
  if (s.out.size == 0) return;
  if (s.state == State::forced || s.state == State::gone || s.state == State::left || s.state == State::parked) {
    s.out.size = 0;
    return;
  }
  send_batch(s);
  // A worker rank that is awake (in a task, or looking for the next message) takes the message
  // without a ring; one that sleeps has said so (read_doorbell).
  if (s.fd < 0 || !s.asleep) return;  // not connected yet: it is rung when it connects
  doorbell::ring(s.fd, doorbell::kRing);
  s.asleep = false;
}

void MpiTransport::send_payload(remote::WorkerId id, remote::Buffer&& payload) {
  Slot& s = slots_.at(id);
  Sending m;
  m.buf = std::move(payload);
  m.payload = true;
  if (s.state != State::waiting && s.state != State::serving) return host_->payload_sent(id, std::move(m.buf));
  const int rc = isend_pieces(m.buf.data, m.buf.size, kChunk, s.rank, kTagPayload, o_.comm, m.reqs);
  if (rc != MPI_SUCCESS) log_(WM_LOG_ERROR, "cannot send a payload to " + who(s) + ": " + mpi_error_text(rc));
  ++s.payloads_sending;
  s.sending.push_back(std::move(m));
}

bool MpiTransport::receive_payload(remote::WorkerId id, remote::Buffer&& into) {
  Slot& s = slots_.at(id);
  s.lbuf = std::move(into);
  const int rc = irecv_payload(s.lbuf.data, s.lbuf.size, s.rank, o_.comm, s.lreqs);
  if (rc != MPI_SUCCESS) {
    log_(WM_LOG_ERROR, "cannot receive a payload from " + who(s) + ": " + mpi_error_text(rc));
    return false;
  }
  ++active_;
  return true;
}

void MpiTransport::test_sends(remote::WorkerId id, Slot& s) {
  for (auto it = s.sending.begin(); it != s.sending.end();) {
    int done = 0;
    MPI_Testall(static_cast<int>(it->reqs.size()), it->reqs.data(), &done, MPI_STATUSES_IGNORE);
    if (!done) {
      ++it;
      continue;
    }
    Sending m = std::move(*it);
    it = s.sending.erase(it);
    if (m.payload) {
      --s.payloads_sending;
      host_->payload_sent(id, std::move(m.buf));  // kept warm by the engine for the next one
    } else {
      pool_.give(std::move(m.buf));
    }
  }
  if (s.payloads_sending == 0) s.pulled = false;
}

void MpiTransport::stop_worker(remote::WorkerId id) {
  Slot& s = slots_.at(id);
  if (s.state == State::forced || s.state == State::parked || s.state == State::gone || s.state == State::left) return;
  // The rank may be deep in a task; its watcher thread acts on the byte at once. It leaves (its end
  // of file says when it is gone), or, where that would make mpirun end the job, runs nothing more
  // and stays until rank 0 ends: then it counts as gone now.
  clean_ = false;
  drop_receives(s);
  if (o_.park_on_force) {
    if (s.fd >= 0) doorbell::ring(s.fd, kPark);
    s.state = State::parked;
    lost_later_.emplace_back(id, "was stopped by force (it runs no more tasks; it stays until rank 0 ends, since a "
                                 "rank that leaves makes mpirun end the whole job)");
    return;
  }
  if (s.fd >= 0) {
    doorbell::ring(s.fd, kKill);
    ::shutdown(s.fd, SHUT_WR);
  }
  s.state = State::forced;
  s.forced_at = Clock::now();
}

void MpiTransport::said_goodbye(remote::WorkerId id) {
  // Everything it sent came before this (one tag, in order): it has replied to all it got.
  Slot& s = slots_.at(id);
  drop_receives(s);
  s.state = State::left;
  lost_later_.emplace_back(id, "left");
}

// ---------------------------------------------------------------- receiving

void MpiTransport::drop_receives(Slot& s) {
  const auto id = static_cast<remote::WorkerId>(s.rank - 1);
  if (!cancel_receive(rreqs_[id])) keep_for_mpi(std::move(s.rbuf[s.posted]));
  if (!s.lreqs.empty()) {
    --active_;
    bool all = true;
    for (auto& r : s.lreqs) all = cancel_receive(r) && all;
    if (!all) keep_for_mpi(std::move(s.lbuf));  // MPI may still write into it
    s.lreqs.clear();
  }
  s.ready = false;
}

int MpiTransport::poll_mpi() {
  int events = 0;
  if (!rreqs_.empty()) {
    int count = 0;
    const int rc = MPI_Testsome(static_cast<int>(rreqs_.size()), rreqs_.data(), &count, indices_.data(), statuses_.data());
    if (count != MPI_UNDEFINED) {
      for (int k = 0; k < count; ++k) {
        const auto id = static_cast<remote::WorkerId>(indices_[k]);
        Slot& s = slots_[id];
        if (rc == MPI_ERR_IN_STATUS && statuses_[k].MPI_ERROR != MPI_SUCCESS) {
          ++events;
          host_->broken(id, "a message could not be received: " + mpi_error_text(statuses_[k].MPI_ERROR));
          continue;
        }
        MPI_Get_count(&statuses_[k], MPI_BYTE, &s.ready_len);
        s.ready = true;
      }
    }
  }
  for (remote::WorkerId id = 0; id < slots_.size(); ++id) {
    Slot& s = slots_[id];
    if ((s.ready && s.fd >= 0) || !s.lreqs.empty()) events += drain(id);  // ready once rank 0 can see its end
    if (!s.sending.empty()) test_sends(id, s);
  }
  return events;
}

// What came from a rank: its message (the engine reads it in place while the next receive is
// posted into the other buffer), and the payload it announced.
int MpiTransport::drain(remote::WorkerId id) {
  int events = 0;
  Slot& s = slots_[id];
  if (!s.lreqs.empty()) {
    int done = 0;
    const int rc = MPI_Testall(static_cast<int>(s.lreqs.size()), s.lreqs.data(), &done, MPI_STATUSES_IGNORE);
    if (rc != MPI_SUCCESS) {
      ++events;
      host_->broken(id, "a reply's payload could not be received: " + mpi_error_text(rc));
      return events;
    }
    if (done) {
      s.lreqs.clear();
      --active_;
      ++events;
      host_->payload_received(id, std::move(s.lbuf));
    }
  }
  if (s.ready) {
    s.ready = false;
    const int got = s.posted;
    s.posted ^= 1;
    post_receive(id);
    ++events;
    host_->received(id, s.rbuf[got].data, static_cast<std::size_t>(s.ready_len));
  }
  return events;
}

void MpiTransport::lost(remote::WorkerId id, const std::string& status, int& events) {
  Slot& s = slots_[id];
  drop_receives(s);
  s.state = State::gone;
  clean_ = false;
  if (s.fd >= 0) {
    close(s.fd);
    s.fd = -1;
  }
  ++events;
  host_->worker_lost(id, status);
}

void MpiTransport::on_eof(remote::WorkerId id, int& events) {
  Slot& s = slots_[id];
  close(s.fd);
  s.fd = -1;
  switch (s.state) {
    case State::left:
      // Between its bye and the verdict: it did not wait for the verdict, so it may not finalize.
      clean_ = false;
      return;
    case State::forced:
      lost(id, "was stopped by force", events);
      return;
    case State::gone:
    case State::parked:
      return;
    default:
      break;
  }
  // It died. What it sent before it died is in MPI already (it rang after sending): take it first,
  // so that a reply it sent is not blamed on its death. Open MPI may need a second look to see a
  // message: stop after two quiet ones.
  for (int quiet = 0, round = 0; quiet < 2 && round < 64 && in_service(s); ++round) {
    if (rreqs_[id] != MPI_REQUEST_NULL) {
      int done = 0;
      MPI_Status st;
      MPI_Test(&rreqs_[id], &done, &st);
      if (done) {
        MPI_Get_count(&st, MPI_BYTE, &s.ready_len);
        s.ready = true;
      }
    }
    const int got = drain(id);
    events += got;
    quiet = got == 0 ? quiet + 1 : 0;
  }
  if (s.state == State::forced) return lost(id, "was stopped by force", events);
  if (!in_service(s)) return;
  std::string status = "died: its connection to rank 0 closed (killed, crashed or exited)";
  if (!s.host.empty() && s.host == remote::this_host()) status = "on host " + s.host + " " + status;
  lost(id, status, events);
}

// ---------------------------------------------------------------- doorbells

// A worker rank connected its doorbell (hail: which one). What came after its hail is read like
// any later byte; an end of file shows again at the next poll().
void MpiTransport::connected(const doorbell::Hail& hail, int fd, const std::string& after, int& events) {
  const auto id = static_cast<remote::WorkerId>(hail.id - 1);
  if (hail.id < 1 || hail.id >= o_.size || slots_[id].fd >= 0 || slots_[id].state == State::gone) {
    log_(WM_LOG_WARNING, "a connection to the doorbell port was not from a rank of this job; closed");
    close(fd);
    return;
  }
  Slot& s = slots_[id];
  s.fd = fd;
  if (s.pid == 0) s.pid = hail.pid;
  if (s.state == State::forced) {
    doorbell::ring(s.fd, kKill);
    ::shutdown(s.fd, SHUT_WR);
  } else if (s.state == State::parked) {
    doorbell::ring(s.fd, kPark);
  } else {
    // What was sent before it connected went unrung. (This ring may carry no message; the rank
    // says when it sleeps again, and is rung for the next one then.)
    doorbell::ring(s.fd, doorbell::kRing);
    s.asleep = false;
  }
  take_bytes(id, after, events);
}

// Bytes a worker rank wrote on its doorbell: rings, sleep notices, pulls, or (a broken peer)
// anything else.
void MpiTransport::take_bytes(remote::WorkerId id, const std::string& bytes, int& events) {
  Slot& s = slots_[id];
  char bad = 0;
  const bool ok = s.reader.feed(
      bytes,
      [&](std::uint32_t taken) {
        // It sleeps, having taken `taken` messages: if more were sent since, one may have reached
        // MPI after its last look, so it is rung now; otherwise with the next one.
        s.asleep = taken == s.sent;
        if (!s.asleep && in_service(s)) doorbell::ring(s.fd, doorbell::kRing);
      },
      [&](char c) {
        if (c == kPull) s.pulled = s.payloads_sending != 0;
        bad = c;
        return c == kPull || !in_service(s);
      });
  if (!ok) {
    ++events;
    host_->broken(id, "its doorbell carried the byte " + hex_byte(bad) + ", which is no ring");
  }
}

void MpiTransport::read_doorbell(remote::WorkerId id, int& events) {
  bool eof = false;
  take_bytes(id, doorbell::drain(slots_[id].fd, eof), events);
  if (eof && slots_[id].fd >= 0) on_eof(id, events);
}

// Looks at the doorbells (and the waker, and new connections) for up to timeout_ms.
int MpiTransport::look(int timeout_ms) {
  std::vector<pollfd>& fds = fds_;
  fds.clear();
  fds.push_back(pollfd{waker_->fd(), POLLIN, 0});
  if (o_.acceptor) o_.acceptor->add_fds(fds);
  const std::size_t fixed = fds.size();
  std::vector<remote::WorkerId> owners;
  for (remote::WorkerId id = 0; id < slots_.size(); ++id)
    if (slots_[id].fd >= 0 && slots_[id].state != State::parked) {
      fds.push_back(pollfd{slots_[id].fd, POLLIN, 0});
      owners.push_back(id);
    }
  last_look_ = Clock::now();
  int events = 0;
  if (poll(fds.data(), fds.size(), timeout_ms) <= 0) return 0;
  if (fds[0].revents != 0) waker_->drain();
  if (o_.acceptor && fixed > 1) {
    const int strangers = o_.acceptor->take(
        [&](const doorbell::Hail& h, int fd, const std::string& after) { connected(h, fd, after, events); });
    if (strangers > 0) log_(WM_LOG_WARNING, "a connection to the doorbell port was not from a rank of this job; closed");
  }
  for (std::size_t i = fixed; i < fds.size(); ++i)
    if (fds[i].revents != 0 && slots_[owners[i - fixed]].fd == fds[i].fd) read_doorbell(owners[i - fixed], events);
  return events;
}

// ---------------------------------------------------------------- progress

bool MpiTransport::must_spin() const {
  if (active_ != 0) return true;
  for (const Slot& s : slots_)
    if (s.pulled) return true;
  return false;
}

int MpiTransport::housekeeping(Clock::time_point now) {
  int events = 0;
  for (remote::WorkerId id = 0; id < slots_.size(); ++id) {
    Slot& s = slots_[id];
    if (s.state == State::forced && now - s.forced_at >= kForceGrace)
      lost(id, "was stopped by force and did not leave within 3 s (given up)", events);
    else if (s.state == State::waiting && s.fd < 0 && now >= connect_until_)
      lost(id,
           "did not connect to rank 0's doorbell (TCP port " + std::to_string(o_.acceptor ? o_.acceptor->port() : 0) +
               ") within " + std::to_string(static_cast<int>(o_.connect_limit)) +
               " s: check that worker ranks can reach rank 0 over TCP, or set WM_MPI_DOORBELL_ADDRESS",
           events);
  }
  return events;
}

int MpiTransport::internal_timeout_ms(Clock::time_point now) const {
  auto next = Clock::time_point::max();
  for (const Slot& s : slots_) {
    if (s.state == State::forced) next = std::min(next, s.forced_at + kForceGrace);
    if (s.state == State::waiting && s.fd < 0) next = std::min(next, connect_until_);
    // A message MPI has not handed over may need this rank's calls to move: never asleep for long
    // while one waits (a worker busy with a long task may take it only later).
    if (!s.sending.empty() && s.state == State::serving) next = std::min(next, now + kSendLook);
  }
  int ms = next == Clock::time_point::max()
               ? -1
               : (next <= now ? 0 : static_cast<int>(std::chrono::duration_cast<std::chrono::milliseconds>(next - now).count() + 1));
  const int hails = o_.acceptor ? o_.acceptor->timeout_ms(now) : -1;
  return hails >= 0 && (ms < 0 || hails < ms) ? hails : ms;
}

int MpiTransport::progress(int timeout_ms) {
  woken_.store(false, std::memory_order_relaxed);
  int events = 0;
  std::vector<std::pair<remote::WorkerId, std::string>> later;
  later.swap(lost_later_);
  for (auto& [id, status] : later) {
    ++events;
    host_->worker_lost(id, status);
  }
  events += poll_mpi();
  // While spinning: a look at the doorbells every millisecond, so that a death or a new connection
  // is seen under load too.
  auto now = Clock::now();
  if (now - last_look_ >= kLookEvery) events += look(0);
  if (internal_timeout_ms(now) == 0) events += housekeeping(now);
  if (events > 0 || timeout_ms == 0) return events;
  if (must_spin()) {
    // A payload is moving: MPI needs this side's calls to move it. Spin until it is through, or
    // something else happens.
    const auto until = timeout_ms > 0 ? now + std::chrono::milliseconds(timeout_ms) : Clock::time_point::max();
    while (events == 0 && must_spin() && !woken_.load(std::memory_order_relaxed) && Clock::now() < until) {
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
  if (events > 0) return events;
  // Asleep: on the waker, the doorbell port, connections that have not said who they are, and
  // every doorbell.
  const int own = internal_timeout_ms(now);
  if (own >= 0 && (timeout_ms < 0 || own < timeout_ms)) timeout_ms = own;
  events += look(timeout_ms);
  events += poll_mpi();
  now = Clock::now();
  if (internal_timeout_ms(now) == 0) events += housekeeping(now);
  return events;
}

void MpiTransport::wake() {
  woken_.store(true, std::memory_order_relaxed);
  if (waker_) waker_->ring();
}

// ---------------------------------------------------------------- the end

bool MpiTransport::finish(bool stay) {
  if (finished_) return clean_;
  finished_ = true;
  for (Slot& s : slots_) {
    drop_receives(s);
    for (auto& m : s.sending) {
      int done = 0;
      MPI_Testall(static_cast<int>(m.reqs.size()), m.reqs.data(), &done, MPI_STATUSES_IGNORE);
      if (done) continue;
      // To a rank that is gone: MPI may hold on to the request; the buffer stays with it.
      for (auto& r : m.reqs) release_send(r);
      keep_for_mpi(std::move(m.buf));
    }
    s.sending.clear();
  }
  if (stay && clean_) {
    // Every rank left in order: it waits for this process's next work manager (or the job's end).
    for (Slot& s : slots_) doorbell::ring(s.fd, kStay);
    return true;
  }
  // The verdict, then this side's end of file; the connection is closed once the rank closed its
  // end (it does so when it has read the verdict): closing with bytes of the rank still unread
  // (a late ring) would reset the connection, and the rank could lose the verdict.
  // Without MPI_Finalize the worker ranks leave when rank 0's process ends: its doorbells stay
  // open until then (the system closes them), so that no rank leaves while rank 0's program still
  // runs (a rank leaving unfinalized makes mpirun end the job, rank 0 included).
  std::vector<int> fds;
  for (Slot& s : slots_) {
    if (s.fd < 0) continue;
    if (s.state == State::left) fds.push_back(s.fd);
    else if (clean_ || s.state != State::parked) close(s.fd);
    s.fd = -1;  // a parked rank's stays open, on purpose, for the life of the process
  }
  give_verdict(fds, clean_);
  return clean_;
}

std::vector<int> MpiTransport::doorbells() {
  std::vector<int> out;
  for (Slot& s : slots_) out.push_back(std::exchange(s.fd, -1));
  return out;
}

// The verdict to ranks that left in order: all finalize MPI (clean), or they leave without it when
// rank 0's process ends (their doorbells then stay open until it does).
void give_verdict(std::vector<int>& fds, bool clean) {
  std::vector<pollfd> open;
  for (int fd : fds) {
    doorbell::ring(fd, clean ? kFinalize : kExit);
    if (!clean) continue;  // left open, on purpose, for the life of the process
    ::shutdown(fd, SHUT_WR);
    open.push_back(pollfd{fd, POLLIN, 0});
  }
  fds.clear();
  const auto until = Clock::now() + std::chrono::seconds(5);
  while (!open.empty() && Clock::now() < until) {
    if (poll(open.data(), open.size(), 100) <= 0) continue;
    for (std::size_t i = 0; i < open.size();) {
      bool eof = false;
      if (open[i].revents != 0) doorbell::drain(open[i].fd, eof);
      if (!eof) {
        ++i;
        continue;
      }
      close(open[i].fd);
      open.erase(open.begin() + static_cast<long>(i));
    }
  }
  for (const pollfd& p : open) close(p.fd);
}

}  // namespace wm_mpi
