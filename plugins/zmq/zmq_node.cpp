// SPDX-License-Identifier: MIT
// zmq_node.cpp: a zmq node's link to its master. A node is a relay of the remote engine (which starts
// and feeds its local workers); this is its Uplink: it joins the master, carries the engine's bytes
// for each local worker, and says when the master ends the job (the relay returns) or is gone
// (progress() throws, the workers are killed).
#include "zmq_common.hpp"

#include <wm/sdk/remote/contact_file.hpp>

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <map>
#include <stdexcept>

namespace wm_zmq {
namespace {

class NodeUplink final : public remote::Uplink {
 public:
  NodeUplink(const Options& o, remote::Log log) : o_(o), log_(std::move(log)) {
    random_bytes(nonce_.data(), nonce_.size());
    rid_ = "wm-node-" + to_hex(nonce_.data(), 8);
    link_.from_master = true;
    link_.expected.resize(o.n_workers);
  }

  remote::Capabilities capabilities() const override { return wm_zmq::capabilities(link_.shm); }

  /** Joins the master; throws (why) if no master answered within the startup timeout or it refused
   *  this node. */
  unsigned start(remote::UplinkHost& host) override {
    host_ = &host;
    const Welcome w = join(Clock::now() + std::chrono::duration_cast<Clock::duration>(std::chrono::duration<double>(
                                              o_.startup_timeout > 0 ? o_.startup_timeout : 1e9)));  // 0: for ever
    std::string hb_endpoint = w.heartbeat_ipc;
    if (endpoint_.rfind("ipc://", 0) != 0)
      hb_endpoint = endpoint_.substr(0, endpoint_.rfind(':') + 1) + std::to_string(w.heartbeat_port);
    else if (hb_endpoint.empty())
      throw std::runtime_error(master_ + " has no heartbeat socket on this host");
    hb_ = open_socket(ctx_, zmq::socket_type::dealer, false, rid_, std::max<int>(1, w.heartbeat_ivl_ms),
                      std::max<int>(1, w.heartbeat_timeout_ms));
    key_.client(*hb_);
    hb_mon_ = monitor(ctx_, *hb_, "wm-zmq-node-heartbeat", ZMQ_EVENT_DISCONNECTED);
    hb_->connect(hb_endpoint);
    if (w.task_region_fd >= 0 && w.reply_region_fd >= 0) {
      // On the master's host: its two regions, opened through /proc (same user).
      const std::string fds = "/proc/" + std::to_string(w.master_pid) + "/fd/";
      link_.theirs.adopt(open((fds + std::to_string(w.task_region_fd)).c_str(), O_RDWR | O_CLOEXEC));
      link_.mine.adopt(open((fds + std::to_string(w.reply_region_fd)).c_str(), O_RDWR | O_CLOEXEC));
      link_.shm = link_.token = link_.theirs.valid() && link_.mine.valid();
      if (link_.shm)
        send_part(*data_, "", kShmReady);
      else
        log_(WM_LOG_INFO, std::string("large payloads go through the socket: the master's shared memory cannot be "
                                      "opened (") + std::strerror(errno) + ")");
    }
    log_(WM_LOG_INFO, "joined " + master_ + " with " + std::to_string(o_.n_workers) + " worker(s)");
    last_control_ = Clock::now();
    return o_.n_workers;
  }

  remote::Buffer& outbox(remote::WorkerId w) override { return link_.bytes_for(w); }
  void flush(remote::WorkerId) override { link_.flush(*data_); }
  void worker_lost(remote::WorkerId w, const std::string& status) override { tell(kLost, w, status); }
  void worker_broken(remote::WorkerId w, const std::string& why) override { tell(kBadBytes, w, why); }
  const char* lent_request(remote::WorkerId, std::size_t size) override { return link_.lent(size); }
  // Passed on: the master may write its next request (sent with the next flush).
  void request_done(remote::WorkerId) override { link_.put(kShmFree); }
  void idle() override { link_.release_idle(); }

  bool lend_reply(remote::WorkerId, std::size_t size, char*& data, std::size_t& capacity) override {
    if (!link_.lend(size)) return false;  // the token is back with the master's kShmFree
    data = link_.mine.data();
    capacity = link_.mine.capacity();
    return true;
  }

  void send_payload(remote::WorkerId w, remote::Buffer&& payload) override {
    link_.send_payload(*data_, large_out_, w, w, std::move(payload));
  }

