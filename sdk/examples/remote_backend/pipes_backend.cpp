// SPDX-License-Identifier: MIT
// pipes_backend.cpp: a complete remote backend, "pipes": worker processes of the host program, each
// talking to the master over a pair of pipes. It is what a remote backend writes on the engine: how
// workers start (posix_spawn of the host program in the worker role) and how bytes move (pipes);
// the engine does everything else (tasks, replies, errors, windows, retries, timeouts, shutdown).
// The SDK's README walks through it.
#include <wm/sdk/remote/remote_backend.hpp>

#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <spawn.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstring>
#include <stdexcept>
#include <string>
#include <vector>

extern char** environ;

namespace {

namespace remote = wm::sdk::remote;

// Writes everything (a blocking pipe). False if the reader is gone.
bool write_all(int fd, const char* p, std::size_t n) {
  while (n > 0) {
    const ssize_t w = write(fd, p, n);
    if (w < 0 && errno == EINTR) continue;
    if (w <= 0) return false;
    p += w;
    n -= static_cast<std::size_t>(w);
  }
  return true;
}

// Reads what is there into the engine's inbox: >0 bytes came, 0 nothing yet, -1 end of file.
int read_into(int fd, remote::Inbox& inbox) {
  auto [p, room] = inbox.space();
  const ssize_t r = read(fd, p, room);
  if (r > 0) {
    inbox.produced(static_cast<std::size_t>(r));
    return 1;
  }
  if (r < 0 && (errno == EAGAIN || errno == EINTR)) return 0;
  return -1;
}

std::string how_it_ended(int status) {
  if (WIFSIGNALED(status)) return "was killed by signal " + std::to_string(WTERMSIG(status));
  return "exited with code " + std::to_string(WEXITSTATUS(status));
}

// ---------------------------------------------------------------- the master's side

class PipesTransport final : public remote::Transport {
 public:
  PipesTransport(unsigned n, std::string program, std::string backend) : program_(std::move(program)) {
    workers_.resize(n);
    backend_ = std::move(backend);
    if (pipe2(wake_, O_CLOEXEC | O_NONBLOCK) != 0) throw std::runtime_error("pipe2 failed");
  }
  ~PipesTransport() override {
    for (std::size_t id = 0; id < workers_.size(); ++id) stop_worker(static_cast<remote::WorkerId>(id));
    for (Worker& w : workers_)
      if (w.pid > 0) waitpid(w.pid, nullptr, 0);
    close(wake_[0]);
    close(wake_[1]);
  }

  void start(remote::TransportHost& host) override {
    host_ = &host;
    // A worker that died leaves a pipe nobody reads: writing to it must fail (EPIPE), not end the
    // program by SIGPIPE. Blocked on this thread only: the engine's, which does all the writing.
    sigset_t pipe_signal;
    sigemptyset(&pipe_signal);
    sigaddset(&pipe_signal, SIGPIPE);
    pthread_sigmask(SIG_BLOCK, &pipe_signal, nullptr);
    for (std::size_t id = 0; id < workers_.size(); ++id) host.worker_added(static_cast<remote::WorkerId>(id));
  }

  // Starts the host program again as worker id: the core sees WM_WORKER_BACKEND and serves.
  bool launch(remote::WorkerId id, const remote::WorkerSetup& setup) override {
    int to[2], from[2];
    if (pipe2(to, O_CLOEXEC) != 0 || pipe2(from, O_CLOEXEC) != 0)
      throw std::runtime_error(std::string("could not be started: pipe2 failed: ") + std::strerror(errno));
    std::vector<std::string> env;
    for (char** e = environ; *e != nullptr; ++e) env.emplace_back(*e);
    env.push_back("WM_WORKER_BACKEND=" + backend_);
    env.push_back("WM_WORKER_ARG=" + std::to_string(getpid()));  // the worker checks its parent
    env.push_back("WM_PROCESS_INDEX=" + std::to_string(setup.index));
    env.push_back("WM_PROCESS_SEED=" + std::to_string(setup.seed));
    std::vector<char*> envp;
    for (auto& e : env) envp.push_back(e.data());
    envp.push_back(nullptr);
    posix_spawn_file_actions_t fa;
    posix_spawn_file_actions_init(&fa);
    posix_spawn_file_actions_adddup2(&fa, to[0], 3);    // the worker reads the master's bytes on 3
    posix_spawn_file_actions_adddup2(&fa, from[1], 4);  // and writes its own on 4
    char* argv[] = {program_.data(), nullptr};
    pid_t pid = -1;
    const int rc = posix_spawn(&pid, "/proc/self/exe", &fa, nullptr, argv, envp.data());
    posix_spawn_file_actions_destroy(&fa);
    close(to[0]);
    close(from[1]);
    if (rc != 0) {
      close(to[1]);
      close(from[0]);
      throw std::runtime_error(std::string("could not be started: ") + std::strerror(rc));
    }
    fcntl(from[0], F_SETFL, O_NONBLOCK);
    fcntl(to[1], F_SETFL, O_NONBLOCK);
    Worker& w = workers_.at(id);
    w = Worker{};
    w.pid = pid;
    w.to = to[1];
    w.from = from[0];
    return true;
  }

