// zmq_master.hpp: the master side of the zmq backend, a transport of the remote engine. Nodes join
// over ZeroMQ; each local worker of each node is one engine worker (a link), so the engine's
// windows, retries, timeouts and blame rules apply per worker. Two ROUTER sockets: data (the
// engine's bytes, control; large payloads in chunks, or in two shared regions for a node on this
// host) and heartbeat (ZeroMQ's own heartbeats, so they never queue behind a large message), both
// checked by a ZAP handler at every connection.
#pragma once

#include "zmq_common.hpp"

#include <wm/sdk/remote/shared_region.hpp>
#include <wm/sdk/remote/transport.hpp>
#include <wm/sdk/remote/waker.hpp>

#include <functional>
#include <memory>
#include <string>
#include <thread>
#include <unordered_map>
#include <unordered_set>
#include <vector>

namespace wm_zmq {

/** What the master's transport needs. */
struct MasterOptions {
  std::string endpoint;         // "" : tcp on every interface, ephemeral port, plus ipc in a private directory
  Security security;
  std::string host_info_path;   // "" : none written
  int heartbeat_ivl_ms = 1000;
  int heartbeat_timeout_ms = 5000;
};

/** Answers ZeroMQ's authentication requests (ZAP, RFC 27) on its own thread: a connection is let in
 *  only if it shows this job's key (PLAIN: the derived password; CURVE: the derived client key).
 *  Refusals are logged with the peer's address. */
class Authenticator {
 public:
  /** Binds inproc://zeromq.zap.01 in ctx (before any server socket binds) and starts the thread. */
  Authenticator(zmq::context_t& ctx, const Security& security, remote::Log log);
  ~Authenticator();
  Authenticator(const Authenticator&) = delete;
  Authenticator& operator=(const Authenticator&) = delete;

 private:
  void run();
  bool check(const std::vector<zmq::message_t>& request, std::string& why) const;

  zmq::socket_t rep_, stop_in_, stop_out_;
  std::string password_;
  std::string client_key_;  // 32 bytes
  bool curve_;
  remote::Log log_;
  int refusals_ = 0;
  std::thread thread_;
};

class MasterTransport final : public remote::Transport {
 public:
  MasterTransport(MasterOptions options, remote::Log log);
  ~MasterTransport() override;

  remote::Capabilities capabilities() const override;
  void start(remote::TransportHost& host) override;
  bool launch(remote::WorkerId id, const remote::WorkerSetup& setup) override;
  remote::Buffer& outbox(remote::WorkerId id) override;
  void flush(remote::WorkerId id) override;
  void stop_worker(remote::WorkerId id) override;
  bool closing(remote::WorkerId id) const override;
  int progress(int timeout_ms) override;
  void wake() override;
  wm_byte_buffer* lend_request(remote::WorkerId id, std::size_t size) override;
  const char* lent_reply(remote::WorkerId id, std::size_t size) override;
  void reply_done(remote::WorkerId id) override;
  void send_payload(remote::WorkerId id, remote::Buffer&& payload) override;
  bool receive_payload(remote::WorkerId id, remote::Buffer&& into) override;

  /** Tells every node the job is over (they exit 0), closes the sockets, stops the authenticator and
   *  removes the host-info file. Called once the engine's thread has ended (and by the destructor);
   *  idempotent. */
  void finish();

 private:
  struct Node;
  struct Slot {
    Node* node = nullptr;  // null: free
    std::uint32_t local = 0;
    bool alive = false;    // a process serves it (or is being started) as far as the engine knows
    bool expecting = false;  // the engine gave a buffer for its next payload
    remote::Buffer payload;
  };

  void bind_all();
  void write_host_info();
  void receive_data(int& events);
  void handle_message(const std::string& rid, const zmq::message_t& body, int& events);
  void handle_parts(Node& n, const char* data, std::size_t size, int& events);
  void accept_node(const std::string& rid, const NodeHello& hello, int& events);
  void refuse(const std::string& rid, const std::string& why);
  void receive_heartbeat_socket();
  void read_monitors();
  void probe(Clock::time_point now, int& events);
  void lose(Node& n, const std::string& why, int& events);
  void doom(Node& n, const std::string& why);
  bool flush_node(Node& n);
  void give_back_payloads();
  void collect_garbage();
  int own_timeout_ms(Clock::time_point now) const;
  std::chrono::milliseconds attach_window() const;

  MasterOptions options_;
  remote::Log log_;
  remote::TransportHost* host_ = nullptr;

  LargeSender large_out_;  // before the context: its buffers outlive every message ZeroMQ holds
  std::unique_ptr<zmq::context_t> ctx_;
  std::unique_ptr<Authenticator> auth_;
  std::unique_ptr<zmq::socket_t> data_, hb_;
  std::unique_ptr<Monitor> data_mon_, hb_mon_;
  remote::Waker waker_;
  std::string tcp_endpoint_, ipc_endpoint_;  // what nodes connect to (host-info)
  unsigned hb_port_ = 0;
  std::string hb_ipc_;
  std::string ipc_dir_;
  bool host_info_written_ = false;
  bool finished_ = false;

  std::vector<std::unique_ptr<Node>> nodes_;
  std::unordered_map<std::string, Node*> by_rid_;
  std::unordered_set<std::string> gone_;  // routing ids of nodes given up: never let back in
  std::vector<Slot> slots_;               // by WorkerId
  std::vector<Clock::time_point> probes_; // when to look which nodes are still connected
  bool doomed_ = false;                   // some node must be declared lost at the next progress()
  int refused_logged_ = 0;
  Clock::time_point last_large_{};
  Clock::time_point last_control_{};      // the last full look at every socket
};

}  // namespace wm_zmq
