// process_transport.cpp: local worker processes as a transport of the remote engine (see
// process_transport.hpp and README.md beside this file).
#include "process_transport.hpp"

#include "byte_ring.hpp"

#include <wm/abi.h>

#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <spawn.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <random>
#include <stdexcept>

extern char** environ;

namespace wm_processes {
namespace {

using Clock = std::chrono::steady_clock;
using remote::FrameHeader;
using remote::FrameReader;

constexpr int kChannelFd = 3;  // the worker's end of its socket, in the worker
constexpr int kToWorkerFd = 4;  // the shared regions, in the worker
constexpr int kFromWorkerFd = 5;
constexpr int kRingFd = 6;      // the byte rings, in the worker
constexpr auto kReapGrace = std::chrono::milliseconds(500);  // end of file -> exit, SIGTERM -> SIGKILL
constexpr auto kIdleRelease = std::chrono::seconds(2);       // large buffers go back after this much idling
constexpr int kSocketBuffer = 4 << 20;

// What the launcher sets for a worker; everything else of the host's environment is passed on.
const char* const kOwnVariables[] = {WM_ENV_WORKER_BACKEND "=", WM_ENV_WORKER_ARG "=", WM_ENV_PROCESS_INDEX "=",
                                     WM_ENV_PROCESS_SEED "=", WM_ENV_TASK_LIBRARIES "="};

std::string status_text(int status) {
  char buf[160];
  if (WIFSIGNALED(status)) {
    const int sig = WTERMSIG(status);
    const char* name = strsignal(sig);
    std::snprintf(buf, sizeof buf, "was killed by signal %d (%s%s)", sig, name ? name : "unknown",
                  WCOREDUMP(status) ? ", core dumped" : "");
  } else if (WIFEXITED(status)) {
    std::snprintf(buf, sizeof buf, "exited with code %d", WEXITSTATUS(status));
  } else {
    std::snprintf(buf, sizeof buf, "ended with wait status %d", status);
  }
  return buf;
}

int pidfd_open_compat(pid_t pid) {
#ifdef SYS_pidfd_open
  return static_cast<int>(syscall(SYS_pidfd_open, pid, 0));
#else
  (void)pid;
  errno = ENOSYS;
  return -1;
#endif
}

// A wm_byte_buffer over a slot's region to the worker: the core encodes a request straight there.
struct RegionWriter : wm_byte_buffer {
  SharedRegion* region;
  std::uint16_t generation;
  RegionWriter(SharedRegion& r, std::uint16_t g)
      : wm_byte_buffer{r.data(), 0, r.capacity(), nullptr, &grow}, region(&r), generation(g) {}
  static int grow(wm_byte_buffer* b, std::size_t need) {
    auto* self = static_cast<RegionWriter*>(b);
    if (!self->region->reserve(need, self->generation)) return 1;
    b->data = self->region->data();
    b->capacity = self->region->capacity();
    return 0;
  }
};

}  // namespace

// One worker slot: a stable WM_PROCESS_INDEX and the process currently serving it.
struct LocalProcessTransport::Slot {
  int index = 0;
  pid_t pid = -1;
  int fd = -1;     // master end of the socket (nonblocking); -1 once closed
  int pidfd = -1;  // readable when the process exits
  bool alive = false;  // a process exists and is not reaped yet
  bool graceful = false, half_closed = false, want_write = false;
  bool term_sent = false, kill_sent = false;
  remote::Buffer out;         // frames queued for the worker
  std::size_t out_off = 0;    // bytes of out already written
  FrameReader reader;
  // One request at a time may sit in to_worker (until its reply comes), and one task at a time
  // holds the right to put its reply in from_worker.
  SharedRegion to_worker, from_worker;
  // The frames go through the rings when the slot has them (use_ring); the socket then carries only
  // doorbell bytes and end of file. A fresh file for every process.
  RingFile ring;
  RingWriter to_ring;
  RingReader from_ring;
  bool use_ring = false;
  std::string ring_error;  // the worker broke the ring's rules; reported once as a protocol error
  bool ring_error_sent = false;
  std::uint16_t generation = 0;
  bool request_in_region = false, reply_token_out = false;
  std::uint64_t request_seq = 0, reply_token_seq = 0;
  Clock::time_point eof_at{}, term_at{};
  std::string spawn_error;
};

LocalProcessTransport::LocalProcessTransport(LocalProcessOptions options, Log log, void* log_context)
    : options_(std::move(options)), log_(log), log_context_(log_context) {}

LocalProcessTransport::~LocalProcessTransport() {
  // The dispatcher stops every worker before it ends; this is for a transport given up early
  // (a failed startup): no process is left behind.
  for (auto& sp : slots_) {
    Slot& s = *sp;
    if (!s.alive) continue;
    close_channel(s);
    kill(s.pid, SIGKILL);
    int status;
    while (waitpid(s.pid, &status, 0) < 0 && errno == EINTR) {
    }
    if (s.pidfd >= 0) close(s.pidfd);
  }
  if (doorbell_ >= 0) close(doorbell_);
}

void LocalProcessTransport::start(remote::TransportEvents& events) {
  events_ = &events;
  if (options_.host_program.empty())
    throw std::runtime_error("cannot start worker processes: the path of the host program is unknown");
  snapshot_environment();
  doorbell_ = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
  if (doorbell_ < 0) throw std::runtime_error(std::string("eventfd failed: ") + std::strerror(errno));
  last_activity_ = Clock::now();
  for (unsigned i = 0; i < options_.n_workers; ++i) {
    slots_.push_back(std::make_unique<Slot>());
    Slot& s = *slots_.back();
    s.index = options_.first_index + static_cast<int>(i);
    if (options_.shared_memory &&
        !(s.to_worker.create("wm-processes-to-worker") && s.from_worker.create("wm-processes-from-worker"))) {
      log(WM_LOG_INFO, std::string("no shared memory (memfd_create: ") + std::strerror(errno) +
                           "); large payloads go through the sockets");
      options_.shared_memory = false;
    }
  }
  int events_delivered = 0;
  for (remote::WorkerId id = 0; id < slots_.size(); ++id) {
    events.worker_added(id);
    if (!spawn(*slots_[id])) lost(id, *slots_[id], slots_[id]->spawn_error, events_delivered);
  }
}

bool LocalProcessTransport::restart_worker(remote::WorkerId id) {
  Slot& s = *slots_.at(id);
  if (spawn(s)) return true;
  log(WM_LOG_ERROR, "worker " + std::to_string(s.index) + ": " + s.spawn_error);
  return false;
}

pid_t LocalProcessTransport::pid_of(remote::WorkerId id) const {
  return id < slots_.size() && slots_[id]->alive ? slots_[id]->pid : -1;
}

void LocalProcessTransport::snapshot_environment() {
  env_base_.clear();
  for (char** e = environ; e != nullptr && *e != nullptr; ++e) {
    bool ours = false;
    for (const char* v : kOwnVariables) ours = ours || std::strncmp(*e, v, std::strlen(v)) == 0;
    if (!ours) env_base_.emplace_back(*e);
  }
  env_base_.push_back(std::string(WM_ENV_WORKER_BACKEND "=") + options_.worker_backend);
  std::string libs;
  for (const auto& l : options_.task_libraries) libs += (libs.empty() ? "" : ":") + l;
  if (!libs.empty()) env_base_.push_back(std::string(WM_ENV_TASK_LIBRARIES "=") + libs);
}

// Starts the process of a slot. Runs on the dispatcher's thread only: the parent-death signal of a
// worker follows the thread that created it, and that thread lives until every worker is reaped.
bool LocalProcessTransport::spawn(Slot& s) {
  int sv[2];
  if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) != 0) {
    s.spawn_error = std::string("could not be started: socketpair failed: ") + std::strerror(errno);
    return false;
  }
  for (int fd : sv) {
    setsockopt(fd, SOL_SOCKET, SO_SNDBUF, &kSocketBuffer, sizeof kSocketBuffer);
    setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &kSocketBuffer, sizeof kSocketBuffer);
  }
  int child = sv[1];
  if (child < 10) {
    // Keep it clear of 0-2 (a host that closed its stdio must not get the channel as the worker's
    // stdout) and of 3 (dup2 onto itself would keep FD_CLOEXEC).
    child = fcntl(sv[1], F_DUPFD_CLOEXEC, 10);
    close(sv[1]);
    if (child < 0) {
      close(sv[0]);
      s.spawn_error = std::string("could not be started: fcntl failed: ") + std::strerror(errno);
      return false;
    }
  }
  fcntl(sv[0], F_SETFL, fcntl(sv[0], F_GETFL) | O_NONBLOCK);
  // A fresh ring for every process: positions 0, and nothing a dead predecessor could still touch.
  s.use_ring = options_.shared_memory && s.ring.create();
  if (options_.shared_memory && !s.use_ring)
    log(WM_LOG_INFO, "worker " + std::to_string(s.index) + ": no shared ring (" + std::strerror(errno) +
                         "); its frames go through the socket");

  std::random_device rd;
  const std::uint64_t seed = ((std::uint64_t(rd()) << 32) ^ rd()) | 1;  // nonzero: 0 means "none"
  std::vector<std::string> env = env_base_;
  env.push_back(std::string(WM_ENV_WORKER_ARG "=fd=") + std::to_string(kChannelFd) + ",ppid=" +
                std::to_string(getpid()) + ",spin=" + std::to_string(options_.spin_us) +
                ",keep=" + std::to_string(options_.keep_mib) + ",shm=" + (options_.shared_memory ? "1" : "0") +
                ",ring=" + std::to_string(s.use_ring ? kRingFd : -1));
  env.push_back(std::string(WM_ENV_PROCESS_INDEX "=") + std::to_string(s.index));
  env.push_back(std::string(WM_ENV_PROCESS_SEED "=") + std::to_string(seed));
  std::vector<char*> envp;
  for (auto& e : env) envp.push_back(e.data());
  envp.push_back(nullptr);
  std::string program = options_.host_program;
  char* argv[] = {program.data(), nullptr};

  posix_spawn_file_actions_t fa;
  posix_spawn_file_actions_init(&fa);
  posix_spawn_file_actions_adddup2(&fa, child, kChannelFd);
  if (options_.shared_memory) {
    posix_spawn_file_actions_adddup2(&fa, s.to_worker.fd(), kToWorkerFd);
    posix_spawn_file_actions_adddup2(&fa, s.from_worker.fd(), kFromWorkerFd);
  }
  if (s.use_ring) posix_spawn_file_actions_adddup2(&fa, s.ring.fd(), kRingFd);
  posix_spawn_file_actions_addopen(&fa, 0, "/dev/null", O_RDONLY, 0);
