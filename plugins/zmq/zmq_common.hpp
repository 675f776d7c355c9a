// SPDX-License-Identifier: MIT
// zmq_common.hpp: what the zmq master and its nodes share: the transport's messages, the link to a
// peer (parts batched, payloads in chunks or in shared regions), the job key and what derives from
// it, and small ZeroMQ helpers. See README.md beside this file.
#pragma once

#include <wm/sdk/remote/record.hpp>
#include <wm/sdk/remote/relay.hpp>
#include <wm/sdk/remote/shared_region.hpp>
#include <wm/sdk/remote/transport.hpp>

#include <sodium.h>
#include <zmq.hpp>

#include <algorithm>
#include <array>
#include <atomic>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <memory>
#include <stdexcept>
#include <string>
#include <utility>
#include <vector>

namespace wm_zmq {

namespace remote = wm::sdk::remote;
using Clock = std::chrono::steady_clock;

/** The backend's options, as the master and a node use them. */
struct Options {
  std::string endpoint, key;  // key: 64 hex digits ("": a master makes one)
  std::string host_info;      // the file a master writes, or a node reads ("": none)
  bool curve = false;
  int heartbeat_ivl_ms = 1000, heartbeat_timeout_ms = 5000;
  double startup_timeout = 60;  // s a node waits for its master (0: for ever)
  unsigned n_workers = 1;       // a node's local workers
};

std::unique_ptr<remote::Transport> make_master(const Options& options, remote::Log log);
/** Tells every node the job is over (they exit 0), closes the sockets, stops the authenticator and
 *  removes the host-info file. Once the engine's thread has ended (and at destruction); idempotent. */
void finish_master(remote::Transport& master);
std::unique_ptr<remote::Uplink> make_node(const Options& options, remote::Log log);

// ---------------------------------------------------------------- the transport's messages

/** A message on the data socket is a run of parts, each behind a Part header: the engine's bytes
 *  for one worker of the node, or the transport's control. A payload announced by kPayload follows
 *  as the next messages, raw chunks of at most kChunk bytes. */
enum Kind : std::uint8_t {
  kNodeHello = 1,  // node -> master, first: who the node is (NodeHello)
  kWelcome = 2,    // master -> node: accepted (Welcome), with the master's proof of the job key
  kBytes = 3,      // either way: the engine's bytes for / from the node's worker `worker`
  kPayload = 4,    // either way: a payload of `value` bytes for / from `worker` follows in chunks
  kLost = 5,       // node -> master: `worker` is gone; body: how ("was killed by signal 9 ...")
  kBadBytes = 6,   // node -> master: `worker` sent bytes that break the protocol; body: why
  kKill = 7,       // master -> node: stop `worker` by force
  kEnd = 8,        // master -> node: the master is done: the workers finish, the node exits 0
  kGone = 9,       // master -> node: you are not (or no longer) part of this job; body: why
  kProbe = 10,     // master -> node: is the connection there? (ignored)
  kShmReady = 11,  // node -> master: it opened the master's two regions (a node on its host)
  kShmFree = 12,   // either way: the region the receiver writes is its own again
};

struct Part {
  std::uint32_t magic;
  std::uint8_t kind, reserved0;
  std::uint16_t reserved1;
  std::uint32_t worker;  // the node's local worker (kBytes, kPayload, kLost, kBadBytes, kKill)
  std::uint32_t len;     // bytes of body after the header
  std::uint64_t value;   // kPayload: its size
};
static_assert(sizeof(Part) == 24, "a part header is 24 bytes, no padding");
constexpr std::uint32_t kPartMagic = 0x325a4d57;  // "WMZ2"

/** Sets why, returns false: for the checks that say what is wrong. */
inline bool fail(std::string& why, std::string what) {
  why = std::move(what);
  return false;
}

inline void put_part(remote::Buffer& out, Kind kind, std::uint32_t worker = 0, const std::string& body = {},
                     std::uint64_t value = 0) {
  const Part h{kPartMagic, kind, 0, 0, worker, static_cast<std::uint32_t>(body.size()), value};
  out.append(&h, sizeof h);
  if (!body.empty()) out.append(body.data(), body.size());
}

/** Reads the parts of one message, trusting no byte of it. */
class PartCursor {
 public:
  PartCursor(const void* data, std::size_t size) : p_(static_cast<const char*>(data)), end_(p_ + size) {}
  enum class Status { part, end, bad };
  Status next(Part& h, const char*& body, std::string& why) {
    const auto left = static_cast<std::size_t>(end_ - p_);
    if (left == 0) return Status::end;
    if (left < sizeof h) {
      why = "a message ends in the middle of a part header (" + std::to_string(left) + " bytes left)";
      return Status::bad;
    }
    std::memcpy(&h, p_, sizeof h);
    if (h.magic != kPartMagic)
      why = "a part does not start with the zmq transport's marker (corrupt bytes, or another build of wm)";
    else if (h.kind == 0 || h.kind > kShmFree)
      why = "a part of unknown kind " + std::to_string(h.kind);
    else if (h.len > left - sizeof h)
      why = "a part announces " + std::to_string(h.len) + " bytes where the message holds " +
            std::to_string(left - sizeof h);
    else {
      body = p_ + sizeof h;
      p_ += sizeof h + h.len;
      return Status::part;
    }
    return Status::bad;
  }

