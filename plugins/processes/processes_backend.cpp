// processes_backend.cpp: the "processes" backend: worker processes of the host program, started
// with posix_spawn (safe in a threaded host), fed encoded tasks over one Unix socket each by a
// single master I/O thread. Survives worker death (fail or retry, then replace the worker), never
// hangs on it, never leaves a process behind. See README.md beside this file.
#include "frames.hpp"
#include "shared_region.hpp"

#include <wm/sdk/backend.hpp>

#include <fcntl.h>
#include <malloc.h>
#include <poll.h>
#include <sched.h>
#include <signal.h>
#include <spawn.h>
#include <sys/eventfd.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cmath>
#include <condition_variable>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <deque>
#include <memory>
#include <mutex>
#include <random>
#include <string>
#include <thread>
#include <vector>

extern char** environ;

namespace {

using namespace wm_processes;
using Clock = std::chrono::steady_clock;

constexpr int kChannelFd = 3;               // the worker's end of its socket, in the worker
constexpr int kToWorkerFd = 4;              // the shared regions, in the worker
constexpr int kFromWorkerFd = 5;
constexpr std::size_t kShmMin = std::size_t(1) << 20;  // payloads this big go through shared memory
constexpr int kMaxEarlyDeaths = 3;          // deaths before "ready" after which a slot gives up
constexpr auto kReapGrace = std::chrono::milliseconds(500);  // EOF -> exit, SIGTERM -> SIGKILL
constexpr auto kIdleRelease = std::chrono::seconds(2);       // drop large buffers after idling this long
constexpr auto kStartupLimit = std::chrono::seconds(60);
constexpr std::size_t kDirectReply = FrameReader::kSmallLimit;  // reply parts this big skip the batch
constexpr std::size_t kFlushBytes = 256u << 10;
constexpr int kSocketBuffer = 4 << 20;

const char* const kOwnVariables[] = {"WM_WORKER_BACKEND=", "WM_WORKER_ARG=", "WM_PROCESS_INDEX=",
                                     "WM_PROCESS_SEED=", "WM_TASK_LIBRARIES="};

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

std::string seconds_text(double s) {
  char buf[64];
  std::snprintf(buf, sizeof buf, "%g s", s);
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
  int flags = fcntl(fd, F_GETFD);
  if (flags >= 0) fcntl(fd, F_SETFD, flags | FD_CLOEXEC);
}

struct Job {
  wm_task* task;
  std::size_t size;        // of the encoded request
  std::uint64_t seq;
  std::uint32_t attempts;  // runs lost to a worker death so far
};

struct Entry {
  Job job;
  FrameHeader header;
  const char* payload;      // kFrameTask: the bytes after the header (the core's encoded request)
  std::size_t wire;         // bytes after the header on the socket
  std::uint64_t region_len; // kFrameTaskShm: the request's length in the region (the frame's payload)
  Clock::time_point sent_at;
  const char* wire_bytes() const {
    return header.type == kFrameTaskShm ? reinterpret_cast<const char*>(&region_len) : payload;
  }
};

enum class KillReason { none, timeout, protocol, shutdown };

// One worker slot: a stable WM_PROCESS_INDEX and the process currently serving it.
struct Slot {
  int index = 0;
  pid_t pid = -1;
  int fd = -1;     // master end of the socket (nonblocking); -1 once closed
  int pidfd = -1;  // readable when the process exits
  bool alive = false;  // a process exists and is not reaped yet
  bool hello = false;
  bool half_closed = false;
  bool disabled = false;
  bool want_write = false;
  bool term_sent = false;
  bool kill_sent = false;
  int early_deaths = 0;
  std::uint64_t seed = 0;
  std::deque<Entry> inflight;     // sent or being sent, in order; replies pop the front
  std::size_t send_idx = 0;       // entries [0, send_idx) are fully sent
  std::size_t send_off = 0;       // bytes of inflight[send_idx] sent
  FrameReader reader;
  // Shared regions with the worker. One request at a time may sit in to_worker (until its reply
  // comes), and one task at a time holds the right to put its reply in from_worker.
  SharedRegion to_worker, from_worker;
  std::uint16_t generation = 0;
  bool request_in_region = false, reply_token_out = false;
  std::uint64_t request_seq = 0, reply_token_seq = 0;
  Clock::time_point last_reply{}, eof_at{}, term_at{};
  double avg_us = 1000.0;  // smoothed service time per task
  std::size_t window = 1;  // tasks allowed in flight on this worker
  KillReason kill_reason = KillReason::none;
  std::string kill_note;
  std::string last_status;

  bool usable() const { return fd >= 0 && !half_closed && kill_reason == KillReason::none; }
};

class ProcessesBackend final : public wm::sdk::Backend {
 public:
  ProcessesBackend(const wm_core_services* s, const wm_backend_config* c, const char* name)
      : Backend(s, c, name) {
    if (worker_role()) {
      init_worker();
      return;
    }
    n_ = requested_workers();
    if (n_ == 0) n_ = std::max(1u, std::thread::hardware_concurrency());
    spin_us_ = static_cast<int>(option_int("spin-us"));
    retries_ = static_cast<std::uint32_t>(option_int("retries"));
    task_timeout_ = option_double("task-timeout");
    shutdown_timeout_ = option_double("shutdown-timeout");
    max_window_ = static_cast<std::size_t>(option_int("max-window"));
    keep_mib_ = static_cast<long>(option_int("worker-keep-memory"));
    shm_ = option_bool("shared-memory");
  }

  ~ProcessesBackend() override {
    if (worker_role()) return;
    request_stop(0.0);
    join_io();
    if (doorbell_ >= 0) close(doorbell_);
  }

 protected:
  // ------------------------------------------------------------------ master: lifecycle
  void do_startup() override {
    if (worker_role()) return;
    const char* host = config().host_program;
    if (host == nullptr || *host == '\0')
      throw std::runtime_error("cannot start worker processes: the path of the host program is unknown");
    snapshot_environment();
    doorbell_ = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
    if (doorbell_ < 0) throw std::runtime_error(std::string("eventfd failed: ") + std::strerror(errno));
    slots_.clear();
    for (unsigned i = 0; i < n_; ++i) {
      slots_.push_back(std::make_unique<Slot>());
      Slot& s = *slots_.back();
      s.index = static_cast<int>(i);
      if (shm_ && !(s.to_worker.create("wm-processes-to-worker") && s.from_worker.create("wm-processes-from-worker"))) {
        log(WM_LOG_INFO, std::string("no shared memory (memfd_create: ") + std::strerror(errno) +
                             "); large payloads go through the sockets");
        shm_ = false;
      }
    }
    std::unique_lock<std::mutex> lock(mutex_);
    if (stop_requested_) throw std::runtime_error("the processes work manager was shut down");
    io_started_ = true;
    io_ = std::thread([this] { io_main(); });
    io_id_ = io_.get_id();
    const bool ready = cv_.wait_for(lock, kStartupLimit, [this] { return startup_done_ || io_finished_; });
    std::string error = startup_error_;
    if (!ready) error = "the worker processes did not report ready within 60 s";
    if (error.empty()) return;
    lock.unlock();
    request_stop(0.0);
    join_io();
    lock.lock();
    // Leave the backend restartable: startup() may be tried again.
    io_started_ = false;
    io_finished_ = false;
    stop_requested_ = false;
    stop_flag_.store(false);
    startup_done_ = false;
    startup_error_.clear();
    dead_reason_.clear();
    stopping_ = false;
    startup_done_seen_ = false;
    ready_.clear();
    close(doorbell_);
    doorbell_ = -1;
    throw std::runtime_error(error);
  }

