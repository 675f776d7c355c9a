// zmq_common.hpp: what the zmq master and its nodes share: the transport's own messages (the
// engine's bytes for each worker of a node, and the transport's control), the job key and what is
// derived from it (the password a node shows, the CURVE keys, the master's proof), the host-info
// file, large payloads in chunks, and small ZeroMQ helpers. See README.md beside this file.
#pragma once

#include <wm/abi.h>
#include <wm/sdk/remote/buffer.hpp>
#include <wm/sdk/remote/record.hpp>
#include <wm/sdk/remote/transport.hpp>

#include <zmq.hpp>

#include <array>
#include <atomic>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <memory>
#include <string>
#include <vector>

namespace wm_zmq {

namespace remote = wm::sdk::remote;
using Clock = std::chrono::steady_clock;

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
  kAttach = 10,    // node -> master on the heartbeat socket: this is the node's heartbeat connection
  kProbe = 11,     // master -> node: is the connection there? (ignored)
  // A node on the master's host shares two memory regions with it (the master's memfds, which the
  // node opens through /proc): large requests and replies go there instead of through the socket.
  kShmReady = 12,  // node -> master: it opened both regions
  kShmFree = 13,   // either way: the region (`value` 0: task region, 1: reply region) is the other side's again
  kLastKind = kShmFree
};

/** The header of one part of a message. */
struct Part {
  std::uint32_t magic;
  std::uint8_t kind;
  std::uint8_t reserved0;
  std::uint16_t reserved1;
  std::uint32_t worker;  // the node's local worker (kBytes, kPayload, kLost, kBadBytes, kKill)
  std::uint32_t len;     // bytes of body after the header
  std::uint64_t value;   // kPayload: its size; kShmFree: which region
};
static_assert(sizeof(Part) == 24, "a part header is 24 bytes, no padding");
constexpr std::uint32_t kPartMagic = 0x325a4d57;  // "WMZ2"

/** Appends a part: its header, then len bytes of body. */
void put_part(remote::Buffer& out, Kind kind, std::uint32_t worker = 0, const void* body = nullptr,
              std::size_t len = 0, std::uint64_t value = 0);

/** Reads the parts of one message, trusting no byte of it. */
class PartCursor {
 public:
  PartCursor(const void* data, std::size_t size)
      : p_(static_cast<const char*>(data)), end_(p_ + size) {}
  enum class Status { part, end, bad };
  Status next(Part& h, const char*& body, std::string& why);

 private:
  const char* p_;
  const char* end_;
};

/** A node's buffer of parts for its master (or the master's for one node): the engine's bytes for
 *  each worker go in a kBytes part whose length is filled in when another part begins or the
 *  message is sent. */
struct Outgoing {
  remote::Buffer out;
  std::int64_t open = -1;  // the worker whose kBytes part is open at the end of out
  std::size_t at = 0;      // where its header is
  /** The buffer the engine appends worker w's bytes to. */
  remote::Buffer& bytes_for(std::uint32_t w);
  /** Ends the open kBytes part (before a control part, or before sending). */
  void close();
};

/** Large payloads travel in chunks: each is a message ZeroMQ allocates on receipt, copied at once
 *  into memory that stays warm, so no 64 MiB block of fresh memory is faulted in per message. */
constexpr std::size_t kChunk = std::size_t(1) << 20;
/** Parts are batched per peer up to this many bytes per message. */
constexpr std::size_t kBatchBytes = std::size_t(1) << 20;
/** No peer message may be larger: chunks, batches and one frame of under the large threshold. */
constexpr std::int64_t kMaxMessage = std::int64_t(8) << 20;
/** Socket buffers asked for on TCP data connections (the system may give less). */
constexpr int kSocketBuffer = 4 << 20;
/** Version of NodeHello and Welcome. */
constexpr std::uint16_t kProtocolVersion = 2;
/** The ZAP domain of this transport's server sockets. */
constexpr const char* kZapDomain = "wm-zmq";
/** While spinning, sockets other than the data socket are looked at this often. */
constexpr auto kControlEvery = std::chrono::milliseconds(1);
/** Large buffers go back to the system after this much idling. */
constexpr auto kIdleRelease = std::chrono::seconds(2);

/** The payloads of NodeHello and Welcome are records (wm/sdk/remote/record.hpp). */
using Writer = remote::RecordWriter;
using Reader = remote::RecordReader;
constexpr std::uint32_t kMaxText = 4096;  // the longest host name or endpoint a record may hold

using Nonce = std::array<unsigned char, 32>;
using Proof = std::array<unsigned char, 32>;

/** What a node says first. */
struct NodeHello {
  static constexpr std::uint32_t kOverIpc = 1;  // flags: it connected over the master's Unix socket
  Nonce nonce{};  // the master proves the job key over it
  std::uint32_t flags = 0;
  std::uint32_t n_workers = 0;
  std::int64_t pid = 0;
  std::string host;
};
std::string encode(const NodeHello& h);
bool parse(const char* data, std::size_t size, NodeHello& out, std::string& why);

/** The master's answer. */
struct Welcome {
  Proof proof{};
  std::uint32_t heartbeat_ivl_ms = 0;   // the master's heartbeat settings, which the node follows
  std::uint32_t heartbeat_timeout_ms = 0;
  std::uint32_t heartbeat_port = 0;     // TCP port of the heartbeat socket (0: none)
  std::string heartbeat_ipc;            // ipc endpoint of the heartbeat socket ("" : none)
  std::string master_host;
  std::int64_t master_pid = 0;
  std::int32_t task_region_fd = -1;   // the master's memfds a node on its host may open (-1: none)
  std::int32_t reply_region_fd = -1;
};
std::string encode(const Welcome& w);
bool parse(const char* data, std::size_t size, Welcome& out, std::string& why);

