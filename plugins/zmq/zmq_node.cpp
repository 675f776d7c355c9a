// zmq_node.cpp: a zmq node's link to its master (see zmq_node.hpp).
#include "zmq_node.hpp"

#include <fcntl.h>
#include <poll.h>
#include <sys/inotify.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdio>
#include <stdexcept>

namespace wm_zmq {
namespace {

std::string directory_of(const std::string& path) {
  const auto slash = path.rfind('/');
  if (slash == std::string::npos) return ".";
  return slash == 0 ? "/" : path.substr(0, slash);
}

}  // namespace

NodeUplink::NodeUplink(NodeOptions options, remote::Log log) : options_(std::move(options)), log_(std::move(log)) {
  unsigned char id[8];
  random_bytes(id, sizeof id);
  char text[32];
  std::snprintf(text, sizeof text, "wm-node-%02x%02x%02x%02x%02x%02x%02x%02x", id[0], id[1], id[2], id[3], id[4], id[5],
                id[6], id[7]);
  rid_ = text;
  random_bytes(nonce_.data(), nonce_.size());
}

NodeUplink::~NodeUplink() {
  data_mon_.reset();
  hb_mon_.reset();
  data_.reset();
  hb_.reset();
  ctx_.reset();
}

remote::Capabilities NodeUplink::capabilities() const {
  remote::Capabilities c;
  c.batch_limit = kBatchBytes;
  c.shared_storage = shm_;
  c.payloads = true;
  return c;
}

NodeUplink::Target NodeUplink::target_from_options() const {
  return Target{options_.endpoint, Security{JobKey::parse(options_.key_hex, "WM_ZMQ_KEY"), options_.curve}};
}

bool NodeUplink::target_from_host_info(Target& out, std::string& why) const {
  HostInfo info;
  if (access(options_.host_info_path.c_str(), F_OK) != 0) {
    why = "does not exist yet";
    return false;
  }
  if (!read_host_info(options_.host_info_path, info, why)) return false;
  try {
    out.security.key = JobKey::parse(info.key, "the key in " + options_.host_info_path);
  } catch (const std::invalid_argument& e) {
    why = e.what();
    return false;
  }
  out.security.curve = info.curve;
  if (options_.curve && !info.curve)
    log_(WM_LOG_WARNING, "--wm-zmq-curve is set but the master's host-info file says it does not use CURVE; "
                        "following the master");
  struct stat st{};
  if (stat(options_.host_info_path.c_str(), &st) == 0 && (st.st_mode & 077) != 0)
    log_(WM_LOG_WARNING, "the host-info file " + options_.host_info_path +
                            " can be read by other users: it holds the job's key (the master writes it with mode 0600)");
  // A node on the master's host takes its Unix socket (no TCP stack on the way), if it is there.
  const bool same_host = info.host == remote::this_host();
  const std::string ipc_path = info.ipc.rfind("ipc://", 0) == 0 ? info.ipc.substr(6) : std::string();
  if (!info.ipc.empty() && (info.tcp.empty() || (same_host && access(ipc_path.c_str(), F_OK) == 0)))
    out.endpoint = info.ipc;
  else
    out.endpoint = info.tcp;
  return true;
}

NodeUplink::Target NodeUplink::wait_for_host_info(Clock::time_point deadline) {
  Target t;
  std::string why;
  if (target_from_host_info(t, why)) return t;
  log_(WM_LOG_INFO, "waiting for the master: its host-info file " + options_.host_info_path + " " + why);
  // Woken when a file appears in its directory (the master renames it into place); looked at once a
  // second as well, for file systems that do not report changes (NFS).
  const int in = inotify_init1(IN_CLOEXEC | IN_NONBLOCK);
  if (in >= 0) inotify_add_watch(in, directory_of(options_.host_info_path).c_str(), IN_CREATE | IN_MOVED_TO | IN_CLOSE_WRITE);
  for (;;) {
    const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - Clock::now()).count();
    if (options_.startup_timeout > 0 && left <= 0) {
      if (in >= 0) close(in);
      throw std::runtime_error("no master: its host-info file " + options_.host_info_path + " " + why + " after " +
                               remote::seconds_text(options_.startup_timeout) +
                               " (start the master with --wm-zmq-write-host-info " + options_.host_info_path +
                               ", or raise --wm-zmq-startup-timeout)");
    }
    const int wait = options_.startup_timeout > 0 ? static_cast<int>(std::min<long long>(left, 1000)) : 1000;
    if (in >= 0) {
      pollfd p{in, POLLIN, 0};
      if (poll(&p, 1, wait) > 0) {
        char buf[4096];
        while (read(in, buf, sizeof buf) > 0) {
        }
      }
    } else {
      poll(nullptr, 0, wait);
    }
    if (target_from_host_info(t, why)) {
      if (in >= 0) close(in);
      return t;
    }
  }
}