  void do_shutdown() override {
    if (worker_role()) return;
    request_stop(shutdown_timeout_);
    std::thread::id io_id;
    {
      std::lock_guard<std::mutex> lock(mutex_);
      io_id = io_id_;
    }
    // From a done-callback on the I/O thread: it finishes by itself; the destructor joins it.
    if (std::this_thread::get_id() == io_id) return;
    join_io();
  }

  void do_submit(wm_task* const* tasks, std::size_t n) override {
    if (worker_role()) throw std::runtime_error("a processes worker does not accept tasks");
    std::vector<Job> jobs;
    jobs.reserve(n);
    for (std::size_t i = 0; i < n; ++i) {
      // Throws for tasks that cannot travel. The bytes are taken when the task is sent: a large
      // request is then encoded straight into the worker's shared region.
      const std::size_t size = encoded_size(tasks[i]);
      jobs.push_back(Job{tasks[i], size, services().task_sequence(tasks[i]), 0});
    }
    {
      std::lock_guard<std::mutex> lock(mutex_);
      if (stop_requested_) throw std::runtime_error("the processes work manager is shut down");
      if (!dead_reason_.empty()) throw std::runtime_error(dead_reason_);
      if (queue_.empty()) {
        queue_.swap(jobs);
      } else {
        queue_.insert(queue_.end(), jobs.begin(), jobs.end());
      }
      queued_.store(queue_.size(), std::memory_order_seq_cst);
    }
    if (io_sleeping_.load(std::memory_order_seq_cst)) ring();
  }

  bool do_is_master() const override { return !worker_role(); }
  unsigned do_n_workers() const override { return n_; }

  // ------------------------------------------------------------------ worker role
  void do_run() override {
    if (!worker_role()) return;
    services().set_worker_index(index_);
    FrameHeader hello = make_header(kFrameHello, static_cast<std::uint64_t>(getpid()), 0);
    iovec iov{&hello, sizeof hello};
    if (!send_all(fd_, &iov, 1)) return;
    for (;;) {
      FrameHeader h;
      const char* data = nullptr;
      std::string why;
      const FrameReader::Status st = reader_.next(h, data, why);
      if (st == FrameReader::Status::need_more) {
        if (!flush_out()) return;
        if (!fill()) return;  // end of file: the master asked us to stop, or is gone
        continue;
      }
      if (st == FrameReader::Status::frame && h.type == kFrameTaskShm) {
        std::uint64_t len = 0;
        data = region_length(h, data, len)
                   ? to_worker_.view(static_cast<std::size_t>(len), h.flags & kFlagGenerationMask)
                   : nullptr;
        if (data == nullptr) why = "a request longer than the shared region";
        h.len = len;
      }
      if (st == FrameReader::Status::bad || (h.type != kFrameTask && h.type != kFrameTaskShm) || data == nullptr) {
        log(WM_LOG_ERROR, "worker " + std::to_string(index_) + ": the master sent bytes that are not a task " +
                              "frame (" + (why.empty() ? "unexpected frame type" : why) + "); exiting");
        return;
      }
      run_task(h, data, static_cast<std::size_t>(h.len));
      reader_.consume();
      if (broken_) return;
      if (out_.size() >= kFlushBytes && !flush_out()) return;
    }
  }

 private:
  // ================================================================== worker side
  void init_worker() {
    const char* arg = std::getenv("WM_WORKER_ARG");
    long fd = -1, ppid = -1, spin = 0, keep_mib = 0, shm = 0;
    if (arg == nullptr ||
        std::sscanf(arg, "fd=%ld,ppid=%ld,spin=%ld,keep=%ld,shm=%ld", &fd, &ppid, &spin, &keep_mib, &shm) != 5)
      throw std::runtime_error("processes worker: WM_WORKER_ARG is missing or malformed (this process "
                               "is meant to be started by the processes work manager)");
    // Die with the master, even if it is SIGKILLed; the check closes the race with a master that
    // died before the prctl.
    prctl(PR_SET_PDEATHSIG, SIGKILL);
    if (getppid() != static_cast<pid_t>(ppid)) _exit(0);
    // Ctrl-C in a terminal reaches the whole process group; the master decides what happens.
    // The master started us with SIGINT blocked, so there was no window before this line.
    signal(SIGINT, SIG_IGN);
    sigset_t set;
    sigemptyset(&set);
    sigaddset(&set, SIGINT);
    sigprocmask(SIG_UNBLOCK, &set, nullptr);
    fd_ = static_cast<int>(fd);
    set_cloexec(fd_);  // programs a task starts must not hold our channel open
    if (shm != 0) {
      to_worker_.adopt(kToWorkerFd);
      from_worker_.adopt(kFromWorkerFd);
      set_cloexec(kToWorkerFd);
      set_cloexec(kFromWorkerFd);
    }
    spin_us_ = static_cast<int>(spin);
    if (keep_mib > 0) {
      // Keep freed memory for the next task instead of unmapping it: large arguments and results
      // then reuse warm pages (a fresh page fault costs 20-30 us on the VMs measured, 0.4 s for
      // 64 MiB). Large blocks come from the heap (glibc would mmap them fresh every time).
      mallopt(M_MMAP_MAX, 0);
      mallopt(M_TRIM_THRESHOLD, static_cast<int>(std::min<long>(keep_mib, 2047) << 20));
    }
    if (const char* i = std::getenv("WM_PROCESS_INDEX")) index_ = std::atoi(i);
    if (const char* s = std::getenv("WM_PROCESS_SEED")) {
      const unsigned long long seed = std::strtoull(s, nullptr, 10);
      std::srand(static_cast<unsigned>(seed));
      srandom(static_cast<unsigned>(seed));
      srand48(static_cast<long>(seed));
    }
  }