#if defined(__GLIBC__) && (__GLIBC__ > 2 || (__GLIBC__ == 2 && __GLIBC_MINOR__ >= 34))
  posix_spawn_file_actions_addclosefrom_np(&fa, kRingFd + 1);  // no leaked descriptor of the host
#endif
  posix_spawnattr_t attr;
  posix_spawnattr_init(&attr);
  sigset_t mask, defaults;
  sigemptyset(&mask);
  sigaddset(&mask, SIGINT);  // the worker ignores SIGINT; blocked until it has said so
  sigemptyset(&defaults);
  for (int sig : {SIGTERM, SIGPIPE, SIGHUP, SIGCHLD, SIGQUIT, SIGSEGV, SIGABRT, SIGBUS}) sigaddset(&defaults, sig);
  posix_spawnattr_setsigmask(&attr, &mask);
  posix_spawnattr_setsigdefault(&attr, &defaults);
  posix_spawnattr_setflags(&attr, POSIX_SPAWN_SETSIGMASK | POSIX_SPAWN_SETSIGDEF);
  pid_t pid = -1;
  // /proc/self/exe is this very binary even if the file was replaced or deleted since it started:
  // a worker is never a program of another build. The path is the fallback.
  int rc = posix_spawn(&pid, "/proc/self/exe", &fa, &attr, argv, envp.data());
  if (rc == ENOENT || rc == EACCES) rc = posix_spawn(&pid, program.c_str(), &fa, &attr, argv, envp.data());
  posix_spawn_file_actions_destroy(&fa);
  posix_spawnattr_destroy(&attr);
  close(child);
  s.ring.close_fd();  // the worker has its copy; the mapping is all the master needs
  if (rc != 0) {
    close(sv[0]);
    s.ring.reset();
    s.use_ring = false;
    s.spawn_error = "could not be started (" + program + "): " + std::strerror(rc);
    return false;
  }
  s.pid = pid;
  s.fd = sv[0];
  s.pidfd = pidfd_open_compat(pid);
  s.alive = true;
  s.graceful = s.half_closed = s.want_write = s.term_sent = s.kill_sent = false;
  s.out.size = 0;
  s.out_off = 0;
  s.reader.reset();
  s.request_in_region = s.reply_token_out = false;
  s.ring_error.clear();
  s.ring_error_sent = false;
  if (s.use_ring) {
    s.to_ring.attach(s.ring.control(RingFile::to_worker), s.ring.bytes(RingFile::to_worker));
    s.from_ring.attach(s.ring.control(RingFile::from_worker), s.ring.bytes(RingFile::from_worker));
  }
  return true;
}

