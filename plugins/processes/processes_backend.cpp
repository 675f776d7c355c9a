// processes_backend.cpp: the "processes" backend: worker processes of the host program on this
// machine, on the remote engine. What is here is what is specific to local processes: the options,
// and the worker's start-up (its bootstrap from what the master's launcher passed it). The master's
// transport (spawn, sockets, shared regions) is process_transport.cpp; the worker's channel is
// socket_channel.cpp; the dispatcher and the worker loop are the SDK's. See README.md beside this file.
#include "process_transport.hpp"
#include "socket_channel.hpp"

#include <wm/sdk/remote/remote_backend.hpp>

#include <fcntl.h>
#include <malloc.h>
#include <signal.h>
#include <sys/prctl.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdlib>
#include <map>
#include <stdexcept>
#include <string>
#include <thread>

namespace {

using namespace wm_processes;
namespace remote = wm::sdk::remote;

void set_cloexec(int fd) {
  const int flags = fcntl(fd, F_GETFD);
  if (flags >= 0) fcntl(fd, F_SETFD, flags | FD_CLOEXEC);
}

// WM_WORKER_ARG of a processes worker: "fd=3,ppid=123,spin=200,keep=256,shm=1,ring=6" (ring=-1:
// no ring), every key once, every value a whole number. Anything else means this process was not started by the processes
// work manager, which is an error that says so.
std::map<std::string, long long> parse_worker_arg(const std::string& text) {
  static const char* const keys[] = {"fd", "ppid", "spin", "keep", "shm", "ring"};
  auto refuse = [&](const std::string& why) {
    return std::runtime_error("processes worker: " WM_ENV_WORKER_ARG "='" + text + "' " + why +
                              " (this process is meant to be started by the processes work manager)");
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

void log_to_core(void* context, int level, const std::string& message) {
  const auto* self = static_cast<const std::pair<const wm_core_services*, const char*>*>(context);
  self->first->log(level, self->second, message.c_str());
}

class ProcessesBackend final : public remote::RemoteBackend {
 public:
  ProcessesBackend(const wm_core_services* s, const wm_backend_config* c, const char* name)
      : RemoteBackend(s, c, name), log_context_(s, name) {
    n_ = requested_workers();
    if (n_ == 0) n_ = std::max(1u, std::thread::hardware_concurrency());
    keep_mib_ = static_cast<long>(option_int("worker-keep-memory"));
    shm_ = option_bool("shared-memory");
    engine_options().dead_hint =
        "run with WM_LOG_LEVEL=debug and read the workers' standard error; the host program must call "
        "wm::serve_if_worker() or wm::make_work_manager() early in main";
    if (worker_role()) arg_ = parse_worker_arg(config().worker_arg);
  }

 protected:
  std::unique_ptr<remote::Transport> make_transport() override {
    LocalProcessOptions o;
    o.n_workers = n_;
    o.host_program = config().host_program != nullptr ? config().host_program : "";
    o.worker_backend = name();
    for (std::size_t i = 0; i < config().n_task_libraries; ++i) o.task_libraries.emplace_back(config().task_libraries[i]);
    o.spin_us = engine_options().spin_us;
    o.keep_mib = keep_mib_;
    o.shared_memory = shm_;
    return std::make_unique<LocalProcessTransport>(std::move(o), &log_to_core, &log_context_);
  }

  std::unique_ptr<remote::WorkerChannel> make_worker_channel() override {
    // Die with the master, even if it is SIGKILLed; the check closes the race with a master that
    // died before the prctl.
    prctl(PR_SET_PDEATHSIG, SIGKILL);
    if (getppid() != static_cast<pid_t>(arg_.at("ppid"))) _exit(0);
    // Ctrl-C in a terminal reaches the whole process group; the master decides what happens. The
    // master started us with SIGINT blocked, so there was no window before this line.
    signal(SIGINT, SIG_IGN);
    sigset_t set;
    sigemptyset(&set);
    sigaddset(&set, SIGINT);
    sigprocmask(SIG_UNBLOCK, &set, nullptr);
    const int fd = static_cast<int>(arg_.at("fd"));
    const bool shm = arg_.at("shm") != 0;
    const int ring = static_cast<int>(arg_.at("ring"));
    set_cloexec(fd);  // programs a task starts must not hold our channel open
    if (shm) {
      set_cloexec(4);
      set_cloexec(5);
    }
    if (ring >= 0) set_cloexec(ring);
    worker_loop_options().spin_us = static_cast<int>(arg_.at("spin"));
    if (const long long keep_mib = arg_.at("keep"); keep_mib > 0) {
      // Keep freed memory for the next task instead of unmapping it: large arguments and results
      // then reuse warm pages (a fresh page fault costs 20-30 us on the VMs measured, 0.4 s for
      // 64 MiB). Large blocks come from the heap (glibc would mmap them fresh every time).
      mallopt(M_MMAP_MAX, 0);
      mallopt(M_TRIM_THRESHOLD, static_cast<int>(std::min<long long>(keep_mib, 2047) << 20));
    }
    return std::make_unique<SocketChannel>(fd, shm, ring, static_cast<std::size_t>(services().large_payload_bytes));
  }

  unsigned planned_workers() const override { return n_; }

 private:
  std::pair<const wm_core_services*, const char*> log_context_;
  unsigned n_ = 1;
  long keep_mib_ = 256;
  bool shm_ = true;
  std::map<std::string, long long> arg_;  // the worker role's WM_WORKER_ARG
};

}  // namespace

WM_DECLARE_BACKEND(processes, ProcessesBackend, "1.1.0",
                   "Runs registered tasks in worker processes of the host program (n_workers defaults to the cores)",
                   WM_CAP_REMOTE | WM_CAP_SPAWNS_WORKERS, WM_REMOTE_ENGINE_OPTIONS,
                   wm::sdk::option_int("worker-keep-memory", "256", 0, 2047,
                                       "MiB of freed memory a worker keeps for reuse instead of returning "
                                       "it (large messages reuse warm pages; 0: malloc defaults)"),
                   wm::sdk::option_bool("shared-memory", "true",
                                        "send arguments and results of 1 MiB or more through shared memory "
                                        "instead of the sockets (one copy on each side instead of two)"))