  // Where a reply is encoded: the worker's own buffer, moved to the shared region from the worker
  // as soon as it grows large, if this task holds the right to use the region.
  struct ReplyBuffer : wm_byte_buffer {
    ProcessesBackend* owner;
    bool may_use_region;
    bool in_region = false;
    std::uint16_t generation;
    ReplyBuffer(ProcessesBackend* o, bool may, std::uint16_t g)
        : wm_byte_buffer{o->reply_.data, 0, o->reply_.capacity, nullptr, &grow}, owner(o), may_use_region(may),
          generation(g) {}
    static int grow(wm_byte_buffer* b, std::size_t need) {
      auto* self = static_cast<ReplyBuffer*>(b);
      SharedRegion& region = self->owner->from_worker_;
      if (self->in_region || (self->may_use_region && need >= kShmMin)) {
        if (region.reserve(need, self->generation)) {
          if (!self->in_region && b->size != 0) std::memcpy(region.data(), b->data, b->size);
          self->in_region = true;
          b->data = region.data();
          b->capacity = region.capacity();
          return 0;
        }
        if (self->in_region) return 1;  // cannot grow the region; the core reports out of memory
      }
      Buffer& own = self->owner->reply_;
      own.size = b->size;
      try {
        own.reserve(need);
      } catch (const std::bad_alloc&) {
        return 1;
      }
      b->data = own.data;
      b->capacity = own.capacity;
      return 0;
    }
  };

  void run_task(const FrameHeader& h, const char* data, std::size_t size) {
    ReplyBuffer reply(this, (h.flags & kFlagReplyInShm) != 0, h.flags & kFlagGenerationMask);
    execute_encoded_into(data, size, reply);
    if (reply.in_region) {
      const std::uint64_t len = reply.size;
      const FrameHeader rh = make_header(kFrameReplyShm, h.seq, sizeof len);
      out_.append(reinterpret_cast<const char*>(&rh), sizeof rh);
      out_.append(reinterpret_cast<const char*>(&len), sizeof len);
    } else if (reply.size < kDirectReply) {
      const FrameHeader rh = make_header(kFrameReply, h.seq, reply.size);
      out_.append(reinterpret_cast<const char*>(&rh), sizeof rh);
      out_.append(reply.data, reply.size);
    } else {
      // A large reply without the region goes out at once, from where it was encoded.
      FrameHeader rh = make_header(kFrameReply, h.seq, reply.size);
      iovec iov[2] = {{&rh, sizeof rh}, {reply.data, reply.size}};
      if (!flush_out() || !send_all(fd_, iov, 2)) broken_ = true;
    }
  }

  bool flush_out() {
    if (out_.empty()) return true;
    iovec iov{out_.data(), out_.size()};
    const bool ok = send_all(fd_, &iov, 1);
    out_.clear();
    if (!ok) broken_ = true;
    return ok;
  }

  // Reads more bytes: at once if there are any, else after a short spin, else asleep in poll().
  bool fill() {
    auto attempt = [this](bool& eof) {
      auto [p, cap] = reader_.space();
      for (;;) {
        ssize_t r = recv(fd_, p, cap, MSG_DONTWAIT);
        if (r > 0) {
          reader_.produced(static_cast<std::size_t>(r));
          return true;
        }
        if (r == 0) {
          eof = true;
          return false;
        }
        if (errno == EINTR) continue;
        if (errno != EAGAIN && errno != EWOULDBLOCK) eof = true;
        return false;
      }
    };
    bool eof = false;
    if (attempt(eof)) return true;
    if (eof) return false;
    if (spin_us_ > 0) {
      const auto until = Clock::now() + std::chrono::microseconds(spin_us_);
      do {
        if (attempt(eof)) return true;
        if (eof) return false;
        sched_yield();  // on a busy machine, let whatever else wants this core run
      } while (Clock::now() < until);
    }
    for (;;) {
      pollfd pfd{fd_, POLLIN, 0};
      const bool big = reader_.holds_big() || reply_.capacity >= Buffer::kHuge;
      const int timeout = big ? static_cast<int>(kIdleRelease.count() * 1000) : -1;
      const int n = poll(&pfd, 1, timeout);
      if (n == 0) {
        reader_.release_big();  // idle: give large buffers back to the system
        reply_.release();
        continue;
      }
      if (n < 0 && errno != EINTR) return false;
      if (attempt(eof)) return true;
      if (eof) return false;
    }
  }

  int fd_ = -1;
  int index_ = -1;
  FrameReader reader_;
  std::string out_;  // replies batched for one write
  Buffer reply_;     // where replies are encoded (kept for the next task; given back when idle)
  SharedRegion to_worker_, from_worker_;
  bool broken_ = false;

  // ================================================================== master side
  void snapshot_environment() {
    env_base_.clear();
    for (char** e = environ; e != nullptr && *e != nullptr; ++e) {
      bool ours = false;
      for (const char* v : kOwnVariables) ours = ours || std::strncmp(*e, v, std::strlen(v)) == 0;
      if (!ours) env_base_.emplace_back(*e);
    }
    env_base_.push_back(std::string("WM_WORKER_BACKEND=") + name());
    std::string libs;
    for (std::size_t i = 0; i < config().n_task_libraries; ++i)
      libs += (libs.empty() ? "" : ":") + std::string(config().task_libraries[i]);
    if (!libs.empty()) env_base_.push_back("WM_TASK_LIBRARIES=" + libs);
  }

  void ring() {
    const std::uint64_t one = 1;
    [[maybe_unused]] ssize_t r = write(doorbell_, &one, sizeof one);
  }

  void request_stop(double timeout_s) {
    {
      std::lock_guard<std::mutex> lock(mutex_);
      const auto deadline =
          Clock::now() + std::chrono::duration_cast<Clock::duration>(std::chrono::duration<double>(timeout_s));
      if (!stop_requested_ || deadline < stop_deadline_) stop_deadline_ = deadline;
      stop_requested_ = true;
      stop_flag_.store(true, std::memory_order_seq_cst);
    }
    if (doorbell_ >= 0) ring();
  }

  void join_io() {
    std::lock_guard<std::mutex> jl(join_mutex_);
    if (!io_.joinable()) return;
    if (std::this_thread::get_id() == io_.get_id()) {
      io_.detach();  // the last reference was dropped by a callback on the I/O thread itself
      return;
    }
    io_.join();
  }