// ---------------------------------------------------------------- sending

bool LocalProcessTransport::send_task(remote::WorkerId id, std::uint64_t seq, std::size_t size,
                                      const remote::Encoder& encode) {
  Slot& s = *slots_.at(id);
  if (s.fd < 0 || s.graceful) return false;  // it is ending: its exit is reported soon
  std::uint16_t flags = s.generation & remote::kFlagGenerationMask;
  const bool grant_reply = options_.shared_memory && !s.reply_token_out;
  if (grant_reply) flags |= remote::kFlagReplyMayLend;
  bool in_region = false;
  if (options_.shared_memory && size >= large_payload_bytes && !s.request_in_region &&
      s.to_worker.reserve(size, s.generation)) {
    RegionWriter region(s.to_worker, s.generation);
    try {
      encode(region);
      in_region = true;
    } catch (const std::bad_alloc&) {
      // The region could not grow: the socket takes it.
    }
    if (in_region) {
      const std::uint64_t len = region.size;
      const FrameHeader h = remote::make_header(remote::kFrameTaskLent, seq, sizeof len, flags);
      s.out.append(&h, sizeof h);
      s.out.append(&len, sizeof len);
      s.request_in_region = true;
      s.request_seq = seq;
    }
  }
  if (!in_region) remote::append_task_frame(s.out, seq, size, encode, flags);
  if (grant_reply) {
    s.reply_token_out = true;
    s.reply_token_seq = seq;
  }
  return true;
}

