// zmq_node.hpp: a zmq node's link to its master: the host program started with --wm-zmq-mode node
// is a relay of the remote engine (its local workers are started and fed by the engine), and this
// is its Uplink: it joins the master over ZeroMQ, carries the engine's bytes for each local worker
// (large payloads in chunks, or in the master's shared regions when on its host), and says when
// the master ends the job (the relay returns) or is gone (progress() throws, the workers are killed).
#pragma once

#include "zmq_common.hpp"

#include <wm/sdk/remote/relay.hpp>
#include <wm/sdk/remote/shared_region.hpp>

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
  unsigned n_workers = 1;
};

class NodeUplink final : public remote::Uplink {
 public:
  NodeUplink(NodeOptions options, remote::Log log);
  ~NodeUplink() override;

  remote::Capabilities capabilities() const override;
  /** Joins the master; throws (why) if no master answered within the startup timeout or it refused
   *  this node. */
  unsigned start(remote::UplinkHost& host) override;
  remote::Buffer& outbox(remote::WorkerId w) override { return out_.bytes_for(w); }
  void flush(remote::WorkerId) override { send_out(); }
  void worker_lost(remote::WorkerId w, const std::string& status) override;
  void worker_broken(remote::WorkerId w, const std::string& why) override;
  int progress() override;
  std::vector<int> wait_fds() override;
  bool pending() override;
  void idle() override;
  const char* lent_request(remote::WorkerId w, std::size_t size) override;
  void request_done(remote::WorkerId w) override;
  bool lend_reply(remote::WorkerId w, std::size_t size, char*& data, std::size_t& capacity) override;
  void send_payload(remote::WorkerId w, remote::Buffer&& payload) override;
  bool receive_payload(remote::WorkerId w, remote::Buffer&& into) override;

 private:
  struct Target {
    std::string endpoint;
    Security security;
  };

  Target target_from_options() const;
  bool target_from_host_info(Target& out, std::string& why) const;
  Target wait_for_host_info(Clock::time_point deadline);
  void open_data(const Target& t);
  Welcome join(Clock::time_point deadline);
  void open_heartbeat(const Welcome& w);
  void open_regions(const Welcome& w);
  int pump_data();
  void pump_control();
  int handle_parts(const char* data, std::size_t size);
  void control(Kind kind, remote::WorkerId w, const std::string& body = {});
  void send_out();
  [[noreturn]] void master_gone(const std::string& why);

  NodeOptions options_;
  remote::Log log_;
  remote::UplinkHost* host_ = nullptr;
  std::string rid_;          // routing id on both sockets: how the master knows this node
  Nonce nonce_{};
  Target target_;
  std::string hb_endpoint_;
  std::string master_;       // "the master at ENDPOINT (host, pid)", for messages
  int sockets_opened_ = 0;   // names the monitors apart

  LargeSender large_out_;    // before the context: its buffers outlive every message ZeroMQ holds
  std::unique_ptr<zmq::context_t> ctx_;
  std::unique_ptr<zmq::socket_t> data_, hb_;
  std::unique_ptr<Monitor> data_mon_, hb_mon_;

  Outgoing out_;              // parts batched for the master
  LargeReceiver large_in_;    // a request's payload, chunk by chunk
  std::vector<remote::Buffer> expected_;  // per worker: the buffer the engine gave for its next payload
  std::vector<char> expecting_;
  // On the master's host: the master's two regions, opened through /proc.
  remote::SharedRegion task_region_, reply_region_;
  bool shm_ = false;
  bool reply_token_ = false;  // the node may write the reply region
  bool ended_ = false;        // the master ended the job
  Clock::time_point last_control_{};
};

}  // namespace wm_zmq
