// SPDX-License-Identifier: MIT
// zmq_master.cpp: the zmq master, a transport of the remote engine: each local worker of each node
// is one engine worker (a link). Two ROUTER sockets: data (the engine's bytes, the transport's
// control, large payloads in chunks) and heartbeat (ZeroMQ's own heartbeats, so they never queue
// behind a large message), both checked at every connection by the ZAP handler answered here.
#include "zmq_common.hpp"

#include <wm/sdk/remote/contact_file.hpp>
#include <wm/sdk/remote/waker.hpp>

#include <zmq_addon.hpp>

#include <unistd.h>

#include <cstdlib>
#include <iterator>
#include <unordered_map>
#include <unordered_set>

namespace wm_zmq {
namespace {

constexpr std::uint32_t kMaxNodeWorkers = 4096;
constexpr int kLoggedRefusals = 20;  // then only at debug level: a port scan must not flood the log
// After a connection closes, which node it was is found by sending to each (ROUTER_MANDATORY says
// EHOSTUNREACH once ZeroMQ has dropped the peer, a few milliseconds after the event).
constexpr int kProbeDelaysMs[] = {0, 3, 15, 60, 250, 1000};
// How long a node's heartbeat connection must be gone while its data connection stands before it is
// declared silent rather than dead (the probes after an event reach past it).
constexpr auto kSilenceVerdict = std::chrono::milliseconds(200);
const char* const kClosed = "closed its connection (the node ended or was killed)";

std::string text_of(const zmq::message_t& m) { return std::string(static_cast<const char*>(m.data()), m.size()); }

class MasterTransport final : public remote::Transport {
 public:
  MasterTransport(const Options& o, remote::Log log)
      : o_(o), key_(o.key.empty() ? JobKey::random() : JobKey::parse(o.key, "WM_ZMQ_KEY")), log_(std::move(log)),
        attach_window_(std::max(2 * o.heartbeat_timeout_ms, 10000)) {
    key_.curve = o.curve;
  }
  ~MasterTransport() override { finish(); }

  // Shared storage: for nodes on this host (lend_request says when).
  remote::Capabilities capabilities() const override { return wm_zmq::capabilities(true); }

  void start(remote::TransportHost& host) override {
    host_ = &host;
    ctx_ = std::make_unique<zmq::context_t>(1);
    // The ZAP handler first: a server socket that binds before it would let everybody in.
    zap_ = open_socket(*ctx_, zmq::socket_type::rep, false, "");
    zap_->bind("inproc://zeromq.zap.01");
    shown_ = key_.node_password();
    if (key_.curve) {  // the client's public key, 32 bytes
      shown_.resize(32);
      zmq_z85_decode(reinterpret_cast<std::uint8_t*>(shown_.data()), key_.curve_pair("client").first.c_str());
    }
    // ZeroMQ's heartbeats on the data connection too, with a longer timeout: a backstop for a data
    // connection that stalls while the heartbeat connection lives (libzmq 4.3.4 cancels the timeout on
    // any traffic, so a large message in progress does not trip it: measured, see README.md).
    data_ = open_socket(*ctx_, zmq::socket_type::router, true, "", o_.heartbeat_ivl_ms, 3 * o_.heartbeat_timeout_ms);
    hb_ = open_socket(*ctx_, zmq::socket_type::router, false, "", o_.heartbeat_ivl_ms, o_.heartbeat_timeout_ms);
    key_.server(*data_);
    key_.server(*hb_);
    data_mon_ = monitor(*ctx_, *data_, "wm-zmq-data-monitor",
                        ZMQ_EVENT_DISCONNECTED | ZMQ_EVENT_HANDSHAKE_FAILED_PROTOCOL |
                            ZMQ_EVENT_HANDSHAKE_FAILED_NO_DETAIL);
    hb_mon_ = monitor(*ctx_, *hb_, "wm-zmq-heartbeat-monitor", ZMQ_EVENT_DISCONNECTED);
    bind_all();
    if (!o_.host_info.empty()) {
      remote::write_contact_file(
          o_.host_info,
          "wm zmq host info: nodes started with --wm-zmq-read-host-info " + o_.host_info + " join this master.\n" +
              "It holds the job's key: keep it private (mode 0600). The master removes it when it shuts down.",
          {{"version", "1"}, {"host", remote::this_host()}, {"pid", std::to_string(getpid())}, {"tcp", tcp_endpoint_},
           {"ipc", ipc_endpoint_}, {"curve", key_.curve ? "1" : "0"}, {"key", key_.hex()}},
          "the host-info file");
      host_info_written_ = true;
    }
    log_(WM_LOG_INFO, "master of job " + key_.job_id() + " listening on " +
                          (tcp_endpoint_.empty() ? "" : tcp_endpoint_ + (ipc_endpoint_.empty() ? "" : " and ")) +
                          ipc_endpoint_ + (key_.curve ? " (CURVE encryption)" : ""));
  }