void LocalProcessTransport::flush(remote::WorkerId id) { write_out(*slots_.at(id)); }

void LocalProcessTransport::write_out(Slot& s) {
  if (s.use_ring) {
    // Into the ring, as much as fits; the rest stays in out until the worker makes room (it rings
    // the doorbell for that if we announced the wait).
    const bool was_waiting = s.want_write;
    bool wrote = false, corrupt = false;
    while (s.fd >= 0 && s.out_off < s.out.size && s.ring_error.empty()) {
      const std::size_t n = s.to_ring.write(s.out.data + s.out_off, s.out.size - s.out_off, corrupt);
      if (n > 0) {
        s.out_off += n;
        wrote = true;
      } else if (corrupt) {
        s.ring_error = "its ring from the master holds an impossible read position";
      } else if (!s.to_ring.announce_wait(corrupt)) {
        break;
      }
    }
    if (wrote) {
      last_activity_ = Clock::now();
      if (s.to_ring.consumer_needs_wake()) ring_doorbell(s);
    }
    if (s.fd >= 0 && s.out_off < s.out.size) {
      s.want_write = s.ring_error.empty();
      return;
    }
    if (was_waiting && s.fd >= 0) s.to_ring.wait_done();
  }
  while (!s.use_ring && s.fd >= 0 && s.out_off < s.out.size) {
    const ssize_t w = send(s.fd, s.out.data + s.out_off, s.out.size - s.out_off, MSG_NOSIGNAL | MSG_DONTWAIT);
    if (w < 0) {
      if (errno == EINTR) continue;
      // EAGAIN: wait for room. Anything else: the worker is gone; its end is seen on the socket.
      s.want_write = (errno == EAGAIN || errno == EWOULDBLOCK);
      return;
    }
    s.out_off += static_cast<std::size_t>(w);
    last_activity_ = Clock::now();
  }
  s.want_write = false;
  s.out.size = s.out_off = 0;
  if (s.graceful && !s.half_closed && s.fd >= 0) {
    ::shutdown(s.fd, SHUT_WR);  // "stop": the worker finishes what it has, then sees end of file
    s.half_closed = true;
  }
}

