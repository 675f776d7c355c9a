// zmq_node.cpp: a zmq node (see zmq_node.hpp).
#include "zmq_node.hpp"

#include <wm/sdk/remote/worker_loop.hpp>

#include <malloc.h>
#include <poll.h>
#include <sched.h>
#include <fcntl.h>
#include <sys/inotify.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdio>
#include <stdexcept>

namespace wm_zmq {
namespace {

// Copies a payload that arrived from the master into a local worker's storage.
class CopyEncoder final : public remote::Encoder {
 public:
  CopyEncoder(const char* p, std::size_t n) : p_(p), n_(n) {}
  void operator()(wm_byte_buffer& out) const override {
    if (out.capacity - out.size < n_ && out.grow(&out, out.size + n_) != 0) throw std::bad_alloc();
    std::memcpy(out.data + out.size, p_, n_);
    out.size += n_;
  }

 private:
  const char* p_;
  std::size_t n_;
};

void log_local(void* context, int level, const std::string& message) {
  const auto* self = static_cast<const std::pair<const wm_core_services*, const char*>*>(context);
  self->first->log(level, self->second, message.c_str());
}

std::string directory_of(const std::string& path) {
  const auto slash = path.rfind('/');
  if (slash == std::string::npos) return ".";
  return slash == 0 ? "/" : path.substr(0, slash);
}

}  // namespace

NodeRelay::NodeRelay(const wm_core_services& services, const char* backend_name, NodeOptions options)
    : services_(services), name_(backend_name), options_(std::move(options)) {
  unsigned char id[8];
  random_bytes(id, sizeof id);
  char text[32];
  std::snprintf(text, sizeof text, "wm-node-%02x%02x%02x%02x%02x%02x%02x%02x", id[0], id[1], id[2], id[3], id[4], id[5],
                id[6], id[7]);
  rid_ = text;
  random_bytes(nonce_.data(), nonce_.size());
}

NodeRelay::~NodeRelay() {
  local_.reset();  // kills and reaps every worker still there
  data_mon_.reset();
  hb_mon_.reset();
  data_.reset();
  hb_.reset();
  ctx_.reset();
}

void NodeRelay::log(int level, const std::string& message) const { services_.log(level, name_, message.c_str()); }

NodeRelay::Target NodeRelay::target_from_options() const {
  return Target{options_.endpoint, Security{JobKey::parse(options_.key_hex, "WM_ZMQ_KEY"), options_.curve}};
}

bool NodeRelay::target_from_host_info(Target& out, std::string& why) const {
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
    log(WM_LOG_WARNING, "--wm-zmq-curve is set but the master's host-info file says it does not use CURVE; "
                        "following the master");
  struct stat st{};
  if (stat(options_.host_info_path.c_str(), &st) == 0 && (st.st_mode & 077) != 0)
    log(WM_LOG_WARNING, "the host-info file " + options_.host_info_path +
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

NodeRelay::Target NodeRelay::wait_for_host_info(Clock::time_point deadline) {
  Target t;
  std::string why;
  if (target_from_host_info(t, why)) return t;
  log(WM_LOG_INFO, "waiting for the master: its host-info file " + options_.host_info_path + " " + why);
  // Woken when a file appears in its directory (the master renames it into place); looked at once a
  // second as well, for file systems that do not report changes (NFS).
  const int in = inotify_init1(IN_CLOEXEC | IN_NONBLOCK);
  if (in >= 0) inotify_add_watch(in, directory_of(options_.host_info_path).c_str(), IN_CREATE | IN_MOVED_TO | IN_CLOSE_WRITE);
  for (;;) {
    const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - Clock::now()).count();
    if (options_.startup_timeout > 0 && left <= 0) {
      if (in >= 0) close(in);
      throw std::runtime_error("no master: its host-info file " + options_.host_info_path + " " + why + " after " +
                               seconds_text(options_.startup_timeout) +
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

void NodeRelay::open_data(const Target& t) {
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
  hello.n_workers = options_.local.n_workers;
  hello.pid = getpid();
  hello.host = remote::this_host();
  const std::string payload = encode(hello);
  remote::Buffer msg;
  put_frame(msg, kNodeHello, 0, payload.data(), payload.size());
  send_to(*data_, "", msg.data, msg.size);  // queued until the connection is up
  target_ = t;
}

Welcome NodeRelay::join(Clock::time_point deadline) {
  const bool from_file = !options_.host_info_path.empty();
  open_data(from_file ? wait_for_host_info(deadline) : target_from_options());
  log(WM_LOG_INFO, "joining the master at " + target_.endpoint + " with " + std::to_string(options_.local.n_workers) +
                       " worker(s)");
  std::string refused, last_logged;
  auto next_look = Clock::now() + std::chrono::seconds(1);
  for (;;) {
    const auto now = Clock::now();
    const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - now).count();
    if (options_.startup_timeout > 0 && left <= 0)
      throw std::runtime_error("no master answered at " + target_.endpoint + " within " +
                               seconds_text(options_.startup_timeout) + (refused.empty() ? "" : " (" + refused + ")") +
                               "; start the master first, or raise --wm-zmq-startup-timeout");
    const int wait = options_.startup_timeout > 0 ? static_cast<int>(std::min<long long>(left, 1000)) : 1000;
    zmq_pollitem_t items[] = {{data_->handle(), 0, ZMQ_POLLIN, 0}, {data_mon_->socket().handle(), 0, ZMQ_POLLIN, 0}};
    if (zmq_poll(items, 2, wait) < 0 && zmq_errno() != EINTR)
      throw std::runtime_error(std::string("zmq_poll failed: ") + zmq_strerror(zmq_errno()));
    std::string address;
    while (const std::uint16_t ev = data_mon_->next(address)) {
      if (ev == ZMQ_EVENT_HANDSHAKE_FAILED_AUTH)
        refused = "the master there refused this node's job key: it is the master of another job, or the key is wrong";
      else if (ev != ZMQ_EVENT_DISCONNECTED)
        refused = "the peer there does not speak this protocol: it is not a wm zmq master, or it was started with "
                  "another --wm-zmq-curve setting";
      if (!refused.empty() && refused != last_logged) {
        log(WM_LOG_WARNING, "joining " + target_.endpoint + ": " + refused + "; still waiting");
        last_logged = refused;
      }
    }
    zmq::message_t m;
    while (data_->recv(m, zmq::recv_flags::dontwait)) {
      remote::FrameCursor c(static_cast<const char*>(m.data()), m.size());
      remote::FrameHeader h;
      const char* p = nullptr;
      std::string why;
      if (m.more() || c.next(h, p, why) != remote::FrameCursor::Status::frame) continue;
      if (h.type == kGone)
        throw std::runtime_error("the master at " + target_.endpoint + " refused this node: " +
                                 std::string(p, static_cast<std::size_t>(h.len)));
      if (h.type != kWelcome) continue;
      Welcome w;
      if (!parse(p, static_cast<std::size_t>(h.len), w, why))
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
        log(WM_LOG_INFO, "the host-info file " + options_.host_info_path + " changed: joining " + t.endpoint);
        refused.clear();
        open_data(t);
      }
    }
  }
}

void NodeRelay::open_heartbeat(const Welcome& w) {
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
  put_frame(msg, kAttach, 0);
  send_to(*hb_, "", msg.data, msg.size);
}

void NodeRelay::open_regions(const Welcome& w) {
  if (w.task_region_fd < 0 || w.reply_region_fd < 0) return;
  auto open_fd = [&](std::int32_t fd) {
    const std::string path = "/proc/" + std::to_string(w.master_pid) + "/fd/" + std::to_string(fd);
    return open(path.c_str(), O_RDWR | O_CLOEXEC);
  };
  const int task = open_fd(w.task_region_fd), reply = open_fd(w.reply_region_fd);
  if (task < 0 || reply < 0) {
    log(WM_LOG_INFO, std::string("large payloads go through the socket: the master's shared memory cannot be opened (") +
                         std::strerror(errno) + ")");
    if (task >= 0) close(task);
    if (reply >= 0) close(reply);
    return;
  }
  task_region_.adopt(task);
  reply_region_.adopt(reply);
  shm_ = reply_token_ = true;
  remote::Buffer msg;
  put_frame(msg, kShmReady, 0);
  send_to(*data_, "", msg.data, msg.size);
}

void NodeRelay::run() {
  // This process only relays from here on (make_work_manager() never returns to the program): keep
  // freed memory, so ZeroMQ's buffers for large payloads land on warm pages, as a worker does.
  mallopt(M_MMAP_THRESHOLD, 32 << 20);
  mallopt(M_TRIM_THRESHOLD, 512 << 20);
  const auto deadline =
      Clock::now() + std::chrono::duration_cast<Clock::duration>(std::chrono::duration<double>(options_.startup_timeout));
  const Welcome w = join(deadline);
  open_heartbeat(w);
  open_regions(w);
  options_.local.first_index = w.first_index;
  log(WM_LOG_INFO, "joined " + master_ + "; starting " + std::to_string(options_.local.n_workers) +
                       " worker(s) (WM_PROCESS_INDEX from " + std::to_string(w.first_index) + ")");
  serve();
}

void NodeRelay::serve() {
  log_context_ = {&services_, name_};
  local_ = std::make_unique<wm_processes::LocalProcessTransport>(options_.local, &log_local, &log_context_);
  local_->large_payload_bytes = static_cast<std::size_t>(services_.large_payload_bytes);
  large_threshold_ = std::min(static_cast<std::size_t>(services_.large_payload_bytes), kBatchBytes);
  alive_.assign(options_.local.n_workers, 1);
  local_->set_extra_fds({data_->get(zmq::sockopt::fd), hb_->get(zmq::sockopt::fd),
                         data_mon_->socket().get(zmq::sockopt::fd), hb_mon_->socket().get(zmq::sockopt::fd)});
  local_->start(*this);  // a worker that cannot be started is reported lost at once
  send_out();
  last_activity_ = Clock::now();
  const auto spin = std::chrono::microseconds(options_.local.spin_us);
  auto last_control = Clock::now();
  for (;;) {
    const bool active = pump_data();
    auto now = Clock::now();
    // A look at a ZeroMQ socket costs system calls (expensive on the VMs measured): while spinning,
    // the heartbeat socket and the monitors are looked at once a millisecond, the data socket always.
    const bool spinning = now - last_activity_ < spin;
    if (!spinning || now - last_control >= kControlEvery) {
      pump_control();
      last_control = now;
    }
    for (remote::WorkerId id : dirty_) local_->flush(id);
    dirty_.clear();
    send_out();
    if (active) last_activity_ = now;
    if (ending_) {
      if (alive_workers() == 0) return;
      if (!forced_ && now >= end_deadline_) {
        forced_ = true;
        for (remote::WorkerId id = 0; id < alive_.size(); ++id)
          if (alive_[id]) local_->stop_worker(id, remote::StopMode::force);
      }
    }
    int timeout = -1;
    if (now - last_activity_ < spin)
      timeout = 0;
    else if (ending_ && !forced_)
      timeout = static_cast<int>(std::chrono::duration_cast<std::chrono::milliseconds>(end_deadline_ - now).count() + 1);
    else if (large_in_.buf.capacity != 0 || large_out_.holds_big() || reply_region_.capacity() != 0)
      timeout = static_cast<int>(std::chrono::duration_cast<std::chrono::milliseconds>(kIdleRelease).count()) + 1;
    // ZMQ_FD only tells of new arrivals: what is waiting already must not wait for the next one.
    if (timeout != 0 && (readable(*data_) || readable(*hb_) || readable(data_mon_->socket()) ||
                         readable(hb_mon_->socket())))
      timeout = 0;
    const int events = local_->progress(timeout);
    if (events > 0)
      last_activity_ = Clock::now();
    else if (timeout == 0)
      sched_yield();
  }
}

bool NodeRelay::pump_data() {
  bool any = false;
  for (int i = 0; i < 4096; ++i) {
    zmq::message_t m;
    if (!data_->recv(m, zmq::recv_flags::dontwait)) break;
    any = true;
    if (m.more()) master_gone(master_ + " sent a multipart message, which is not part of this protocol");
    if (large_in_.active) {
      std::string why;
      const int r = large_in_.add(m.data(), m.size(), why);
      if (r < 0) master_gone(master_ + " sent a large payload that does not add up (" + why + ")");
      if (r > 0)
        to_local_worker(large_in_.worker, large_in_.seq, large_in_.buf.data, large_in_.buf.size);
      continue;
    }
    handle_frames(static_cast<const char*>(m.data()), m.size());
  }
  return any;
}

void NodeRelay::pump_control() {
  for (zmq::message_t m; hb_->recv(m, zmq::recv_flags::dontwait);) {
  }  // only the master's probes come here
  std::string address;
  bool closed = false, silent = false;
  while (const std::uint16_t ev = data_mon_->next(address)) closed = closed || ev == ZMQ_EVENT_DISCONNECTED;
  while (const std::uint16_t ev = hb_mon_->next(address)) silent = silent || ev == ZMQ_EVENT_DISCONNECTED;
  if ((closed || silent) && !ending_) {
    // What the master sent before it closed is read first: its end of the job, if that was it.
    if (!pump_data() && !ending_) {
      // A master that died closes both connections: the data socket's event may come a moment later.
      if (!closed) {
        zmq_pollitem_t item{data_mon_->socket().handle(), 0, ZMQ_POLLIN, 0};
        if (zmq_poll(&item, 1, 100) > 0)
          while (const std::uint16_t ev = data_mon_->next(address)) closed = closed || ev == ZMQ_EVENT_DISCONNECTED;
      }
      if (closed)
        master_gone("the connection to " + master_ + " closed (the master ended or was killed)");
      master_gone(master_ + " went silent: no heartbeat within the heartbeat timeout (the master was stopped or "
                            "hangs, its host is unreachable, or it gave this node up)");
    }
  }
  const auto now = Clock::now();
  if (large_in_.buf.capacity != 0) large_in_.release_if_idle(now);
  large_out_.release_idle(now);
  if (reply_token_ && reply_region_.capacity() != 0 && now - reply_used_ >= kIdleRelease) reply_region_.release();
}

void NodeRelay::handle_frames(const char* data, std::size_t size) {
  remote::FrameCursor c(data, size);
  in_worker_ = -1;
  for (;;) {
    remote::FrameHeader h;
    const char* p = nullptr;
    std::string why;
    const auto st = c.next(h, p, why);
    if (st == remote::FrameCursor::Status::end) return;
    if (st == remote::FrameCursor::Status::bad) master_gone(master_ + " sent bytes that are not frames (" + why + ")");
    const std::size_t len = static_cast<std::size_t>(h.len);
    switch (h.type) {
      case remote::kFrameHeartbeat:
      case kWelcome:
        continue;
      case kWorker:
        if (h.seq >= alive_.size())
          master_gone(master_ + " named worker " + std::to_string(h.seq) + " of this node's " +
                      std::to_string(alive_.size()));
        in_worker_ = static_cast<std::int64_t>(h.seq);
        continue;
      case kEnd:
        begin_end();
        continue;
      case kShmFree:
        if (h.flags == 1) reply_token_ = shm_;
        continue;
      case kGone:
        master_gone(master_ + " gave this node up: " + std::string(p, len));
      default:
        break;
    }
    if (in_worker_ < 0) master_gone(master_ + " sent a frame of type " + std::to_string(h.type) + " for no worker");
    const auto w = static_cast<remote::WorkerId>(in_worker_);
    switch (h.type) {
      case remote::kFrameTask:
        to_local_worker(w, h.seq, p, len);
        break;
      case kShmTask: {
        std::uint64_t total = 0;
        const char* data = shm_ && remote::lent_length(h, p, total)
                               ? task_region_.view(static_cast<std::size_t>(total), 0)
                               : nullptr;
        if (data == nullptr) master_gone(master_ + " announced a request in shared memory that is not there");
        to_local_worker(w, h.seq, data, static_cast<std::size_t>(total));
        put_frame(out_, kShmFree, 0, nullptr, 0, 0);  // copied: the master may write its next request
        break;
      }
      case kLarge: {
        std::uint64_t total = 0;
        if (!remote::lent_length(h, p, total)) master_gone(master_ + " announced a large payload without its length");
        remote::FrameHeader next;
        if (c.next(next, p, why) != remote::FrameCursor::Status::end)
          master_gone(master_ + " sent a large-payload announcement that is not the last frame of its message");
        if (!large_in_.begin(remote::kFrameTask, w, h.seq, total, why)) master_gone(master_ + ": " + why);
        return;
      }
      case remote::kFrameStop:
        local_->stop_worker(w, remote::StopMode::graceful);
        break;
      case kKill:
        local_->stop_worker(w, remote::StopMode::force);
        break;
      case kRestart:
        if (local_->restart_worker(w)) {
          alive_[w] = 1;
        } else {
          envelope(out_, out_worker_, w);
          const std::string status = "could not be started again (see the node's log)";
          put_frame(out_, kLost, 0, status.data(), status.size());
        }
        break;
      default:
        master_gone(master_ + " sent a frame of type " + std::to_string(h.type));
    }
  }
}

void NodeRelay::to_local_worker(remote::WorkerId w, std::uint64_t seq, const char* payload, std::size_t len) {
  // A worker that is gone refuses (its loss is on the way to the master, which runs the task elsewhere).
  if (!local_->send_task(w, seq, len, CopyEncoder(payload, len))) return;
  if (std::find(dirty_.begin(), dirty_.end(), w) == dirty_.end()) dirty_.push_back(w);
}

void NodeRelay::begin_end() {
  if (ending_) return;
  ending_ = true;
  end_deadline_ = Clock::now() + std::chrono::duration_cast<Clock::duration>(
                                     std::chrono::duration<double>(options_.shutdown_timeout));
  for (remote::WorkerId id = 0; id < alive_.size(); ++id)
    if (alive_[id]) local_->stop_worker(id, remote::StopMode::graceful);
}

void NodeRelay::send_out() {
  if (out_.size == 0) return;
  send_to(*data_, "", out_.data, out_.size);
  out_.size = 0;
  out_worker_ = -1;
}

void NodeRelay::master_gone(const std::string& why) {
  local_.reset();  // its workers are killed now: nobody would take their results
  throw std::runtime_error(why + "; this node and its workers end");
}

std::size_t NodeRelay::alive_workers() const { return static_cast<std::size_t>(std::count(alive_.begin(), alive_.end(), 1)); }

// ---------------------------------------------------------------- events of the local workers

void NodeRelay::worker_added(remote::WorkerId) {}

void NodeRelay::worker_ready(remote::WorkerId id, const remote::Hello& hello) {
  envelope(out_, out_worker_, id);
  const std::string payload = remote::encode_hello(hello);
  put_frame(out_, remote::kFrameHello, 0, payload.data(), payload.size());
}

void NodeRelay::reply(remote::WorkerId id, std::uint64_t seq, const char* data, std::size_t size) {
  if (size >= large_threshold_ && reply_token_ && reply_region_.reserve(size, 0)) {
    std::memcpy(reply_region_.data(), data, size);
    const std::uint64_t len = size;
    envelope(out_, out_worker_, id);
    put_frame(out_, kShmReply, seq, &len, sizeof len);
    reply_token_ = false;
    reply_used_ = Clock::now();
    return;
  }
  if (size >= large_threshold_) {
    LargeSender::Lent& lent = large_out_.take(size);
    lent.buf.append(data, size);
    const std::uint64_t len = size;
    envelope(out_, out_worker_, id);
    put_frame(out_, kLarge, seq, &len, sizeof len, remote::kFrameReply);
    send_out();
    large_out_.send(*data_, "", lent);
    return;
  }
  envelope(out_, out_worker_, id);
  put_frame(out_, remote::kFrameReply, seq, data, size);
  if (out_.size >= kBatchBytes) send_out();
}

void NodeRelay::protocol_error(remote::WorkerId id, const std::string& why) {
  local_->stop_worker(id, remote::StopMode::force);
  envelope(out_, out_worker_, id);
  put_frame(out_, kBadBytes, 0, why.data(), why.size());
}

void NodeRelay::worker_lost(remote::WorkerId id, const std::string& status) {
  if (id < alive_.size()) alive_[id] = 0;
  envelope(out_, out_worker_, id);
  put_frame(out_, kLost, 0, status.data(), status.size());
}

}  // namespace wm_zmq
