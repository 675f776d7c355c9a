// SPDX-License-Identifier: MIT
// dashboard_module.hpp: between the core and its dashboard module (wm_dashboard.so, next to the
// plugin directory): the core loads it only when --wm-dashboard is given, so that no host links an
// HTTP server it does not use. Both are built together, by one compiler: C++ types cross here.
#pragma once

#include <wm/stats.hpp>

#include <functional>
#include <string>

namespace wm::detail {

/** What the core asks the module to serve. */
struct DashboardRequest {
  std::string host;  // address to listen on ("127.0.0.1", "0.0.0.0", "::1", a host name)
  int port = 0;      // 0: any free port
  std::string token;     // asked of every request when need_token (?token= or Authorization: Bearer)
  bool need_token = false;
  std::function<Stats()> snapshot;  // called on the module's threads, never with a lock of its own held
};

/** A running dashboard. stop() closes it and waits for the requests being answered. */
class DashboardServer {
 public:
  virtual ~DashboardServer() = default;
  virtual int port() const noexcept = 0;
  virtual void stop() noexcept = 0;
};

/** The module's entry point: a server listening, or null with *error set. */
using DashboardStartFn = DashboardServer*(const DashboardRequest* request, std::string* error);
inline constexpr const char* kDashboardEntry = "wm_dashboard_start";
inline constexpr const char* kDashboardModule = "wm_dashboard.so";

}  // namespace wm::detail