void LocalProcessTransport::stop_worker(remote::WorkerId id, remote::StopMode mode) {
  Slot& s = *slots_.at(id);
  if (!s.alive) return;
  if (mode == remote::StopMode::graceful) {
    s.graceful = true;
    write_out(s);
    return;
  }
  // By force: no more bytes either way; SIGTERM now, SIGKILL after the grace (housekeeping).
  close_channel(s);
  if (!s.term_sent) {
    kill(s.pid, SIGTERM);
    s.term_sent = true;
    s.term_at = Clock::now();
  }
}

void LocalProcessTransport::ring_doorbell(Slot& s) {
  // After SHUT_WR the worker reads end of file instead; it then looks for room every millisecond.
  if (s.fd < 0 || s.half_closed) return;
  [[maybe_unused]] ssize_t r = send(s.fd, &kDoorbellByte, 1, MSG_NOSIGNAL | MSG_DONTWAIT);
}

void LocalProcessTransport::close_channel(Slot& s) {
  if (s.fd < 0) return;
  close(s.fd);
  s.fd = -1;
  s.want_write = false;
  s.eof_at = Clock::now();
  s.reader.reset();
}

// ---------------------------------------------------------------- receiving

void LocalProcessTransport::read_worker(remote::WorkerId id, Slot& s, bool drain, int& events) {
  if (s.use_ring) {
    // The socket carries doorbell bytes only (discarded: the rings are looked at anyway) and end of file.
    bool eof = false;
    while (s.fd >= 0) {
      unsigned char b[256];
      const ssize_t r = recv(s.fd, b, sizeof b, MSG_DONTWAIT);
      if (r > 0) {
        if (std::any_of(b, b + r, [](unsigned char c) { return c != kDoorbellByte; })) {
          ++events;
          return events_->protocol_error(id, "bytes that are not a doorbell came on its socket");
        }
        continue;
      }
      if (r < 0 && errno == EINTR) continue;
      eof = !(r < 0 && (errno == EAGAIN || errno == EWOULDBLOCK));
      break;
    }
    // End of file or reset: the worker wrote its ring before it ended, so that is read first.
    bool corrupt = false;
    for (int round = 0; s.fd >= 0 && (eof || drain) && round < 1024 && s.from_ring.available(corrupt) != 0; ++round)
      read_ring(id, s, events);
    if (corrupt) read_ring(id, s, events);  // reports it
    if (eof) close_channel(s);
    return;
  }
  for (int round = 0; s.fd >= 0 && (drain || round < 64); ++round) {
    auto [p, cap] = s.reader.space();
    const ssize_t r = recv(s.fd, p, cap, MSG_DONTWAIT);
    if (r > 0) {
      last_activity_ = Clock::now();
      s.reader.produced(static_cast<std::size_t>(r));
      process_frames(id, s, events);
      if (!drain && static_cast<std::size_t>(r) < cap) return;
      continue;
    }
    if (r < 0 && errno == EINTR) continue;
    if (r < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) return;
    close_channel(s);  // end of file or reset: the worker is exiting; its pidfd says when it is gone
    return;
  }
}

