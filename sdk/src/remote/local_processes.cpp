// SPDX-License-Identifier: MIT
// local_processes.cpp: worker processes on this machine, both sides (see local_processes.hpp).
#include <wm/sdk/remote/local_processes.hpp>

#include "byte_ring.hpp"

#include <wm/sdk/remote/shared_region.hpp>

#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <spawn.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <sys/uio.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstddef>
#include <cstdlib>
#include <cstring>
#include <map>
#include <stdexcept>

extern char** environ;

namespace wm::sdk::remote {
namespace {

using Clock = std::chrono::steady_clock;

constexpr int kChannelFd = 3;  // the worker's end of its socket, in the worker
constexpr int kToWorkerFd = 4;  // the shared regions, in the worker
constexpr int kFromWorkerFd = 5;
constexpr int kRingFd = 6;      // the byte rings, in the worker
constexpr auto kReapGrace = std::chrono::milliseconds(500);  // end of file -> exit, SIGTERM -> SIGKILL
constexpr int kSocketBuffer = 4 << 20;

// What the spawn sets for a worker; everything else of the host's environment is passed on.
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

void set_cloexec(int fd) {
  const int flags = fcntl(fd, F_GETFD);
  if (flags >= 0) fcntl(fd, F_SETFD, flags | FD_CLOEXEC);
}

// While the rings carry the bytes, a socket carries doorbell bytes only, and end of file.
enum class Doorbells { taken, end, foreign };
// Reads what waits on such a socket without waiting, dropping the doorbell bytes: end at end of
// file or a broken connection, foreign if anything else came.
Doorbells take_doorbells(int fd) {
  for (;;) {
    unsigned char b[256];
    const ssize_t r = recv(fd, b, sizeof b, MSG_DONTWAIT);
    if (r > 0) {
      if (std::any_of(b, b + r, [](unsigned char c) { return c != kDoorbellByte; })) return Doorbells::foreign;
      continue;
    }
    if (r < 0 && errno == EINTR) continue;
    if (r < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) return Doorbells::taken;
    return Doorbells::end;
  }
}

}  // namespace

// One worker slot: a stable WM_PROCESS_INDEX and the process currently serving it.
struct LocalProcesses::Slot {
  pid_t pid = -1;
  int fd = -1;     // master end of the socket (nonblocking); -1 once closed
  int pidfd = -1;  // readable when the process exits
  bool alive = false;  // a process exists and is not reaped yet
  bool want_write = false, term_sent = false, kill_sent = false;
  Buffer out;               // bytes queued for the worker
  std::size_t out_off = 0;  // bytes of out already written
  // Large requests and replies, in place (the engine says when each is in use).
  SharedRegion to_worker, from_worker;
  RegionWriter writer;
  long keep_mib = 0;  // regions stay mapped while they fit in this (the worker's memory budget)
  // The bytes go through the rings when the slot has them (use_ring); the socket then carries only
  // doorbell bytes and end of file. A fresh file for every process.
  RingFile ring;
  RingWriter to_ring;
  RingReader from_ring;
  bool use_ring = false;
  std::string ring_error;  // the worker broke the ring's rules; reported once
  bool ring_error_sent = false;
  Clock::time_point eof_at{}, term_at{};
};

LocalProcesses::LocalProcesses(LocalProcessOptions options, Log log)
    : options_(std::move(options)), log_(std::move(log)) {}

LocalProcesses::~LocalProcesses() {
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
}

Capabilities LocalProcesses::capabilities() const {
  Capabilities c;
  c.shared_storage = options_.shared_memory;
  return c;
}

void LocalProcesses::start(TransportHost& host) {
  host_ = &host;
  if (options_.host_program.empty())
    throw std::runtime_error("cannot start worker processes: the path of the host program is unknown");
  snapshot_environment();
  doorbell_ = std::make_unique<Waker>();
  for (unsigned i = 0; i < options_.n_workers; ++i) {
    slots_.push_back(std::make_unique<Slot>());
    Slot& s = *slots_.back();
    if (options_.shared_memory &&
        !(s.to_worker.create("wm-processes-to-worker") && s.from_worker.create("wm-processes-from-worker"))) {
      log_(WM_LOG_INFO, std::string("no shared memory (memfd_create: ") + std::strerror(errno) +
                            "); large payloads go through the sockets");
      options_.shared_memory = false;
    }
  }
  for (WorkerId id = 0; id < slots_.size(); ++id) host.worker_added(id);
}

bool LocalProcesses::launch(WorkerId id, const WorkerSetup& setup) {
  spawn(id, *slots_.at(id), setup);
  return true;
}

void LocalProcesses::snapshot_environment() {
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

namespace {

// What the core sets in the environment of worker `slot` of n (its GPUs, cores, thread counts),
// as NAME=VALUE, in place of what the host's environment has for those names. The slot, not the
// worker's index: a node's workers are indexed in the whole job, and the node shares out its own
// devices among its own workers.
std::vector<std::string> core_environment(const wm_core_services* services, WorkerId slot, unsigned n) {
  std::vector<std::string> out;
  if (services == nullptr ||
      services->struct_size < offsetof(wm_core_services, worker_environment) + sizeof services->worker_environment ||
      services->worker_environment == nullptr)
    return out;
  services->worker_environment(
      static_cast<std::int32_t>(slot), n,
      [](void* context, const char* name, const char* value) {
        if (name != nullptr && *name != '\0' && std::strchr(name, '=') == nullptr && value != nullptr)
          static_cast<std::vector<std::string>*>(context)->push_back(std::string(name) + "=" + value);
      },
      &out);
  return out;
}

}  // namespace

// Starts the process of a slot. Runs on the engine's thread only: the parent-death signal of a
// worker follows the thread that created it, and that thread lives until every worker is reaped.
void LocalProcesses::spawn(WorkerId id, Slot& s, const WorkerSetup& setup) {
  auto failed = [](const std::string& what) {
    return std::runtime_error("could not be started: " + what + ": " + std::strerror(errno));
  };
  int sv[2];
  if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) != 0) throw failed("socketpair failed");
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
      throw failed("fcntl failed");
    }
  }
  fcntl(sv[0], F_SETFL, fcntl(sv[0], F_GETFL) | O_NONBLOCK);
  // A fresh ring for every process: positions 0, and nothing a dead predecessor could still touch.
  s.use_ring = options_.shared_memory && s.ring.create();
  if (options_.shared_memory && !s.use_ring)
    log_(WM_LOG_INFO, "worker " + std::to_string(setup.index) + ": no shared ring (" + std::strerror(errno) +
                          "); its bytes go through the socket");

  std::vector<std::string> env = env_base_;
  const std::vector<std::string> own = core_environment(options_.services, id, options_.n_workers);
  if (!own.empty()) {
    // The core's values replace the host's of the same names.
    auto same_name = [](const std::string& a, const std::string& b) {
      return a.compare(0, a.find('=') + 1, b, 0, b.find('=') + 1) == 0;
    };
    env.erase(std::remove_if(env.begin(), env.end(),
                             [&](const std::string& e) {
                               return std::any_of(own.begin(), own.end(),
                                                  [&](const std::string& o) { return same_name(e, o); });
                             }),
              env.end());
    env.insert(env.end(), own.begin(), own.end());
  }
  env.push_back(std::string(WM_ENV_WORKER_ARG "=fd=") + std::to_string(kChannelFd) + ",ppid=" +
                std::to_string(getpid()) + ",shm=" + (options_.shared_memory ? "1" : "0") +
                ",ring=" + std::to_string(s.use_ring ? kRingFd : -1));
  env.push_back(std::string(WM_ENV_PROCESS_INDEX "=") + std::to_string(setup.index));
  if (setup.seed != 0) env.push_back(std::string(WM_ENV_PROCESS_SEED "=") + std::to_string(setup.seed));
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
    throw std::runtime_error("could not be started (" + program + "): " + std::strerror(rc));
  }
  s.pid = pid;
  s.fd = sv[0];
  s.pidfd = pidfd_open_compat(pid);
  s.alive = true;
  s.want_write = s.term_sent = s.kill_sent = false;
  s.out.size = s.out_off = 0;
  s.keep_mib = setup.keep_memory_mib;
  s.ring_error.clear();
  s.ring_error_sent = false;
  if (s.use_ring) {
    s.to_ring.attach(s.ring.control(RingFile::to_worker), s.ring.bytes(RingFile::to_worker));
    s.from_ring.attach(s.ring.control(RingFile::from_worker), s.ring.bytes(RingFile::from_worker));
  }
}