 private:
  const char* p_;
  const char* end_;
};

/** Large payloads travel in chunks: each is a message ZeroMQ allocates on receipt, copied at once
 *  into memory that stays warm, so no 64 MiB block of fresh memory is faulted in per message. */
constexpr std::size_t kChunk = std::size_t(1) << 20;
constexpr std::size_t kBatchBytes = std::size_t(1) << 20;  // parts batched per peer per message
/** No peer message may be larger: chunks, batches and one frame of under the large threshold. */
constexpr std::int64_t kMaxMessage = std::int64_t(8) << 20;
constexpr int kSocketBuffer = 4 << 20;  // asked for on TCP data connections (the system may give less)
constexpr const char* kZapDomain = "wm-zmq";
/** While spinning, sockets other than the data socket are looked at this often. */
constexpr auto kControlEvery = std::chrono::milliseconds(1);
/** Large buffers go back to the system after this much idling. */
constexpr auto kIdleRelease = std::chrono::seconds(2);
constexpr std::uint16_t kProtocolVersion = 3;  // of NodeHello and Welcome: the parts' meaning too
constexpr std::uint32_t kMaxText = 4096;       // the longest host name or endpoint they may hold

/** What both sides' transports can do: messages, payloads of their own, shared storage if asked. */
inline remote::Capabilities capabilities(bool shared_storage) {
  remote::Capabilities c;
  c.batch_limit = kBatchBytes;
  c.shared_storage = shared_storage;
  c.payloads = true;
  return c;
}

using Bytes32 = std::array<unsigned char, 32>;

/** What a node says first. */
struct NodeHello {
  static constexpr const char* kWhat = "node hello";
  static constexpr std::uint32_t kOverIpc = 1;  // flags: it connected over the master's Unix socket
  Bytes32 nonce{};                              // the master proves the job key over it
  std::uint32_t flags = 0, n_workers = 0;
  std::int64_t pid = 0;
  std::string host;
  void write(remote::RecordWriter& w) const { w.raw(nonce.data(), 32).put(flags).put(n_workers).put(pid).text(host); }
  bool read(remote::RecordReader& r) {
    return r.raw(nonce.data(), 32) && r.get(flags) && r.get(n_workers) && r.get(pid) && r.text(host, kMaxText);
  }
};

/** The master's answer. */
struct Welcome {
  static constexpr const char* kWhat = "welcome";
  Bytes32 proof{};
  std::uint32_t heartbeat_ivl_ms = 0, heartbeat_timeout_ms = 0;  // the master's, which the node follows
  std::uint32_t heartbeat_port = 0;  // TCP port of the heartbeat socket (0: none)
  std::string heartbeat_ipc;         // ipc endpoint of the heartbeat socket ("": none)
  std::string master_host;
  std::int64_t master_pid = 0;
  std::int32_t task_region_fd = -1, reply_region_fd = -1;  // memfds a node on its host may open (-1: none)
  void write(remote::RecordWriter& w) const {
    w.raw(proof.data(), 32).put(heartbeat_ivl_ms).put(heartbeat_timeout_ms).put(heartbeat_port).text(heartbeat_ipc);
    w.text(master_host).put(master_pid).put(task_region_fd).put(reply_region_fd);
  }
  bool read(remote::RecordReader& r) {
    return r.raw(proof.data(), 32) && r.get(heartbeat_ivl_ms) && r.get(heartbeat_timeout_ms) && r.get(heartbeat_port) &&
           r.text(heartbeat_ipc, kMaxText) && r.text(master_host, kMaxText) && r.get(master_pid) &&
           r.get(task_region_fd) && r.get(reply_region_fd);
  }
};

/** A NodeHello or Welcome as a record (wm/sdk/remote/record.hpp) behind the protocol version. */
template <class M> std::string encode(const M& m) {
  remote::RecordWriter w;
  m.write(w.put(kProtocolVersion).put(std::uint16_t(0)));
  return w.bytes;
}

/** False with why if it is truncated, malformed or of another version (out is then left half read). */
template <class M> bool parse(const char* data, std::size_t size, M& out, std::string& why) {
  remote::RecordReader in(data, size);
  std::uint16_t version = 0, reserved = 0;
  const bool head = in.get(version) && in.get(reserved);
  if (head && version == kProtocolVersion && out.read(in) && in.done()) return true;
  why = std::string("a ") + M::kWhat;
  if (!head)
    why += " too short for its version";
  else if (version != kProtocolVersion)
    why += " of protocol version " + std::to_string(version) + " (this build speaks " +
           std::to_string(kProtocolVersion) + "): run the master and its nodes from one build of wm";
  else
    why = std::string("a truncated or malformed ") + M::kWhat;
  return false;
}

// ---------------------------------------------------------------- the job key

inline void need_sodium() {
  if (sodium_init() < 0) throw std::runtime_error("libsodium could not be initialised");
}

inline void random_bytes(void* out, std::size_t n) {
  need_sodium();
  randombytes_buf(out, n);
}

inline std::string to_hex(const unsigned char* p, std::size_t n) {
  std::string out(2 * n + 1, '\0');
  sodium_bin2hex(out.data(), out.size(), p, n);
  out.pop_back();
  return out;
}

/** 32 random bytes created by the master; everything a member proves or encrypts with derives from
 *  it. Sockets prove membership with PLAIN and a derived password (checked by the master's ZAP
 *  handler at every connection), or with CURVE (encrypted; the master's key authenticates it too). */
class JobKey {
 public:
  bool curve = false;
  static JobKey random() {
    JobKey k;
    random_bytes(k.bytes_.data(), k.bytes_.size());
    return k;
  }
  /** From 64 hex digits; throws std::invalid_argument with what is wrong. */
  static JobKey parse(const std::string& hex, const std::string& what) {
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
  std::string hex() const { return to_hex(bytes_.data(), bytes_.size()); }
  /** A keyed hash (BLAKE2b) of message: what every secret of the job derives from. */
  Bytes32 derive(const std::string& message) const {
    Bytes32 out{};
    need_sodium();
    crypto_generichash(out.data(), out.size(), reinterpret_cast<const unsigned char*>(message.data()),
                       message.size(), bytes_.data(), bytes_.size());
    return out;
  }
  /** The password a node shows with ZeroMQ's PLAIN mechanism (a derived value, never the key). */
  std::string node_password() const { return to_hex(derive("wm-zmq plain password v1").data(), 32); }
  /** A derived CURVE key pair, Z85 text (public, secret): who is "server" (the master) or "client". */
  std::pair<std::string, std::string> curve_pair(const std::string& who) const {
    Bytes32 secret = derive("wm-zmq curve " + who + " v1"), pub{};
    if (crypto_scalarmult_base(pub.data(), secret.data()) != 0)
      throw std::runtime_error("could not derive a CURVE key pair from the job key");
    char text[2][41] = {};
    zmq_z85_encode(text[0], pub.data(), pub.size());
    zmq_z85_encode(text[1], secret.data(), secret.size());
    sodium_memzero(secret.data(), secret.size());
    return {text[0], text[1]};
  }
  /** The master's proof of the key over a node's nonce and routing id. */
  Bytes32 proof(const Bytes32& nonce, const std::string& routing_id) const {
    static const char label[] = "wm-zmq master proof v1";
    return derive(std::string(label, sizeof label) + std::string(nonce.begin(), nonce.end()) + routing_id);
  }
  /** A short public name of the job (for messages): not secret, tells two keys apart. */
  std::string job_id() const { return to_hex(derive("wm-zmq job id v1").data(), 4); }
  void server(zmq::socket_t& s) const {
    s.set(zmq::sockopt::zap_domain, kZapDomain);
    if (!curve) return s.set(zmq::sockopt::plain_server, 1);
    s.set(zmq::sockopt::curve_server, 1);
    s.set(zmq::sockopt::curve_secretkey, curve_pair("server").second);
  }
  void client(zmq::socket_t& s) const {
    if (!curve) {
      s.set(zmq::sockopt::plain_username, "wm-node");
      return s.set(zmq::sockopt::plain_password, node_password());
    }
    s.set(zmq::sockopt::curve_serverkey, curve_pair("server").first);
    s.set(zmq::sockopt::curve_publickey, curve_pair("client").first);
    s.set(zmq::sockopt::curve_secretkey, curve_pair("client").second);
  }

 private:
  Bytes32 bytes_{};
};

// ---------------------------------------------------------------- ZeroMQ helpers

/** A socket with this transport's settings. Data sockets: no high-water mark (the engine's windows
 *  bound what is in flight), large TCP buffers; ROUTERs fail a send to a peer that is gone (that is
 *  how it is noticed); ZeroMQ's own heartbeats if heartbeat_ivl_ms > 0. */
inline std::unique_ptr<zmq::socket_t> open_socket(zmq::context_t& ctx, zmq::socket_type type, bool data,
                                                  const std::string& routing_id, int heartbeat_ivl_ms = 0,
                                                  int heartbeat_timeout_ms = 0) {
  auto s = std::make_unique<zmq::socket_t>(ctx, type);
  if (type == zmq::socket_type::router) s->set(zmq::sockopt::router_mandatory, 1);
  if (!routing_id.empty()) s->set(zmq::sockopt::routing_id, routing_id);
  if (data) {
    s->set(zmq::sockopt::sndhwm, 0);
    s->set(zmq::sockopt::rcvhwm, 0);
    s->set(zmq::sockopt::sndbuf, kSocketBuffer);  // TCP: fewer hand-overs per large payload
    s->set(zmq::sockopt::rcvbuf, kSocketBuffer);
  }
  s->set(zmq::sockopt::maxmsgsize, data ? kMaxMessage : std::int64_t(64) << 10);
  s->set(zmq::sockopt::linger, 0);
  if (heartbeat_ivl_ms > 0) {
    const int timeout = std::min(heartbeat_timeout_ms, 6553500);  // the TTL's limit
    s->set(zmq::sockopt::heartbeat_ivl, heartbeat_ivl_ms);
    s->set(zmq::sockopt::heartbeat_timeout, timeout);
    s->set(zmq::sockopt::heartbeat_ttl, timeout);
  }
  return s;
}

/** Sends on a ROUTER (to routing_id) or a DEALER (routing_id ""), never blocking; false if the peer
 *  is unreachable or the socket refuses. */
inline bool send_to(zmq::socket_t& s, const std::string& routing_id, zmq::message_t&& msg) {
  if (!routing_id.empty() && zmq_send(s.handle(), routing_id.data(), routing_id.size(), ZMQ_SNDMORE | ZMQ_DONTWAIT) < 0)
    return false;
  return zmq_msg_send(msg.handle(), s.handle(), ZMQ_DONTWAIT) >= 0;
}

inline bool send_part(zmq::socket_t& s, const std::string& routing_id, Kind kind, const std::string& body = {}) {
  remote::Buffer b;
  put_part(b, kind, 0, body);
  return send_to(s, routing_id, zmq::message_t(b.data, b.size));
}

/** A monitor of a socket: the inproc PAIR its events (next_event) come to. name: unique in ctx. */
inline std::unique_ptr<zmq::socket_t> monitor(zmq::context_t& ctx, zmq::socket_t& watched, const std::string& name,
                                              int events) {
  if (zmq_socket_monitor(watched.handle(), ("inproc://" + name).c_str(), events) != 0)
    throw std::runtime_error("cannot monitor a ZeroMQ socket: " + std::string(zmq_strerror(zmq_errno())));
  auto pair = open_socket(ctx, zmq::socket_type::pair, false, "");
  pair->connect("inproc://" + name);
  return pair;
}

/** The next event of a monitor (0 if none is waiting); address: the endpoint it concerns. */
inline std::uint16_t next_event(zmq::socket_t& monitor, std::string& address) {
  zmq::message_t ev, addr;
  if (!monitor.recv(ev, zmq::recv_flags::dontwait)) return 0;
  if (ev.more()) (void)monitor.recv(addr);  // the second part always follows at once
  std::uint16_t event = 0;
  if (ev.size() >= sizeof event) std::memcpy(&event, ev.data(), sizeof event);
  address.assign(static_cast<const char*>(addr.data()), addr.size());
  return event;
}

// ---------------------------------------------------------------- the link to a peer

/**
 * Payloads being sent: buffers lent to ZeroMQ (each chunk message points into the buffer, which is
 * free once ZeroMQ has sent every chunk). One per side, made before its context: the buffers outlive
 * every message ZeroMQ holds. Used from one thread; ZeroMQ's I/O thread only counts down.
 */
class LargeSender {
 public:
  /** Sends buf in chunks to routing_id ("" on a DEALER); false if the peer is unreachable. */
  bool send(zmq::socket_t& s, const std::string& routing_id, std::uint32_t tag, remote::Buffer&& buf) {
    Lent& l = *lent_.emplace_back(new Lent{std::move(buf), tag});
    const std::size_t size = l.buf.size;
    const int chunks = static_cast<int>((size + kChunk - 1) / kChunk);
    l.refs.store(chunks, std::memory_order_release);
    auto release = [](void*, void* hint) { static_cast<Lent*>(hint)->refs.fetch_sub(1, std::memory_order_acq_rel); };
    for (int i = 0; i < chunks; ++i) {
      const std::size_t off = static_cast<std::size_t>(i) * kChunk;
      if (!send_to(s, routing_id, zmq::message_t(l.buf.data + off, std::min(kChunk, size - off), release, &l))) {
        l.refs.fetch_sub(chunks - i - 1, std::memory_order_acq_rel);  // the message gives its own back when closed
        return false;
      }
    }
    return true;
  }
  /** Buffers ZeroMQ is done with: (tag, buffer). */
  std::vector<std::pair<std::uint32_t, remote::Buffer>> done() {
    std::vector<std::pair<std::uint32_t, remote::Buffer>> out;
    for (auto& l : lent_)
      if (l->refs.load(std::memory_order_acquire) == 0) out.emplace_back(l->tag, std::move(l->buf));
    lent_.erase(std::remove_if(lent_.begin(), lent_.end(), [](const auto& l) { return l->buf.data == nullptr; }),
                lent_.end());
    return out;
  }