// Frames the worker put in its ring (memory reads only). True if bytes came.
bool LocalProcessTransport::read_ring(remote::WorkerId id, Slot& s, int& events) {
  bool any = false;
  for (int round = 0; s.fd >= 0 && s.ring_error.empty() && round < 64; ++round) {
    bool corrupt = false;
    const std::size_t avail = s.from_ring.available(corrupt);
    if (corrupt) s.ring_error = "its ring to the master holds an impossible write position";
    if (avail == 0) break;
    auto [p, cap] = s.reader.space();
    const std::size_t n = std::min(avail, cap);
    s.from_ring.read(p, n);
    s.reader.produced(n);
    any = true;
    process_frames(id, s, events);
  }
  if (any) {
    last_activity_ = Clock::now();
    if (s.fd >= 0 && s.from_ring.producer_needs_wake()) ring_doorbell(s);
  }
  if (!s.ring_error.empty() && !s.ring_error_sent && s.fd >= 0) {
    s.ring_error_sent = true;
    ++events;
    events_->protocol_error(id, s.ring_error);
  }
  return any;
}

void LocalProcessTransport::process_frames(remote::WorkerId id, Slot& s, int& events) {
  while (s.fd >= 0) {
    FrameHeader h;
    const char* data = nullptr;
    std::string why;
    const FrameReader::Status st = s.reader.next(h, data, why);
    if (st == FrameReader::Status::need_more) return;
    ++events;
    if (st == FrameReader::Status::bad) return events_->protocol_error(id, why);
    switch (h.type) {
      case remote::kFrameHello: {
        remote::Hello hello;
        if (!remote::parse_hello(data, h.len, hello, why)) return events_->protocol_error(id, why);
        s.reader.consume();
        events_->worker_ready(id, hello);
        continue;
      }
      case remote::kFrameReply:
      case remote::kFrameReplyLent: {
        std::uint64_t len = h.len;
        if (h.type == remote::kFrameReplyLent) {
          if (!s.reply_token_out || s.reply_token_seq != h.seq)
            return events_->protocol_error(id, "a reply in shared memory came for task number " +
                                                   std::to_string(h.seq) + ", which was not allowed to use it");
          data = remote::lent_length(h, data, len) ? s.from_worker.view(static_cast<std::size_t>(len), s.generation)
                                                    : nullptr;
          if (data == nullptr)
            return events_->protocol_error(id, "a reply of " + std::to_string(len) +
                                                   " bytes in shared memory was announced, more than the region holds");
        }
        events_->reply(id, h.seq, data, static_cast<std::size_t>(len));
        // The worker is done with the request (its reply is here) and the reply was read: both
        // regions are free again.
        if (s.request_in_region && s.request_seq == h.seq) s.request_in_region = false;
        if (s.reply_token_out && s.reply_token_seq == h.seq) s.reply_token_out = false;
        if (s.fd >= 0) s.reader.consume();
        continue;
      }
      default:
        return events_->protocol_error(id, "a frame of type " + std::to_string(h.type) + " came from a worker");
    }
  }
}

void LocalProcessTransport::reap(remote::WorkerId id, Slot& s, bool wait, int& events) {
  if (s.fd >= 0) read_worker(id, s, true, events);  // replies it sent before it ended still count
  if (!s.alive) return;
  int status = 0;
  pid_t r;
  do {
    r = waitpid(s.pid, &status, wait ? 0 : WNOHANG);
  } while (r < 0 && errno == EINTR);
  if (r == 0) return;  // still running
  lost(id, s, r == s.pid ? status_text(status) : std::string("ended (its exit status was taken by someone else)"),
       events);
}