// ---------------------------------------------------------------- sending

Buffer& LocalProcesses::outbox(WorkerId id) { return slots_.at(id)->out; }

void LocalProcesses::flush(WorkerId id) { write_out(*slots_.at(id)); }

bool LocalProcesses::closing(WorkerId id) const {
  const Slot& s = *slots_.at(id);
  return s.alive && s.fd < 0;
}

wm_byte_buffer* LocalProcesses::lend_request(WorkerId id, std::size_t size) {
  Slot& s = *slots_.at(id);
  if (!options_.shared_memory || s.fd < 0 || !s.to_worker.reserve(size)) return nullptr;
  s.writer = RegionWriter(s.to_worker);
  return &s.writer;
}

const char* LocalProcesses::lent_reply(WorkerId id, std::size_t size) { return slots_.at(id)->from_worker.view(size); }

void LocalProcesses::write_out(Slot& s) {
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
    if (wrote && s.to_ring.consumer_needs_wake() && s.fd >= 0)
      [[maybe_unused]] ssize_t r = send(s.fd, &kDoorbellByte, 1, MSG_NOSIGNAL | MSG_DONTWAIT);
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
  }
  s.want_write = false;
  s.out.size = s.out_off = 0;
}

void LocalProcesses::stop_worker(WorkerId id) {
  Slot& s = *slots_.at(id);
  if (!s.alive) return;
  // No more bytes either way; SIGTERM now, SIGKILL after the grace (housekeeping).
  close_channel(s);
  if (!s.term_sent) {
    kill(s.pid, SIGTERM);
    s.term_sent = true;
    s.term_at = Clock::now();
  }
}