  void finish() {
    if (finished_) return;
    finished_ = true;
    for (auto& n : nodes_)
      if (!n->lost) send_part(*data_, n->rid, kEnd);
    data_mon_.reset();
    hb_mon_.reset();
    if (data_) data_->set(zmq::sockopt::linger, 1000);  // the ends still go out
    data_.reset();
    hb_.reset();
    zap_.reset();
    ctx_.reset();  // waits until the ends are sent (or the linger passed)
    if (host_info_written_) remote::remove_contact_file(o_.host_info, "key", key_.hex());
    if (ipc_dir_.empty()) return;
    for (const char* name : {"/data", "/hb"}) unlink((ipc_dir_ + name).c_str());
    rmdir(ipc_dir_.c_str());
  }

  bool launch(remote::WorkerId id, const remote::WorkerSetup&) override {
    // The node starts the worker when the setup reaches it; a node that left cannot start anything.
    Node* n = slots_.at(id);
    if (n == nullptr || n->doomed) return false;
    n->alive[id - n->first] = true;
    return true;
  }

  remote::Buffer& outbox(remote::WorkerId id) override { return slots_.at(id)->bytes_for(id - slots_[id]->first); }
  bool closing(remote::WorkerId id) const override { return slots_.at(id) == nullptr || slots_[id]->doomed; }
  void wake() override { waker_.ring(); }
  void flush(remote::WorkerId id) override {
    if (Node* n = slots_.at(id)) flush_node(*n);
  }

  void stop_worker(remote::WorkerId id) override {
    Node* n = slots_.at(id);
    if (n == nullptr || n->doomed || !n->alive[id - n->first]) return;  // a lost node reports its workers lost
    n->put(kKill, id - n->first);
    flush_node(*n);
  }

  wm_byte_buffer* lend_request(remote::WorkerId id, std::size_t size) override {
    // A node on this host: the request is encoded once, straight into the region it reads from.
    Node* n = slots_.at(id);
    if (n == nullptr || !n->lend(size)) return nullptr;
    n->writer = remote::RegionWriter(n->mine);
    last_large_ = Clock::now();
    return &n->writer;
  }

  const char* lent_reply(remote::WorkerId id, std::size_t size) override {
    return slots_.at(id) != nullptr ? slots_[id]->lent(size) : nullptr;
  }

  void reply_done(remote::WorkerId id) override {
    Node* n = slots_.at(id);
    last_large_ = Clock::now();
    if (n != nullptr && !n->doomed) n->put(kShmFree);  // read: the node may write its next reply there
  }

  void send_payload(remote::WorkerId id, remote::Buffer&& payload) override {
    // Sent from the buffer it was encoded into, in chunks ZeroMQ sends without a copy.
    Node* n = slots_.at(id);
    last_large_ = Clock::now();
    if (n == nullptr || n->doomed) return host_->payload_sent(id, std::move(payload));
    if (!n->send_payload(*data_, large_out_, id - n->first, id, std::move(payload))) doom(*n, kClosed);
  }