  bool receive_payload(remote::WorkerId w, remote::Buffer&& into) override { return link_.expect(w, std::move(into)); }

  std::vector<int> wait_fds() override {
    return {data_->get(zmq::sockopt::fd), hb_->get(zmq::sockopt::fd), data_mon_->get(zmq::sockopt::fd),
            hb_mon_->get(zmq::sockopt::fd)};
  }

  // ZMQ_FD only tells of new arrivals: what is waiting already must not wait for the next one.
  bool pending() override {
    auto readable = [](zmq::socket_t& s) { return (s.get(zmq::sockopt::events) & ZMQ_POLLIN) != 0; };
    return readable(*data_) || readable(*hb_) || readable(*data_mon_) || readable(*hb_mon_);
  }

  int progress() override {
    auto sent = large_out_.done();
    for (auto& [w, buf] : sent) host_->payload_sent(w, std::move(buf));
    const int events = static_cast<int>(sent.size()) + pump_data();
    // A look at a ZeroMQ socket costs system calls (expensive on the VMs measured): the heartbeat
    // socket and the monitors once a millisecond at most, the data socket always.
    const auto now = Clock::now();
    if (now - last_control_ >= kControlEvery) {
      last_control_ = now;
      pump_control();
    }
    return events;
  }

 private:
  void tell(Kind kind, remote::WorkerId w, const std::string& body) {
    link_.put(kind, w, body);
    link_.flush(*data_);
  }

  // The master's endpoint and key from its host-info file; false with why if it is not (yet) there.
  bool from_host_info(std::string& endpoint, JobKey& key, std::string& why) {
    std::map<std::string, std::string> f;
    if (!remote::read_contact_file(o_.host_info, f, why)) return false;
    if (f["version"] != "1" || f["key"].empty() || (f["tcp"].empty() && f["ipc"].empty())) {
      why = f["version"].empty()  ? "is not a wm zmq host-info file (no 'version' line)"
            : f["version"] != "1" ? "is a host-info file of version " + f["version"] + " (this build reads version 1)"
                                  : "is incomplete: it names no key or no endpoint";
      return false;
    }
    try {
      key = JobKey::parse(f["key"], "the key in " + o_.host_info);
    } catch (const std::invalid_argument& e) {
      why = e.what();
      return false;
    }
    key.curve = f["curve"] == "1";
    if (key.hex() != warned_key_) {
      warned_key_ = key.hex();
      if (o_.curve && !key.curve)
        log_(WM_LOG_WARNING, "--wm-zmq-curve is set but the master's host-info file says it does not use CURVE; "
                             "following the master");
      struct stat st {};
      if (stat(o_.host_info.c_str(), &st) == 0 && (st.st_mode & 077) != 0)
        log_(WM_LOG_WARNING, "the host-info file " + o_.host_info + " can be read by other users: it holds the "
                                 "job's key (the master writes it with mode 0600)");
    }
    // A node on the master's host takes its Unix socket (no TCP stack on the way), if it is there.
    const std::string &ipc = f["ipc"], &tcp = f["tcp"];
    const bool here =
        f["host"] == remote::this_host() && ipc.rfind("ipc://", 0) == 0 && access(ipc.c_str() + 6, F_OK) == 0;
    endpoint = !ipc.empty() && (tcp.empty() || here) ? ipc : tcp;
    return true;
  }

  void connect(const std::string& endpoint, const JobKey& key) {
    data_mon_.reset();
    data_ = open_socket(ctx_, zmq::socket_type::dealer, true, rid_);
    data_->set(zmq::sockopt::reconnect_ivl, 100);
    data_->set(zmq::sockopt::reconnect_ivl_max, 1000);
    key.client(*data_);
    data_mon_ = monitor(ctx_, *data_, "wm-zmq-node-data-" + std::to_string(++sockets_opened_),
                        ZMQ_EVENT_DISCONNECTED | ZMQ_EVENT_HANDSHAKE_FAILED_AUTH | ZMQ_EVENT_HANDSHAKE_FAILED_PROTOCOL |
                            ZMQ_EVENT_HANDSHAKE_FAILED_NO_DETAIL);
    if (zmq_connect(data_->handle(), endpoint.c_str()) != 0)
      throw std::runtime_error("cannot connect to the master at " + endpoint + ": " + zmq_strerror(zmq_errno()));
    const NodeHello hello{nonce_, endpoint.rfind("ipc://", 0) == 0 ? NodeHello::kOverIpc : 0, o_.n_workers, getpid(),
                          remote::this_host()};
    send_part(*data_, "", kNodeHello, encode(hello));  // queued until the connection is up
    endpoint_ = endpoint;
    key_ = key;
  }

