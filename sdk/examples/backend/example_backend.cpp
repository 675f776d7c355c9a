// SPDX-License-Identifier: MIT
// example_backend.cpp: an example work-manager backend, the whole of it: runs each task in the thread
// that submits it. Built by the CMakeLists.txt beside it against an installed wm (sdk/README.md).
#include <wm/sdk/backend.hpp>

#include <cstddef>
#include <string>

namespace {

class InlineBackend final : public wm::sdk::Backend {
 public:
  using Backend::Backend;  // (services, config, name): the SDK constructs it

 protected:
  // Accept the tasks and finish each one exactly once: execute() runs it here, in this thread, and
  // completes its future with the result or the exception.
  void do_submit(wm_task* const* tasks, std::size_t n) override {
    if (option_bool("announce")) log(WM_LOG_INFO, "running " + std::to_string(n) + " task(s) inline");
    for (std::size_t i = 0; i < n; ++i) execute(tasks[i]);
  }
  unsigned do_n_workers() const override { return 1; }
};

}  // namespace

// The backend's name (WM_WORK_MANAGER=example), class, version, description, capabilities, then
// its options: WM_EXAMPLE_ANNOUNCE / --wm-example-announce.
WM_DECLARE_BACKEND(example, InlineBackend, "1.0.0", "Example: runs each task in the submitting thread",
                   WM_CAP_IN_PROCESS,
                   wm::sdk::option_bool("announce", "no", "log (at level info) each batch of tasks it runs"))