// ---------------------------------------------------------------- the job key

/** 32 random bytes created by the master; everything a member proves or encrypts with derives from it. */
class JobKey {
 public:
  static JobKey random();
  /** From 64 hex digits; throws std::invalid_argument with what is wrong. */
  static JobKey parse(const std::string& hex, const std::string& what);
  std::string hex() const;

  /** The password a node shows with ZeroMQ's PLAIN mechanism (a derived value, never the key). */
  std::string node_password() const;
  /** CURVE key pairs (Z85 text, 40 characters), derived: one for the master, one for every node. */
  void curve_keys(std::string& server_public, std::string& server_secret, std::string& client_public,
                  std::string& client_secret) const;
  /** The master's proof of the key over a node's nonce and routing id. */
  Proof proof(const Nonce& nonce, const std::string& routing_id) const;
  /** A short public name of the job (for messages): not secret, tells two keys apart. */
  std::string job_id() const;

 private:
  std::array<unsigned char, 32> derive(const char* label) const;
  std::array<unsigned char, 32> bytes_{};
};

/** Fresh random bytes (libsodium). */
void random_bytes(void* out, std::size_t n);
/** Constant-time equality. */
bool same_bytes(const void* a, const void* b, std::size_t n);

/** How sockets prove membership: PLAIN with the derived password (checked by the master's ZAP
 *  handler at every connection), or CURVE (encrypted; the master's key authenticates it too). */
struct Security {
  JobKey key;
  bool curve = false;
  void server(zmq::socket_t& s) const;
  void client(zmq::socket_t& s) const;
};

// ---------------------------------------------------------------- the host-info file

/** What the master writes for its nodes (and removes at its shutdown). */
struct HostInfo {
  std::string host;
  std::int64_t pid = 0;
  std::string tcp;  // tcp://host:port ("" if none)
  std::string ipc;  // ipc://path ("" if none)
  std::string key;  // hex
  bool curve = false;
};
/** Writes it atomically (a temporary file of mode 0600 in the same directory, renamed). Throws. */
void write_host_info(const std::string& path, const HostInfo& info);
/** Reads it; false with why if it is not a host-info file of this version. */
bool read_host_info(const std::string& path, HostInfo& out, std::string& why);

// ---------------------------------------------------------------- large payloads

/**
 * Payloads being sent: buffers lent to ZeroMQ (zero copy: each chunk message points into the
 * buffer, which is free once ZeroMQ has sent every chunk; its owner gets it back then). Used from
 * one thread; ZeroMQ's I/O thread only counts down.
 */
class LargeSender {
 public:
  /** Sends buf[0, size) as chunk messages to `routing_id` (ROUTER; "" for a DEALER), after the
   *  announcement the caller sent. False if the peer is unreachable: the buffer is then back at once. */
  bool send(zmq::socket_t& s, const std::string& routing_id, std::uint32_t worker, remote::Buffer&& buf);
  /** Buffers ZeroMQ is done with, for their owner: (worker, buffer). */
  std::vector<std::pair<std::uint32_t, remote::Buffer>> done();

 private:
  struct Lent {
    remote::Buffer buf;
    std::uint32_t worker = 0;
    std::atomic<int> refs{0};
  };
  std::vector<std::unique_ptr<Lent>> lent_;
};

/** A peer's payload being received, chunk by chunk, into the buffer its owner gave. */
struct LargeReceiver {
  bool active = false;
  std::uint32_t worker = 0;
  std::size_t total = 0, got = 0;
  remote::Buffer buf;    // where it goes (its owner's)
  bool discard = false;  // nobody waits for it (its link was reset): read and dropped

  /** Adds a chunk; true when complete; false (with why) if the chunk overruns. */
  bool add(const void* data, std::size_t n, bool& complete, std::string& why);
};

// ---------------------------------------------------------------- ZeroMQ helpers

/** Sends a message on a ROUTER (to routing_id) or a DEALER (routing_id ""), never blocking. False if
 *  the peer is unreachable (ROUTER_MANDATORY) or the socket refuses. */
bool send_to(zmq::socket_t& s, const std::string& routing_id, zmq::message_t& msg);
bool send_to(zmq::socket_t& s, const std::string& routing_id, const void* data, std::size_t n);

/** A socket monitor: the events of one socket, read from an inproc PAIR. */
class Monitor {
 public:
  Monitor(zmq::context_t& ctx, zmq::socket_t& watched, const std::string& name, int events);
  zmq::socket_t& socket() { return pair_; }
  /** The next event (0 if none is waiting); address: the endpoint it concerns. */
  std::uint16_t next(std::string& address);

 private:
  zmq::socket_t pair_;
};

/** Readable name of a ZeroMQ monitor event. */
const char* event_name(std::uint16_t event);

/** True if the socket has a message waiting (ZMQ_EVENTS; also re-arms its ZMQ_FD). */
bool readable(zmq::socket_t& s);

/** The port of a bound tcp endpoint (ZMQ_LAST_ENDPOINT), 0 if none. */
unsigned tcp_port_of(const std::string& endpoint);
/** "tcp://HOST:PORT" with the port replaced. */
std::string with_port(const std::string& tcp_endpoint, unsigned port);

}  // namespace wm_zmq