 private:
  struct Lent { remote::Buffer buf; std::uint32_t tag = 0; std::atomic<int> refs{0}; };  // refs: chunks not sent yet
  std::vector<std::unique_ptr<Lent>> lent_;
};

/**
 * One side's link to its peer (the master's to a node, a node's to its master): the parts batched
 * for it, the payload being received, and the two regions a node on the master's host shares with
 * it (the master writes requests into one, the node replies into the other; a token each).
 */
struct Peer {
  std::string rid;           // the peer's routing id on a ROUTER ("" on a DEALER)
  bool from_master = false;  // the peer is the master (for the words of errors)
  bool doomed = false;       // the link is to be dropped: nothing more of it is read
  remote::Buffer out;
  std::int64_t open = -1;  // the worker whose kBytes part is open at the end of out
  std::size_t at = 0;      // where its header is
  std::vector<remote::Buffer> expected;  // per worker: the buffer the engine gave for its next payload, if any
  // The payload being received (total 0: none); without a buffer nobody waits for it: it is dropped.
  struct Incoming { std::uint32_t worker = 0; std::size_t total = 0, got = 0; remote::Buffer buf; } in;
  remote::SharedRegion mine, theirs;  // the region this side writes, and the one it reads
  bool shm = false;    // both regions are open on both sides
  bool token = false;  // this side may write `mine`