  bool receive_payload(remote::WorkerId id, remote::Buffer&& into) override {  // announced, then in chunks
    return slots_.at(id) != nullptr && slots_[id]->expect(id - slots_[id]->first, std::move(into));
  }

  int progress(int timeout_ms) override {
    int events = 0;
    auto now = Clock::now();
    for (auto& [id, buf] : large_out_.done()) host_->payload_sent(id, std::move(buf));
    probe(now, events);
    if (timeout_ms == 0 && events == 0 && now - last_control_ < kControlEvery) {
      // Spinning: a look at a ZeroMQ socket costs system calls (expensive on the VMs measured), so
      // only the data socket; the others and the waker once a millisecond.
      receive_data(events);
      if (doomed_) probe(now, events);
      return events;
    }
    last_control_ = now;
    timeout_ms = events > 0 ? 0 : wait_ms(now, timeout_ms);
    zmq_pollitem_t items[] = {{data_->handle(), 0, ZMQ_POLLIN, 0},     {data_mon_->handle(), 0, ZMQ_POLLIN, 0},
                              {hb_->handle(), 0, ZMQ_POLLIN, 0},       {hb_mon_->handle(), 0, ZMQ_POLLIN, 0},
                              {nullptr, waker_.fd(), ZMQ_POLLIN, 0}, {zap_->handle(), 0, ZMQ_POLLIN, 0}};
    if (zmq_poll(items, 6, timeout_ms) > 0) {
      if (items[5].revents != 0) answer_zap();
      if (items[4].revents != 0) waker_.drain();
      if (items[0].revents != 0) receive_data(events);
      if (items[1].revents != 0 || items[3].revents != 0) read_monitors();
      for (zmq::message_t m; items[2].revents != 0 && hb_->recv(m, zmq::recv_flags::dontwait);) {
      }  // nodes send nothing there
    }
    now = Clock::now();
    for (auto& n : nodes_) {
      // A node's heartbeat connection is up once the heartbeat socket can send to it.
      if (!n->attached) n->attached = send_part(*hb_, n->rid, kProbe);
      if (!n->attached && now >= n->attach_by)
        doom(*n, "did not open its heartbeat connection within " +
                     remote::seconds_text(std::chrono::duration<double>(attach_window_).count()));
    }
    probe(now, events);
    if (now - last_large_ >= kIdleRelease)
      for (auto& n : nodes_) n->release_idle();
    nodes_.erase(std::remove_if(nodes_.begin(), nodes_.end(), [](const auto& n) { return n->lost; }), nodes_.end());
    return events;
  }

 private:
  struct Node : Peer {
    std::string host, doom_why;
    std::int64_t pid = 0;
    remote::WorkerId first = 0;  // its workers are first, first + 1, ... (their WM_PROCESS_INDEX)
    std::vector<char> alive;     // by local worker: a process serves it (or is starting), as the engine knows
    bool attached = false;       // its heartbeat connection is open
    bool lost = false;
    Clock::time_point attach_by{}, hb_gone_at{};  // hb_gone_at: when a probe first found it gone
    remote::RegionWriter writer;                  // over `mine`, the task region
    std::string label() const { return "node '" + host + "' (pid " + std::to_string(pid) + ")"; }
  };

