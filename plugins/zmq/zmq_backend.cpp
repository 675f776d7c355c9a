// zmq_backend.cpp: the "zmq" backend: a master (the host program) whose workers are the local
// workers of nodes that join over ZeroMQ, on the remote engine. What is here: the options and the
// roles (master; node, a relay of the engine; a node's workers, processes of the engine's local
// transport). The master's transport is zmq_master.cpp, a node's link to it zmq_node.cpp, what both
// share zmq_common.cpp. See README.md beside this file.
#include "zmq_master.hpp"
#include "zmq_node.hpp"

#include <wm/sdk/remote/remote_backend.hpp>

#include <algorithm>
#include <cctype>
#include <chrono>
#include <cstdio>
#include <stdexcept>
#include <string>
#include <thread>

namespace {

using namespace wm_zmq;

std::string lower(std::string s) {
  for (char& c : s) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  return s;
}

// tcp://HOST:PORT (PORT a number or *) or ipc://PATH; anything else is refused with the forms allowed.
void check_endpoint(const std::string& e) {
  const bool tcp = e.rfind("tcp://", 0) == 0 && e.rfind(':') > 6 && e.rfind(':') + 1 < e.size();
  const bool ipc = e.rfind("ipc://", 0) == 0 && e.size() > 6;
  if (!tcp && !ipc)
    throw std::invalid_argument("WM_ZMQ_ENDPOINT (--wm-zmq-endpoint) is '" + e +
                                "': use tcp://HOST:PORT (a master may give * for HOST and PORT) or ipc://PATH");
}

class ZmqBackend final : public wm::sdk::remote::RemoteBackend {
 public:
  ZmqBackend(const wm_core_services* s, const wm_backend_config* c, const char* name) : RemoteBackend(s, c, name) {
    if (worker_role()) return;  // a node's worker: the engine's local transport is all it needs
    const std::string mode = lower(option_string("mode"));
    if (mode == "master" || mode == "server")
      master_ = true;
    else if (mode == "node" || mode == "client")
      master_ = false;
    else
      throw std::invalid_argument("WM_ZMQ_MODE (--wm-zmq-mode) is '" + option_string("mode") +
                                  "': use master (the host program that submits tasks) or node (a process that "
                                  "serves a master with its local workers)");
    endpoint_ = option_string("endpoint");
    if (!endpoint_.empty()) check_endpoint(endpoint_);
    key_ = option_string("key");
    if (!key_.empty()) JobKey::parse(key_, "WM_ZMQ_KEY (--wm-zmq-key)");  // refused now, with what is wrong
    write_host_info_ = option_string("write-host-info");
    read_host_info_ = option_string("read-host-info");
    heartbeat_interval_ = option_double("heartbeat-interval");
    heartbeat_timeout_ = option_double("heartbeat-timeout");
    startup_timeout_ = option_double("startup-timeout");
    curve_ = option_bool("curve");
    if (heartbeat_timeout_ <= heartbeat_interval_)
      throw std::invalid_argument("WM_ZMQ_HEARTBEAT_TIMEOUT (" + wm::sdk::remote::seconds_text(heartbeat_timeout_) +
                                  ") must be longer than WM_ZMQ_HEARTBEAT_INTERVAL (" +
                                  wm::sdk::remote::seconds_text(heartbeat_interval_) +
                                  "): a peer is declared gone after that much silence, and it is heard from once per "
                                  "interval");
    if (master_) {
      if (!read_host_info_.empty())
        throw std::invalid_argument("--wm-zmq-read-host-info is for nodes (--wm-zmq-mode node); a master writes "
                                    "its host info with --wm-zmq-write-host-info");
      if (key_.empty() && write_host_info_.empty())
        throw std::invalid_argument(
            "a zmq master needs a way for its nodes to join: --wm-zmq-write-host-info FILE (nodes then start with "
            "--wm-zmq-mode node --wm-zmq-read-host-info FILE), or a key of your own with --wm-zmq-key (64 hex "
            "digits, e.g. from `openssl rand -hex 32`; nodes then need it and --wm-zmq-endpoint)");
    } else {
      if (!write_host_info_.empty())
        throw std::invalid_argument("--wm-zmq-write-host-info is for the master; a node reads it with "
                                    "--wm-zmq-read-host-info");
      if (read_host_info_.empty() && (endpoint_.empty() || key_.empty()))
        throw std::invalid_argument(
            "a zmq node needs its master: --wm-zmq-read-host-info FILE (the file the master writes with "
            "--wm-zmq-write-host-info), or --wm-zmq-endpoint tcp://HOST:PORT together with the job's --wm-zmq-key");
      if (endpoint_.find('*') != std::string::npos)
        throw std::invalid_argument("WM_ZMQ_ENDPOINT (--wm-zmq-endpoint) of a node is '" + endpoint_ +
                                    "': a node connects to its master's host and port, which cannot be *");
    }
    auto& eo = engine_options();
    eo.elastic = true;  // nodes join and leave at any time
    eo.no_worker_timeout = master_ ? startup_timeout_ : 0;
    eo.dead_hint = "start nodes: the host program with --work-manager zmq --wm-zmq-mode node";
  }