void LocalProcesses::close_channel(Slot& s) {
  if (s.fd < 0) return;
  close(s.fd);
  s.fd = -1;
  s.want_write = false;
  s.eof_at = Clock::now();
}

void LocalProcesses::idle(WorkerId id) {
  Slot& s = *slots_.at(id);
  if (s.out.size == 0 && s.out.capacity >= Buffer::kHuge) s.out.release();
  // The regions stay mapped, warm, while they fit in the memory a worker keeps: mapping them
  // afresh costs a page fault per 4 KiB page on each side again (0.1-0.2 s for 64 MiB on the VMs
  // measured). Larger ones go back (the engine calls this only while nothing is in them).
  if (s.to_worker.capacity() + s.from_worker.capacity() > (static_cast<std::size_t>(s.keep_mib) << 20)) {
    s.to_worker.release();
    s.from_worker.release();
  }
}

// ---------------------------------------------------------------- receiving

void LocalProcesses::read_worker(WorkerId id, Slot& s, bool drain, int& events) {
  if (s.use_ring) {
    // The doorbell bytes are dropped: the rings are looked at anyway.
    const Doorbells bells = s.fd >= 0 ? take_doorbells(s.fd) : Doorbells::taken;
    if (bells == Doorbells::foreign) {
      ++events;
      return host_->broken(id, "bytes that are not a doorbell came on its socket");
    }
    const bool eof = bells == Doorbells::end;
    // End of file or reset: the worker wrote its ring before it ended, so that is read first.
    bool corrupt = false;
    for (int round = 0; s.fd >= 0 && (eof || drain) && round < 1024 && s.from_ring.available(corrupt) != 0; ++round)
      read_ring(id, s, events);
    if (corrupt) read_ring(id, s, events);  // reports it
    if (eof) close_channel(s);
    return;
  }
  for (int round = 0; s.fd >= 0 && (drain || round < 64); ++round) {
    auto [p, cap] = host_->inbox(id).space();
    const ssize_t r = recv(s.fd, p, cap, MSG_DONTWAIT);
    if (r > 0) {
      host_->inbox(id).produced(static_cast<std::size_t>(r));
      ++events;
      host_->arrived(id);
      if (!drain && static_cast<std::size_t>(r) < cap) return;
      continue;
    }
    if (r < 0 && errno == EINTR) continue;
    if (r < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) return;
    close_channel(s);  // end of file or reset: the worker is exiting; its pidfd says when it is gone
    return;
  }
}