  /** The buffer the engine appends worker w's bytes to (in a kBytes part). */
  remote::Buffer& bytes_for(std::uint32_t w) {
    if (open != static_cast<std::int64_t>(w)) {
      close();
      at = out.size;
      put_part(out, kBytes, w);
      open = w;
    }
    return out;
  }
  /** Ends the open kBytes part (its length is written in). */
  void close() {
    if (open < 0) return;
    const auto len = static_cast<std::uint32_t>(out.size - at - sizeof(Part));
    if (len == 0)
      out.size = at;  // nothing was written for it
    else
      std::memcpy(out.data + at + offsetof(Part, len), &len, sizeof len);
    open = -1;
  }
  void put(Kind kind, std::uint32_t w = 0, const std::string& body = {}, std::uint64_t value = 0) {
    close();
    put_part(out, kind, w, body, value);
  }
  /** Sends what is batched; false if the peer is unreachable (what was batched is dropped). */
  bool flush(zmq::socket_t& s) {
    close();
    if (out.size == 0) return true;
    zmq::message_t m(out.data, out.size);
    out.size = 0;
    return send_to(s, rid, std::move(m));
  }
  bool send_payload(zmq::socket_t& s, LargeSender& large, std::uint32_t w, std::uint32_t tag, remote::Buffer&& b) {
    put(kPayload, w, {}, b.size);
    return flush(s) && large.send(s, rid, tag, std::move(b));
  }
  bool expect(std::uint32_t w, remote::Buffer&& into) {
    if (w >= expected.size()) return false;
    expected[w] = std::move(into);
    return true;
  }
  /** Takes the token for a payload of size bytes in `mine`; false: not now, not here. */
  bool lend(std::size_t size) {
    if (!shm || !token || !mine.reserve(size)) return false;
    token = false;
    return true;
  }
  const char* lent(std::size_t size) { return shm ? theirs.view(size) : nullptr; }
  void release_idle() {
    if (token && mine.capacity() != 0) mine.release();
  }