 protected:
  wm::sdk::remote::Role decide_role() override {
    if (worker_role()) return wm::sdk::remote::Role::worker;
    return master_ ? wm::sdk::remote::Role::master : wm::sdk::remote::Role::relay;
  }

  // --n-workers on a master: wait (up to the startup timeout) until that many workers have joined.
  void started() override {
    const unsigned want = requested_workers();
    if (want == 0) return;
    const double limit = startup_timeout_ > 0 ? startup_timeout_ : 1e9;
    if (!wait_for_workers(want, limit) && !stopping())
      log(WM_LOG_WARNING, std::to_string(n_workers()) + " of the " + std::to_string(want) +
                              " workers asked for (--n-workers) joined within the startup timeout of " +
                              wm::sdk::remote::seconds_text(startup_timeout_) +
                              "; going on with them (more may join at any time)");
  }

  // The dispatcher's thread has ended: the nodes learn that the job is over and exit.
  void joined(wm::sdk::remote::Transport& transport) override { static_cast<MasterTransport&>(transport).finish(); }

  std::unique_ptr<wm::sdk::remote::Transport> make_transport() override {
    MasterOptions o;
    o.endpoint = endpoint_;
    o.security = Security{key_.empty() ? JobKey::random() : JobKey::parse(key_, "WM_ZMQ_KEY"), curve_};
    o.host_info_path = write_host_info_;
    o.heartbeat_ivl_ms = std::max(1, static_cast<int>(heartbeat_interval_ * 1000 + 0.5));
    o.heartbeat_timeout_ms = std::max(o.heartbeat_ivl_ms + 1, static_cast<int>(heartbeat_timeout_ * 1000 + 0.5));
    return std::make_unique<MasterTransport>(std::move(o), logger());
  }

  std::unique_ptr<wm::sdk::remote::Uplink> make_uplink() override {
    NodeOptions o;
    o.endpoint = endpoint_;
    o.host_info_path = read_host_info_;
    o.key_hex = key_;
    o.curve = curve_;
    o.startup_timeout = startup_timeout_;
    o.n_workers = node_workers();
    return std::make_unique<NodeUplink>(std::move(o), logger());
  }

  // The master has no workers until nodes join; a node has its local workers.
  unsigned planned_workers() const override { return master_ ? 0 : node_workers(); }

 private:
  unsigned node_workers() const {
    return requested_workers() != 0 ? requested_workers() : std::max(1u, std::thread::hardware_concurrency());
  }

  bool master_ = true;
  bool curve_ = false;
  std::string endpoint_, key_, write_host_info_, read_host_info_;
  double heartbeat_interval_ = 1, heartbeat_timeout_ = 5, startup_timeout_ = 60;
};

}  // namespace

WM_DECLARE_BACKEND(zmq, ZmqBackend, "1.0.0",
                   "Runs registered tasks on nodes that join over ZeroMQ (TCP between hosts, IPC within one), each with "
                   "local worker processes",
                   WM_CAP_REMOTE | WM_CAP_SPMD, WM_REMOTE_ENGINE_OPTIONS,
                   wm::sdk::option_string("mode", "master",
                                          "master: the host program that submits tasks; node: a process that serves "
                                          "a master with --n-workers local workers"),
                   wm::sdk::option_string("endpoint", "",
                                          "master: where to listen (tcp://IFACE:PORT or ipc://PATH; default: every "
                                          "interface, any port); node: the master's endpoint"),
                   wm::sdk::option_string("key", "",
                                          "the job key, 64 hex digits (master: instead of a random one; node: its "
                                          "master's, if it does not read the host-info file)"),
                   wm::sdk::option_string("write-host-info", "",
                                          "master: write its endpoints and key to this file (mode 0600, atomically; "
                                          "removed at shutdown) for nodes to read"),
                   wm::sdk::option_string("read-host-info", "",
                                          "node: join the master that wrote this file (waits for it to appear, up to "
                                          "the startup timeout)"),
                   wm::sdk::option_double("heartbeat-interval", "1", 0.01, 3600,
                                          "master: seconds between heartbeats, both ways (its nodes follow the "
                                          "master's settings)"),
                   wm::sdk::option_double("heartbeat-timeout", "5", 0.02, 6553,
                                          "master: seconds of silence after which a node is declared gone (and a "
                                          "node declares its master gone)"),
                   wm::sdk::option_double("startup-timeout", "60", 0, 1e9,
                                          "node: seconds it waits for its master; master: seconds pending tasks wait "
                                          "while no node is there (0: for ever)"),
                   wm::sdk::option_bool("curve", "false",
                                        "encrypt every connection with ZeroMQ's CURVE (keys derived from the job "
                                        "key); costs CPU on large payloads"))
