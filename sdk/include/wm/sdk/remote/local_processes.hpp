// SPDX-License-Identifier: MIT
// wm/sdk/remote/local_processes.hpp: a transport any remote backend can compose: worker processes
// on this machine. A worker is the host program started again in the worker role (posix_spawn, safe
// in a threaded host); each has one Unix stream socket (doorbell and life line: its end of file and
// the process's pidfd show a death at once), a shared-memory byte ring each way for the bytes, and
// two shared-memory regions for payloads of the large-payload size and up (written once, read in
// place). The processes backend is this transport; a relay uses it for its local workers.
#pragma once

#include <wm/sdk/remote/transport.hpp>
#include <wm/sdk/remote/waker.hpp>

#include <sys/types.h>

#include <chrono>
#include <functional>
#include <memory>
#include <string>
#include <vector>

struct pollfd;

namespace wm::sdk::remote {

/** What LocalProcesses needs to start workers. */
struct LocalProcessOptions {
  unsigned n_workers = 1;
  std::string host_program;  // the executable to start (falls back from /proc/self/exe)
  std::string worker_backend;  // WM_WORKER_BACKEND of the workers: the backend that serves in them
  std::vector<std::string> task_libraries;
  bool shared_memory = true;  // large payloads through shared regions, bytes through rings
  /** The core's services: each worker's environment gets what worker_environment says for it (its
   *  GPUs, cores, thread counts: WM_GPUS_PER_WORKER, WM_CPUS_PER_WORKER, ...). nullptr, or a core
   *  older than ABI 1.1: nothing is added. */
  const wm_core_services* services = nullptr;
};

/** @brief The master side: worker processes of the host program (see the file comment). */
class LocalProcesses final : public Transport {
 public:
  LocalProcesses(LocalProcessOptions options, Log log);
  /** Kills and reaps every worker still there. */
  ~LocalProcesses() override;

  Capabilities capabilities() const override;
  void start(TransportHost& host) override;
  /** Spawns the worker of slot id; throws with the reason if it cannot. */
  bool launch(WorkerId id, const WorkerSetup& setup) override;
  Buffer& outbox(WorkerId id) override;
  void flush(WorkerId id) override;
  void stop_worker(WorkerId id) override;
  bool closing(WorkerId id) const override;
  int progress(int timeout_ms) override;
  void wake() override;
  void idle(WorkerId id) override;
  wm_byte_buffer* lend_request(WorkerId id, std::size_t size) override;
  const char* lent_reply(WorkerId id, std::size_t size) override;

  /** Descriptors progress() also waits on, for a caller that serves sockets of its own besides
   *  these workers (a relay: its link to its master). progress() returns when one is readable
   *  (with 0 deliveries if nothing else happened); the caller reads them. */
  void set_extra_fds(std::vector<int> fds) { extra_fds_ = std::move(fds); }

  struct Slot;

 private:
  void spawn(WorkerId id, Slot& s, const WorkerSetup& setup);
  void read_worker(WorkerId id, Slot& s, bool drain, int& events);
  bool read_ring(WorkerId id, Slot& s, int& events);
  bool scan_rings(int& events, bool& all_rings);
  void write_out(Slot& s);
  void close_channel(Slot& s);
  void reap(WorkerId id, Slot& s, bool wait, int& events);
  void lost(WorkerId id, Slot& s, const std::string& status, int& events);
  void housekeeping(std::chrono::steady_clock::time_point now, int& events);
  int internal_timeout_ms(std::chrono::steady_clock::time_point now) const;
  void snapshot_environment();

  LocalProcessOptions options_;
  Log log_;
  TransportHost* host_ = nullptr;
  std::unique_ptr<Waker> doorbell_;
  std::vector<std::unique_ptr<Slot>> slots_;
  std::vector<std::string> env_base_;
  std::vector<struct pollfd> fds_;                   // progress(): kept to avoid allocating per call
  std::vector<std::pair<WorkerId, bool>> owners_;    // slot of each entry, and whether it is a pidfd
  std::vector<int> extra_fds_;                       // set_extra_fds(): polled after the doorbell
};

/**
 * The worker side, in a process LocalProcesses started: its port to the master, from what the
 * master's spawn put in WM_WORKER_ARG (the core hands it over as the backend's worker argument).
 * Also makes the process die with its master and leave Ctrl-C to it. Throws with a clear message if
 * the argument is not one LocalProcesses wrote (the process was not started by it).
 */
std::unique_ptr<Port> local_process_port(const std::string& worker_arg, const char* backend_name);

}  // namespace wm::sdk::remote