  void bind_all() {
    auto bind = [](zmq::socket_t& s, const std::string& where, const char* what) {
      if (zmq_bind(s.handle(), where.c_str()) != 0)
        throw std::runtime_error(std::string("the zmq master cannot listen for ") + what + " on " + where + ": " +
                                 zmq_strerror(zmq_errno()));
      return s.get(zmq::sockopt::last_endpoint);
    };
    if (!o_.endpoint.empty() && o_.endpoint.rfind("tcp://", 0) != 0) {
      ipc_endpoint_ = bind(*data_, o_.endpoint, "nodes");
      hb_ipc_ = bind(*hb_, o_.endpoint + ".hb", "heartbeats");
      return;
    }
    const std::string tcp = o_.endpoint.empty() ? "tcp://*:*" : o_.endpoint;
    const std::string host = tcp.substr(6, tcp.rfind(':') - 6), port = tcp.substr(tcp.rfind(':') + 1);
    const bool numeric = !port.empty() && port.find_first_not_of("0123456789") == std::string::npos;
    auto port_of = [](const std::string& ep) { return unsigned(std::stoul(ep.substr(ep.rfind(':') + 1))); };
    const unsigned data_port = port_of(bind(*data_, tcp, "nodes"));
    hb_port_ = port_of(bind(*hb_, "tcp://" + host + ":" + (numeric ? std::to_string(std::stoul(port) + 1) : "*"),
                            "heartbeats"));
    const bool any = host == "*" || host == "0.0.0.0";
    tcp_endpoint_ = "tcp://" + (any ? remote::this_host() : host) + ":" + std::to_string(data_port);
    // Nodes on this host take a Unix socket in a directory only this user can enter.
    const char* tmp = std::getenv("TMPDIR");
    for (std::string base : {std::string(tmp != nullptr && *tmp != '\0' ? tmp : "/tmp"), std::string("/tmp")}) {
      std::string dir = base + "/wm-zmq-XXXXXX";
      if (dir.size() + 4 > 100 || mkdtemp(dir.data()) == nullptr) continue;  // a socket's path: 108 bytes
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
  }

  // ZeroMQ's authentication requests (ZAP): a connection is let in only if it shows this job's key
  // (PLAIN: user wm-node and the derived password; CURVE: the derived client key).
  void answer_zap() {
    try {
      for (std::vector<zmq::message_t> q; zmq::recv_multipart(*zap_, std::back_inserter(q), zmq::recv_flags::dontwait);
           q.clear()) {
        auto at = [&](std::size_t i) { return i < q.size() ? text_of(q[i]) : std::string(); };
        const std::string mechanism = at(5), expected = key_.curve ? "CURVE" : "PLAIN", shown = at(key_.curve ? 6 : 7);
        std::string why;
        if (q.size() < 6 || at(0) != "1.0")
          why = "a malformed authentication request";
        else if (at(2) != kZapDomain)
          why = "a connection to a socket that is not this master's";
        else if (mechanism != expected)
          why = "it uses ZeroMQ's " + mechanism + " mechanism and this master expects " + expected +
                " (--wm-zmq-curve must be the same on the master and its nodes)";
        else if ((!key_.curve && at(6) != "wm-node") || shown.size() != shown_.size() ||
                 sodium_memcmp(shown.data(), shown_.data(), shown_.size()) != 0)
          why = "it did not show this job's key (a node of another job, or not a wm node)";
        const std::string id = at(1), status = why.empty() ? "200" : "400", text = why.empty() ? "OK" : why,
                          user = why.empty() ? "wm-node" : "";
        zmq::send_multipart(*zap_, std::array<zmq::const_buffer, 6>{zmq::str_buffer("1.0"), zmq::buffer(id),
                                                                    zmq::buffer(status), zmq::buffer(text),
                                                                    zmq::buffer(user), zmq::const_buffer()});
        if (why.empty()) continue;
        ++zap_refusals_;
        log_(zap_refusals_ <= kLoggedRefusals ? WM_LOG_WARNING : WM_LOG_DEBUG,
             "refused a connection from " + (at(3).empty() ? std::string("a local peer") : at(3)) + ": " + why +
                 (zap_refusals_ == kLoggedRefusals ? " (further refusals are logged at debug level)" : ""));
      }
    } catch (const zmq::error_t& e) {
      log_(WM_LOG_ERROR, std::string("the authenticator failed: ") + e.what());
    }
  }

  bool flush_node(Node& n) {
    if (!n.doomed && n.flush(*data_)) return true;
    n.out.size = 0;  // nothing more goes to it
    n.open = -1;
    doom(n, kClosed);
    return false;
  }

  // The engine's timeout, shortened to the transport's own next deadline.
  int wait_ms(Clock::time_point now, int timeout_ms) const {
    auto next = probes_.empty() ? Clock::time_point::max() : probes_.front();
    for (const auto& n : nodes_) {
      if (!n->doomed && !n->attached) next = std::min(next, now + kControlEvery);  // until it attached
      if (n->mine.capacity() != 0) next = std::min(next, last_large_ + kIdleRelease);
    }
    if (next == Clock::time_point::max()) return timeout_ms;
    const int own = next <= now ? 0 : static_cast<int>((next - now) / std::chrono::milliseconds(1) + 1);
    return timeout_ms < 0 ? own : std::min(own, timeout_ms);
  }

  void receive_data(int& events) {
    for (int i = 0; i < 4096; ++i) {
      zmq::message_t rid, body;
      if (!data_->recv(rid, zmq::recv_flags::dontwait)) return;
      if (!rid.more() || !data_->recv(body, zmq::recv_flags::dontwait)) continue;
      bool multipart = false;
      while (body.more()) {  // our peers never send multipart messages
        multipart = true;
        if (!data_->recv(body, zmq::recv_flags::dontwait)) break;
      }
      const std::string r = text_of(rid);
      auto it = by_rid_.find(r);
      if (it == by_rid_.end() && multipart) refuse(r, "its first message was a multipart message, not a node hello");
      if (it == by_rid_.end()) {
        if (!multipart) hello(r, body, events);
        continue;
      }
      Node& n = *it->second;
      if (n.doomed) continue;
      ++events;
      std::string why;
      if (multipart) {
        doom(n, "sent a multipart message, which is not part of this protocol");
      } else if (!n.receive(
                     body.data(), body.size(), why,
                     [&](std::uint32_t w, const char* p, std::size_t len) { host_->received(n.first + w, p, len); },
                     [&](std::uint32_t w, remote::Buffer&& b) {
                       last_large_ = Clock::now();
                       host_->payload_received(n.first + w, std::move(b));
                     },
                     [&](const Part& h, const char* p) { return control(n, h, std::string(p, h.len)); })) {
        doom(n, why);
      }
    }
  }

  bool control(Node& n, const Part& h, const std::string& body) {
    const remote::WorkerId id = n.first + h.worker;
    if (h.kind == kLost && n.alive[h.worker]) {
      n.alive[h.worker] = false;
      // The engine decides: it starts another worker there (launch) or gives the slot up.
      host_->worker_lost(id, body + " on " + n.label());
    } else if (h.kind == kBadBytes) {
      host_->broken(id, n.label() + ": " + body);
    } else if (h.kind == kShmReady) {
      n.shm = n.token = n.theirs.valid();  // made after `mine`, if that could be made
    }
    return h.kind == kLost || h.kind == kBadBytes || h.kind == kShmReady;
  }

  void refuse(const std::string& rid, const std::string& why) {
    gone_.insert(rid);
    log_(WM_LOG_WARNING, "refused a node: " + why);
    send_part(*data_, rid, kGone, why);
  }

  void hello(const std::string& rid, const zmq::message_t& m, int& events) {
    if (gone_.count(rid) != 0)  // a node given up that is back (a stopped node that was continued): it leaves
      return (void)send_part(*data_, rid, kGone,
                             "this node was given up by the master (it went silent or broke the protocol)");
    PartCursor c(m.data(), m.size());
    Part h;
    const char* p = nullptr;
    std::string why;
    NodeHello hello;
    if (c.next(h, p, why) != PartCursor::Status::part || h.kind != kNodeHello)
      return refuse(rid, why.empty() ? "its first message was not a node hello" : why);
    if (!parse(p, h.len, hello, why)) return refuse(rid, why);
    if (c.next(h, p, why) != PartCursor::Status::end) return refuse(rid, "its hello was followed by other parts");
    const std::size_t want = hello.n_workers;
    if (want == 0 || want > kMaxNodeWorkers)
      return refuse(rid, "node '" + hello.host + "' (pid " + std::to_string(hello.pid) + ") announced " +
                             std::to_string(want) + " workers (1 to " + std::to_string(kMaxNodeWorkers) +
                             " are allowed)");
    // A run of free worker ids (those of nodes that left are taken again): the node's
    // WM_PROCESS_INDEX values are consecutive.
    std::size_t first = 0;
    for (std::size_t k = 0; k < slots_.size() && k < first + want; ++k)
      if (slots_[k] != nullptr) first = k + 1;
    if (first + want > slots_.size()) slots_.resize(first + want);
    nodes_.push_back(std::make_unique<Node>());
    Node& n = *nodes_.back();
    n.rid = rid;
    n.host = hello.host;
    n.pid = hello.pid;
    n.first = static_cast<remote::WorkerId>(first);
    n.attach_by = Clock::now() + attach_window_;
    n.expected.resize(want);
    n.alive.assign(want, false);
    std::fill_n(slots_.begin() + static_cast<std::ptrdiff_t>(first), want, &n);
    by_rid_[rid] = &n;
    Welcome w{key_.proof(hello.nonce, rid), static_cast<std::uint32_t>(o_.heartbeat_ivl_ms),
              static_cast<std::uint32_t>(o_.heartbeat_timeout_ms), hb_port_, hb_ipc_, remote::this_host(), getpid()};
    // On this host: two memfds it may open through /proc (same user); if it cannot, the socket it is.
    if ((hello.flags & NodeHello::kOverIpc) != 0 && n.mine.create("wm-zmq-task") && n.theirs.create("wm-zmq-reply")) {
      w.task_region_fd = n.mine.fd();
      w.reply_region_fd = n.theirs.fd();
    }
    n.put(kWelcome, 0, encode(w));
    log_(WM_LOG_INFO, n.label() + " joined with " + std::to_string(want) + " worker(s) (WM_PROCESS_INDEX " +
                          std::to_string(first) + (want > 1 ? " to " + std::to_string(first + want - 1) : "") + ")");
    if (!flush_node(n)) return;
    // Then its workers: the engine sends each its setup, which starts it on the node.
    for (std::size_t k = 0; k < want; ++k, ++events) host_->worker_added(static_cast<remote::WorkerId>(first + k));
  }

  void read_monitors() {
    for (zmq::socket_t* m : {data_mon_.get(), hb_mon_.get()}) {
      std::string address;
      while (const std::uint16_t ev = next_event(*m, address)) {
        if (ev == ZMQ_EVENT_DISCONNECTED) {
          // Some connection closed: find out which node it was, if any (a refused peer's closes too).
          const auto now = Clock::now();
          for (int ms : kProbeDelaysMs) probes_.push_back(now + std::chrono::milliseconds(ms));
          std::sort(probes_.begin(), probes_.end());
          continue;
        }
        ++refused_logged_;
        log_(refused_logged_ <= kLoggedRefusals ? WM_LOG_WARNING : WM_LOG_DEBUG,
             "refused a connection on " + address + ": " +
                 (ev == ZMQ_EVENT_HANDSHAKE_FAILED_PROTOCOL ? "handshake failed: not the ZeroMQ protocol of a wm peer"
                                                            : "handshake failed") +
                 " (bytes that are not a wm zmq node's, or a node with another --wm-zmq-curve setting)");
      }
    }
  }

  void probe(Clock::time_point now, int& events) {
    if (!probes_.empty() && probes_.front() <= now) {
      while (!probes_.empty() && probes_.front() <= now) probes_.erase(probes_.begin());
      for (auto& n : nodes_) {
        if (n->doomed) continue;
        if (!send_part(*data_, n->rid, kProbe)) {
          doom(*n, kClosed);
        } else if (n->attached && !send_part(*hb_, n->rid, kProbe)) {
          // Only the heartbeat connection is gone. A node that died closes both, the data connection's
          // a moment later: a later probe tells. If that one still stands, the node went silent.
          if (n->hb_gone_at == Clock::time_point{})
            n->hb_gone_at = now;
          else if (now - n->hb_gone_at >= kSilenceVerdict)
            doom(*n, "went silent: no heartbeat within the heartbeat timeout of " +
                         remote::seconds_text(o_.heartbeat_timeout_ms / 1000.0) +
                         " (the node was stopped or hangs, or its host is unreachable)");
        }
      }
    }
    if (!doomed_) return;
    doomed_ = false;
    for (std::size_t i = 0; i < nodes_.size(); ++i)  // lose() may doom others through the engine's calls
      if (nodes_[i]->doomed && !nodes_[i]->lost) lose(*nodes_[i], events);
  }

  void doom(Node& n, const std::string& why) {
    if (n.doomed) return;
    n.doomed = doomed_ = true;
    n.doom_why = why;
  }

  void lose(Node& n, int& events) {
    n.lost = true;
    gone_.insert(n.rid);
    by_rid_.erase(n.rid);
    log_(WM_LOG_WARNING, n.label() + " " + n.doom_why + "; its " + std::to_string(n.expected.size()) +
                             " worker(s) are lost");
    send_part(*data_, n.rid, kGone, n.doom_why);  // if it is still there, it leaves
    for (remote::WorkerId id = n.first; id < n.first + n.expected.size(); ++id) {
      slots_[id] = nullptr;  // free from here on
      if (!n.alive[id - n.first]) continue;
      ++events;
      host_->worker_lost(id, "was lost with " + n.label() + ", which " + n.doom_why);
    }
  }

  Options o_;
  JobKey key_;
  remote::Log log_;
  std::chrono::milliseconds attach_window_;  // for a node to open its heartbeat connection
  remote::TransportHost* host_ = nullptr;
  LargeSender large_out_;  // before the context: its buffers outlive every message ZeroMQ holds
  std::unique_ptr<zmq::context_t> ctx_;
  std::unique_ptr<zmq::socket_t> zap_, data_, hb_, data_mon_, hb_mon_;
  remote::Waker waker_;
  std::string shown_;  // what a node shows the ZAP handler: the PLAIN password, or the CURVE client key
  std::string tcp_endpoint_, ipc_endpoint_, hb_ipc_, ipc_dir_;  // what nodes connect to (host-info)
  unsigned hb_port_ = 0;
  bool host_info_written_ = false, finished_ = false;
  std::vector<std::unique_ptr<Node>> nodes_;
  std::unordered_map<std::string, Node*> by_rid_;
  std::unordered_set<std::string> gone_;   // routing ids of nodes given up: never let back in
  std::vector<Node*> slots_;               // by WorkerId: the node of the worker (null: free)
  std::vector<Clock::time_point> probes_;  // when to look which nodes are still connected
  bool doomed_ = false;                    // some node must be declared lost at the next progress()
  int zap_refusals_ = 0, refused_logged_ = 0;
  Clock::time_point last_large_{}, last_control_{};  // last_control_: the last look at every socket
};

}  // namespace

std::unique_ptr<remote::Transport> make_master(const Options& o, remote::Log log) {
  return std::make_unique<MasterTransport>(o, std::move(log));
}

void finish_master(remote::Transport& master) { static_cast<MasterTransport&>(master).finish(); }

}  // namespace wm_zmq