  // Starts the process of a slot. Runs on the I/O thread only: the parent-death signal of a
  // worker follows the thread that started it, and this thread lives until every worker is reaped.
  bool spawn(Slot& s) {
    int sv[2];
    if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) != 0) {
      s.last_status = std::string("socketpair failed: ") + std::strerror(errno);
      return false;
    }
    for (int fd : sv) {
      setsockopt(fd, SOL_SOCKET, SO_SNDBUF, &kSocketBuffer, sizeof kSocketBuffer);
      setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &kSocketBuffer, sizeof kSocketBuffer);
    }
    int child = sv[1];
    if (child < 10) {
      // Keep it clear of 0-2 (a host that closed its stdio must not get the channel as the
      // worker's stdout) and of 3 (dup2 onto itself would keep FD_CLOEXEC).
      child = fcntl(sv[1], F_DUPFD_CLOEXEC, 10);
      close(sv[1]);
      if (child < 0) {
        close(sv[0]);
        s.last_status = std::string("fcntl failed: ") + std::strerror(errno);
        return false;
      }
    }
    fcntl(sv[0], F_SETFL, fcntl(sv[0], F_GETFL) | O_NONBLOCK);

    std::random_device rd;
    s.seed = (std::uint64_t(rd()) << 32) ^ rd();
    std::vector<std::string> env = env_base_;
    env.push_back("WM_WORKER_ARG=fd=" + std::to_string(kChannelFd) + ",ppid=" + std::to_string(getpid()) +
                  ",spin=" + std::to_string(spin_us_) + ",keep=" + std::to_string(keep_mib_) +
                  ",shm=" + (shm_ ? "1" : "0"));
    env.push_back("WM_PROCESS_INDEX=" + std::to_string(s.index));
    env.push_back("WM_PROCESS_SEED=" + std::to_string(s.seed));
    std::vector<char*> envp;
    for (auto& e : env) envp.push_back(e.data());
    envp.push_back(nullptr);
    std::string program = config().host_program;
    char* argv[] = {program.data(), nullptr};

    posix_spawn_file_actions_t fa;
    posix_spawn_file_actions_init(&fa);
    posix_spawn_file_actions_adddup2(&fa, child, kChannelFd);
    if (shm_) {
      posix_spawn_file_actions_adddup2(&fa, s.to_worker.fd(), kToWorkerFd);
      posix_spawn_file_actions_adddup2(&fa, s.from_worker.fd(), kFromWorkerFd);
    }
    posix_spawn_file_actions_addopen(&fa, 0, "/dev/null", O_RDONLY, 0);
#if defined(__GLIBC__) && (__GLIBC__ > 2 || (__GLIBC__ == 2 && __GLIBC_MINOR__ >= 34))
    posix_spawn_file_actions_addclosefrom_np(&fa, kFromWorkerFd + 1);  // no leaked descriptor of the host