  Welcome join(Clock::time_point deadline) {
    const bool from_file = !o_.host_info.empty();
    std::string endpoint = o_.endpoint, why, refused, logged;
    JobKey key;
    if (!from_file) {
      key = JobKey::parse(o_.key, "WM_ZMQ_KEY");
      key.curve = o_.curve;
    } else if (!from_host_info(endpoint, key, why)) {
      log_(WM_LOG_INFO, "waiting for the master: its host-info file " + o_.host_info + " " + why);
      if (!remote::wait_for_contact_file(o_.host_info, deadline, [&] { return from_host_info(endpoint, key, why); }))
        throw std::runtime_error("no master: its host-info file " + o_.host_info + " " + why + " after " +
                                 remote::seconds_text(o_.startup_timeout) + " (start the master with " +
                                 "--wm-zmq-write-host-info " + o_.host_info + ", or raise --wm-zmq-startup-timeout)");
    }
    connect(endpoint, key);
    log_(WM_LOG_INFO, "joining the master at " + endpoint_ + " with " + std::to_string(o_.n_workers) + " worker(s)");
    // A master started again writes a new host-info file: follow it.
    auto follow = [&] {
      if (!from_file || !from_host_info(endpoint, key, why) || (endpoint == endpoint_ && key.hex() == key_.hex()))
        return false;
      log_(WM_LOG_INFO, "the host-info file " + o_.host_info + " changed: joining " + endpoint);
      refused.clear();
      connect(endpoint, key);
      return true;
    };
    for (auto next_look = Clock::now() + std::chrono::seconds(1);;) {
      const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - Clock::now()).count();
      if (left <= 0)
        throw std::runtime_error("no master answered at " + endpoint_ + " within " +
                                 remote::seconds_text(o_.startup_timeout) +
                                 (refused.empty() ? "" : " (" + refused + ")") +
                                 "; start the master first, or raise --wm-zmq-startup-timeout");
      zmq_pollitem_t items[] = {{data_->handle(), 0, ZMQ_POLLIN, 0}, {data_mon_->handle(), 0, ZMQ_POLLIN, 0}};
      if (zmq_poll(items, 2, static_cast<int>(std::min<long long>(left, 1000))) < 0 && zmq_errno() != EINTR)
        throw std::runtime_error(std::string("zmq_poll failed: ") + zmq_strerror(zmq_errno()));
      std::string address;
      while (const std::uint16_t ev = next_event(*data_mon_, address)) {
        // A refusal does not pass: the key is wrong. Unless the master's host-info file changed
        // meanwhile (a master started again with a new key), this node leaves at once.
        if (ev == ZMQ_EVENT_HANDSHAKE_FAILED_AUTH && follow()) break;
        if (ev == ZMQ_EVENT_HANDSHAKE_FAILED_AUTH)
          throw std::runtime_error("the master at " + endpoint_ +
                                   " refused this node's job key: it is the master of another job, or the key is "
                                   "wrong (" + (from_file ? "the host-info file " + o_.host_info + " is stale"
                                                          : std::string("check --wm-zmq-key")) +
                                   "); this node leaves");
        if (ev != ZMQ_EVENT_DISCONNECTED)
          refused = "the peer there does not speak this protocol: it is not a wm zmq master, or it was started with "
                    "another --wm-zmq-curve setting";
        if (!refused.empty() && refused != logged)
          log_(WM_LOG_WARNING, "joining " + endpoint_ + ": " + (logged = refused) + "; still waiting");
      }
      for (zmq::message_t m; data_->recv(m, zmq::recv_flags::dontwait);) {
        PartCursor c(m.data(), m.size());
        Part h;
        const char* p = nullptr;
        Welcome w;
        if (m.more() || c.next(h, p, why) != PartCursor::Status::part) continue;
        if (h.kind == kGone)
          throw std::runtime_error("the master at " + endpoint_ + " refused this node: " + std::string(p, h.len));
        if (h.kind != kWelcome) continue;
        if (!parse(p, h.len, w, why)) throw std::runtime_error("the master at " + endpoint_ + " sent " + why);
        if (sodium_memcmp(key_.proof(nonce_, rid_).data(), w.proof.data(), w.proof.size()) != 0)
          throw std::runtime_error("the peer at " + endpoint_ +
                                   " answered without the proof of this job's key: it is not this job's master; this "
                                   "node leaves without running anything");
        master_ = "the master at " + endpoint_ + " ('" + w.master_host + "', pid " + std::to_string(w.master_pid) + ")";
        return w;
      }
      if (Clock::now() >= next_look) {
        next_look = Clock::now() + std::chrono::seconds(1);
        follow();
      }
    }
  }