  remote::Buffer& outbox(remote::WorkerId id) override { return workers_.at(id).out; }

  // Writes what fits now; the rest when the worker has read some (progress() waits for that too):
  // the engine's thread never blocks on one worker.
  void flush(remote::WorkerId id) override {
    Worker& w = workers_.at(id);
    while (w.to >= 0 && w.sent < w.out.size) {
      const ssize_t n = write(w.to, w.out.data + w.sent, w.out.size - w.sent);
      if (n < 0 && errno == EINTR) continue;
      if (n < 0 && errno == EAGAIN) return;
      if (n <= 0) close_fd(w.to);  // the worker is gone: its end of file says how
      else w.sent += static_cast<std::size_t>(n);
    }
    w.out.size = w.sent = 0;
  }

  void stop_worker(remote::WorkerId id) override {
    Worker& w = workers_.at(id);
    if (w.pid > 0 && !w.killed) kill(w.pid, SIGKILL);  // its end of file follows
    w.killed = true;
  }

  int progress(int timeout_ms) override {
    std::vector<pollfd> fds{{wake_[0], POLLIN, 0}};
    for (const Worker& w : workers_) {  // entries of -1 are ignored
      fds.push_back({w.from, POLLIN, 0});
      fds.push_back({w.sent < w.out.size ? w.to : -1, POLLOUT, 0});
    }
    if (poll(fds.data(), fds.size(), timeout_ms) <= 0) return 0;
    char drain[64];
    while (read(wake_[0], drain, sizeof drain) > 0) {
    }
    int events = 0;
    for (std::size_t i = 1; i < fds.size(); i += 2) {
      const auto id = static_cast<remote::WorkerId>(i / 2);
      Worker& w = workers_[id];
      if (fds[i + 1].revents != 0) flush(id);
      if (fds[i].revents == 0) continue;
      const int got = read_into(w.from, host_->inbox(id));
      ++events;
      if (got > 0) {
        host_->arrived(id);
      } else if (got < 0) {  // end of file: the worker is ending; its status says how
        close_fd(w.from);
        close_fd(w.to);
        int status = 0;
        waitpid(w.pid, &status, 0);
        w.pid = -1;
        host_->worker_lost(id, how_it_ended(status));
      }
    }
    return events;
  }

  void wake() override { [[maybe_unused]] ssize_t r = write(wake_[1], "w", 1); }

 private:
  struct Worker {
    pid_t pid = -1;
    int to = -1, from = -1;
    bool killed = false;
    remote::Buffer out;
    std::size_t sent = 0;  // bytes of out written
  };
  static void close_fd(int& fd) {
    if (fd >= 0) close(fd);
    fd = -1;
  }

  std::string program_, backend_;
  std::vector<Worker> workers_;
  remote::TransportHost* host_ = nullptr;
  int wake_[2];
};

// ---------------------------------------------------------------- the worker's side

class PipesPort final : public remote::Port {
 public:
  void start(remote::PortHost& host) override { host_ = &host; }

  int progress(int timeout_ms) override {
    pollfd pfd{3, POLLIN, 0};
    if (poll(&pfd, 1, timeout_ms) <= 0) return 0;
    const int got = read_into(3, host_->inbox());
    if (got > 0)
      host_->arrived();
    else if (got < 0)
      host_->closed("");  // the master is gone
    return 1;
  }

  remote::Buffer& outbox() override { return out_; }

  bool flush() override {
    const bool ok = write_all(4, out_.data, out_.size);
    out_.size = 0;
    return ok;
  }

 private:
  remote::PortHost* host_ = nullptr;
  remote::Buffer out_;
};

// ---------------------------------------------------------------- the backend

class PipesBackend final : public remote::RemoteBackend {
 public:
  using RemoteBackend::RemoteBackend;

 protected:
  std::unique_ptr<remote::Transport> make_transport() override {
    return std::make_unique<PipesTransport>(planned_workers(), config().host_program, name());
  }

  std::unique_ptr<remote::Port> make_port() override {
    // Die with the master; leave Ctrl-C to it.
    prctl(PR_SET_PDEATHSIG, SIGKILL);
    if (std::to_string(getppid()) != config().worker_arg) _exit(0);
    signal(SIGINT, SIG_IGN);
    fcntl(3, F_SETFD, FD_CLOEXEC);  // programs a task starts do not inherit the pipes
    fcntl(4, F_SETFD, FD_CLOEXEC);
    return std::make_unique<PipesPort>();
  }

  unsigned planned_workers() const override { return requested_workers() != 0 ? requested_workers() : 2; }
};

}  // namespace

WM_DECLARE_BACKEND(pipes, PipesBackend, "1.0.0", "Example: worker processes of the host program, over pipes",
                   WM_CAP_REMOTE | WM_CAP_SPAWNS_WORKERS, WM_REMOTE_ENGINE_OPTIONS)
