// zmq_master.hpp: the master side of the zmq backend, a transport of the remote engine. Nodes join
// over ZeroMQ; each local worker of each node is one engine worker (WorkerId), so the dispatcher's
// windows, retries, timeouts and blame rules apply per worker. Two ROUTER sockets: data (tasks,
// replies, control; large payloads in chunks, or through two shared regions for a node on this
// host) and heartbeat (ZeroMQ's own heartbeats, so they never queue behind a large message), both
// checked by a ZAP handler at every connection.
#pragma once

#include "zmq_common.hpp"

#include <wm/sdk/remote/transport.hpp>

#include <condition_variable>
#include <functional>
#include <memory>
#include <mutex>
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

class MasterTransport;

/** Shared by the backend (host threads) and its current transport (the dispatcher's thread). */
struct MasterState {
  std::mutex mutex;
  std::condition_variable changed;
  unsigned ready = 0;                    // workers of connected nodes that said hello
  MasterTransport* transport = nullptr;  // the live transport, if any
};

/** Answers ZeroMQ's authentication requests (ZAP, RFC 27) on its own thread: a connection is let in
 *  only if it shows this job's key (PLAIN: the derived password; CURVE: the derived client key).
 *  Refusals are logged with the peer's address. */
class Authenticator {
 public:
  using Log = std::function<void(int level, const std::string& message)>;
  /** Binds inproc://zeromq.zap.01 in ctx (before any server socket binds) and starts the thread. */
  Authenticator(zmq::context_t& ctx, const Security& security, Log log);
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
  Log log_;
  int refusals_ = 0;
  std::thread thread_;
};

class MasterTransport final : public remote::Transport {
 public:
  MasterTransport(const wm_core_services& services, const char* backend_name, MasterOptions options,
                  std::shared_ptr<MasterState> state);
  ~MasterTransport() override;

  void start(remote::TransportEvents& events) override;
  bool restart_worker(remote::WorkerId id) override;
  bool send_task(remote::WorkerId id, std::uint64_t seq, std::size_t size, const remote::Encoder& encode) override;
  void flush(remote::WorkerId id) override;
  void stop_worker(remote::WorkerId id, remote::StopMode mode) override;
  int progress(int timeout_ms) override;
  void wake() override;

  /** Tells every node the job is over (they exit 0), closes the sockets, stops the authenticator and
   *  removes the host-info file. Called once the dispatcher's thread has ended (and by the
   *  destructor); idempotent. */
  void finish();

 private:
  struct Node;
  struct Slot {
    Node* node = nullptr;  // null: free
    std::uint32_t local = 0;
    bool alive = false;    // a process serves it (or is being started) as far as the dispatcher knows
    bool ready = false;
  };

  void log(int level, const std::string& message) const;
  void bind_all();
  void write_host_info();
  void receive_data(int& events);
  void handle_message(const std::string& rid, const zmq::message_t& body, int& events);
  void handle_frames(Node& n, const char* data, std::size_t size, int& events);
  void deliver(Node& n, std::uint32_t local, std::uint8_t type, std::uint64_t seq, const char* payload,
               std::size_t len, int& events);
  void accept_node(const std::string& rid, const NodeHello& hello, int& events);
  void refuse(const std::string& rid, const std::string& why);
  void receive_heartbeat_socket();
  void read_monitors();
  void probe(Clock::time_point now, int& events);
  void lose(Node& n, const std::string& why, int& events);
  void doom(Node& n, const std::string& why);
  bool flush_node(Node& n);
  void collect_garbage();
  void set_ready(Slot& s, bool ready);
  int own_timeout_ms(Clock::time_point now) const;
  std::chrono::milliseconds attach_window() const;

  const wm_core_services& services_;
  const char* name_;
  MasterOptions options_;
  std::shared_ptr<MasterState> state_;
  remote::TransportEvents* events_ = nullptr;

  LargeSender large_out_;  // before the context: its buffers outlive every message ZeroMQ holds
  std::unique_ptr<zmq::context_t> ctx_;
  std::unique_ptr<Authenticator> auth_;
  std::unique_ptr<zmq::socket_t> data_, hb_;
  std::unique_ptr<Monitor> data_mon_, hb_mon_;
  int wake_fd_ = -1;
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