void LocalProcessTransport::lost(remote::WorkerId id, Slot& s, const std::string& status, int& events) {
  close_channel(s);
  if (s.pidfd >= 0) {
    close(s.pidfd);
    s.pidfd = -1;
  }
  s.alive = false;
  s.out.size = s.out_off = 0;
  s.request_in_region = s.reply_token_out = false;
  ++events;
  events_->worker_lost(id, status);
}

void LocalProcessTransport::housekeeping(Clock::time_point now, int& events) {
  for (remote::WorkerId id = 0; id < slots_.size(); ++id) {
    Slot& s = *slots_[id];
    if (!s.alive) continue;
    if (s.pidfd < 0 && s.fd < 0) reap(id, s, false, events);  // old kernels: no pidfd to tell us
    if (!s.alive) continue;
    if (s.fd < 0 && !s.term_sent && !s.kill_sent && now - s.eof_at >= kReapGrace) {
      kill(s.pid, SIGKILL);  // closed its socket but does not end
      s.kill_sent = true;
    }
    if (s.term_sent && !s.kill_sent && now - s.term_at >= kReapGrace) {
      kill(s.pid, SIGKILL);
      s.kill_sent = true;
    }
  }
  if (now - last_activity_ < kIdleRelease) return;
  for (auto& sp : slots_) {
    Slot& s = *sp;
    s.reader.release_big();
    if (s.out.size == 0 && s.out.capacity >= remote::Buffer::kHuge) s.out.release();
    // The regions stay mapped, warm, while they fit in the memory a worker keeps: mapping them
    // afresh costs a page fault per 4 KiB page on each side again (0.1-0.2 s for 64 MiB on the VMs
    // measured). Larger ones go back when idle, and only while the worker uses neither: no request
    // in it and no reply granted. The new generation tells it to map them afresh.
    const std::size_t held = s.to_worker.capacity() + s.from_worker.capacity();
    if (held > (static_cast<std::size_t>(options_.keep_mib) << 20) && !s.request_in_region && !s.reply_token_out) {
      s.to_worker.release();
      s.from_worker.release();
      s.generation = static_cast<std::uint16_t>((s.generation + 1) & remote::kFlagGenerationMask);
    }
  }
}

int LocalProcessTransport::internal_timeout_ms(Clock::time_point now) const {
  auto next = Clock::time_point::max();
  bool big = false;
  for (const auto& sp : slots_) {
    const Slot& s = *sp;
    big = big || s.reader.holds_big() || s.out.capacity >= remote::Buffer::kHuge ||
          s.to_worker.capacity() + s.from_worker.capacity() > (static_cast<std::size_t>(options_.keep_mib) << 20);
    if (!s.alive) continue;
    if (s.fd < 0 && !s.term_sent && !s.kill_sent) next = std::min(next, s.eof_at + kReapGrace);
    if (s.term_sent && !s.kill_sent) next = std::min(next, s.term_at + kReapGrace);
    if (s.pidfd < 0 && s.fd < 0) next = std::min(next, now + std::chrono::milliseconds(1));
  }
  if (big) next = std::min(next, last_activity_ + kIdleRelease);
  if (next == Clock::time_point::max()) return -1;
  if (next <= now) return 0;
  return static_cast<int>(std::chrono::duration_cast<std::chrono::milliseconds>(next - now).count() + 1);
}

// Every ring: the worker's frames, and room for what waits to go. True if bytes came; all_rings is
// cleared if a live slot has no ring.
bool LocalProcessTransport::scan_rings(int& events, bool& all_rings) {
  bool any = false;
  for (remote::WorkerId id = 0; id < slots_.size(); ++id) {
    Slot& s = *slots_[id];
    if (s.fd < 0) continue;
    if (!s.use_ring) {
      all_rings = false;
      continue;
    }
    if (s.want_write) write_out(s);
    any = read_ring(id, s, events) || any;
  }
  return any;
}