void NodeUplink::open_data(const Target& t) {
  data_mon_.reset();
  data_.reset();
  if (!ctx_) ctx_ = std::make_unique<zmq::context_t>(1);
  data_ = std::make_unique<zmq::socket_t>(*ctx_, zmq::socket_type::dealer);
  data_->set(zmq::sockopt::routing_id, rid_);
  data_->set(zmq::sockopt::sndhwm, 0);
  data_->set(zmq::sockopt::rcvhwm, 0);
  data_->set(zmq::sockopt::maxmsgsize, kMaxMessage);
  data_->set(zmq::sockopt::sndbuf, kSocketBuffer);
  data_->set(zmq::sockopt::rcvbuf, kSocketBuffer);
  data_->set(zmq::sockopt::linger, 0);
  data_->set(zmq::sockopt::reconnect_ivl, 100);
  data_->set(zmq::sockopt::reconnect_ivl_max, 1000);
  t.security.client(*data_);
  data_mon_ = std::make_unique<Monitor>(*ctx_, *data_, "wm-zmq-node-data-" + std::to_string(++sockets_opened_),
                                        ZMQ_EVENT_DISCONNECTED | ZMQ_EVENT_HANDSHAKE_FAILED_AUTH |
                                            ZMQ_EVENT_HANDSHAKE_FAILED_PROTOCOL | ZMQ_EVENT_HANDSHAKE_FAILED_NO_DETAIL);
  try {
    data_->connect(t.endpoint);
  } catch (const zmq::error_t& e) {
    throw std::runtime_error("cannot connect to the master at " + t.endpoint + ": " + e.what());
  }
  NodeHello hello;
  hello.nonce = nonce_;
  hello.flags = t.endpoint.rfind("ipc://", 0) == 0 ? NodeHello::kOverIpc : 0;
  hello.n_workers = options_.n_workers;
  hello.pid = getpid();
  hello.host = remote::this_host();
  const std::string payload = encode(hello);
  remote::Buffer msg;
  put_part(msg, kNodeHello, 0, payload.data(), payload.size());
  send_to(*data_, "", msg.data, msg.size);  // queued until the connection is up
  target_ = t;
}

