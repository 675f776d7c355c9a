// SPDX-License-Identifier: MIT
// processes_backend.cpp: the "processes" backend: worker processes of the host program on this
// machine: the SDK's local-process transport on the remote engine, with its options. See README.md
// beside this file.
#include <wm/sdk/remote/remote_backend.hpp>

#include <algorithm>
#include <thread>

namespace {

namespace remote = wm::sdk::remote;

class ProcessesBackend final : public remote::RemoteBackend {
 public:
  ProcessesBackend(const wm_core_services* s, const wm_backend_config* c, const char* name)
      : RemoteBackend(s, c, name) {
    n_ = requested_workers() != 0 ? requested_workers() : std::max(1u, std::thread::hardware_concurrency());
    engine_options().dead_hint =
        "run with WM_LOG_LEVEL=debug and read the workers' standard error; the host program must call "
        "wm::serve_if_worker() or wm::make_work_manager() early in main";
    engine_options().share_memory = true;  // WM_CAP_MAPS_MEMORY: shared arrays are mapped, not sent
  }

 protected:
  std::unique_ptr<remote::Transport> make_transport() override {
    remote::LocalProcessOptions o = local_processes(n_);
    o.shared_memory = option_bool("shared-memory");
    return std::make_unique<remote::LocalProcesses>(std::move(o), logger());
  }
  unsigned planned_workers() const override { return n_; }

 private:
  unsigned n_ = 1;
};

}  // namespace

WM_DECLARE_BACKEND(processes, ProcessesBackend, "1.2.0",
                   "Runs registered tasks in worker processes of the host program (n_workers defaults to the cores)",
                   WM_CAP_REMOTE | WM_CAP_SPAWNS_WORKERS | WM_CAP_MAPS_MEMORY, WM_REMOTE_ENGINE_OPTIONS,
                   wm::sdk::option_bool("shared-memory", "true",
                                        "bytes through shared-memory rings, arguments and results of 1 MiB or more "
                                        "through shared regions (one copy on each side), not the sockets"))
