// SPDX-License-Identifier: MIT
// dashboard.cpp: the dashboard module (wm_dashboard.so, loaded by the core for --wm-dashboard):
// serves a work manager's statistics with cpp-httplib: / (one self-contained page that refreshes
// itself every second), /status.json and /metrics (Prometheus text format). Read-only: GET and
// HEAD of these three paths, nothing else; a token is asked of every request when the core says
// so (any address but loopback).
#include "dashboard_module.hpp"
#include "dashboard_page.hpp"

#include <wm/errors.hpp>
#include <wm/stats.hpp>

#include <httplib.h>
#include <nlohmann/json.hpp>

#include <atomic>
#include <cstdio>
#include <memory>
#include <string>
#include <thread>

namespace wm::detail {
namespace {

using nlohmann::json;

json to_json(const Stats& s) {
  json kinds = json::object();
  for (std::size_t k = 0; k < kFailureKinds; ++k)
    if (s.failed_by_kind[k] != 0) kinds[to_string(static_cast<FailureKind>(k))] = s.failed_by_kind[k];
  json workers = json::array();
  for (const WorkerStats& w : s.workers) {
    json task = nullptr;
    if (w.running())
      task = {{"name", w.task_name}, {"id", w.task_id}, {"sequence", w.task_sequence}, {"seconds", w.task_seconds}};
    workers.push_back({{"index", w.index},
                       {"pid", w.pid},
                       {"rank", w.rank},
                       {"host", w.host},
                       {"state", to_string(w.state)},
                       {"task", task},
                       {"tasks_done", w.tasks_done},
                       {"tasks_failed", w.tasks_failed},
                       {"restarts", w.restarts},
                       {"in_flight", w.in_flight},
                       {"busy_seconds", w.busy_seconds},
                       {"up_seconds", w.up_seconds},
                       {"busy_fraction", w.busy_fraction},
                       {"bytes_sent", w.bytes_sent},
                       {"bytes_received", w.bytes_received}});
  }
  json failures = json::array();
  for (const FailureNote& f : s.recent_failures)
    failures.push_back({{"task_name", f.task_name},
                        {"task_id", f.task_id},
                        {"kind", to_string(f.kind)},
                        {"message", f.message},
                        {"worker", f.worker_index},
                        {"seconds_ago", f.seconds_ago}});
  json states = json::object();
  for (WorkerState st : {WorkerState::starting, WorkerState::idle, WorkerState::busy, WorkerState::lost})
    states[to_string(st)] = s.workers_in(st);
  return {{"backend", s.backend},
          {"pid", s.pid},
          {"uptime_seconds", s.uptime_seconds},
          {"tasks",
           {{"submitted", s.submitted},
            {"completed", s.completed},
            {"failed", s.failed},
            {"cancelled", s.cancelled},
            {"retried", s.retried},
            {"finished", s.finished()},
            {"queued", s.queued},
            {"in_flight", s.in_flight},
            {"running", s.running},
            {"per_second", s.tasks_per_second},
            {"rate_seconds", s.rate_seconds},
            {"failed_by_kind", kinds}}},
          {"bytes", {{"sent", s.bytes_sent}, {"received", s.bytes_received}}},
          {"workers_by_state", states},
          {"workers", workers},
          {"workers_note", s.workers_note},
          {"recent_failures", failures}};
}

// A label value in the Prometheus text format: backslash, double quote and line feed escaped.
std::string label(const std::string& v) {
  std::string out;
  for (char c : v) {
    if (c == '\\') out += "\\\\";
    else if (c == '"') out += "\\\"";
    else if (c == '\n') out += "\\n";
    else out += c;
  }
  return out;
}

std::string number(double v) {
  char buf[64];
  std::snprintf(buf, sizeof buf, "%.17g", v);
  return buf;
}

// The Prometheus text exposition format (version 0.0.4): HELP and TYPE once per family, then its
// samples, every one labelled with the backend.
std::string to_metrics(const Stats& s) {
  const std::string b = "backend=\"" + label(s.backend) + "\"";
  std::string out;
  auto family = [&](const char* name, const char* type, const char* help) {
    out += std::string("# HELP ") + name + " " + help + "\n# TYPE " + name + " " + type + "\n";
  };
  auto sample = [&](const std::string& name, const std::string& labels, double v) {
    out += name + "{" + labels + "} " + number(v) + "\n";
  };
  // A family of one sample, labelled with the backend alone.
  auto one = [&](const char* name, const char* type, const char* help, double value) {
    family(name, type, help);
    sample(name, b, value);
  };
  one("wm_tasks_submitted_total", "counter", "Tasks submitted to the work manager.", double(s.submitted));
  one("wm_tasks_completed_total", "counter", "Tasks that finished with a result.", double(s.completed));
  family("wm_tasks_failed_total", "counter", "Tasks that finished with an error (cancelled ones not counted), by kind.");
  for (std::size_t k = 0; k < kFailureKinds; ++k) {
    // Every kind once it happened; task_exception always, so that the family has a sample.
    const auto kind = static_cast<FailureKind>(k);
    if (kind == FailureKind::cancelled || (s.failed_by_kind[k] == 0 && kind != FailureKind::task_exception)) continue;
    sample("wm_tasks_failed_total", b + ",kind=\"" + to_string(kind) + "\"", double(s.failed_by_kind[k]));
  }
  one("wm_tasks_cancelled_total", "counter", "Tasks cancelled before or while they ran.", double(s.cancelled));
  one("wm_tasks_retried_total", "counter", "Runs again of tasks lost with a worker.", double(s.retried));
  one("wm_tasks_queued", "gauge", "Tasks submitted and not on a worker yet.", double(s.queued));
  one("wm_tasks_in_flight", "gauge", "Tasks on workers and not finished.", double(s.in_flight));
  one("wm_tasks_running", "gauge", "Workers running a task now.", double(s.running));
  one("wm_tasks_per_second", "gauge", "Tasks finished per second over the last 10 seconds.", s.tasks_per_second);
  family("wm_workers", "gauge", "Workers by state.");
  for (WorkerState st : {WorkerState::starting, WorkerState::idle, WorkerState::busy, WorkerState::lost})
    sample("wm_workers", b + ",state=\"" + to_string(st) + "\"", double(s.workers_in(st)));
  auto per_worker = [&](const char* name, const char* type, const char* help, double (*value)(const WorkerStats&)) {
    family(name, type, help);
    for (const WorkerStats& w : s.workers) sample(name, b + ",worker=\"" + std::to_string(w.index) + "\"", value(w));
  };
  per_worker("wm_worker_tasks_done_total", "counter", "Tasks finished on each worker, failed ones included.",
             [](const WorkerStats& w) { return double(w.tasks_done); });
  per_worker("wm_worker_busy_ratio", "gauge", "Each worker's time with a task, over its time since it first started.",
             [](const WorkerStats& w) { return w.busy_fraction; });
  per_worker("wm_worker_restarts_total", "counter", "Times each worker was started again after it was lost.",
             [](const WorkerStats& w) { return double(w.restarts); });
  one("wm_bytes_sent_total", "counter", "Bytes of requests sent to workers.", double(s.bytes_sent));
  one("wm_bytes_received_total", "counter", "Bytes of replies received from workers.", double(s.bytes_received));
  one("wm_uptime_seconds", "gauge", "Seconds since the work manager was made.", s.uptime_seconds);
  return out;
}

// Compares in a time that does not depend on where the first difference is.
bool same(const std::string& given, const std::string& token) {
  if (token.empty() || given.size() != token.size()) return false;
  unsigned char diff = 0;
  for (std::size_t i = 0; i < token.size(); ++i) diff |= static_cast<unsigned char>(given[i] ^ token[i]);
  return diff == 0;
}

class Server final : public DashboardServer {
 public:
  explicit Server(const DashboardRequest& request) : request_(request) {}
  ~Server() override { stop(); }