Welcome NodeUplink::join(Clock::time_point deadline) {
  const bool from_file = !options_.host_info_path.empty();
  open_data(from_file ? wait_for_host_info(deadline) : target_from_options());
  log_(WM_LOG_INFO, "joining the master at " + target_.endpoint + " with " + std::to_string(options_.n_workers) +
                       " worker(s)");
  std::string refused, last_logged;
  auto next_look = Clock::now() + std::chrono::seconds(1);
  for (;;) {
    const auto now = Clock::now();
    const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - now).count();
    if (options_.startup_timeout > 0 && left <= 0)
      throw std::runtime_error("no master answered at " + target_.endpoint + " within " +
                               remote::seconds_text(options_.startup_timeout) + (refused.empty() ? "" : " (" + refused + ")") +
                               "; start the master first, or raise --wm-zmq-startup-timeout");
    const int wait = options_.startup_timeout > 0 ? static_cast<int>(std::min<long long>(left, 1000)) : 1000;
    zmq_pollitem_t items[] = {{data_->handle(), 0, ZMQ_POLLIN, 0}, {data_mon_->socket().handle(), 0, ZMQ_POLLIN, 0}};
    if (zmq_poll(items, 2, wait) < 0 && zmq_errno() != EINTR)
      throw std::runtime_error(std::string("zmq_poll failed: ") + zmq_strerror(zmq_errno()));
    std::string address;
    while (const std::uint16_t ev = data_mon_->next(address)) {
      if (ev == ZMQ_EVENT_HANDSHAKE_FAILED_AUTH) {
        // A refusal does not pass: the key is wrong. Unless the master's host-info file changed
        // meanwhile (a master started again with a new key), this node leaves at once.
        Target t;
        std::string why;
        if (from_file && target_from_host_info(t, why) && t.security.key.hex() != target_.security.key.hex()) {
          log_(WM_LOG_INFO, "the host-info file " + options_.host_info_path + " changed: joining " + t.endpoint);
          open_data(t);
          break;
        }
        throw std::runtime_error("the master at " + target_.endpoint +
                                 " refused this node's job key: it is the master of another job, or the key is "
                                 "wrong (" + (from_file ? "the host-info file " + options_.host_info_path + " is stale"
                                                        : std::string("check --wm-zmq-key")) +
                                 "); this node leaves");
      }
      if (ev != ZMQ_EVENT_DISCONNECTED)
        refused = "the peer there does not speak this protocol: it is not a wm zmq master, or it was started with "
                  "another --wm-zmq-curve setting";
      if (!refused.empty() && refused != last_logged) {
        log_(WM_LOG_WARNING, "joining " + target_.endpoint + ": " + refused + "; still waiting");
        last_logged = refused;
      }
    }
    zmq::message_t m;
    while (data_->recv(m, zmq::recv_flags::dontwait)) {
      PartCursor c(m.data(), m.size());
      Part h;
      const char* p = nullptr;
      std::string why;
      if (m.more() || c.next(h, p, why) != PartCursor::Status::part) continue;
      if (h.kind == kGone)
        throw std::runtime_error("the master at " + target_.endpoint + " refused this node: " + std::string(p, h.len));
      if (h.kind != kWelcome) continue;
      Welcome w;
      if (!parse(p, h.len, w, why))
        throw std::runtime_error("the master at " + target_.endpoint + " sent " + why);
      const Proof expected = target_.security.key.proof(nonce_, rid_);
      if (!same_bytes(expected.data(), w.proof.data(), expected.size()))
        throw std::runtime_error("the peer at " + target_.endpoint +
                                 " answered without the proof of this job's key: it is not this job's master; this "
                                 "node leaves without running anything");
      master_ = "the master at " + target_.endpoint + " ('" + w.master_host + "', pid " + std::to_string(w.master_pid) + ")";
      return w;
    }
    // A master started again writes a new host-info file: follow it.
    if (from_file && Clock::now() >= next_look) {
      next_look = Clock::now() + std::chrono::seconds(1);
      Target t;
      std::string why;
      if (target_from_host_info(t, why) &&
          (t.endpoint != target_.endpoint || t.security.key.hex() != target_.security.key.hex())) {
        log_(WM_LOG_INFO, "the host-info file " + options_.host_info_path + " changed: joining " + t.endpoint);
        refused.clear();
        open_data(t);
      }
    }
  }
}

void NodeUplink::open_heartbeat(const Welcome& w) {
  if (target_.endpoint.rfind("ipc://", 0) == 0) {
    if (w.heartbeat_ipc.empty()) throw std::runtime_error(master_ + " has no heartbeat socket on this host");
    hb_endpoint_ = w.heartbeat_ipc;
  } else {
    hb_endpoint_ = with_port(target_.endpoint, w.heartbeat_port);
  }
  const int ivl = static_cast<int>(std::max<std::uint32_t>(1, w.heartbeat_ivl_ms));
  const int timeout = static_cast<int>(std::max<std::uint32_t>(1, w.heartbeat_timeout_ms));
  hb_ = std::make_unique<zmq::socket_t>(*ctx_, zmq::socket_type::dealer);
  hb_->set(zmq::sockopt::routing_id, rid_);
  hb_->set(zmq::sockopt::heartbeat_ivl, ivl);
  hb_->set(zmq::sockopt::heartbeat_timeout, timeout);
  hb_->set(zmq::sockopt::heartbeat_ttl, std::min(timeout, 6553500));
  hb_->set(zmq::sockopt::maxmsgsize, std::int64_t(64) << 10);
  hb_->set(zmq::sockopt::linger, 0);
  target_.security.client(*hb_);
  hb_mon_ = std::make_unique<Monitor>(*ctx_, *hb_, "wm-zmq-node-heartbeat", ZMQ_EVENT_DISCONNECTED);
  hb_->connect(hb_endpoint_);
  remote::Buffer msg;
  put_part(msg, kAttach);
  send_to(*hb_, "", msg.data, msg.size);
}

