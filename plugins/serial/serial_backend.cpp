// SPDX-License-Identifier: MIT
// serial_backend.cpp: the "serial" backend: runs each task in the submitting thread, at submit.
#include <wm/sdk/backend.hpp>

#include <unistd.h>

namespace {

class SerialBackend final : public wm::sdk::Backend {
 public:
  using Backend::Backend;

 protected:
  void do_submit(wm_task* const* tasks, std::size_t n) override {
    // Tasks run as worker 0 (for error reports), in the order given.
    const wm_worker_identity me{sizeof(wm_worker_identity), 0, static_cast<std::int64_t>(getpid()), -1, 0, nullptr};
    services().set_worker(&me, 0);
    for (std::size_t i = 0; i < n; ++i) {
      if (workers_cover(tasks[i]))
        execute(tasks[i]);
      else
        fail_unfit(tasks[i]);
    }
    services().set_worker(nullptr, 0);
  }
  unsigned do_n_workers() const override { return 1; }
};

}  // namespace

WM_DECLARE_BACKEND(serial, SerialBackend, "1.0.0",
                   "Runs every task in the submitting thread when it is submitted (no parallelism)",
                   WM_CAP_IN_PROCESS)
