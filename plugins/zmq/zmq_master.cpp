// zmq_master.cpp: the zmq master's transport and its authenticator (see zmq_master.hpp).
#include "zmq_master.hpp"

#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <stdexcept>

namespace wm_zmq {
namespace {

constexpr std::uint32_t kMaxNodeWorkers = 4096;
constexpr int kLoggedRefusals = 20;  // then only at debug level: a port scan must not flood the log
// After a connection closes, which node it was is found by sending to each (ROUTER_MANDATORY says
// EHOSTUNREACH once ZeroMQ has dropped the peer, a few milliseconds after the event).
constexpr std::chrono::milliseconds kProbeDelays[] = {std::chrono::milliseconds(0), std::chrono::milliseconds(3),
                                                      std::chrono::milliseconds(15), std::chrono::milliseconds(60),
                                                      std::chrono::milliseconds(250), std::chrono::milliseconds(1000)};

// How long a node's heartbeat connection must be gone while its data connection stands before it is
// declared silent rather than dead (the probes after an event reach past it).
constexpr std::chrono::milliseconds kSilenceVerdict(200);

std::string as_string(const zmq::message_t& m) { return std::string(static_cast<const char*>(m.data()), m.size()); }

// The host part of tcp://HOST:PORT.
std::string tcp_host(const std::string& endpoint) {
  const std::string rest = endpoint.substr(6);
  const auto colon = rest.rfind(':');
  return colon == std::string::npos ? rest : rest.substr(0, colon);
}

bool numeric(const std::string& s) {
  return !s.empty() && std::all_of(s.begin(), s.end(), [](char c) { return c >= '0' && c <= '9'; });
}

}  // namespace

// ---------------------------------------------------------------- authenticator

Authenticator::Authenticator(zmq::context_t& ctx, const Security& security, remote::Log log)
    : rep_(ctx, zmq::socket_type::rep),
      stop_in_(ctx, zmq::socket_type::pair),
      stop_out_(ctx, zmq::socket_type::pair),
      curve_(security.curve),
      log_(std::move(log)) {
  rep_.set(zmq::sockopt::linger, 0);
  rep_.bind("inproc://zeromq.zap.01");
  stop_in_.set(zmq::sockopt::linger, 0);
  stop_out_.set(zmq::sockopt::linger, 0);
  stop_in_.bind("inproc://wm-zmq-zap-stop");
  stop_out_.connect("inproc://wm-zmq-zap-stop");
  if (curve_) {
    std::string spub, ssec, cpub, csec;
    security.key.curve_keys(spub, ssec, cpub, csec);
    client_key_.resize(32);
    zmq_z85_decode(reinterpret_cast<std::uint8_t*>(client_key_.data()), cpub.c_str());
  } else {
    password_ = security.key.node_password();
  }
  thread_ = std::thread([this] { run(); });
}

Authenticator::~Authenticator() {
  stop_out_.send(zmq::str_buffer("stop"), zmq::send_flags::dontwait);
  thread_.join();
}

bool Authenticator::check(const std::vector<zmq::message_t>& req, std::string& why) const {
  if (req.size() < 6 || as_string(req[0]) != "1.0") {
    why = "a malformed authentication request";
    return false;
  }
  if (as_string(req[2]) != kZapDomain) {
    why = "a connection to a socket that is not this master's";
    return false;
  }
  const std::string mechanism = as_string(req[5]);
  if (curve_) {
    if (mechanism != "CURVE") {
      why = "it uses ZeroMQ's " + mechanism + " mechanism and this master expects CURVE (--wm-zmq-curve must be "
            "the same on the master and its nodes)";
      return false;
    }
    if (req.size() < 7 || req[6].size() != client_key_.size() || !same_bytes(req[6].data(), client_key_.data(), 32)) {
      why = "it did not show this job's key (a node of another job, or not a wm node)";
      return false;
    }
    return true;
  }
  if (mechanism != "PLAIN") {
    why = "it uses ZeroMQ's " + mechanism + " mechanism and this master expects PLAIN (--wm-zmq-curve must be "
          "the same on the master and its nodes)";
    return false;
  }
  if (req.size() < 8 || as_string(req[6]) != "wm-node" || req[7].size() != password_.size() ||
      !same_bytes(req[7].data(), password_.data(), password_.size())) {
    why = "it did not show this job's key (a node of another job, or not a wm node)";
    return false;
  }
  return true;
}

void Authenticator::run() {
  for (;;) {
    zmq_pollitem_t items[] = {{rep_.handle(), 0, ZMQ_POLLIN, 0}, {stop_in_.handle(), 0, ZMQ_POLLIN, 0}};
    if (zmq_poll(items, 2, -1) < 0) {
      if (zmq_errno() == EINTR) continue;
      return;
    }
    if (items[1].revents != 0) return;
    if (items[0].revents == 0) continue;
    std::vector<zmq::message_t> req;
    try {
      do {
        req.emplace_back();
        if (!rep_.recv(req.back(), zmq::recv_flags::dontwait)) {
          req.pop_back();
          break;
        }
      } while (req.back().more());
      if (req.empty()) continue;
      std::string why;
      const bool ok = check(req, why);
      const std::string request_id = req.size() > 1 ? as_string(req[1]) : std::string();
      rep_.send(zmq::str_buffer("1.0"), zmq::send_flags::sndmore);
      rep_.send(zmq::buffer(request_id), zmq::send_flags::sndmore);
      rep_.send(ok ? zmq::str_buffer("200") : zmq::str_buffer("400"), zmq::send_flags::sndmore);
      rep_.send(zmq::buffer(ok ? std::string("OK") : why), zmq::send_flags::sndmore);
      rep_.send(ok ? zmq::str_buffer("wm-node") : zmq::str_buffer(""), zmq::send_flags::sndmore);
      rep_.send(zmq::str_buffer(""), zmq::send_flags::none);
      if (!ok) {
        const std::string address = req.size() > 3 && req[3].size() != 0 ? as_string(req[3]) : "a local peer";
        ++refusals_;
        log_(refusals_ <= kLoggedRefusals ? WM_LOG_WARNING : WM_LOG_DEBUG,
             "refused a connection from " + address + ": " + why +
                 (refusals_ == kLoggedRefusals ? " (further refusals are logged at debug level)" : ""));
      }
    } catch (const zmq::error_t& e) {
      if (e.num() == ETERM) return;
      log_(WM_LOG_ERROR, std::string("the authenticator failed: ") + e.what());
      return;
    }
  }
}

// ---------------------------------------------------------------- nodes

struct MasterTransport::Node {
  std::string rid, host;
  std::int64_t pid = 0;
  std::vector<remote::WorkerId> ids;  // WorkerId of each local worker
  bool attached = false;              // its heartbeat connection is open
  bool lost = false, doomed = false;
  std::string doom_why;
  Clock::time_point attach_by{};
  Clock::time_point hb_gone_at{};     // when a probe first found its heartbeat connection gone
  Outgoing out;                       // parts batched for it
  LargeReceiver large_in;             // a payload from one of its workers
  // A node on this host: large requests and replies through two shared regions instead of the socket.
  std::unique_ptr<remote::SharedRegion> task_region, reply_region;
  remote::RegionWriter writer;
  bool shm = false;        // the node opened them
  bool task_free = false;  // the master may write the task region (the node has passed the last request on)
  std::string label() const { return "node '" + host + "' (pid " + std::to_string(pid) + ")"; }
};

MasterTransport::MasterTransport(MasterOptions options, remote::Log log)
    : options_(std::move(options)), log_(std::move(log)) {}

MasterTransport::~MasterTransport() { finish(); }

remote::Capabilities MasterTransport::capabilities() const {
  remote::Capabilities c;
  c.batch_limit = kBatchBytes;
  c.shared_storage = true;  // for nodes on this host (lend_request says when)
  c.payloads = true;
  return c;
}

void MasterTransport::start(remote::TransportHost& host) {
  host_ = &host;
  ctx_ = std::make_unique<zmq::context_t>(1);
  // The authenticator first: a server socket that binds before it would let everybody in.
  auth_ = std::make_unique<Authenticator>(*ctx_, options_.security, log_);
  data_ = std::make_unique<zmq::socket_t>(*ctx_, zmq::socket_type::router);
  data_->set(zmq::sockopt::router_mandatory, 1);  // a send to a node that is gone fails: that is how we notice
  data_->set(zmq::sockopt::sndhwm, 0);            // the engine's windows bound what is in flight
  data_->set(zmq::sockopt::rcvhwm, 0);
  data_->set(zmq::sockopt::maxmsgsize, kMaxMessage);
  data_->set(zmq::sockopt::sndbuf, kSocketBuffer);  // TCP: fewer hand-overs per large payload
  data_->set(zmq::sockopt::rcvbuf, kSocketBuffer);
  data_->set(zmq::sockopt::linger, 0);
  // ZeroMQ's heartbeats on the data connection too, with a longer timeout: a backstop for a data
  // connection that stalls while the heartbeat connection lives (libzmq 4.3.4 cancels the timeout on
  // any traffic, so a large message in progress does not trip it: measured, see README.md).
  const int data_timeout = static_cast<int>(std::min<long>(3L * options_.heartbeat_timeout_ms, 6553500L));
  data_->set(zmq::sockopt::heartbeat_ivl, options_.heartbeat_ivl_ms);
  data_->set(zmq::sockopt::heartbeat_timeout, data_timeout);
  data_->set(zmq::sockopt::heartbeat_ttl, data_timeout);
  options_.security.server(*data_);
  hb_ = std::make_unique<zmq::socket_t>(*ctx_, zmq::socket_type::router);
  hb_->set(zmq::sockopt::router_mandatory, 1);
  hb_->set(zmq::sockopt::heartbeat_ivl, options_.heartbeat_ivl_ms);
  hb_->set(zmq::sockopt::heartbeat_timeout, options_.heartbeat_timeout_ms);
  hb_->set(zmq::sockopt::heartbeat_ttl, std::min(options_.heartbeat_timeout_ms, 6553500));
  hb_->set(zmq::sockopt::maxmsgsize, std::int64_t(64) << 10);
  hb_->set(zmq::sockopt::linger, 0);
  options_.security.server(*hb_);
  data_mon_ = std::make_unique<Monitor>(*ctx_, *data_, "wm-zmq-data-monitor",
                                        ZMQ_EVENT_DISCONNECTED | ZMQ_EVENT_HANDSHAKE_FAILED_PROTOCOL |
                                            ZMQ_EVENT_HANDSHAKE_FAILED_NO_DETAIL);
  hb_mon_ = std::make_unique<Monitor>(*ctx_, *hb_, "wm-zmq-heartbeat-monitor", ZMQ_EVENT_DISCONNECTED);
  bind_all();
  write_host_info();
  log_(WM_LOG_INFO, "master of job " + options_.security.key.job_id() + " listening on " +
                        (tcp_endpoint_.empty() ? "" : tcp_endpoint_ + (ipc_endpoint_.empty() ? "" : " and ")) +
                        ipc_endpoint_ + (options_.security.curve ? " (CURVE encryption)" : ""));
}

void MasterTransport::bind_all() {
  const std::string& ep = options_.endpoint;
  auto bind = [](zmq::socket_t& s, const std::string& where, const char* what) {
    try {
      s.bind(where);
    } catch (const zmq::error_t& e) {
      throw std::runtime_error(std::string("the zmq master cannot listen for ") + what + " on " + where + ": " +
                               e.what());
    }
    return s.get(zmq::sockopt::last_endpoint);
  };
  if (ep.empty() || ep.rfind("tcp://", 0) == 0) {
    const std::string tcp = ep.empty() ? "tcp://*:*" : ep;
    const std::string host = tcp_host(tcp);
    const std::string port = tcp.substr(tcp.rfind(':') + 1);
    const unsigned data_port = tcp_port_of(bind(*data_, tcp, "nodes"));
    const std::string hb_where =
        "tcp://" + host + ":" + (numeric(port) ? std::to_string(std::stoul(port) + 1) : std::string("*"));
    hb_port_ = tcp_port_of(bind(*hb_, hb_where, "heartbeats"));
    const bool any = host == "*" || host == "0.0.0.0";
    tcp_endpoint_ = "tcp://" + (any ? remote::this_host() : host) + ":" + std::to_string(data_port);
    // Nodes on this host take a Unix socket in a directory only this user can enter.
    const char* tmp = std::getenv("TMPDIR");
    for (std::string base : {std::string(tmp != nullptr && *tmp != '\0' ? tmp : "/tmp"), std::string("/tmp")}) {
      std::string dir = base + "/wm-zmq-XXXXXX";
      if (dir.size() + 4 > 100 || mkdtemp(dir.data()) == nullptr) continue;
      try {
        ipc_endpoint_ = bind(*data_, "ipc://" + dir + "/data", "nodes on this host");
        hb_ipc_ = bind(*hb_, "ipc://" + dir + "/hb", "heartbeats on this host");
        ipc_dir_ = dir;
      } catch (const std::exception& e) {
        log_(WM_LOG_DEBUG, std::string("no ipc endpoint for nodes on this host: ") + e.what());
        ipc_endpoint_.clear();
        rmdir(dir.c_str());
      }
      break;
    }
  } else {
    ipc_endpoint_ = bind(*data_, ep, "nodes");
    hb_ipc_ = bind(*hb_, ep + ".hb", "heartbeats");
  }
}

void MasterTransport::write_host_info() {
  if (options_.host_info_path.empty()) return;
  HostInfo info;
  info.host = remote::this_host();
  info.pid = getpid();
  info.tcp = tcp_endpoint_;
  info.ipc = ipc_endpoint_;
  info.key = options_.security.key.hex();
  info.curve = options_.security.curve;
  wm_zmq::write_host_info(options_.host_info_path, info);
  host_info_written_ = true;
}

void MasterTransport::finish() {
  if (finished_) return;
  finished_ = true;
  if (data_) {
    remote::Buffer end;
    put_part(end, kEnd);
    for (auto& n : nodes_)
      if (!n->lost) send_to(*data_, n->rid, end.data, end.size);
  }
  data_mon_.reset();
  hb_mon_.reset();
  if (data_) {
    data_->set(zmq::sockopt::linger, 1000);  // the ends still go out
    data_.reset();
  }
  hb_.reset();
  auth_.reset();
  ctx_.reset();  // waits until the ends are sent (or the linger passed)
  if (host_info_written_) {
    // Only if it is still ours: a later master may have written its own there.
    HostInfo info;
    std::string why;
    if (read_host_info(options_.host_info_path, info, why) && info.key == options_.security.key.hex())
      unlink(options_.host_info_path.c_str());
  }
  if (!ipc_dir_.empty()) {
    unlink((ipc_dir_ + "/data").c_str());
    unlink((ipc_dir_ + "/hb").c_str());
    rmdir(ipc_dir_.c_str());
  }
}

// ---------------------------------------------------------------- sending

bool MasterTransport::flush_node(Node& n) {
  n.out.close();
  if (n.out.out.size == 0) return true;
  const bool ok = send_to(*data_, n.rid, n.out.out.data, n.out.out.size);
  n.out.out.size = 0;
  if (!ok) doom(n, "closed its connection (the node ended or was killed)");
  return ok;
}

remote::Buffer& MasterTransport::outbox(remote::WorkerId id) {
  Slot& s = slots_.at(id);
  return s.node->out.bytes_for(s.local);
}

void MasterTransport::flush(remote::WorkerId id) {
  Slot& s = slots_.at(id);
  if (s.node == nullptr) return;
  if (s.node->lost || s.node->doomed)
    s.node->out.out.size = 0, s.node->out.open = -1;
  else
    flush_node(*s.node);
}

bool MasterTransport::closing(remote::WorkerId id) const {
  const Slot& s = slots_.at(id);
  return s.node == nullptr || s.node->lost || s.node->doomed;
}

bool MasterTransport::launch(remote::WorkerId id, const remote::WorkerSetup&) {
  // The node starts the worker when the setup reaches it; a node that left cannot start anything.
  Slot& s = slots_.at(id);
  if (s.node == nullptr || s.node->lost || s.node->doomed) return false;
  s.alive = true;
  return true;
}

void MasterTransport::stop_worker(remote::WorkerId id) {
  Slot& s = slots_.at(id);
  Node* n = s.node;
  if (n == nullptr || n->lost || n->doomed || !s.alive) return;  // a lost node reports its workers lost
  n->out.close();
  put_part(n->out.out, kKill, s.local);
  flush_node(*n);
}

wm_byte_buffer* MasterTransport::lend_request(remote::WorkerId id, std::size_t size) {
  // A node on this host: the request is encoded once, straight into the region it reads from.
  Node* n = slots_.at(id).node;
  if (n == nullptr || !n->shm || !n->task_free || !n->task_region->reserve(size)) return nullptr;
  n->task_free = false;
  n->writer = remote::RegionWriter(*n->task_region);
  last_large_ = Clock::now();
  return &n->writer;
}

const char* MasterTransport::lent_reply(remote::WorkerId id, std::size_t size) {
  Node* n = slots_.at(id).node;
  return n != nullptr && n->shm ? n->reply_region->view(size) : nullptr;
}

void MasterTransport::reply_done(remote::WorkerId id) {
  // Read: the node may write its next reply there.
  Node* n = slots_.at(id).node;
  last_large_ = Clock::now();
  if (n == nullptr || n->lost || n->doomed) return;
  n->out.close();
  put_part(n->out.out, kShmFree, 0, nullptr, 0, 1);
}

void MasterTransport::send_payload(remote::WorkerId id, remote::Buffer&& payload) {
  // Sent from the buffer it was encoded into, in chunks ZeroMQ sends without a copy.
  Slot& s = slots_.at(id);
  Node* n = s.node;
  last_large_ = Clock::now();
  if (n == nullptr || n->lost || n->doomed) return host_->payload_sent(id, std::move(payload));
  n->out.close();
  put_part(n->out.out, kPayload, s.local, nullptr, 0, payload.size);
  if (flush_node(*n) && !large_out_.send(*data_, n->rid, id, std::move(payload)))
    doom(*n, "closed its connection (the node ended or was killed)");
}

bool MasterTransport::receive_payload(remote::WorkerId id, remote::Buffer&& into) {
  Slot& s = slots_.at(id);
  if (s.node == nullptr) return false;
  s.payload = std::move(into);  // the node announces it, then sends its chunks
  s.expecting = true;
  return true;
}

void MasterTransport::give_back_payloads() {
  for (auto& [id, buf] : large_out_.done()) host_->payload_sent(id, std::move(buf));
}

void MasterTransport::wake() { waker_.ring(); }

// ---------------------------------------------------------------- receiving

int MasterTransport::own_timeout_ms(Clock::time_point now) const {
  auto next = Clock::time_point::max();
  if (!probes_.empty()) next = probes_.front();
  for (const auto& n : nodes_)
    if (!n->lost && !n->attached) next = std::min(next, n->attach_by);
  bool big = false;
  for (const auto& n : nodes_) big = big || (n->task_region && n->task_region->capacity() != 0);
  if (big) next = std::min(next, last_large_ + kIdleRelease);
  if (next == Clock::time_point::max()) return -1;
  if (next <= now) return 0;
  return static_cast<int>(std::chrono::duration_cast<std::chrono::milliseconds>(next - now).count() + 1);
}

int MasterTransport::progress(int timeout_ms) {
  int events = 0;
  auto now = Clock::now();
  give_back_payloads();
  probe(now, events);
  if (timeout_ms == 0 && events == 0 && now - last_control_ < kControlEvery) {
    // Spinning: a look at a ZeroMQ socket costs system calls (expensive on the VMs measured), so
    // only the data socket; the monitors, the heartbeat socket and the waker once a millisecond.
    receive_data(events);
    if (doomed_) probe(now, events);
    return events;
  }
  last_control_ = now;
  const int own = own_timeout_ms(now);
  if (events > 0)
    timeout_ms = 0;
  else if (own >= 0 && (timeout_ms < 0 || own < timeout_ms))
    timeout_ms = own;
  zmq_pollitem_t items[] = {{data_->handle(), 0, ZMQ_POLLIN, 0},
                            {data_mon_->socket().handle(), 0, ZMQ_POLLIN, 0},
                            {hb_->handle(), 0, ZMQ_POLLIN, 0},
                            {hb_mon_->socket().handle(), 0, ZMQ_POLLIN, 0},
                            {nullptr, waker_.fd(), ZMQ_POLLIN, 0}};
  const int n = zmq_poll(items, 5, timeout_ms);
  if (n > 0) {
    if (items[4].revents != 0) waker_.drain();
    if (items[0].revents != 0) receive_data(events);
    if (items[1].revents != 0 || items[3].revents != 0) read_monitors();
    if (items[2].revents != 0) receive_heartbeat_socket();
  }
  now = Clock::now();
  for (auto& node : nodes_)
    if (!node->lost && !node->attached && now >= node->attach_by)
      doom(*node, "did not open its heartbeat connection within " +
                      remote::seconds_text(std::chrono::duration<double>(attach_window()).count()));
  probe(now, events);
  if (now - last_large_ >= kIdleRelease)
    for (auto& node : nodes_)
      if (node->task_free && node->task_region->capacity() != 0) node->task_region->release();
  collect_garbage();
  return events;
}

void MasterTransport::receive_data(int& events) {
  for (int i = 0; i < 4096; ++i) {
    zmq::message_t rid, body;
    if (!data_->recv(rid, zmq::recv_flags::dontwait)) return;
    if (!rid.more() || !data_->recv(body, zmq::recv_flags::dontwait)) continue;
    bool multipart = false;
    while (body.more()) {  // our peers never send multipart messages
      multipart = true;
      if (!data_->recv(body, zmq::recv_flags::dontwait)) break;
    }
    const std::string r = as_string(rid);
    if (multipart) {
      auto it = by_rid_.find(r);
      if (it != by_rid_.end())
        doom(*it->second, "sent a multipart message, which is not part of this protocol");
      else
        refuse(r, "its first message was a multipart message, not a node hello");
      continue;
    }
    handle_message(r, body, events);
  }
}

void MasterTransport::refuse(const std::string& rid, const std::string& why) {
  gone_.insert(rid);
  log_(WM_LOG_WARNING, "refused a node: " + why);
  remote::Buffer gone;
  put_part(gone, kGone, 0, why.data(), why.size());
  send_to(*data_, rid, gone.data, gone.size);
}

void MasterTransport::handle_message(const std::string& rid, const zmq::message_t& body, int& events) {
  const char* data = static_cast<const char*>(body.data());
  const std::size_t size = body.size();
  auto it = by_rid_.find(rid);
  if (it == by_rid_.end()) {
    if (gone_.count(rid) != 0) {
      // A node given up that is back (a stopped node that was continued): tell it to leave.
      const std::string why = "this node was given up by the master (it went silent or broke the protocol)";
      remote::Buffer gone;
      put_part(gone, kGone, 0, why.data(), why.size());
      send_to(*data_, rid, gone.data, gone.size);
      return;
    }
    PartCursor c(data, size);
    Part h;
    const char* payload = nullptr;
    std::string why;
    if (c.next(h, payload, why) != PartCursor::Status::part || h.kind != kNodeHello) {
      refuse(rid, why.empty() ? "its first message was not a node hello" : why);
      return;
    }
    NodeHello hello;
    if (!parse(payload, h.len, hello, why)) return refuse(rid, why);
    if (c.next(h, payload, why) != PartCursor::Status::end) return refuse(rid, "its hello was followed by other parts");
    accept_node(rid, hello, events);
    return;
  }
  Node& n = *it->second;
  if (n.lost || n.doomed) return;
  if (n.large_in.active) {
    bool complete = false;
    std::string why;
    if (!n.large_in.add(data, size, complete, why)) return doom(n, "sent a large payload that does not add up (" + why + ")");
    if (complete) {
      last_large_ = Clock::now();
      ++events;
      const remote::WorkerId id = n.ids[n.large_in.worker];
      if (n.large_in.discard)
        n.large_in.buf.release();
      else
        host_->payload_received(id, std::move(n.large_in.buf));
    }
    return;
  }
  handle_parts(n, data, size, events);
}

void MasterTransport::handle_parts(Node& n, const char* data, std::size_t size, int& events) {
  PartCursor c(data, size);
  for (;;) {
    Part h;
    const char* p = nullptr;
    std::string why;
    const auto st = c.next(h, p, why);
    if (st == PartCursor::Status::end) return;
    if (st == PartCursor::Status::bad) return doom(n, "sent a message that is not the protocol (" + why + ")");
    const bool per_worker = h.kind == kBytes || h.kind == kPayload || h.kind == kLost || h.kind == kBadBytes;
    if (per_worker && h.worker >= n.ids.size())
      return doom(n, "named its worker " + std::to_string(h.worker) + " of " + std::to_string(n.ids.size()));
    const remote::WorkerId id = per_worker ? n.ids[h.worker] : 0;
    switch (h.kind) {
      case kBytes:
        ++events;
        host_->received(id, p, h.len);
        break;
      case kPayload:
        // The chunks follow: into the buffer the engine gave for it (if it still waits for one).
        if (c.next(h, p, why) != PartCursor::Status::end)
          return doom(n, "sent a payload announcement that is not the last part of its message");
        if (h.value == 0 || h.value > static_cast<std::uint64_t>(kMaxMessage) << 16)
          return doom(n, "announced a payload of " + std::to_string(h.value) + " bytes");
        {
          Slot& s = slots_[id];
          LargeReceiver& in = n.large_in;
          in.active = true;
          in.worker = h.worker;
          in.got = 0;
          in.total = static_cast<std::size_t>(h.value);
          // What the engine asked for: received into its buffer; anything else is read and dropped.
          in.discard = !s.expecting || s.payload.size != in.total;
          if (!in.discard) in.buf = std::move(s.payload);
          s.expecting = false;
        }
        return;
      case kLost: {
        Slot& s = slots_[id];
        if (!s.alive) break;
        s.alive = false;
        ++events;
        // The engine decides: it starts another worker there (launch) or gives the slot up.
        host_->worker_lost(id, std::string(p, h.len) + " on " + n.label());
        break;
      }
      case kBadBytes:
        ++events;
        host_->broken(id, n.label() + ": " + std::string(p, h.len));
        break;
      case kShmReady:
        n.shm = n.task_region != nullptr;
        n.task_free = n.shm;
        break;
      case kShmFree:
        if (h.value == 0) n.task_free = n.shm;
        break;
      default:
        return doom(n, "sent a part of kind " + std::to_string(h.kind));
    }
    if (n.lost || n.doomed) return;
  }
}

void MasterTransport::accept_node(const std::string& rid, const NodeHello& hello, int& events) {
  const std::string who = "node '" + hello.host + "' (pid " + std::to_string(hello.pid) + ")";
  if (hello.n_workers == 0 || hello.n_workers > kMaxNodeWorkers)
    return refuse(rid, who + " announced " + std::to_string(hello.n_workers) + " workers (1 to " +
                           std::to_string(kMaxNodeWorkers) + " are allowed)");
  // A run of free worker ids (those of nodes that left are taken again), so that the node's
  // WM_PROCESS_INDEX values are consecutive.
  const std::size_t want = hello.n_workers;
  std::size_t first = 0, run = 0;
  for (; first + run < slots_.size() && run < want;) {
    const Slot& sl = slots_[first + run];
    if (sl.node == nullptr && !sl.alive)
      ++run;
    else {
      first += run + 1;
      run = 0;
    }
  }
  if (first + want > slots_.size()) slots_.resize(first + want);
  auto node = std::make_unique<Node>();
  Node& n = *node;
  n.rid = rid;
  n.host = hello.host;
  n.pid = hello.pid;
  n.attach_by = Clock::now() + attach_window();
  for (std::size_t k = 0; k < want; ++k) {
    n.ids.push_back(static_cast<remote::WorkerId>(first + k));
    slots_[first + k] = Slot{};
    slots_[first + k].node = &n;
    slots_[first + k].local = static_cast<std::uint32_t>(k);
  }
  by_rid_[rid] = &n;
  nodes_.push_back(std::move(node));
  Welcome w;
  w.proof = options_.security.key.proof(hello.nonce, rid);
  w.heartbeat_ivl_ms = static_cast<std::uint32_t>(options_.heartbeat_ivl_ms);
  w.heartbeat_timeout_ms = static_cast<std::uint32_t>(options_.heartbeat_timeout_ms);
  w.heartbeat_port = hb_port_;
  w.heartbeat_ipc = hb_ipc_;
  w.master_host = remote::this_host();
  w.master_pid = getpid();
  if ((hello.flags & NodeHello::kOverIpc) != 0) {
    // On this host: two memfds it may open through /proc (same user); if it cannot, the socket it is.
    auto task = std::make_unique<remote::SharedRegion>(), reply = std::make_unique<remote::SharedRegion>();
    if (task->create("wm-zmq-task") && reply->create("wm-zmq-reply")) {
      w.task_region_fd = task->fd();
      w.reply_region_fd = reply->fd();
      n.task_region = std::move(task);
      n.reply_region = std::move(reply);
    }
  }
  const std::string payload = encode(w);
  put_part(n.out.out, kWelcome, 0, payload.data(), payload.size());
  log_(WM_LOG_INFO, n.label() + " joined with " + std::to_string(want) + " worker(s) (WM_PROCESS_INDEX " +
                        std::to_string(first) + (want > 1 ? " to " + std::to_string(first + want - 1) : "") + ")");
  if (!flush_node(n)) return;
  // Then its workers: the engine sends each its setup, which starts it on the node.
  for (remote::WorkerId id : n.ids) {
    ++events;
    host_->worker_added(id);
  }
}

void MasterTransport::receive_heartbeat_socket() {
  for (int i = 0; i < 1024; ++i) {
    zmq::message_t rid, body;
    if (!hb_->recv(rid, zmq::recv_flags::dontwait)) return;
    if (!rid.more() || !hb_->recv(body, zmq::recv_flags::dontwait)) continue;
    while (body.more() && hb_->recv(body, zmq::recv_flags::dontwait)) {
    }
    auto it = by_rid_.find(as_string(rid));
    PartCursor c(body.data(), body.size());
    Part h;
    const char* p = nullptr;
    std::string why;
    if (it != by_rid_.end() && c.next(h, p, why) == PartCursor::Status::part && h.kind == kAttach)
      it->second->attached = true;
  }
}

std::chrono::milliseconds MasterTransport::attach_window() const {
  return std::max(std::chrono::milliseconds(2 * options_.heartbeat_timeout_ms), std::chrono::milliseconds(10000));
}

void MasterTransport::read_monitors() {
  for (Monitor* m : {data_mon_.get(), hb_mon_.get()}) {
    std::string address;
    while (const std::uint16_t ev = m->next(address)) {
      if (ev == ZMQ_EVENT_DISCONNECTED) {
        // Some connection closed: find out which node it was, if any (a refused peer's closes too).
        const auto now = Clock::now();
        for (auto d : kProbeDelays) probes_.push_back(now + d);
        std::sort(probes_.begin(), probes_.end());
      } else {
        ++refused_logged_;
        log_(refused_logged_ <= kLoggedRefusals ? WM_LOG_WARNING : WM_LOG_DEBUG,
             "refused a connection on " + address + ": " + event_name(ev) +
                 " (bytes that are not a wm zmq node's, or a node with another --wm-zmq-curve setting)");
      }
    }
  }
}

void MasterTransport::probe(Clock::time_point now, int& events) {
  if (!probes_.empty() && probes_.front() <= now) {
    while (!probes_.empty() && probes_.front() <= now) probes_.erase(probes_.begin());
    remote::Buffer beat;
    put_part(beat, kProbe);
    const std::string timeout = remote::seconds_text(options_.heartbeat_timeout_ms / 1000.0);
    for (auto& n : nodes_) {
      if (n->lost || n->doomed) continue;
      if (!send_to(*data_, n->rid, beat.data, beat.size)) {
        doom(*n, "closed its connection (the node ended or was killed)");
      } else if (n->attached && !send_to(*hb_, n->rid, beat.data, beat.size)) {
        // Only the heartbeat connection is gone. A node that died closes both, the data connection's
        // a moment later: a later probe tells. If that one still stands, the node went silent.
        if (n->hb_gone_at == Clock::time_point{}) {
          n->hb_gone_at = now;
        } else if (now - n->hb_gone_at >= kSilenceVerdict) {
          doom(*n, "went silent: no heartbeat within the heartbeat timeout of " + timeout +
                       " (the node was stopped or hangs, or its host is unreachable)");
        }
      }
    }
  }
  if (!doomed_) return;
  doomed_ = false;
  for (std::size_t i = 0; i < nodes_.size(); ++i)  // lose() may doom others through the engine's calls
    if (nodes_[i]->doomed && !nodes_[i]->lost) lose(*nodes_[i], nodes_[i]->doom_why, events);
}

void MasterTransport::doom(Node& n, const std::string& why) {
  if (n.lost || n.doomed) return;
  n.doomed = true;
  n.doom_why = why;
  doomed_ = true;
}

void MasterTransport::lose(Node& n, const std::string& why, int& events) {
  n.lost = true;
  gone_.insert(n.rid);
  by_rid_.erase(n.rid);
  log_(WM_LOG_WARNING, n.label() + " " + why + "; its " + std::to_string(n.ids.size()) + " worker(s) are lost");
  remote::Buffer gone;
  put_part(gone, kGone, 0, why.data(), why.size());
  send_to(*data_, n.rid, gone.data, gone.size);  // if it is still there, it leaves
  for (remote::WorkerId id : n.ids) {
    Slot& s = slots_[id];
    if (!s.alive) continue;
    s.alive = false;
    ++events;
    host_->worker_lost(id, "was lost with " + n.label() + ", which " + why);
  }
  for (remote::WorkerId id : n.ids) slots_[id] = Slot{};
}

void MasterTransport::collect_garbage() {
  nodes_.erase(std::remove_if(nodes_.begin(), nodes_.end(), [](const std::unique_ptr<Node>& n) { return n->lost; }),
               nodes_.end());
}

}  // namespace wm_zmq