void NodeUplink::open_regions(const Welcome& w) {
  if (w.task_region_fd < 0 || w.reply_region_fd < 0) return;
  auto open_fd = [&](std::int32_t fd) {
    const std::string path = "/proc/" + std::to_string(w.master_pid) + "/fd/" + std::to_string(fd);
    return open(path.c_str(), O_RDWR | O_CLOEXEC);
  };
  const int task = open_fd(w.task_region_fd), reply = open_fd(w.reply_region_fd);
  if (task < 0 || reply < 0) {
    log_(WM_LOG_INFO, std::string("large payloads go through the socket: the master's shared memory cannot be opened (") +
                         std::strerror(errno) + ")");
    if (task >= 0) close(task);
    if (reply >= 0) close(reply);
    return;
  }
  task_region_.adopt(task);
  reply_region_.adopt(reply);
  shm_ = reply_token_ = true;
  remote::Buffer msg;
  put_part(msg, kShmReady);
  send_to(*data_, "", msg.data, msg.size);
}

unsigned NodeUplink::start(remote::UplinkHost& host) {
  host_ = &host;
  const auto deadline =
      Clock::now() + std::chrono::duration_cast<Clock::duration>(std::chrono::duration<double>(options_.startup_timeout));
  const Welcome w = join(deadline);
  open_heartbeat(w);
  open_regions(w);
  expected_.resize(options_.n_workers);
  expecting_.assign(options_.n_workers, 0);
  log_(WM_LOG_INFO, "joined " + master_ + " with " + std::to_string(options_.n_workers) + " worker(s)");
  last_control_ = Clock::now();
  return options_.n_workers;
}

void NodeUplink::send_out() {
  out_.close();
  if (out_.out.size == 0) return;
  send_to(*data_, "", out_.out.data, out_.out.size);
  out_.out.size = 0;
}

void NodeUplink::control(Kind kind, remote::WorkerId w, const std::string& body) {
  out_.close();
  put_part(out_.out, kind, w, body.data(), body.size());
  send_out();
}

void NodeUplink::worker_lost(remote::WorkerId w, const std::string& status) { control(kLost, w, status); }

void NodeUplink::worker_broken(remote::WorkerId w, const std::string& why) { control(kBadBytes, w, why); }

const char* NodeUplink::lent_request(remote::WorkerId, std::size_t size) {
  return shm_ ? task_region_.view(size) : nullptr;
}

void NodeUplink::request_done(remote::WorkerId) {
  out_.close();
  put_part(out_.out, kShmFree, 0, nullptr, 0, 0);  // passed on: the master may write its next request
}

bool NodeUplink::lend_reply(remote::WorkerId, std::size_t size, char*& data, std::size_t& capacity) {
  if (!shm_ || !reply_token_ || !reply_region_.reserve(size)) return false;
  reply_token_ = false;  // back with the master's kShmFree
  data = reply_region_.data();
  capacity = reply_region_.capacity();
  return true;
}

void NodeUplink::send_payload(remote::WorkerId w, remote::Buffer&& payload) {
  out_.close();
  put_part(out_.out, kPayload, w, nullptr, 0, payload.size);
  send_out();
  large_out_.send(*data_, "", w, std::move(payload));
}

bool NodeUplink::receive_payload(remote::WorkerId w, remote::Buffer&& into) {
  if (w >= expected_.size()) return false;
  expected_[w] = std::move(into);
  expecting_[w] = 1;
  return true;
}

std::vector<int> NodeUplink::wait_fds() {
  return {data_->get(zmq::sockopt::fd), hb_->get(zmq::sockopt::fd), data_mon_->socket().get(zmq::sockopt::fd),
          hb_mon_->socket().get(zmq::sockopt::fd)};
}

// ZMQ_FD only tells of new arrivals: what is waiting already must not wait for the next one.
bool NodeUplink::pending() {
  return readable(*data_) || readable(*hb_) || readable(data_mon_->socket()) || readable(hb_mon_->socket());
}

void NodeUplink::idle() {
  if (reply_token_ && reply_region_.capacity() != 0) reply_region_.release();
}

int NodeUplink::progress() {
  int events = 0;
  for (auto& [w, buf] : large_out_.done()) {
    ++events;
    host_->payload_sent(w, std::move(buf));
  }
  events += pump_data();
  // A look at a ZeroMQ socket costs system calls (expensive on the VMs measured): the heartbeat
  // socket and the monitors once a millisecond at most, the data socket always.
  const auto now = Clock::now();
  if (now - last_control_ >= kControlEvery) {
    last_control_ = now;
    pump_control();
  }
  return events;
}