int LocalProcessTransport::progress(int timeout_ms) {
  int events = 0;
  auto now = Clock::now();
  const int own = internal_timeout_ms(now);
  const auto due = now + std::chrono::milliseconds(own);
  if (own >= 0 && (timeout_ms < 0 || own < timeout_ms)) timeout_ms = own;
  // The rings first: memory reads, no system call. While spinning, poll() (pidfds, the sockets'
  // end of file, the doorbell, a caller's extra descriptors) is skipped when a ring had bytes: the
  // caller comes back at once. Skipping it on empty calls too (one poll() per 4 or 16 calls) was
  // not faster here: round trip 11.5-12.5 us either way, with poll() every call 9-12 us.
  bool all_rings = true;
  const bool ring_data = scan_rings(events, all_rings);
  if (timeout_ms == 0 && all_rings && ring_data) {
    if (own >= 0 && Clock::now() >= due) housekeeping(Clock::now(), events);
    return events;
  }
  if (events > 0 || ring_data) timeout_ms = 0;
  // About to block: every ring's consumer says so, then looks again (a worker rings the doorbell
  // only for a sleeping master).
  const bool sleeping = timeout_ms != 0;
  if (sleeping)
    for (auto& sp : slots_)
      if (sp->fd >= 0 && sp->use_ring && sp->from_ring.announce_sleep()) timeout_ms = 0;
  std::vector<pollfd>& fds = fds_;
  std::vector<std::pair<remote::WorkerId, bool>>& owners = owners_;  // slot, is-pidfd
  fds.clear();
  owners.clear();
  fds.push_back(pollfd{doorbell_, POLLIN, 0});
  owners.emplace_back(0, false);
  for (int fd : extra_fds_) {
    fds.push_back(pollfd{fd, POLLIN, 0});
    owners.emplace_back(0, false);
  }
  const std::size_t first_slot_entry = fds.size();
  for (remote::WorkerId id = 0; id < slots_.size(); ++id) {
    Slot& s = *slots_[id];
    if (s.fd >= 0) {
      // With a ring, room comes as a doorbell byte (POLLIN), not as POLLOUT.
      fds.push_back(pollfd{s.fd, static_cast<short>(POLLIN | (s.want_write && !s.use_ring ? POLLOUT : 0)), 0});
      owners.emplace_back(id, false);
    }
    if (s.alive && s.pidfd >= 0) {
      fds.push_back(pollfd{s.pidfd, POLLIN, 0});
      owners.emplace_back(id, true);
    }
  }
  const int n = poll(fds.data(), fds.size(), timeout_ms);
  if (sleeping)
    for (auto& sp : slots_)
      if (sp->fd >= 0 && sp->use_ring) sp->from_ring.sleep_done();
  if (n > 0) {
    if (fds[0].revents != 0) {
      std::uint64_t v;
      [[maybe_unused]] ssize_t r = read(doorbell_, &v, sizeof v);
    }
    for (std::size_t i = first_slot_entry; i < fds.size(); ++i) {
      if (fds[i].revents == 0) continue;
      const remote::WorkerId id = owners[i].first;
      Slot& s = *slots_[id];
      if (owners[i].second) {
        if (s.alive && s.pidfd == fds[i].fd) reap(id, s, true, events);
        continue;
      }
      if (s.fd != fds[i].fd) continue;  // closed while handling an earlier entry
      if (fds[i].revents & POLLOUT) write_out(s);
      if (fds[i].revents & (POLLIN | POLLHUP | POLLERR)) read_worker(id, s, false, events);
    }
  }
  scan_rings(events, all_rings);
  if (own >= 0 && Clock::now() >= due) housekeeping(Clock::now(), events);
  return events;
}

void LocalProcessTransport::wake() {
  const std::uint64_t one = 1;
  if (doorbell_ >= 0) [[maybe_unused]] ssize_t r = write(doorbell_, &one, sizeof one);
}

}  // namespace wm_processes