#endif
    posix_spawnattr_t attr;
    posix_spawnattr_init(&attr);
    sigset_t mask, defaults;
    sigemptyset(&mask);
    sigaddset(&mask, SIGINT);  // the worker ignores SIGINT; blocked until it has said so
    sigemptyset(&defaults);
    for (int sig : {SIGTERM, SIGPIPE, SIGHUP, SIGCHLD, SIGQUIT, SIGSEGV, SIGABRT, SIGBUS})
      sigaddset(&defaults, sig);
    posix_spawnattr_setsigmask(&attr, &mask);
    posix_spawnattr_setsigdefault(&attr, &defaults);
    posix_spawnattr_setflags(&attr, POSIX_SPAWN_SETSIGMASK | POSIX_SPAWN_SETSIGDEF);
    pid_t pid = -1;
    // /proc/self/exe is this very binary even if the file was replaced or deleted since it
    // started: a worker is never a program of another build. The path is the fallback.
    int rc = posix_spawn(&pid, "/proc/self/exe", &fa, &attr, argv, envp.data());
    if (rc == ENOENT || rc == EACCES) rc = posix_spawn(&pid, program.c_str(), &fa, &attr, argv, envp.data());
    posix_spawn_file_actions_destroy(&fa);
    posix_spawnattr_destroy(&attr);
    close(child);
    if (rc != 0) {
      close(sv[0]);
      s.last_status = "could not start " + program + ": " + std::strerror(rc);
      return false;
    }
    s.pid = pid;
    s.fd = sv[0];
    s.pidfd = pidfd_open_compat(pid);
    s.alive = true;
    s.hello = s.half_closed = s.want_write = s.term_sent = s.kill_sent = false;
    s.kill_reason = KillReason::none;
    s.kill_note.clear();
    s.send_idx = s.send_off = 0;
    s.reader.reset();
    s.request_in_region = s.reply_token_out = false;
    s.last_reply = Clock::now();
    return true;
  }

  void start_slot(Slot& s) {
    if (!spawn(s)) {
      s.disabled = true;
      log(WM_LOG_ERROR, "worker " + std::to_string(s.index) + ": " + s.last_status);
      slot_gave_up();
    }
  }

  void slot_gave_up() {
    for (auto& s : slots_)
      if (!s->disabled) return;
    std::string reason = "no worker process of the processes work manager could be started";
    if (!slots_.empty() && !slots_.back()->last_status.empty())
      reason += ": the last one " + slots_.back()->last_status;
    reason += " (run with WM_LOG_LEVEL=debug and read the workers' standard error; the host program must "
              "call wm::serve_if_worker() or wm::make_work_manager() early in main)";
    {
      std::lock_guard<std::mutex> lock(mutex_);
      dead_reason_ = reason;
    }
    fail_ready(WM_FAIL_BACKEND, reason);
  }

  void check_startup_done() {
    if (startup_done_seen_) return;
    bool done = true;
    bool any = false;
    for (auto& s : slots_) {
      done = done && (s->hello || s->disabled);
      any = any || s->hello;
    }
    if (!done && !stopping_) return;
    startup_done_seen_ = true;
    {
      std::lock_guard<std::mutex> lock(mutex_);
      startup_done_ = true;
      if (!any) startup_error_ = stopping_ ? std::string("the processes work manager was shut down during "
                                                         "startup")
                                           : dead_reason_;
    }
    cv_.notify_all();
  }

  void fail(const Job& j, wm_failure_kind kind, const std::string& message) {
    Backend::fail(j.task, kind, message);
  }
  // A task that was in flight on worker s: its failure record names that worker.
  void fail(const Job& j, const Slot& s, wm_failure_kind kind, const std::string& message,
            std::uint32_t attempts = 1) {
    Backend::fail(j.task, kind, message, s.index, static_cast<std::int64_t>(s.pid), attempts);
  }

  void fail_ready(wm_failure_kind kind, const std::string& message) {
    std::deque<Job> left;
    left.swap(ready_);
    for (const Job& j : left) fail(j, kind, message);
  }

  std::string task_label(const Job& j) const {
    const char* n = services().task_name(j.task);
    return std::string("task '") + (n && *n ? n : "?") + "'";
  }

  std::string worker_label(const Slot& s) const {
    return "worker " + std::to_string(s.index) + " (pid " + std::to_string(s.pid) + ")";
  }

  // Takes submitted jobs and a stop request from the shared queue.
  void take_queue() {
    if (queued_.load(std::memory_order_seq_cst) == 0 && !stop_flag_.load(std::memory_order_seq_cst)) return;
    std::vector<Job> got;
    bool stop;
    Clock::time_point deadline;
    {
      std::lock_guard<std::mutex> lock(mutex_);
      got.swap(queue_);
      queued_.store(0, std::memory_order_relaxed);
      stop = stop_requested_;
      deadline = stop_deadline_;
    }
    if (!got.empty()) last_activity_ = Clock::now();
    ready_.insert(ready_.end(), got.begin(), got.end());
    if (stop) {
      if (!stopping_) begin_stopping();
      stop_deadline_local_ = deadline;  // a second shutdown() may bring it forward
    }
  }

  void begin_stopping() {
    stopping_ = true;
    fail_ready(WM_FAIL_SHUTDOWN, "the processes work manager shut down before this task was sent to a worker");
    for (auto& sp : slots_) {
      Slot& s = *sp;
      const std::size_t keep = s.send_idx + (s.send_off > 0 ? 1 : 0);
      while (s.inflight.size() > keep) {
        Job j = s.inflight.back().job;
        s.inflight.pop_back();
        fail(j, WM_FAIL_SHUTDOWN, "the processes work manager shut down before this task started");
      }
    }
    check_startup_done();
  }

  void dispatch() {
    if (!dead_reason_seen() && !ready_.empty()) {
      for (;;) {
        // While the queue is deep, every worker also gets one task more than its window: it
        // starts that one as soon as it replies, without waiting for the master to wake up and
        // send it. Near the end, no prefetch: the last tasks go to whichever worker is free.
        const std::size_t prefetch = ready_.size() >= slots_.size() ? 1 : 0;
        Slot* best = nullptr;
        for (auto& sp : slots_) {
          Slot& s = *sp;
          if (!s.usable() || s.inflight.size() >= s.window + prefetch) continue;
          if (best == nullptr || s.inflight.size() < best->inflight.size()) best = &s;
        }
        if (best == nullptr || ready_.empty()) break;
        // Hand out a share: never more than the window, and near the end of the queue not more
        // than a fair part of it, so no worker sits on a backlog while another idles.
        std::size_t room = best->window + prefetch - best->inflight.size();
        std::size_t share = std::max<std::size_t>(1, ready_.size() / slots_.size());
        std::size_t take = std::min({room, share, ready_.size()});
        for (std::size_t k = 0; k < take; ++k) {
          const Job j = ready_.front();
          ready_.pop_front();
          send_later(*best, j);
        }
      }
    }
    for (auto& sp : slots_)
      if (sp->fd >= 0 && sp->send_idx < sp->inflight.size()) flush_writes(*sp);
  }

  // A wm_byte_buffer over a slot's region to the worker: encode_into writes a request straight there.
  struct RegionBuffer : wm_byte_buffer {
    SharedRegion* region;
    std::uint16_t generation;
    RegionBuffer(SharedRegion& r, std::uint16_t g) : wm_byte_buffer{r.data(), 0, r.capacity(), nullptr, &grow}, region(&r), generation(g) {}
    static int grow(wm_byte_buffer* b, std::size_t need) {
      auto* self = static_cast<RegionBuffer*>(b);
      if (!self->region->reserve(need, self->generation)) return 1;
      b->data = self->region->data();
      b->capacity = self->region->capacity();
      return 0;
    }
  };

  // Queues job j on slot s: a large request goes into the slot's shared region (encoded straight
  // there) when the region is free, any other as the core's encoded bytes behind a frame header.
  void send_later(Slot& s, Job j) {
    Entry e{j, {}, nullptr, 0, 0, {}};
    bool in_region = false;
    if (shm_ && j.size >= kShmMin && !s.request_in_region && s.to_worker.reserve(j.size, s.generation)) {
      RegionBuffer buf(s.to_worker, s.generation);
      try {
        encode_into(j.task, buf);
        in_region = true;
        e.header = make_header(kFrameTaskShm, j.seq, sizeof e.region_len);
        e.region_len = buf.size;
        e.wire = sizeof e.region_len;
        s.request_in_region = true;
        s.request_seq = j.seq;
      } catch (const std::exception& ex) {
        log(WM_LOG_DEBUG, task_label(j) + ": shared memory refused (" + ex.what() + "); using the socket");
      }
    }
    if (!in_region) {
      try {
        const auto [data, size] = encode(j.task);
        e.payload = static_cast<const char*>(data);
        e.wire = size;
        e.header = make_header(kFrameTask, j.seq, size);
      } catch (const std::exception& ex) {
        fail(j, WM_FAIL_BACKEND, task_label(j) + " could not be encoded when it was sent: " + ex.what());
        return;
      }
    }
    e.header.flags = s.generation & kFlagGenerationMask;
    if (shm_ && !s.reply_token_out) {
      e.header.flags |= kFlagReplyInShm;
      s.reply_token_out = true;
      s.reply_token_seq = j.seq;
    }
    s.inflight.push_back(e);
  }

  bool dead_reason_seen() {
    for (auto& s : slots_)
      if (!s->disabled) return false;
    if (!ready_.empty()) {
      std::string reason;
      {
        std::lock_guard<std::mutex> lock(mutex_);
        reason = dead_reason_;
      }
      fail_ready(WM_FAIL_BACKEND, reason);
    }
    return true;
  }

  void flush_writes(Slot& s) {
    constexpr int kMaxIov = 1024;
    iovec iov[kMaxIov];
    while (s.send_idx < s.inflight.size()) {
      int n = 0;
      std::size_t off = s.send_off;
      for (std::size_t i = s.send_idx; i < s.inflight.size() && n + 2 <= kMaxIov; ++i) {
        Entry& e = s.inflight[i];
        if (off < sizeof(FrameHeader)) {
          iov[n++] = {reinterpret_cast<char*>(&e.header) + off, sizeof(FrameHeader) - off};
          if (e.wire != 0) iov[n++] = {const_cast<char*>(e.wire_bytes()), e.wire};
        } else {
          iov[n++] = {const_cast<char*>(e.wire_bytes()) + (off - sizeof(FrameHeader)),
                      e.wire - (off - sizeof(FrameHeader))};
        }
        off = 0;
      }
      msghdr m{};
      m.msg_iov = iov;
      m.msg_iovlen = static_cast<std::size_t>(n);
      ssize_t w = sendmsg(s.fd, &m, MSG_NOSIGNAL | MSG_DONTWAIT);
      if (w < 0) {
        if (errno == EINTR) continue;
        // EAGAIN: wait for room. Anything else: the worker is gone; its exit is handled on EOF.
        s.want_write = (errno == EAGAIN || errno == EWOULDBLOCK);
        return;
      }
      last_activity_ = Clock::now();
      std::size_t left = static_cast<std::size_t>(w);
      while (left > 0) {
        Entry& e = s.inflight[s.send_idx];
        const std::size_t rest = sizeof(FrameHeader) + e.wire - s.send_off;
        if (left >= rest) {
          left -= rest;
          e.sent_at = last_activity_;
          ++s.send_idx;
          s.send_off = 0;
        } else {
          s.send_off += left;
          left = 0;
        }
      }
    }
    s.want_write = false;
  }

  // Reads what the worker sent; false if the slot's socket was closed (EOF or protocol error).
  void read_worker(Slot& s, bool drain) {
    for (int round = 0; s.fd >= 0 && (drain || round < 64); ++round) {
      auto [p, cap] = s.reader.space();
      ssize_t r = recv(s.fd, p, cap, MSG_DONTWAIT);
      if (r > 0) {
        last_activity_ = Clock::now();
        s.reader.produced(static_cast<std::size_t>(r));
        process_frames(s);
        if (!drain && static_cast<std::size_t>(r) < cap) return;
        continue;
      }
      if (r < 0 && errno == EINTR) continue;
      if (r < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) return;
      close_channel(s);  // end of file or reset: the worker is exiting
      return;
    }
  }

  void close_channel(Slot& s) {
    if (s.fd < 0) return;
    close(s.fd);
    s.fd = -1;
    s.want_write = false;
    s.eof_at = Clock::now();
    if (s.pidfd < 0) reap_without_pidfd(s);
  }

  void protocol_kill(Slot& s, const std::string& why) {
    s.kill_reason = KillReason::protocol;
    s.kill_note = worker_label(s) + " sent bytes that are not a valid reply (" + why +
                  "); the worker was killed and replaced";
    log(WM_LOG_ERROR, s.kill_note);
    kill(s.pid, SIGKILL);
    s.kill_sent = true;
    close_channel(s);
  }

  void process_frames(Slot& s) {
    while (s.fd >= 0) {
      FrameHeader h;
      const char* data = nullptr;
      std::string why;
      const FrameReader::Status st = s.reader.next(h, data, why);
      if (st == FrameReader::Status::need_more) return;
      if (st == FrameReader::Status::bad) return protocol_kill(s, why);
      if (h.type == kFrameHello) {
        s.hello = true;
        s.early_deaths = 0;
        check_startup_done();
      } else if (h.type == kFrameReply || h.type == kFrameReplyShm) {
        if (s.send_idx == 0 || s.inflight.front().job.seq != h.seq)
          return protocol_kill(s, "a reply for task number " + std::to_string(h.seq) + " came when " +
                                      (s.send_idx == 0 ? std::string("no task was running")
                                                       : "task number " + std::to_string(s.inflight.front().job.seq) +
                                                             " was expected"));
        if (h.type == kFrameReplyShm) {
          if (!s.reply_token_out || s.reply_token_seq != h.seq)
            return protocol_kill(s, "a reply in shared memory came for task number " + std::to_string(h.seq) +
                                        ", which was not allowed to use it");
          std::uint64_t len = 0;
          data = region_length(h, data, len) ? s.from_worker.view(static_cast<std::size_t>(len), s.generation) : nullptr;
          if (data == nullptr)
            return protocol_kill(s, "a reply of " + std::to_string(len) +
                                        " bytes in shared memory was announced, more than the region holds");
          h.len = len;
        }
        const Entry e = s.inflight.front();
        s.inflight.pop_front();
        --s.send_idx;
        note_service_time(s, e);
        // The worker is done with the request (its reply is here), and the reply is read below:
        // both regions are free again once complete_encoded returns.
        complete_encoded(e.job.task, data, h.len);
        if (s.request_in_region && s.request_seq == h.seq) s.request_in_region = false;
        if (s.reply_token_out && s.reply_token_seq == h.seq) s.reply_token_out = false;
      } else {
        return protocol_kill(s, "a frame of type " + std::to_string(h.type) + " came from a worker");
      }
      s.reader.consume();
    }
  }

  // Adapts the window: many tasks in flight when they are tiny (throughput), one when they are
  // long (no task waits behind a long one while another worker idles).
  void note_service_time(Slot& s, const Entry& e) {
    const auto now = Clock::now();
    const auto start = std::max(e.sent_at, s.last_reply);
    s.last_reply = now;
    const double us = std::chrono::duration<double, std::micro>(now - start).count();
    s.avg_us = 0.75 * s.avg_us + 0.25 * us;
    const double extra = 500.0 / std::max(s.avg_us, 0.5);
    s.window = 1 + static_cast<std::size_t>(std::min<double>(extra, double(max_window_ - 1)));
  }

  void reap_without_pidfd(Slot& s) {
    // Old kernels without pidfd_open: wait a bounded time for the exit, then kill.
    int status = 0;
    const auto until = Clock::now() + kReapGrace;
    pid_t r;
    while ((r = waitpid(s.pid, &status, WNOHANG)) == 0 && Clock::now() < until) {
      timespec ts{0, 1000000};
      nanosleep(&ts, nullptr);
    }
    if (r == 0) {
      kill(s.pid, SIGKILL);
      r = waitpid(s.pid, &status, 0);
    }
    on_exit(s, r == s.pid ? status_text(status) : std::string("ended (its exit status was taken by someone else)"));
  }

  void on_pidfd(Slot& s) {
    if (s.fd >= 0) read_worker(s, true);  // replies it sent before it ended still count
    if (!s.alive) return;
    int status = 0;
    pid_t r;
    do {
      r = waitpid(s.pid, &status, 0);
    } while (r < 0 && errno == EINTR);
    if (s.pidfd >= 0) {
      close(s.pidfd);
      s.pidfd = -1;
    }
    on_exit(s, r == s.pid ? status_text(status) : std::string("ended (its exit status was taken by someone else)"));
  }

  // The process of a slot is gone (reaped): settle its tasks, then replace it.
  void on_exit(Slot& s, const std::string& status) {
    if (s.fd >= 0) {
      close(s.fd);
      s.fd = -1;
    }
    if (s.pidfd >= 0) {
      close(s.pidfd);
      s.pidfd = -1;
    }
    s.alive = false;
    s.last_status = status;
    const std::string who = worker_label(s);
    std::deque<Entry> lost;
    lost.swap(s.inflight);
    const bool front_started = s.send_idx > 0 || s.send_off > 0;
    s.send_idx = s.send_off = 0;
    s.reader.reset();
    s.request_in_region = s.reply_token_out = false;
    std::vector<Job> requeue;
    for (std::size_t i = 0; i < lost.size(); ++i) {
      Job j = lost[i].job;
      const bool guilty = i == 0 && front_started;
      if (s.kill_reason == KillReason::protocol) {
        fail(j, s, WM_FAIL_PROTOCOL, task_label(j) + " was in flight when " + s.kill_note);
      } else if (guilty && s.kill_reason == KillReason::timeout) {
        fail(j, s, WM_FAIL_TIMEOUT, task_label(j) + " ran longer than the per-task timeout of " +
                                     seconds_text(task_timeout_) + " on " + who +
                                     "; the worker was killed (SIGKILL) and replaced");
      } else if (guilty && s.kill_reason == KillReason::shutdown) {
        fail(j, s, WM_FAIL_SHUTDOWN, task_label(j) + " did not finish within the shutdown timeout of " +
                                      seconds_text(shutdown_timeout_) + "; " + who + " was stopped");
      } else if (guilty) {
        const std::uint32_t attempts = j.attempts + 1;
        if (!stopping_ && attempts <= retries_) {
          log(WM_LOG_WARNING, who + " " + status + " while running " + task_label(j) + "; running it again (attempt " +
                                  std::to_string(attempts + 1) + " of " + std::to_string(retries_ + 1) + ")");
          j.attempts = attempts;
          requeue.push_back(j);
        } else {
          fail(j, s, WM_FAIL_WORKER_LOST,
               who + " " + status + " while running " + task_label(j) + "; attempts made: " +
                   std::to_string(attempts) +
                   (retries_ == 0 ? std::string(" (set WM_PROCESSES_RETRIES to re-run tasks lost to a worker death)")
                                  : " of " + std::to_string(retries_ + 1)),
               attempts);
        }
      } else if (stopping_) {
        fail(j, WM_FAIL_SHUTDOWN, task_label(j) + " had not started when the processes work manager shut down");
      } else {
        requeue.push_back(j);  // it had not started: run it elsewhere
      }
    }
    for (auto it = requeue.rbegin(); it != requeue.rend(); ++it) ready_.push_front(*it);
    const bool was_ready = s.hello;
    const bool expected = stopping_ || s.kill_reason != KillReason::none;
    if (!expected && lost.empty() && was_ready)
      log(WM_LOG_WARNING, who + " " + status + " while idle; starting a replacement");
    s.kill_reason = KillReason::none;
    s.hello = false;
    if (stopping_) return;
    if (!was_ready && ++s.early_deaths >= kMaxEarlyDeaths) {
      s.disabled = true;
      log(WM_LOG_ERROR, "worker " + std::to_string(s.index) + " " + status + " before it was ready, " +
                            std::to_string(kMaxEarlyDeaths) + " times in a row; giving up on this worker slot");
      slot_gave_up();
      check_startup_done();
      return;
    }
    start_slot(s);
    check_startup_done();
  }

  void check_deadlines(Clock::time_point now) {
    for (auto& sp : slots_) {
      Slot& s = *sp;
      if (!s.alive) continue;
      if (task_timeout_ > 0 && s.fd >= 0 && s.kill_reason == KillReason::none && s.send_idx > 0) {
        const auto start = std::max(s.inflight.front().sent_at, s.last_reply);
        if (now - start >= std::chrono::duration<double>(task_timeout_)) {
          s.kill_reason = KillReason::timeout;
          kill(s.pid, SIGKILL);
          s.kill_sent = true;
          close_channel(s);
          continue;
        }
      }
      if (s.fd < 0 && !s.kill_sent && now - s.eof_at >= kReapGrace) {
        kill(s.pid, SIGKILL);  // closed its socket but does not end
        s.kill_sent = true;
      }
      if (stopping_) {
        if (s.fd >= 0 && !s.half_closed && s.send_idx == s.inflight.size()) {
          ::shutdown(s.fd, SHUT_WR);  // "stop": the worker finishes what it has, then sees end of file
          s.half_closed = true;
        }
        if (now >= stop_deadline_local_ && !s.term_sent) {
          if (s.kill_reason == KillReason::none) s.kill_reason = KillReason::shutdown;
          kill(s.pid, SIGTERM);
          s.term_sent = true;
          s.term_at = now;
        }
        if (s.term_sent && !s.kill_sent && now - s.term_at >= kReapGrace) {
          kill(s.pid, SIGKILL);
          s.kill_sent = true;
        }
      }
    }
  }

  // Spinning pays when a message is due soon: a reply from a worker running short tasks, or the
  // next submit right after the last reply. With only long tasks in flight it would just take a
  // core from the workers.
  bool worth_spinning() const {
    bool any_inflight = false;
    for (auto& sp : slots_) {
      if (sp->inflight.empty()) continue;
      any_inflight = true;
      if (sp->avg_us < 4.0 * spin_us_) return true;
    }
    return !any_inflight;
  }

  int poll_timeout_ms(Clock::time_point now) {
    if (spin_us_ > 0 && now - last_activity_ < std::chrono::microseconds(spin_us_) && worth_spinning()) return 0;
    Clock::time_point next = Clock::time_point::max();
    bool big = false;
    for (auto& sp : slots_) {
      Slot& s = *sp;
      big = big || s.reader.holds_big() ||
            s.to_worker.capacity() + s.from_worker.capacity() > (static_cast<std::size_t>(keep_mib_) << 20);
      if (!s.alive) continue;
      if (task_timeout_ > 0 && s.fd >= 0 && s.kill_reason == KillReason::none && s.send_idx > 0)
        next = std::min(next, std::max(s.inflight.front().sent_at, s.last_reply) +
                                  std::chrono::duration_cast<Clock::duration>(std::chrono::duration<double>(task_timeout_)));
      if (s.fd < 0 && !s.kill_sent) next = std::min(next, s.eof_at + kReapGrace);
      if (stopping_) {
        if (!s.term_sent) next = std::min(next, stop_deadline_local_);
        if (s.term_sent && !s.kill_sent) next = std::min(next, s.term_at + kReapGrace);
      }
    }
    if (big) next = std::min(next, last_activity_ + kIdleRelease);
    if (next == Clock::time_point::max()) return -1;
    if (next <= now) return 0;
    const auto ms = std::chrono::duration_cast<std::chrono::milliseconds>(next - now).count() + 1;
    return static_cast<int>(std::min<long long>(ms, 1 << 30));
  }

  void release_idle_buffers(Clock::time_point now) {
    if (now - last_activity_ < kIdleRelease) return;
    for (auto& sp : slots_) {
      Slot& s = *sp;
      s.reader.release_big();
      // The shared regions are kept warm while they fit in worker-keep-memory: mapping them afresh
      // costs a page fault per 4 KiB page on each side again (0.1-0.2 s for 64 MiB on the VMs
      // measured). Larger ones go back when idle, and only while the worker has nothing in
      // flight: it neither reads the one nor writes the other. The new generation tells it to map
      // them afresh.
      const std::size_t held = s.to_worker.capacity() + s.from_worker.capacity();
      if (held > (static_cast<std::size_t>(keep_mib_) << 20) && s.inflight.empty() && !s.request_in_region &&
          !s.reply_token_out) {
        s.to_worker.release();
        s.from_worker.release();
        s.generation = static_cast<std::uint16_t>((s.generation + 1) & kFlagGenerationMask);
      }
    }
  }

  void io_main() {
    last_activity_ = Clock::now();
    for (auto& sp : slots_) start_slot(*sp);
    check_startup_done();
    std::vector<pollfd> fds;
    std::vector<std::pair<Slot*, bool>> owners;  // slot, is-pidfd
    for (;;) {
      take_queue();
      if (!stopping_) dispatch();
      else
        for (auto& sp : slots_)
          if (sp->fd >= 0 && sp->send_idx < sp->inflight.size()) flush_writes(*sp);
      auto now = Clock::now();
      check_deadlines(now);
      if (stopping_) {
        bool any = false;
        for (auto& sp : slots_) any = any || sp->alive;
        if (!any) break;
      }
      fds.clear();
      owners.clear();
      fds.push_back(pollfd{doorbell_, POLLIN, 0});
      owners.emplace_back(nullptr, false);
      for (auto& sp : slots_) {
        Slot& s = *sp;
        if (s.fd >= 0) {
          fds.push_back(pollfd{s.fd, static_cast<short>(POLLIN | (s.want_write ? POLLOUT : 0)), 0});
          owners.emplace_back(&s, false);
        }
        if (s.alive && s.pidfd >= 0) {
          fds.push_back(pollfd{s.pidfd, POLLIN, 0});
          owners.emplace_back(&s, true);
        }
      }
      int timeout = poll_timeout_ms(now);
      if (timeout != 0) {
        io_sleeping_.store(true, std::memory_order_seq_cst);
        if (queued_.load(std::memory_order_seq_cst) != 0 || stop_flag_.load(std::memory_order_seq_cst)) {
          if (!stopping_ || queued_.load() != 0) {
            io_sleeping_.store(false, std::memory_order_relaxed);
            timeout = 0;
          }
        }
      }
      const int n = poll(fds.data(), fds.size(), timeout);
      io_sleeping_.store(false, std::memory_order_relaxed);
      if (n < 0) continue;  // EINTR
      if (n == 0) {
        if (timeout != 0)
          release_idle_buffers(Clock::now());
        else
          sched_yield();  // spinning: a woken waiter (the host thread) may need this core
        continue;
      }
      if (fds[0].revents != 0) {
        std::uint64_t v;
        [[maybe_unused]] ssize_t r = read(doorbell_, &v, sizeof v);
      }
      for (std::size_t i = 1; i < fds.size(); ++i) {
        if (fds[i].revents == 0) continue;
        Slot& s = *owners[i].first;
        if (owners[i].second) {
          if (s.alive && s.pidfd == fds[i].fd) on_pidfd(s);
          continue;
        }
        if (s.fd != fds[i].fd) continue;  // closed while handling an earlier entry
        if (fds[i].revents & POLLOUT) flush_writes(s);
        if (fds[i].revents & (POLLIN | POLLHUP | POLLERR)) read_worker(s, false);
      }
    }
    // Every worker is reaped. Tasks not settled yet cannot exist here, but be certain.
    fail_ready(WM_FAIL_SHUTDOWN, "the processes work manager shut down before this task ran");
    {
      std::lock_guard<std::mutex> lock(mutex_);
      std::vector<Job> left;
      left.swap(queue_);
      for (const Job& j : left) fail(j, WM_FAIL_SHUTDOWN, "the processes work manager shut down before this task ran");
      io_finished_ = true;
      startup_done_ = true;
      if (startup_error_.empty() && !startup_done_seen_) startup_error_ = "the processes work manager was shut down during startup";
    }
    cv_.notify_all();
  }

  // configuration
  unsigned n_ = 1;
  int spin_us_ = 200;
  std::uint32_t retries_ = 0;
  double task_timeout_ = 0;
  double shutdown_timeout_ = 5;
  std::size_t max_window_ = 128;
  long keep_mib_ = 256;
  bool shm_ = true;

  // shared with submitting threads (under mutex_)
  std::mutex mutex_;
  std::condition_variable cv_;
  std::vector<Job> queue_;
  std::atomic<std::size_t> queued_{0};
  std::atomic<bool> io_sleeping_{false};
  std::atomic<bool> stop_flag_{false};
  bool stop_requested_ = false;
  Clock::time_point stop_deadline_{};
  bool io_started_ = false;
  bool io_finished_ = false;
  bool startup_done_ = false;
  std::string startup_error_;
  std::string dead_reason_;
  int doorbell_ = -1;
  std::thread io_;
  std::thread::id io_id_{};
  std::mutex join_mutex_;

  // owned by the I/O thread
  std::vector<std::unique_ptr<Slot>> slots_;
  std::vector<std::string> env_base_;
  std::deque<Job> ready_;
  bool stopping_ = false;
  bool startup_done_seen_ = false;
  Clock::time_point stop_deadline_local_{};
  Clock::time_point last_activity_{};
};

}  // namespace

