// process_transport.hpp: the master side of local worker processes, a transport of the remote
// engine: workers are the host program started again in the worker role (posix_spawn, safe in a
// threaded host), one Unix stream socket each (doorbell and life line), a shared-memory byte ring
// each way for the frames (byte_ring.hpp), plus two shared-memory regions each for payloads of the
// large-payload size and up. Used by the processes backend, and by zmq nodes for their local workers.
#pragma once

#include "shared_region.hpp"

#include <wm/sdk/remote/transport.hpp>

#include <poll.h>
#include <sys/types.h>

#include <chrono>
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

namespace wm_processes {

namespace remote = wm::sdk::remote;

/** What a LocalProcessTransport needs to start workers. */
struct LocalProcessOptions {
  unsigned n_workers = 1;
  std::string host_program;             // the executable to start (falls back from /proc/self/exe)
  std::string worker_backend;           // WM_WORKER_BACKEND of the workers (their worker role)
  std::vector<std::string> task_libraries;
  int spin_us = 200;                    // the workers' spin window
  long keep_mib = 256;                  // memory a worker (and its regions) keeps for reuse
  bool shared_memory = true;            // large payloads through the regions
  int first_index = 0;                  // WM_PROCESS_INDEX of worker 0
};

class LocalProcessTransport final : public remote::Transport {
 public:
  using Log = void (*)(void* context, int level, const std::string& message);
  LocalProcessTransport(LocalProcessOptions options, Log log, void* log_context);
  /** Kills and reaps every worker still there. */
  ~LocalProcessTransport() override;

  void start(remote::TransportEvents& events) override;
  bool restart_worker(remote::WorkerId id) override;
  bool send_task(remote::WorkerId id, std::uint64_t seq, std::size_t size, const remote::Encoder& encode) override;
  void flush(remote::WorkerId id) override;
  void stop_worker(remote::WorkerId id, remote::StopMode mode) override;
  int progress(int timeout_ms) override;
  void wake() override;

  /** Pid of a worker's current process (-1 if none). */
  pid_t pid_of(remote::WorkerId id) const;

  /** Descriptors progress() also waits on, for a caller that relays between these workers and
   *  sockets of its own (a zmq node: its ZeroMQ sockets' ZMQ_FD). progress() only returns when one
   *  is readable (with 0 events if nothing else happened); the caller reads them. */
  void set_extra_fds(std::vector<int> fds) { extra_fds_ = std::move(fds); }

 private:
  struct Slot;
  bool spawn(Slot& s);
  void read_worker(remote::WorkerId id, Slot& s, bool drain, int& events);
  bool read_ring(remote::WorkerId id, Slot& s, int& events);
  bool scan_rings(int& events, bool& all_rings);
  void ring_doorbell(Slot& s);
  void process_frames(remote::WorkerId id, Slot& s, int& events);
  void write_out(Slot& s);
  void close_channel(Slot& s);
  void reap(remote::WorkerId id, Slot& s, bool wait, int& events);
  void lost(remote::WorkerId id, Slot& s, const std::string& status, int& events);
  void housekeeping(std::chrono::steady_clock::time_point now, int& events);
  int internal_timeout_ms(std::chrono::steady_clock::time_point now) const;
  void snapshot_environment();
  void log(int level, const std::string& message) const { log_(log_context_, level, message); }

  LocalProcessOptions options_;
  Log log_;
  void* log_context_;
  remote::TransportEvents* events_ = nullptr;
  int doorbell_ = -1;
  std::vector<std::unique_ptr<Slot>> slots_;
  std::vector<std::string> env_base_;
  std::vector<struct pollfd> fds_;                         // progress(): kept to avoid allocating per call
  std::vector<std::pair<remote::WorkerId, bool>> owners_;  // slot of each entry, and whether it is a pidfd
  std::vector<int> extra_fds_;                             // set_extra_fds(): polled after the doorbell
  std::chrono::steady_clock::time_point last_activity_{};
};

}  // namespace wm_processes
