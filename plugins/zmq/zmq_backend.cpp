// SPDX-License-Identifier: MIT
// zmq_backend.cpp: the "zmq" backend, on the remote engine: a master (the host program) whose workers
// are the local workers of nodes that join over ZeroMQ. Here: the options and the roles (master;
// node, a relay of the engine; a node's workers). See README.md beside this file.
#include "zmq_common.hpp"

#include <wm/sdk/remote/remote_backend.hpp>

#include <strings.h>

#include <algorithm>
#include <stdexcept>
#include <string>
#include <thread>

namespace {

using namespace wm_zmq;

class ZmqBackend final : public wm::sdk::remote::RemoteBackend {
 public:
  ZmqBackend(const wm_core_services* s, const wm_backend_config* c, const char* name) : RemoteBackend(s, c, name) {
    if (worker_role()) return;  // a node's worker: the engine's local transport is all it needs
    const std::string mode = option_string("mode");
    const std::string& e = o_.endpoint = option_string("endpoint");
    auto is = [&](const char* m) { return strcasecmp(mode.c_str(), m) == 0; };
    if (!is("master") && !is("server") && !is("node") && !is("client"))
      throw std::invalid_argument("WM_ZMQ_MODE (--wm-zmq-mode) is '" + mode +
                                  "': use master (the host program that submits tasks) or node (a process that "
                                  "serves a master with its local workers)");
    master_ = is("master") || is("server");
    // tcp://HOST:PORT (PORT a number or *) or ipc://PATH; anything else is refused with the forms allowed.
    const bool tcp = e.rfind("tcp://", 0) == 0 && e.rfind(':') > 6 && e.rfind(':') + 1 < e.size();
    if (!e.empty() && !tcp && !(e.rfind("ipc://", 0) == 0 && e.size() > 6))
      throw std::invalid_argument("WM_ZMQ_ENDPOINT (--wm-zmq-endpoint) is '" + e +
                                  "': use tcp://HOST:PORT (a master may give * for HOST and PORT) or ipc://PATH");
    o_.key = option_string("key");
    if (!o_.key.empty()) JobKey::parse(o_.key, "WM_ZMQ_KEY (--wm-zmq-key)");  // refused now, with what is wrong
    const std::string write_host_info = option_string("write-host-info");
    const std::string read_host_info = option_string("read-host-info");
    o_.host_info = master_ ? write_host_info : read_host_info;
    const double heartbeat_interval = option_double("heartbeat-interval");
    const double heartbeat_timeout = option_double("heartbeat-timeout");
    o_.startup_timeout = option_double("startup-timeout");
    o_.curve = option_bool("curve");
    if (heartbeat_timeout <= heartbeat_interval)
      throw std::invalid_argument("WM_ZMQ_HEARTBEAT_TIMEOUT (" + remote::seconds_text(heartbeat_timeout) +
                                  ") must be longer than WM_ZMQ_HEARTBEAT_INTERVAL (" +
                                  remote::seconds_text(heartbeat_interval) +
                                  "): a peer is declared gone after that much silence, and it is heard from once per "
                                  "interval");
    o_.heartbeat_ivl_ms = std::max(1, static_cast<int>(heartbeat_interval * 1000 + 0.5));
    o_.heartbeat_timeout_ms = std::max(o_.heartbeat_ivl_ms + 1, static_cast<int>(heartbeat_timeout * 1000 + 0.5));
    if (master_) {
      if (!read_host_info.empty())
        throw std::invalid_argument("--wm-zmq-read-host-info is for nodes (--wm-zmq-mode node); a master writes "
                                    "its host info with --wm-zmq-write-host-info");
      if (o_.key.empty() && write_host_info.empty())
        throw std::invalid_argument(
            "a zmq master needs a way for its nodes to join: --wm-zmq-write-host-info FILE (nodes then start with "
            "--wm-zmq-mode node --wm-zmq-read-host-info FILE), or a key of your own with --wm-zmq-key (64 hex "
            "digits, e.g. from `openssl rand -hex 32`; nodes then need it and --wm-zmq-endpoint)");
    } else {
      if (!write_host_info.empty())
        throw std::invalid_argument("--wm-zmq-write-host-info is for the master; a node reads it with "
                                    "--wm-zmq-read-host-info");
      if (read_host_info.empty() && (o_.endpoint.empty() || o_.key.empty()))
        throw std::invalid_argument(
            "a zmq node needs its master: --wm-zmq-read-host-info FILE (the file the master writes with "
            "--wm-zmq-write-host-info), or --wm-zmq-endpoint tcp://HOST:PORT together with the job's --wm-zmq-key");
      if (o_.endpoint.find('*') != std::string::npos)
        throw std::invalid_argument("WM_ZMQ_ENDPOINT (--wm-zmq-endpoint) of a node is '" + o_.endpoint +
                                    "': a node connects to its master's host and port, which cannot be *");
    }
    auto& eo = engine_options();
    eo.elastic = true;  // nodes join and leave at any time
    eo.no_worker_timeout = master_ ? o_.startup_timeout : 0;
    eo.dead_hint = "start nodes: the host program with --work-manager zmq --wm-zmq-mode node";
  }