WM_DECLARE_BACKEND(processes, ProcessesBackend, "1.0.0",
                   "Runs registered tasks in worker processes of the host program (n_workers defaults to the cores)",
                   WM_CAP_REMOTE | WM_CAP_SPAWNS_WORKERS,
                   wm::sdk::option_double("task-timeout", "0", 0, 1e9,
                                          "seconds a task may run before its worker is killed and replaced and "
                                          "the task fails with a timeout (0: no limit)"),
                   wm::sdk::option_int("retries", "0", 0, 1000,
                                       "times a task lost to a worker death is run again (never for "
                                       "exceptions the task throws)"),
                   wm::sdk::option_double("shutdown-timeout", "5", 0, 1e9,
                                          "seconds shutdown waits for running tasks before it stops the "
                                          "workers (SIGTERM, then SIGKILL)"),
                   wm::sdk::option_int("spin-us", "200", 0, 100000,
                                       "microseconds the master and workers keep looking for messages "
                                       "before they sleep (0: sleep at once)"),
                   wm::sdk::option_int("max-window", "128", 1, 65536,
                                       "most tasks in flight on one worker (the window adapts to task "
                                       "length below this)"),
                   wm::sdk::option_int("worker-keep-memory", "256", 0, 2047,
                                       "MiB of freed memory a worker keeps for reuse instead of returning "
                                       "it (large messages reuse warm pages; 0: malloc defaults)"),
                   wm::sdk::option_bool("shared-memory", "true",
                                        "send arguments and results of 1 MiB or more through shared memory "
                                        "instead of the sockets (one copy on each side instead of two)"))