int NodeUplink::pump_data() {
  int events = 0;
  for (int i = 0; i < 4096; ++i) {
    zmq::message_t m;
    if (!data_->recv(m, zmq::recv_flags::dontwait)) break;
    ++events;
    if (m.more()) master_gone(master_ + " sent a multipart message, which is not part of this protocol");
    if (large_in_.active) {
      bool complete = false;
      std::string why;
      if (!large_in_.add(m.data(), m.size(), complete, why))
        master_gone(master_ + " sent a large payload that does not add up (" + why + ")");
      if (complete && !large_in_.discard) host_->payload_received(large_in_.worker, std::move(large_in_.buf));
      continue;
    }
    handle_parts(static_cast<const char*>(m.data()), m.size());
  }
  return events;
}

void NodeUplink::pump_control() {
  for (zmq::message_t m; hb_->recv(m, zmq::recv_flags::dontwait);) {
  }  // only the master's probes come here
  std::string address;
  bool closed = false, silent = false;
  while (const std::uint16_t ev = data_mon_->next(address)) closed = closed || ev == ZMQ_EVENT_DISCONNECTED;
  while (const std::uint16_t ev = hb_mon_->next(address)) silent = silent || ev == ZMQ_EVENT_DISCONNECTED;
  if (ended_ || (!closed && !silent)) return;
  // What the master sent before it closed is read first: its end of the job, if that was it.
  if (pump_data() > 0) return;
  // A master that died closes both connections: the data socket's event may come a moment later.
  if (!closed) {
    zmq_pollitem_t item{data_mon_->socket().handle(), 0, ZMQ_POLLIN, 0};
    if (zmq_poll(&item, 1, 100) > 0)
      while (const std::uint16_t ev = data_mon_->next(address)) closed = closed || ev == ZMQ_EVENT_DISCONNECTED;
  }
  if (closed) master_gone("the connection to " + master_ + " closed (the master ended or was killed)");
  master_gone(master_ + " went silent: no heartbeat within the heartbeat timeout (the master was stopped or "
                        "hangs, its host is unreachable, or it gave this node up)");
}

int NodeUplink::handle_parts(const char* data, std::size_t size) {
  PartCursor c(data, size);
  int events = 0;
  for (;;) {
    Part h;
    const char* p = nullptr;
    std::string why;
    const auto st = c.next(h, p, why);
    if (st == PartCursor::Status::end) return events;
    if (st == PartCursor::Status::bad) master_gone(master_ + " sent bytes that are not the protocol (" + why + ")");
    const bool per_worker = h.kind == kBytes || h.kind == kPayload || h.kind == kKill;
    if (per_worker && h.worker >= options_.n_workers)
      master_gone(master_ + " named worker " + std::to_string(h.worker) + " of this node's " +
                  std::to_string(options_.n_workers));
    switch (h.kind) {
      case kBytes:
        host_->received(h.worker, p, h.len);
        break;
      case kPayload: {
        if (c.next(h, p, why) != PartCursor::Status::end)
          master_gone(master_ + " sent a payload announcement that is not the last part of its message");
        if (h.value == 0 || h.value > static_cast<std::uint64_t>(kMaxMessage) << 16)
          master_gone(master_ + " announced a payload of " + std::to_string(h.value) + " bytes");
        large_in_.active = true;
        large_in_.worker = h.worker;
        large_in_.got = 0;
        large_in_.total = static_cast<std::size_t>(h.value);
        large_in_.discard = !expecting_[h.worker] || expected_[h.worker].size != large_in_.total;
        if (!large_in_.discard) large_in_.buf = std::move(expected_[h.worker]);
        expecting_[h.worker] = 0;
        return events;
      }
      case kKill:
        host_->stop_worker(h.worker);
        break;
      case kEnd:
        ended_ = true;  // the connection closes next: that is no loss any more
        host_->end();
        break;
      case kShmFree:
        if (h.value == 1) reply_token_ = shm_;
        break;
      case kGone:
        master_gone(master_ + " gave this node up: " + std::string(p, h.len));
      case kProbe:
      case kWelcome:
        break;
      default:
        master_gone(master_ + " sent a part of kind " + std::to_string(h.kind));
    }
    ++events;
  }
}

void NodeUplink::master_gone(const std::string& why) { throw std::runtime_error(why + "; this node and its workers end"); }

}  // namespace wm_zmq
