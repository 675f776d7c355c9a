// zmq_common.hpp: what the zmq master and its nodes share: the transport's own frames (on top of the
// engine's frame format, frame.hpp), the job key and what is derived from it (the password a node
// shows, the CURVE keys, the master's proof), the host-info file, large payloads in chunks, and
// small ZeroMQ helpers. See README.md beside this file for the protocol as a whole.
#pragma once

#include <wm/abi.h>
#include <wm/sdk/remote/frame.hpp>
#include <wm/sdk/remote/record.hpp>

#include "shared_region.hpp"

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

// ---------------------------------------------------------------- frames of this transport

/** Frame types of the zmq transport (frame.hpp: types from kFrameTransportBase up are the
 *  transport's). A message on the data socket is a run of frames (FrameCursor); frames for one
 *  worker follow a kWorker frame naming it. */
enum FrameType : std::uint8_t {
  kNodeHello = 32,  // node -> master, first: who the node is (NodeHello)
  kWelcome = 33,    // master -> node: accepted (Welcome), with the master's proof of the job key
  kWorker = 34,     // either way: the frames that follow are for / from the node's local worker `seq`
  kLost = 35,       // node -> master: the current worker is gone; payload: how ("was killed by signal 9 ...")
  kRestart = 36,    // master -> node: start a new process for the current worker
  kKill = 37,       // master -> node: stop the current worker by force
  kBadBytes = 38,   // node -> master: the current worker sent bytes that are not frames; payload: why
  kLarge = 39,      // either way: the current worker's task (master) or reply (node) of a u64 length
                    // follows in the next messages, raw chunks of at most kChunk bytes; flags: the
                    // inner frame type (kFrameTask or kFrameReply); the last frame of its message
  kEnd = 40,        // master -> node: the master is done: stop the workers, exit 0
  kGone = 41,       // master -> node: you are not (or no longer) part of this job; payload: why
  kAttach = 42,     // node -> master on the heartbeat socket: this is the node's heartbeat connection
  // A node on the master's host shares two memory regions with it (the master's memfds, which the
  // node opens through /proc): large payloads go there instead of through the socket.
  kShmReady = 43,   // node -> master: it opened both regions
  kShmTask = 44,    // master -> node, for the current worker: a request of the u64 length in the task region
  kShmReply = 45,   // node -> master, for the current worker: a reply of the u64 length in the reply region
  kShmFree = 46     // either way: the region (flags 0: task region, 1: reply region) is the other side's again
};

/** Large payloads travel in chunks: each is a message ZeroMQ allocates on receipt, copied at once
 *  into a buffer that stays warm, so no 64 MiB block of fresh memory is faulted in per message. */
constexpr std::size_t kChunk = std::size_t(1) << 20;
/** Small frames are batched per peer up to this many bytes per message. */
constexpr std::size_t kBatchBytes = std::size_t(1) << 20;
/** No peer message may be larger: chunks, batches and one frame of under the large threshold. */
constexpr std::int64_t kMaxMessage = std::int64_t(8) << 20;
/** Socket buffers asked for on TCP data connections (the system may give less). */
constexpr int kSocketBuffer = 4 << 20;
/** Version of NodeHello and Welcome. */
constexpr std::uint16_t kProtocolVersion = 1;
/** The ZAP domain of this transport's server sockets. */
constexpr const char* kZapDomain = "wm-zmq";
/** While spinning, sockets other than the data socket are looked at this often. */
constexpr auto kControlEvery = std::chrono::milliseconds(1);
/** Large buffers go back to the system after this much idling. */
constexpr auto kIdleRelease = std::chrono::seconds(2);

/** Appends one frame to a buffer: its header, then len bytes of payload (payload nullptr: the header
 *  only, the caller appends the payload). */
void put_frame(remote::Buffer& out, std::uint8_t type, std::uint64_t seq, const void* payload = nullptr,
               std::size_t len = 0, std::uint16_t flags = 0);

/** Opens the envelope of a local worker (a kWorker frame) in a batch, unless it is open already at
 *  its end (open_worker: the worker whose envelope is open, -1 none; reset it when the batch is sent). */
void envelope(remote::Buffer& out, std::int64_t& open_worker, std::uint32_t local);

/** "2.5 s". */
std::string seconds_text(double s);

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
  std::int32_t first_index = 0;         // WM_PROCESS_INDEX of the node's worker 0
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
 * Warm buffers lent to ZeroMQ while it sends a large payload (zero copy: each chunk message points
 * into the buffer, which is free again once ZeroMQ has sent every chunk). Used from one thread;
 * ZeroMQ's I/O thread only counts down.
 */
class LargeSender {
 public:
  struct Lent {
    remote::Buffer buf;
    std::atomic<int> refs{0};
    Clock::time_point used{};
  };
  /** A free buffer with room for n bytes (size 0). */
  Lent& take(std::size_t n);
  /** Sends buf[0, size) as chunk messages to `routing_id` (ROUTER; "" for a DEALER). False if the
   *  peer is unreachable (EHOSTUNREACH): nothing more was sent. */
  bool send(zmq::socket_t& s, const std::string& routing_id, Lent& lent);
  /** Gives buffers back that idled for kIdleRelease; true while some are kept. */
  bool release_idle(Clock::time_point now);
  /** True while it keeps memory (given back by release_idle). */
  bool holds_big() const;

 private:
  std::vector<std::unique_ptr<Lent>> lent_;
};

/** Reassembles one peer's large payload from its chunks into a warm buffer. */
struct LargeReceiver {
  bool active = false;
  std::uint8_t inner = 0;     // kFrameTask or kFrameReply
  std::uint32_t worker = 0;   // local worker index
  std::uint64_t seq = 0;
  std::uint64_t total = 0;
  remote::Buffer buf;
  Clock::time_point used{};

  /** Starts one (after a kLarge frame); false with why if the length is not acceptable. */
  bool begin(std::uint8_t inner_type, std::uint32_t worker_index, std::uint64_t task_seq, std::uint64_t length,
             std::string& why);
  /** Adds a chunk; 1 when complete, 0 when more is due, -1 (with why) if the chunk overruns. */
  int add(const void* data, std::size_t n, std::string& why);
  void release_if_idle(Clock::time_point now) {
    if (!active && buf.capacity != 0 && now - used >= kIdleRelease) buf.release();
  }
};

/** A wm_byte_buffer over a shared region: the core encodes a request straight into it. */
struct RegionBuffer : wm_byte_buffer {
  explicit RegionBuffer(wm_processes::SharedRegion& r)
      : wm_byte_buffer{r.data(), 0, r.capacity(), nullptr, &grow}, region(&r) {}
  static int grow(wm_byte_buffer* b, std::size_t need);
  wm_processes::SharedRegion* region;
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
