// SPDX-License-Identifier: MIT
// wm/sdk/remote/remote_backend.hpp: a backend whose tasks run in other processes, on the remote
// engine. Derive from RemoteBackend, say how workers start and how bytes move (a Transport for the
// master, a Port for a worker; both may be the SDK's parts), declare WM_REMOTE_ENGINE_OPTIONS. The
// engine does the rest: the lifecycle of every role, the dispatcher, the worker loop, the relay.
//
// @code
//   class MyBackend final : public wm::sdk::remote::RemoteBackend {
//    public:
//     using RemoteBackend::RemoteBackend;
//    protected:
//     std::unique_ptr<wm::sdk::remote::Transport> make_transport() override {
//       return std::make_unique<MyTransport>(...);
//     }
//     std::unique_ptr<wm::sdk::remote::Port> make_port() override { return std::make_unique<MyPort>(...); }
//   };
//   WM_DECLARE_BACKEND(mine, MyBackend, "1.0.0", "...", WM_CAP_REMOTE, WM_REMOTE_ENGINE_OPTIONS)
// @endcode
// Build it with wm_add_backend(mine SOURCES ... LINK_LIBRARIES WM::remote).
#pragma once

#include <wm/sdk/backend.hpp>
#include <wm/sdk/remote/dispatcher.hpp>
#include <wm/sdk/remote/local_processes.hpp>
#include <wm/sdk/remote/relay.hpp>
#include <wm/sdk/remote/transport.hpp>
#include <wm/sdk/remote/worker_loop.hpp>

#include <atomic>
#include <memory>
#include <mutex>

namespace wm::sdk::remote {

/** What this process is for the backend, decided once at startup. */
enum class Role {
  master,  // runs the host program's work manager: submits tasks, runs the dispatcher
  worker,  // serves tasks (inside the core's startup: it never returns to the program)
  relay    // sits between a master and local workers of its own (a node)
};

class RemoteBackend : public Backend {
 public:
  /** Reads the engine options (WM_REMOTE_ENGINE_OPTIONS must be declared). */
  RemoteBackend(const wm_core_services* services, const wm_backend_config* config, const char* name);
  ~RemoteBackend() override;

 protected:
  // ---- what a backend says (hooks) ----
  /** Runs first in startup, before the role is decided (MPI: initialise MPI, exchange the
   *  bootstrap). May run again if an earlier startup failed. */
  virtual void prepare() {}
  /** This process's role. Default: worker if the core started this process as one of the backend's
   *  workers (LocalProcesses does), else master. */
  virtual Role decide_role() { return worker_role() ? Role::worker : Role::master; }
  /** Master: a new transport (one per startup attempt). */
  virtual std::unique_ptr<Transport> make_transport() = 0;
  /** Worker: the port to the master. Default: the port of a process LocalProcesses started. */
  virtual std::unique_ptr<Port> make_port();
  /** Relay: its link to its master. Only a backend whose decide_role() returns Role::relay needs it;
   *  the default throws std::logic_error, naming the backend (a role decided without its link). */
  virtual std::unique_ptr<Uplink> make_uplink();
  /** Master: the dispatcher runs (its workers are ready, unless elastic). */
  virtual void started() {}
  /** Worker: the loop has ended (how: end); the port is still there. */
  virtual void served(Port& port, WorkerEnd end) {
    (void)port;
    (void)end;
  }
  /** Master: the dispatcher's thread is gone (every task finished); on the thread that joined it. */
  virtual void joined(Transport& transport) { (void)transport; }
  /** What n_workers() says before the workers are started. */
  virtual unsigned planned_workers() const { return requested_workers() != 0 ? requested_workers() : 1; }
  /** Worker: who this worker is (default: its pid, no rank, this host; its index comes with the setup). */
  virtual WorkerIdentity worker_identity() const;

  // ---- services ----
  Role role() const { return role_.load(); }
  /** The engine's options, read from the declared ones; a subclass may adjust them in its
   *  constructor (elastic, hints, startup limit). */
  EngineOptions& engine_options() { return options_; }
  WorkerLoopOptions& worker_loop_options() { return loop_options_; }
  /** The backend's log, for transports. */
  Log logger() const;
  /** LocalProcesses options for n workers of this program, whose workers serve this backend. */
  LocalProcessOptions local_processes(unsigned n) const;
  /** Master: waits until n workers are ready (or the work manager stops, or seconds pass). */
  bool wait_for_workers(unsigned n, double seconds);

  // ---- the lifecycle, written once ----
  void do_startup() final;
  void do_stop(bool now) final;
  void do_join() final;
  void do_submit(wm_task* const* tasks, std::size_t n) final;
  void do_run() final;
  bool do_is_master() const final;
  unsigned do_n_workers() const final;
  bool do_cancel_running(wm_task* task) final;
  bool do_stats(BackendStats& out) final;

 private:
  std::shared_ptr<Dispatcher> current() const;

  EngineOptions options_;
  WorkerLoopOptions loop_options_;
  std::atomic<Role> role_;
  std::atomic<bool> decided_{false};
  mutable std::mutex mutex_;  // guards the pointer only
  std::shared_ptr<Dispatcher> dispatcher_;
  bool stopped_ = false;
};

}  // namespace wm::sdk::remote