  int pump_data() {
    int events = 0;
    for (zmq::message_t m; events < 4096 && data_->recv(m, zmq::recv_flags::dontwait);) {
      ++events;
      if (m.more()) master_gone(master_ + " sent a multipart message, which is not part of this protocol");
      std::string why;
      if (!link_.receive(
              m.data(), m.size(), why,
              [&](std::uint32_t w, const char* p, std::size_t n) { host_->received(w, p, n); },
              [&](std::uint32_t w, remote::Buffer&& b) { host_->payload_received(w, std::move(b)); },
              [&](const Part& h, const char* p) {
                if (h.kind == kGone) master_gone(master_ + " gave this node up: " + std::string(p, h.len));
                if (h.kind == kKill) host_->stop_worker(h.worker);
                ended_ |= h.kind == kEnd;  // the connection closes next: that is no loss any more
                if (h.kind == kEnd) host_->end();
                return h.kind == kKill || h.kind == kEnd || h.kind == kProbe || h.kind == kWelcome;
              }))
        master_gone(master_ + " " + why);
    }
    return events;
  }

  void pump_control() {
    for (zmq::message_t m; hb_->recv(m, zmq::recv_flags::dontwait);) {
    }  // only the master's probes come here
    std::string address;
    bool closed = false, silent = false;
    while (const std::uint16_t ev = next_event(*data_mon_, address)) closed |= ev == ZMQ_EVENT_DISCONNECTED;
    while (const std::uint16_t ev = next_event(*hb_mon_, address)) silent |= ev == ZMQ_EVENT_DISCONNECTED;
    if (ended_ || (!closed && !silent)) return;
    // What the master sent before it closed is read first: its end of the job, if that was it.
    if (pump_data() > 0) return;
    // A master that died closes both connections: the data socket's event may come a moment later.
    if (!closed) {
      zmq_pollitem_t item{data_mon_->handle(), 0, ZMQ_POLLIN, 0};
      if (zmq_poll(&item, 1, 100) > 0)
        while (const std::uint16_t ev = next_event(*data_mon_, address)) closed |= ev == ZMQ_EVENT_DISCONNECTED;
    }
    if (closed) master_gone("the connection to " + master_ + " closed (the master ended or was killed)");
    master_gone(master_ + " went silent: no heartbeat within the heartbeat timeout (the master was stopped or "
                          "hangs, its host is unreachable, or it gave this node up)");
  }

  [[noreturn]] void master_gone(const std::string& why) {
    throw std::runtime_error(why + "; this node and its workers end");
  }

  Options o_;
  remote::Log log_;
  remote::UplinkHost* host_ = nullptr;
  std::string rid_;  // routing id on both sockets: how the master knows this node
  Bytes32 nonce_{};
  std::string endpoint_;  // the master's, and its key, as this node joins it
  JobKey key_;
  std::string warned_key_;  // whose host-info file was warned about (it is read every second while joining)
  std::string master_;      // "the master at ENDPOINT (host, pid)", for messages
  int sockets_opened_ = 0;  // names the monitors apart
  LargeSender large_out_;   // before the context: its buffers outlive every message ZeroMQ holds
  zmq::context_t ctx_{1};
  std::unique_ptr<zmq::socket_t> data_, hb_, data_mon_, hb_mon_;  // the monitors are closed first
  Peer link_;
  bool ended_ = false;  // the master ended the job
  Clock::time_point last_control_{};
};

}  // namespace

std::unique_ptr<remote::Uplink> make_node(const Options& o, remote::Log log) {
  return std::make_unique<NodeUplink>(o, std::move(log));
}

}  // namespace wm_zmq