 protected:
  remote::Role decide_role() override {
    return worker_role() ? remote::Role::worker : master_ ? remote::Role::master : remote::Role::relay;
  }

  // --n-workers on a master: wait (up to the startup timeout) until that many workers have joined.
  void started() override {
    const unsigned want = requested_workers();
    if (want == 0 || wait_for_workers(want, o_.startup_timeout > 0 ? o_.startup_timeout : 1e9) || stopping()) return;
    log(WM_LOG_WARNING, std::to_string(n_workers()) + " of the " + std::to_string(want) +
                              " workers asked for (--n-workers) joined within the startup timeout of " +
                              remote::seconds_text(o_.startup_timeout) +
                              "; going on with them (more may join at any time)");
  }

  // The dispatcher's thread has ended: the nodes learn that the job is over and exit.
  void joined(wm::sdk::remote::Transport& transport) override { finish_master(transport); }

  std::unique_ptr<wm::sdk::remote::Transport> make_transport() override { return make_master(o_, logger()); }

  std::unique_ptr<wm::sdk::remote::Uplink> make_uplink() override {
    Options o = o_;
    o.n_workers = node_workers();
    return make_node(o, logger());
  }

  // The master has no workers until nodes join; a node has its local workers.
  unsigned planned_workers() const override { return master_ ? 0 : node_workers(); }

 private:
  unsigned node_workers() const {
    return requested_workers() != 0 ? requested_workers() : std::max(1u, std::thread::hardware_concurrency());
  }

  bool master_ = true;
  Options o_;
};

}  // namespace

using wm::sdk::option_bool, wm::sdk::option_double, wm::sdk::option_string;

WM_DECLARE_BACKEND(
    zmq, ZmqBackend, "1.0.0",
    "Runs registered tasks on nodes that join over ZeroMQ (TCP between hosts, IPC within one), each with local worker "
    "processes",
    WM_CAP_REMOTE | WM_CAP_SPMD | WM_CAP_SPAWNS_WORKERS, WM_REMOTE_ENGINE_OPTIONS,
    option_string("mode", "master", "master: the host program that submits tasks; node: a process that serves a master "
                  "with --n-workers local workers"),
    option_string("endpoint", "", "master: where to listen (tcp://IFACE:PORT or ipc://PATH; default: every interface, "
                  "any port); node: the master's endpoint"),
    option_string("key", "", "the job key, 64 hex digits (master: instead of a random one; node: its master's, if it "
                  "does not read the host-info file)"),
    option_string("write-host-info", "", "master: write its endpoints and key to this file (mode 0600, atomically; "
                  "removed at shutdown) for nodes to read"),
    option_string("read-host-info", "", "node: join the master that wrote this file (waits for it to appear, up to the "
                  "startup timeout)"),
    option_double("heartbeat-interval", "1", 0.01, 3600, "master: seconds between heartbeats, both ways (its nodes "
                  "follow the master's settings)"),
    option_double("heartbeat-timeout", "5", 0.02, 6553, "master: seconds of silence after which a node is declared "
                  "gone (and a node declares its master gone)"),
    option_double("startup-timeout", "60", 0, 1e9, "node: seconds it waits for its master; master: seconds pending "
                  "tasks wait while no node is there (0: for ever)"),
    option_bool("curve", "false", "encrypt every connection with ZeroMQ's CURVE (keys derived from the job key); costs "
                "CPU on large payloads"))