  /** Reads one message of the peer: the next chunk of the payload under way, or a run of parts.
   *  Bytes and complete payloads go to their callbacks; parts other than kBytes, kPayload and
   *  kShmFree to control, false if they have no business here. False with why (said after the
   *  peer's name) if the message breaks the protocol. */
  template <class Bytes, class Payload, class Control>
  bool receive(const void* data, std::size_t size, std::string& why, Bytes&& bytes, Payload&& payload,
               Control&& control) {
    if (in.total != 0) {
      if (size == 0 || size > in.total - in.got)
        return fail(why, "sent a large payload that does not add up (a chunk of " + std::to_string(size) +
                             " bytes came where " + std::to_string(in.total - in.got) +
                             " bytes of a large payload were due)");
      if (in.buf.data != nullptr) std::memcpy(in.buf.data + in.got, data, size);
      if ((in.got += size) < in.total) return true;
      in.total = 0;
      if (in.buf.data != nullptr) payload(in.worker, std::move(in.buf));
      return true;
    }
    PartCursor c(data, size);
    while (!doomed) {
      Part h, next;
      const char* p = nullptr;
      const auto st = c.next(h, p, why);
      if (st == PartCursor::Status::end) return true;
      if (st == PartCursor::Status::bad)
        return fail(why, std::string(from_master ? "sent bytes that are not" : "sent a message that is not") +
                             " the protocol (" + why + ")");
      if (h.worker >= expected.size())
        return fail(why, (from_master ? "named worker " : "named its worker ") + std::to_string(h.worker) +
                             (from_master ? " of this node's " : " of ") + std::to_string(expected.size()));
      switch (h.kind) {
        case kBytes:
          bytes(h.worker, p, h.len);
          break;
        case kPayload:
          if (c.next(next, p, why) != PartCursor::Status::end)
            return fail(why, "sent a payload announcement that is not the last part of its message");
          if (h.value == 0 || h.value > static_cast<std::uint64_t>(kMaxMessage) << 16)
            return fail(why, "announced a payload of " + std::to_string(h.value) + " bytes");
          in = Incoming{h.worker, static_cast<std::size_t>(h.value), 0, std::move(expected[h.worker])};
          // What the engine asked for is received into its buffer; anything else is read and dropped.
          if (in.buf.size != in.total) in.buf.release();
          return true;
        case kShmFree:
          token = shm;
          break;
        default:
          if (!control(h, p)) return fail(why, "sent a part of kind " + std::to_string(h.kind));
      }
    }
    return true;
  }
};

}  // namespace wm_zmq
