// SPDX-License-Identifier: MIT
// unresolved_backend.cpp: a plugin that needs a symbol nobody defines. Discovery lists it (its
// metadata is fine); loading it must fail with a clear error, never kill the host later.
#include <wm/sdk/backend.hpp>

extern "C" void wm_test_symbol_that_nobody_defines(void);

namespace {
class UnresolvedBackend final : public wm::sdk::Backend {
 public:
  using Backend::Backend;

 protected:
  void do_submit(wm_task* const*, std::size_t) override { wm_test_symbol_that_nobody_defines(); }
  unsigned do_n_workers() const override { return 1; }
};
}  // namespace

WM_DECLARE_BACKEND(unresolved, UnresolvedBackend, "0.0.1", "Test plugin with an undefined symbol",
                   WM_CAP_IN_PROCESS)
