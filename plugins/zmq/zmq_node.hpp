// zmq_node.hpp: a zmq node: the host program started with --wm-zmq-mode node. It joins its master
// over ZeroMQ, starts --n-workers local workers with the processes backend's launcher
// (LocalProcessTransport: its workers are processes workers, not rewritten) and relays frames between
// the master and them on one thread, until the master ends the job (then it returns) or is gone
// (then it throws, and its workers are killed).
#pragma once

#include "process_transport.hpp"
#include "zmq_common.hpp"

#include <memory>
#include <string>
#include <vector>

namespace wm_zmq {

struct NodeOptions {
  std::string endpoint;         // the master's endpoint (with key_hex), or
  std::string host_info_path;   // the master's host-info file (endpoint and key)
  std::string key_hex;
  bool curve = false;
  double startup_timeout = 60;  // s to wait for the master
  double shutdown_timeout = 5;  // s the local workers get to finish when the job ends
  wm_processes::LocalProcessOptions local;  // n_workers, host program, ...; first_index comes from the master
};

class NodeRelay final : private remote::TransportEvents {
 public:
  NodeRelay(const wm_core_services& services, const char* backend_name, NodeOptions options);
  ~NodeRelay();
  NodeRelay(const NodeRelay&) = delete;
  NodeRelay& operator=(const NodeRelay&) = delete;

  /** Joins the master and serves until it ends the job. Throws (why) if no master answered within
   *  the startup timeout, if the master refused this node, or when the master is gone. */
  void run();

 private:
  struct Target {
    std::string endpoint;
    Security security;
  };

  void log(int level, const std::string& message) const;
  Target target_from_options() const;
  bool target_from_host_info(Target& out, std::string& why) const;
  Target wait_for_host_info(Clock::time_point deadline);
  void open_data(const Target& t);
  Welcome join(Clock::time_point deadline);
  void open_heartbeat(const Welcome& w);
  void open_regions(const Welcome& w);
  void serve();
  bool pump_data();  // the master's messages: true if there were any
  void pump_control();  // the heartbeat socket, the monitors (the master gone?), idle memory
  void handle_frames(const char* data, std::size_t size);
  void to_local_worker(remote::WorkerId w, std::uint64_t seq, const char* payload, std::size_t len);
  void begin_end();
  void send_out();
  [[noreturn]] void master_gone(const std::string& why);
  std::size_t alive_workers() const;

  // ---- TransportEvents, from the local workers (inside local_->progress) ----
  void worker_added(remote::WorkerId id) override;
  void worker_ready(remote::WorkerId id, const remote::Hello& hello) override;
  void reply(remote::WorkerId id, std::uint64_t seq, const char* data, std::size_t size) override;
  void protocol_error(remote::WorkerId id, const std::string& why) override;
  void worker_lost(remote::WorkerId id, const std::string& status) override;

  const wm_core_services& services_;
  const char* name_;
  NodeOptions options_;
  std::string rid_;          // routing id on both sockets: how the master knows this node
  Nonce nonce_{};
  Target target_;
  std::string hb_endpoint_;
  std::string master_;       // "the master at ENDPOINT (host, pid)", for messages
  int sockets_opened_ = 0;   // names the monitors apart
  std::pair<const wm_core_services*, const char*> log_context_;

  LargeSender large_out_;    // before the context: its buffers outlive every message ZeroMQ holds
  std::unique_ptr<zmq::context_t> ctx_;
  std::unique_ptr<zmq::socket_t> data_, hb_;
  std::unique_ptr<Monitor> data_mon_, hb_mon_;
  std::unique_ptr<wm_processes::LocalProcessTransport> local_;

  remote::Buffer out_;       // frames batched for the master
  std::int64_t out_worker_ = -1;
  std::int64_t in_worker_ = -1;
  LargeReceiver large_in_;
  // On the master's host: the master's two regions (see kShmTask), opened through /proc.
  wm_processes::SharedRegion task_region_, reply_region_;
  bool shm_ = false;
  bool reply_token_ = false;  // the node may write the reply region
  Clock::time_point reply_used_{};
  std::vector<char> alive_;  // per local worker: a process serves it
  std::vector<remote::WorkerId> dirty_;
  std::size_t large_threshold_ = std::size_t(1) << 20;
  bool ending_ = false, forced_ = false;
  Clock::time_point end_deadline_{}, last_activity_{};
};

}  // namespace wm_zmq