  bool start(std::string& error) {
    // Two threads answer requests (the default is one per core): a page and a scraper at once. No
    // keep-alive: cpp-httplib polls a kept-alive connection every 10 ms while it waits (0.11); a
    // browser polling once a second connects again instead, and an idle dashboard costs nothing.
    server_.new_task_queue = [] { return new httplib::ThreadPool(2); };
    server_.set_keep_alive_max_count(1);
    server_.set_read_timeout(5, 0);
    server_.set_write_timeout(5, 0);
    server_.set_pre_routing_handler([this](const httplib::Request& req, httplib::Response& res) {
      res.set_header("Cache-Control", "no-store");
      res.set_header("X-Content-Type-Options", "nosniff");
      if (req.method != "GET" && req.method != "HEAD") {
        res.status = 405;
        res.set_header("Allow", "GET, HEAD");
        res.set_content("read-only: GET only\n", "text/plain");
        return httplib::Server::HandlerResponse::Handled;
      }
      if (request_.need_token && !authorized(req)) {
        res.status = 401;
        res.set_header("WWW-Authenticate", "Bearer realm=\"wm\"");
        res.set_content("this dashboard needs its token: ?token=... or Authorization: Bearer ... (the master printed "
                        "it when it started)\n",
                        "text/plain");
        return httplib::Server::HandlerResponse::Handled;
      }
      return httplib::Server::HandlerResponse::Unhandled;
    });
    server_.Get("/", [this](const httplib::Request&, httplib::Response& res) {
      res.set_header("Content-Security-Policy",
                     "default-src 'none'; script-src 'unsafe-inline'; style-src 'unsafe-inline'; connect-src 'self'; "
                     "img-src data:");
      res.set_content(dashboard_page(to_json(request_.snapshot()).dump()), "text/html; charset=utf-8");
    });
    server_.Get("/status.json", [this](const httplib::Request&, httplib::Response& res) {
      res.set_content(to_json(request_.snapshot()).dump(2) + "\n", "application/json");
    });
    server_.Get("/metrics", [this](const httplib::Request&, httplib::Response& res) {
      res.set_content(to_metrics(request_.snapshot()), "text/plain; version=0.0.4; charset=utf-8");
    });
    if (request_.port == 0) {
      port_ = server_.bind_to_any_port(request_.host);
      if (port_ <= 0) port_ = 0;
    } else if (server_.bind_to_port(request_.host, request_.port)) {
      port_ = request_.port;
    }
    if (port_ == 0) {
      error = "cannot listen on " + request_.host + ":" + std::to_string(request_.port) +
              " (in use, or not an address of this host)";
      return false;
    }
    thread_ = std::thread([this] { server_.listen_after_bind(); });
    return true;
  }

  int port() const noexcept override { return port_; }

  void stop() noexcept override {
    if (stopped_.exchange(true)) return;
    server_.stop();
    if (thread_.joinable()) thread_.join();
  }

 private:
  bool authorized(const httplib::Request& req) const {
    if (req.has_param("token") && same(req.get_param_value("token"), request_.token)) return true;
    const std::string auth = req.get_header_value("Authorization");
    return auth.rfind("Bearer ", 0) == 0 && same(auth.substr(7), request_.token);
  }

  const DashboardRequest request_;
  httplib::Server server_;
  std::thread thread_;
  int port_ = 0;
  std::atomic<bool> stopped_{false};
};

}  // namespace
}  // namespace wm::detail

extern "C" [[gnu::visibility("default")]] wm::detail::DashboardServer* wm_dashboard_start(
    const wm::detail::DashboardRequest* request, std::string* error) {
  try {
    auto server = std::make_unique<wm::detail::Server>(*request);
    if (!server->start(*error)) return nullptr;
    return server.release();
  } catch (const std::exception& e) {
    *error = e.what();
    return nullptr;
  }
}