// Bytes the worker put in its ring (memory reads only). True if bytes came.
bool LocalProcesses::read_ring(WorkerId id, Slot& s, int& events) {
  bool any = false;
  for (int round = 0; s.fd >= 0 && s.ring_error.empty() && round < 64; ++round) {
    bool corrupt = false;
    const std::size_t avail = s.from_ring.available(corrupt);
    if (corrupt) s.ring_error = "its ring to the master holds an impossible write position";
    if (avail == 0) break;
    Inbox& in = host_->inbox(id);
    auto [p, cap] = in.space();
    const std::size_t n = std::min(avail, cap);
    s.from_ring.read(p, n);
    in.produced(n);
    any = true;
    ++events;
    host_->arrived(id);
  }
  if (any && s.fd >= 0 && s.from_ring.producer_needs_wake())
    [[maybe_unused]] ssize_t r = send(s.fd, &kDoorbellByte, 1, MSG_NOSIGNAL | MSG_DONTWAIT);
  if (!s.ring_error.empty() && !s.ring_error_sent && s.fd >= 0) {
    s.ring_error_sent = true;
    ++events;
    host_->broken(id, s.ring_error);
  }
  return any;
}

void LocalProcesses::reap(WorkerId id, Slot& s, bool wait, int& events) {
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

void LocalProcesses::lost(WorkerId id, Slot& s, const std::string& status, int& events) {
  close_channel(s);
  if (s.pidfd >= 0) {
    close(s.pidfd);
    s.pidfd = -1;
  }
  s.alive = false;
  s.out.size = s.out_off = 0;
  ++events;
  host_->worker_lost(id, status);
}

void LocalProcesses::housekeeping(Clock::time_point now, int& events) {
  for (WorkerId id = 0; id < slots_.size(); ++id) {
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
}

int LocalProcesses::internal_timeout_ms(Clock::time_point now) const {
  auto next = Clock::time_point::max();
  for (const auto& sp : slots_) {
    const Slot& s = *sp;
    if (!s.alive) continue;
    if (s.fd < 0 && !s.term_sent && !s.kill_sent) next = std::min(next, s.eof_at + kReapGrace);
    if (s.term_sent && !s.kill_sent) next = std::min(next, s.term_at + kReapGrace);
    if (s.pidfd < 0 && s.fd < 0) next = std::min(next, now + std::chrono::milliseconds(1));
  }
  if (next == Clock::time_point::max()) return -1;
  if (next <= now) return 0;
  return static_cast<int>(std::chrono::duration_cast<std::chrono::milliseconds>(next - now).count() + 1);
}

// Every ring: the worker's bytes, and room for what waits to go. True if bytes came; all_rings is
// cleared if a live slot has no ring.
bool LocalProcesses::scan_rings(int& events, bool& all_rings) {
  bool any = false;
  for (WorkerId id = 0; id < slots_.size(); ++id) {
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

int LocalProcesses::progress(int timeout_ms) {
  int events = 0;
  const auto now = Clock::now();
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
  std::vector<std::pair<WorkerId, bool>>& owners = owners_;  // slot, is-pidfd
  fds.clear();
  owners.clear();
  fds.push_back(pollfd{doorbell_->fd(), POLLIN, 0});
  owners.emplace_back(0, false);
  for (int fd : extra_fds_) {
    fds.push_back(pollfd{fd, POLLIN, 0});
    owners.emplace_back(0, false);
  }
  const std::size_t first_slot_entry = fds.size();
  for (WorkerId id = 0; id < slots_.size(); ++id) {
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
    if (fds[0].revents != 0) doorbell_->drain();
    for (std::size_t i = first_slot_entry; i < fds.size(); ++i) {
      if (fds[i].revents == 0) continue;
      const WorkerId id = owners[i].first;
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

void LocalProcesses::wake() {
  if (doorbell_) doorbell_->ring();
}

// ---------------------------------------------------------------- the worker's side

namespace {

// WM_WORKER_ARG of a worker LocalProcesses started: "fd=3,ppid=123,shm=1,ring=6" (ring=-1: no
// ring), every key once, every value a whole number. Anything else means this process was not
// started by LocalProcesses, which is an error that says so.
std::map<std::string, long long> parse_worker_arg(const std::string& text, const char* backend) {
  static const char* const keys[] = {"fd", "ppid", "shm", "ring"};
  auto refuse = [&](const std::string& why) {
    return std::runtime_error(std::string(backend) + " worker: " WM_ENV_WORKER_ARG "='" + text + "' " + why +
                              " (this process is meant to be started by the " + backend + " work manager)");
  };
  std::map<std::string, long long> out;
  std::size_t at = 0;
  while (at <= text.size() && !text.empty()) {
    const std::size_t end = std::min(text.find(',', at), text.size());
    const std::string item = text.substr(at, end - at);
    const std::size_t eq = item.find('=');
    if (eq == std::string::npos) throw refuse("has an item without '=': '" + item + "'");
    const std::string key = item.substr(0, eq), value = item.substr(eq + 1);
    char* stop = nullptr;
    errno = 0;
    const long long v = std::strtoll(value.c_str(), &stop, 10);
    if (value.empty() || *stop != '\0' || errno == ERANGE) throw refuse("has a value that is not a whole number: '" + item + "'");
    if (std::find(std::begin(keys), std::end(keys), key) == std::end(keys)) throw refuse("has an unknown key '" + key + "'");
    if (!out.emplace(key, v).second) throw refuse("gives '" + key + "' twice");
    at = end + 1;
  }
  for (const char* k : keys)
    if (!out.count(k)) throw refuse(std::string("lacks '") + k + "'");
  return out;
}

/** Sends all of iov (blocking socket); false on error (peer gone). Never raises SIGPIPE. */
bool send_all(int fd, iovec* iov, int n) {
  while (n > 0) {
    msghdr m{};
    m.msg_iov = iov;
    m.msg_iovlen = static_cast<std::size_t>(n);
    const ssize_t w = sendmsg(fd, &m, MSG_NOSIGNAL);
    if (w < 0) {
      if (errno == EINTR) continue;
      return false;
    }
    auto left = static_cast<std::size_t>(w);
    while (n > 0 && left >= iov->iov_len) {
      left -= iov->iov_len;
      ++iov;
      --n;
    }
    if (n > 0) {
      iov->iov_base = static_cast<char*>(iov->iov_base) + left;
      iov->iov_len -= left;
    }
  }
  return true;
}

class LocalProcessPort final : public Port {
 public:
  LocalProcessPort(int fd, bool shm, int ring_fd) : fd_(fd) {
    if (shm) {
      to_worker_.adopt(kToWorkerFd);
      from_worker_.adopt(kFromWorkerFd);
    }
    if (ring_fd >= 0) {
      // The master reads our bytes from the ring only: without it there is no talking to it.
      if (!ring_.adopt(ring_fd))
        throw std::runtime_error("worker: descriptor " + std::to_string(ring_fd) + " is not the ring file");
      in_ring_.attach(ring_.control(RingFile::to_worker), ring_.bytes(RingFile::to_worker));
      out_ring_.attach(ring_.control(RingFile::from_worker), ring_.bytes(RingFile::from_worker));
    }
  }

  Capabilities capabilities() const override {
    Capabilities c;
    c.shared_storage = to_worker_.valid();
    return c;
  }
  void start(PortHost& host) override { host_ = &host; }
  int progress(int timeout_ms) override;
  Buffer& outbox() override { return out_; }
  bool flush() override {
    if (broken_) return false;
    if (out_.size == 0) return true;
    iovec iov{out_.data, out_.size};
    return send_out(&iov, 1);
  }
  bool write(const char* data, std::size_t size) override {
    if (broken_) return false;
    iovec iov[2] = {{out_.data, out_.size}, {const_cast<char*>(data), size}};
    return send_out(iov, 2);
  }
  const char* lent_request(std::size_t size) override { return to_worker_.view(size); }
  bool lend_reply(std::size_t size, char*& data, std::size_t& capacity) override {
    if (!from_worker_.reserve(size)) return false;
    data = from_worker_.data();
    capacity = from_worker_.capacity();
    return true;
  }

 private:
  bool send_out(iovec* iov, int n) {
    const bool ok = out_ring_.attached() ? ring_send(iov, n) : send_all(fd_, iov, n);
    out_.size = 0;
    if (!ok) broken_ = true;
    return ok;
  }
  void doorbell() { [[maybe_unused]] ssize_t r = send(fd_, &kDoorbellByte, 1, MSG_NOSIGNAL | MSG_DONTWAIT); }
  bool take_doorbells(std::string& why);
  bool wait_for_room();
  bool ring_send(const iovec* iov, int n);
  int deliver(bool& eof, std::string& why);

  int fd_;
  PortHost* host_ = nullptr;
  Buffer out_;
  SharedRegion to_worker_, from_worker_;
  RingFile ring_;
  RingReader in_ring_;   // bytes from the master, when ring_ is mapped
  RingWriter out_ring_;  // bytes to the master
  bool eof_seen_ = false;  // the master closed its sending side (acted on once in_ring_ is empty)
  bool broken_ = false, closed_ = false;
};

// Reads what waits on the socket: doorbell bytes (dropped) and end of file (eof_seen_). False if
// the master sent anything else (why says so).
bool LocalProcessPort::take_doorbells(std::string& why) {
  switch (remote::take_doorbells(fd_)) {
    case Doorbells::foreign:
      why = "bytes that are not a doorbell came on the socket";
      return false;
    case Doorbells::end:
      eof_seen_ = true;  // end of file, or the connection is gone
      return true;
    case Doorbells::taken:
      return true;
  }
  return true;
}

// The ring is full: sleeps until the master has made room. False if the master is gone.
bool LocalProcessPort::wait_for_room() {
  for (;;) {
    bool corrupt = false;
    if (out_ring_.free_bytes(corrupt) != 0 || corrupt) return !corrupt;
    // After end of file the master cannot ring any more: look again every millisecond, until it
    // reads or closes (POLLHUP: gone).
    pollfd pfd{fd_, static_cast<short>(eof_seen_ ? 0 : POLLIN), 0};
    const int n = poll(&pfd, 1, eof_seen_ ? 1 : -1);
    if (n < 0 && errno != EINTR) return false;
    if (n <= 0) continue;
    if (pfd.revents & (POLLHUP | POLLERR | POLLNVAL)) return false;
    std::string why;
    if ((pfd.revents & POLLIN) && !take_doorbells(why)) return false;
  }
}

// Writes all of iov into the ring to the master, waiting for room when it is full.
bool LocalProcessPort::ring_send(const iovec* iov, int n) {
  for (int i = 0; i < n; ++i) {
    const char* p = static_cast<const char*>(iov[i].iov_base);
    std::size_t left = iov[i].iov_len;
    while (left > 0) {
      bool corrupt = false;
      const std::size_t w = out_ring_.write(p, left, corrupt);
      if (corrupt) return false;
      p += w;
      left -= w;
      if (left == 0 || out_ring_.announce_wait(corrupt)) continue;
      // Full: the master must hear of what is there before we wait for it to make room.
      if (out_ring_.consumer_needs_wake()) doorbell();
      const bool ok = wait_for_room();
      out_ring_.wait_done();
      if (!ok) return false;
    }
  }
  if (out_ring_.consumer_needs_wake()) doorbell();
  return true;
}

// Hands over what arrived, without waiting: 1 if bytes came; eof set at the end (why: what was
// wrong, if it was not a plain end).
int LocalProcessPort::deliver(bool& eof, std::string& why) {
  Inbox& in = host_->inbox();
  if (in_ring_.attached()) {
    bool corrupt = false;
    const std::size_t avail = in_ring_.available(corrupt);
    if (avail != 0) {
      auto [p, cap] = in.space();
      const std::size_t n = std::min(avail, cap);
      in_ring_.read(p, n);
      in.produced(n);
      if (in_ring_.producer_needs_wake()) doorbell();
      host_->arrived();
      return 1;
    }
    if (corrupt) why = "the ring from the master holds an impossible write position";
    eof = corrupt || eof_seen_;  // the master wrote its ring before it closed: all read by now
    return 0;
  }
  for (;;) {
    auto [p, cap] = in.space();
    const ssize_t r = recv(fd_, p, cap, MSG_DONTWAIT);
    if (r > 0) {
      in.produced(static_cast<std::size_t>(r));
      host_->arrived();
      return 1;
    }
    if (r < 0 && errno == EINTR) continue;
    eof = r == 0 || (errno != EAGAIN && errno != EWOULDBLOCK);
    return 0;
  }
}

int LocalProcessPort::progress(int timeout_ms) {
  if (closed_) return 0;
  const bool ring = in_ring_.attached();
  bool eof = false;
  std::string why;
  for (;;) {
    if (deliver(eof, why) > 0) return 1;
    if (eof) break;
    if (timeout_ms == 0) return 0;
    // The master rings the doorbell only if it sees us sleeping: say so, then look once more.
    if (ring && in_ring_.announce_sleep()) {
      in_ring_.sleep_done();
      continue;
    }
    pollfd pfd{fd_, POLLIN, 0};
    const int n = poll(&pfd, 1, timeout_ms);
    if (ring) in_ring_.sleep_done();
    if (n < 0 && errno != EINTR) {
      eof = true;
      break;
    }
    if (ring && n > 0 && !take_doorbells(why)) {
      eof = true;
      break;
    }
    if (n == 0) return 0;  // timed out
    timeout_ms = 0;        // something came: deliver it, or see the end
  }
  closed_ = true;
  host_->closed(why);
  return 1;
}

}  // namespace

std::unique_ptr<Port> local_process_port(const std::string& worker_arg, const char* backend_name) {
  const auto arg = parse_worker_arg(worker_arg, backend_name);
  // Die with the master, even if it is SIGKILLed; the check closes the race with a master that
  // died before the prctl.
  prctl(PR_SET_PDEATHSIG, SIGKILL);
  if (getppid() != static_cast<pid_t>(arg.at("ppid"))) _exit(0);
  // Ctrl-C in a terminal reaches the whole process group; the master decides what happens. The
  // master started us with SIGINT blocked, so there was no window before this line.
  signal(SIGINT, SIG_IGN);
  sigset_t set;
  sigemptyset(&set);
  sigaddset(&set, SIGINT);
  sigprocmask(SIG_UNBLOCK, &set, nullptr);
  const int fd = static_cast<int>(arg.at("fd"));
  const bool shm = arg.at("shm") != 0;
  const int ring = static_cast<int>(arg.at("ring"));
  set_cloexec(fd);  // programs a task starts must not hold our channel open
  if (shm) {
    set_cloexec(kToWorkerFd);
    set_cloexec(kFromWorkerFd);
  }
  if (ring >= 0) set_cloexec(ring);
  return std::make_unique<LocalProcessPort>(fd, shm, ring);
}

}  // namespace wm::sdk::remote
