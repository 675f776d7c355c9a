// zmq_common.cpp: frames, job key, host-info file, large payloads and ZeroMQ helpers shared by the
// zmq master and its nodes (see zmq_common.hpp).
#include "zmq_common.hpp"

#include <cstddef>

#include <sodium.h>

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <sstream>
#include <stdexcept>

namespace wm_zmq {

void put_part(remote::Buffer& out, Kind kind, std::uint32_t worker, const void* body, std::size_t len,
              std::uint64_t value) {
  const Part h{kPartMagic, kind, 0, 0, worker, static_cast<std::uint32_t>(len), value};
  out.append(&h, sizeof h);
  if (body != nullptr && len != 0) out.append(body, len);
}

PartCursor::Status PartCursor::next(Part& h, const char*& body, std::string& why) {
  const auto left = static_cast<std::size_t>(end_ - p_);
  if (left == 0) return Status::end;
  if (left < sizeof h) {
    why = "a message ends in the middle of a part header (" + std::to_string(left) + " bytes left)";
    return Status::bad;
  }
  std::memcpy(&h, p_, sizeof h);
  if (h.magic != kPartMagic) {
    why = "a part does not start with the zmq transport's marker (corrupt bytes, or another build of wm)";
    return Status::bad;
  }
  if (h.kind == 0 || h.kind > kLastKind) {
    why = "a part of unknown kind " + std::to_string(h.kind);
    return Status::bad;
  }
  if (h.len > left - sizeof h) {
    why = "a part announces " + std::to_string(h.len) + " bytes where the message holds " + std::to_string(left - sizeof h);
    return Status::bad;
  }
  body = p_ + sizeof h;
  p_ += sizeof h + h.len;
  return Status::part;
}

remote::Buffer& Outgoing::bytes_for(std::uint32_t w) {
  if (open != static_cast<std::int64_t>(w)) {
    close();
    at = out.size;
    put_part(out, kBytes, w);
    open = w;
  }
  return out;
}

void Outgoing::close() {
  if (open < 0) return;
  const std::size_t len = out.size - at - sizeof(Part);
  if (len == 0) {
    out.size = at;  // nothing was written for it
  } else {
    const auto n = static_cast<std::uint32_t>(len);
    std::memcpy(out.data + at + offsetof(Part, len), &n, sizeof n);
  }
  open = -1;
}

namespace {

bool version_ok(Reader& in, const char* what, std::string& why) {
  std::uint16_t version = 0, reserved = 0;
  if (!in.get(version) || !in.get(reserved)) {
    why = std::string("a ") + what + " too short for its version";
    return false;
  }
  if (version != kProtocolVersion) {
    why = std::string("a ") + what + " of protocol version " + std::to_string(version) + " (this build speaks " +
          std::to_string(kProtocolVersion) + "): run the master and its nodes from one build of wm";
    return false;
  }
  return true;
}

}  // namespace

std::string encode(const NodeHello& h) {
  Writer w;
  w.put(kProtocolVersion).put(std::uint16_t(0)).raw(h.nonce.data(), h.nonce.size());
  w.put(h.flags).put(h.n_workers).put(h.pid).text(h.host);
  return w.bytes;
}

bool parse(const char* data, std::size_t size, NodeHello& out, std::string& why) {
  Reader in(data, size);
  if (!version_ok(in, "node hello", why)) return false;
  NodeHello h;
  if (!in.raw(h.nonce.data(), h.nonce.size()) || !in.get(h.flags) || !in.get(h.n_workers) || !in.get(h.pid) ||
      !in.text(h.host, kMaxText) ||
      !in.done()) {
    why = "a truncated or malformed node hello";
    return false;
  }
  out = std::move(h);
  return true;
}

std::string encode(const Welcome& w) {
  Writer o;
  o.put(kProtocolVersion).put(std::uint16_t(0)).raw(w.proof.data(), w.proof.size());
  o.put(w.heartbeat_ivl_ms).put(w.heartbeat_timeout_ms).put(w.heartbeat_port);
  o.text(w.heartbeat_ipc).text(w.master_host).put(w.master_pid).put(w.task_region_fd).put(w.reply_region_fd);
  return o.bytes;
}

bool parse(const char* data, std::size_t size, Welcome& out, std::string& why) {
  Reader in(data, size);
  if (!version_ok(in, "welcome", why)) return false;
  Welcome w;
  if (!in.raw(w.proof.data(), w.proof.size()) || !in.get(w.heartbeat_ivl_ms) ||
      !in.get(w.heartbeat_timeout_ms) || !in.get(w.heartbeat_port) || !in.text(w.heartbeat_ipc, kMaxText) ||
      !in.text(w.master_host, kMaxText) || !in.get(w.master_pid) || !in.get(w.task_region_fd) ||
      !in.get(w.reply_region_fd) || !in.done()) {
    why = "a truncated or malformed welcome";
    return false;
  }
  out = std::move(w);
  return true;
}

// ---------------------------------------------------------------- the job key

namespace {

void need_sodium() {
  if (sodium_init() < 0) throw std::runtime_error("libsodium could not be initialised");
}

std::string to_hex(const unsigned char* p, std::size_t n) {
  std::string out(2 * n + 1, '\0');
  sodium_bin2hex(out.data(), out.size(), p, n);
  out.pop_back();
  return out;
}

std::string z85(const std::array<unsigned char, 32>& key) {
  char text[41] = {};
  zmq_z85_encode(text, key.data(), key.size());
  return text;
}

}  // namespace

void random_bytes(void* out, std::size_t n) {
  need_sodium();
  randombytes_buf(out, n);
}

bool same_bytes(const void* a, const void* b, std::size_t n) { return sodium_memcmp(a, b, n) == 0; }

JobKey JobKey::random() {
  JobKey k;
  random_bytes(k.bytes_.data(), k.bytes_.size());
  return k;
}

JobKey JobKey::parse(const std::string& hex, const std::string& what) {
  JobKey k;
  std::size_t len = 0;
  const char* end = nullptr;
  if (hex.size() != 64 ||
      sodium_hex2bin(k.bytes_.data(), k.bytes_.size(), hex.data(), hex.size(), nullptr, &len, &end) != 0 ||
      len != k.bytes_.size() || end != hex.data() + hex.size())
    throw std::invalid_argument(what + " is not a job key: a key is 64 hexadecimal digits (the master creates one "
                                       "and writes it to its host-info file)");
  return k;
}

std::string JobKey::hex() const { return to_hex(bytes_.data(), bytes_.size()); }

std::array<unsigned char, 32> JobKey::derive(const char* label) const {
  need_sodium();
  std::array<unsigned char, 32> out{};
  crypto_generichash(out.data(), out.size(), reinterpret_cast<const unsigned char*>(label), std::strlen(label),
                     bytes_.data(), bytes_.size());
  return out;
}

std::string JobKey::node_password() const {
  const auto d = derive("wm-zmq plain password v1");
  return to_hex(d.data(), d.size());
}

void JobKey::curve_keys(std::string& server_public, std::string& server_secret, std::string& client_public,
                        std::string& client_secret) const {
  auto pair = [&](const char* label, std::string& pub, std::string& sec) {
    std::array<unsigned char, 32> secret = derive(label), public_key{};
    if (crypto_scalarmult_base(public_key.data(), secret.data()) != 0)
      throw std::runtime_error("could not derive a CURVE key pair from the job key");
    pub = z85(public_key);
    sec = z85(secret);
    sodium_memzero(secret.data(), secret.size());
  };
  pair("wm-zmq curve server v1", server_public, server_secret);
  pair("wm-zmq curve client v1", client_public, client_secret);
}

Proof JobKey::proof(const Nonce& nonce, const std::string& routing_id) const {
  need_sodium();
  static const char label[] = "wm-zmq master proof v1";
  crypto_generichash_state st;
  crypto_generichash_init(&st, bytes_.data(), bytes_.size(), 32);
  crypto_generichash_update(&st, reinterpret_cast<const unsigned char*>(label), sizeof label);
  crypto_generichash_update(&st, nonce.data(), nonce.size());
  crypto_generichash_update(&st, reinterpret_cast<const unsigned char*>(routing_id.data()), routing_id.size());
  Proof out{};
  crypto_generichash_final(&st, out.data(), out.size());
  return out;
}

std::string JobKey::job_id() const {
  const auto d = derive("wm-zmq job id v1");
  return to_hex(d.data(), 4);
}

void Security::server(zmq::socket_t& s) const {
  s.set(zmq::sockopt::zap_domain, kZapDomain);
  if (curve) {
    std::string spub, ssec, cpub, csec;
    key.curve_keys(spub, ssec, cpub, csec);
    s.set(zmq::sockopt::curve_server, 1);
    s.set(zmq::sockopt::curve_secretkey, ssec);
  } else {
    s.set(zmq::sockopt::plain_server, 1);
  }
}

void Security::client(zmq::socket_t& s) const {
  if (curve) {
    std::string spub, ssec, cpub, csec;
    key.curve_keys(spub, ssec, cpub, csec);
    s.set(zmq::sockopt::curve_serverkey, spub);
    s.set(zmq::sockopt::curve_publickey, cpub);
    s.set(zmq::sockopt::curve_secretkey, csec);
  } else {
    s.set(zmq::sockopt::plain_username, "wm-node");
    s.set(zmq::sockopt::plain_password, key.node_password());
  }
}

// ---------------------------------------------------------------- the host-info file

void write_host_info(const std::string& path, const HostInfo& info) {
  std::ostringstream text;
  text << "# wm zmq host info: nodes started with --wm-zmq-read-host-info " << path << " join this master.\n"
       << "# It holds the job's key: keep it private (mode 0600). The master removes it when it shuts down.\n"
       << "version 1\n"
       << "host " << info.host << "\n"
       << "pid " << info.pid << "\n";
  if (!info.tcp.empty()) text << "tcp " << info.tcp << "\n";
  if (!info.ipc.empty()) text << "ipc " << info.ipc << "\n";
  text << "curve " << (info.curve ? 1 : 0) << "\n"
       << "key " << info.key << "\n";
  const std::string body = text.str();
  std::string tmp = path + ".tmp." + std::to_string(getpid());
  const int fd = open(tmp.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC | O_NOFOLLOW, 0600);
  auto fail = [&](const std::string& what) {
    const std::string err = std::strerror(errno);
    if (fd >= 0) close(fd);
    unlink(tmp.c_str());
    return std::runtime_error("cannot write the host-info file " + path + ": " + what + ": " + err);
  };
  if (fd < 0) throw fail("open " + tmp);
  if (fchmod(fd, 0600) != 0) throw fail("fchmod");
  std::size_t done = 0;
  while (done < body.size()) {
    const ssize_t w = write(fd, body.data() + done, body.size() - done);
    if (w < 0 && errno == EINTR) continue;
    if (w < 0) throw fail("write");
    done += static_cast<std::size_t>(w);
  }
  if (fsync(fd) != 0) throw fail("fsync");
  if (close(fd) != 0) {
    const std::string err = std::strerror(errno);
    unlink(tmp.c_str());
    throw std::runtime_error("cannot write the host-info file " + path + ": close: " + err);
  }
  if (rename(tmp.c_str(), path.c_str()) != 0) {
    const std::string err = std::strerror(errno);
    unlink(tmp.c_str());
    throw std::runtime_error("cannot write the host-info file " + path + ": rename: " + err);
  }
}

bool read_host_info(const std::string& path, HostInfo& out, std::string& why) {
  std::ifstream in(path);
  if (!in) {
    why = std::string("cannot be read: ") + std::strerror(errno);
    return false;
  }
  HostInfo info;
  std::string line, version;
  while (std::getline(in, line)) {
    if (line.empty() || line[0] == '#') continue;
    const auto sp = line.find(' ');
    const std::string k = line.substr(0, sp), v = sp == std::string::npos ? "" : line.substr(sp + 1);
    if (k == "version") version = v;
    else if (k == "host") info.host = v;
    else if (k == "pid") info.pid = std::atoll(v.c_str());
    else if (k == "tcp") info.tcp = v;
    else if (k == "ipc") info.ipc = v;
    else if (k == "key") info.key = v;
    else if (k == "curve") info.curve = v == "1";
  }
  if (version != "1") {
    why = version.empty() ? "is not a wm zmq host-info file (no 'version' line)"
                          : "is a host-info file of version " + version + " (this build reads version 1)";
    return false;
  }
  if (info.key.empty() || (info.tcp.empty() && info.ipc.empty())) {
    why = "is incomplete: it names no key or no endpoint";
    return false;
  }
  out = std::move(info);
  return true;
}

// ---------------------------------------------------------------- large payloads

bool LargeSender::send(zmq::socket_t& s, const std::string& routing_id, std::uint32_t worker, remote::Buffer&& buf) {
  auto lent = std::make_unique<Lent>();
  Lent& l = *lent;
  l.buf = std::move(buf);
  l.worker = worker;
  const std::size_t size = l.buf.size;
  const int chunks = static_cast<int>((size + kChunk - 1) / kChunk);
  l.refs.store(chunks, std::memory_order_release);
  lent_.push_back(std::move(lent));
  auto release = [](void*, void* hint) { static_cast<Lent*>(hint)->refs.fetch_sub(1, std::memory_order_acq_rel); };
  for (int i = 0; i < chunks; ++i) {
    const std::size_t off = static_cast<std::size_t>(i) * kChunk;
    zmq::message_t m(l.buf.data + off, std::min(kChunk, size - off), release, &l);
    if (!send_to(s, routing_id, m)) {
      l.refs.fetch_sub(chunks - i - 1, std::memory_order_acq_rel);  // m gives its own back when closed
      return false;
    }
  }
  return true;
}

std::vector<std::pair<std::uint32_t, remote::Buffer>> LargeSender::done() {
  std::vector<std::pair<std::uint32_t, remote::Buffer>> out;
  for (auto it = lent_.begin(); it != lent_.end();) {
    if ((*it)->refs.load(std::memory_order_acquire) != 0) {
      ++it;
      continue;
    }
    out.emplace_back((*it)->worker, std::move((*it)->buf));
    it = lent_.erase(it);
  }
  return out;
}

bool LargeReceiver::add(const void* data, std::size_t n, bool& complete, std::string& why) {
  if (n == 0 || n > total - got) {
    why = "a chunk of " + std::to_string(n) + " bytes came where " + std::to_string(total - got) +
          " bytes of a large payload were due";
    active = false;
    return false;
  }
  if (!discard) std::memcpy(buf.data + got, data, n);
  got += n;
  complete = got == total;
  if (complete) active = false;
  return true;
}

// ---------------------------------------------------------------- ZeroMQ helpers

bool send_to(zmq::socket_t& s, const std::string& routing_id, zmq::message_t& msg) {
  if (!routing_id.empty() && zmq_send(s.handle(), routing_id.data(), routing_id.size(), ZMQ_SNDMORE | ZMQ_DONTWAIT) < 0)
    return false;
  return zmq_msg_send(msg.handle(), s.handle(), ZMQ_DONTWAIT) >= 0;
}

bool send_to(zmq::socket_t& s, const std::string& routing_id, const void* data, std::size_t n) {
  zmq::message_t m(data, n);
  return send_to(s, routing_id, m);
}

Monitor::Monitor(zmq::context_t& ctx, zmq::socket_t& watched, const std::string& name, int events)
    : pair_(ctx, zmq::socket_type::pair) {
  const std::string endpoint = "inproc://" + name;
  if (zmq_socket_monitor(watched.handle(), endpoint.c_str(), events) != 0)
    throw std::runtime_error("cannot monitor a ZeroMQ socket: " + std::string(zmq_strerror(zmq_errno())));
  pair_.set(zmq::sockopt::linger, 0);
  pair_.connect(endpoint);
}

std::uint16_t Monitor::next(std::string& address) {
  zmq::message_t ev, addr;
  if (!pair_.recv(ev, zmq::recv_flags::dontwait)) return 0;
  if (ev.more()) (void)pair_.recv(addr);  // the second part always follows at once
  std::uint16_t event = 0;
  if (ev.size() >= sizeof event) std::memcpy(&event, ev.data(), sizeof event);
  address.assign(static_cast<const char*>(addr.data()), addr.size());
  return event;
}

const char* event_name(std::uint16_t event) {
  switch (event) {
    case ZMQ_EVENT_CONNECTED: return "connected";
    case ZMQ_EVENT_CONNECT_DELAYED: return "connect delayed";
    case ZMQ_EVENT_CONNECT_RETRIED: return "connect retried";
    case ZMQ_EVENT_ACCEPTED: return "accepted";
    case ZMQ_EVENT_DISCONNECTED: return "disconnected";
    case ZMQ_EVENT_HANDSHAKE_FAILED_NO_DETAIL: return "handshake failed";
    case ZMQ_EVENT_HANDSHAKE_SUCCEEDED: return "handshake succeeded";
    case ZMQ_EVENT_HANDSHAKE_FAILED_PROTOCOL: return "handshake failed: not the ZeroMQ protocol of a wm peer";
    case ZMQ_EVENT_HANDSHAKE_FAILED_AUTH: return "handshake failed: authentication refused";
    default: return "event";
  }
}

bool readable(zmq::socket_t& s) { return (s.get(zmq::sockopt::events) & ZMQ_POLLIN) != 0; }

unsigned tcp_port_of(const std::string& endpoint) {
  if (endpoint.rfind("tcp://", 0) != 0) return 0;
  const auto colon = endpoint.rfind(':');
  if (colon == std::string::npos) return 0;
  return static_cast<unsigned>(std::strtoul(endpoint.c_str() + colon + 1, nullptr, 10));
}

std::string with_port(const std::string& tcp_endpoint, unsigned port) {
  const auto colon = tcp_endpoint.rfind(':');
  return tcp_endpoint.substr(0, colon) + ":" + std::to_string(port);
}

}  // namespace wm_zmq
