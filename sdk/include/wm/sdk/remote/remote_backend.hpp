// wm/sdk/remote/remote_backend.hpp: a backend whose tasks run in other processes, on the remote
// engine: derive from RemoteBackend, say how workers start and how bytes move (a Transport for the
// master, a WorkerChannel for a worker), declare WM_REMOTE_ENGINE_OPTIONS. The engine does the rest.
//
// @code
//   class MyBackend final : public wm::sdk::remote::RemoteBackend {
//    public:
//     MyBackend(const wm_core_services* s, const wm_backend_config* c, const char* name)
//         : RemoteBackend(s, c, name) {}
//    protected:
//     std::unique_ptr<wm::sdk::remote::Transport> make_transport() override { ... }
//     std::unique_ptr<wm::sdk::remote::WorkerChannel> make_worker_channel() override { ... }
//     unsigned planned_workers() const override { return 4; }
//   };
//   WM_DECLARE_BACKEND(mine, MyBackend, "1.0.0", "...", WM_CAP_REMOTE, WM_REMOTE_ENGINE_OPTIONS)
// @endcode
// Build it with wm_add_backend(mine SOURCES ... LINK_LIBRARIES WM::remote).
#pragma once

#include <wm/sdk/backend.hpp>
#include <wm/sdk/remote/dispatcher.hpp>
#include <wm/sdk/remote/transport.hpp>
#include <wm/sdk/remote/worker_loop.hpp>

#include <memory>
#include <mutex>

namespace wm::sdk::remote {

class RemoteBackend : public Backend {
 public:
  /** Reads the engine options (WM_REMOTE_ENGINE_OPTIONS must be declared). */
  RemoteBackend(const wm_core_services* services, const wm_backend_config* config, const char* name);
  ~RemoteBackend() override;

 protected:
  /** Master: a new transport (one per startup attempt; startup may be tried again after a failure). */
  virtual std::unique_ptr<Transport> make_transport() = 0;
  /** Worker: the channel to the master. */
  virtual std::unique_ptr<WorkerChannel> make_worker_channel() = 0;
  /** What n_workers() says before the workers are started. */
  virtual unsigned planned_workers() const { return requested_workers() != 0 ? requested_workers() : 1; }
  /** Worker: who this worker is (default: its WM_PROCESS_INDEX, its pid, no rank, this host). */
  virtual WorkerIdentity worker_identity() const;

  /** The engine's options, read from the declared ones; a subclass may adjust them in its
   *  constructor (elastic, hints, startup limit). */
  EngineOptions& engine_options() { return options_; }
  WorkerLoopOptions& worker_loop_options() { return loop_options_; }

  void do_startup() override;
  void do_stop(bool now) override;
  void do_join() override;
  void do_submit(wm_task* const* tasks, std::size_t n) override;
  void do_run() override;
  bool do_is_master() const override { return !worker_role(); }
  unsigned do_n_workers() const override;

 private:
  std::shared_ptr<Dispatcher> current() const;

  EngineOptions options_;
  WorkerLoopOptions loop_options_;
  mutable std::mutex mutex_;  // guards the pointer only
  std::shared_ptr<Dispatcher> dispatcher_;
  bool stopped_ = false;
  bool stop_now_ = false;
};

}  // namespace wm::sdk::remote
