// SPDX-License-Identifier: MIT
// frame.hpp: the engine's wire format, private to the engine: every remote backend's master and
// workers speak it, whatever moves the bytes (a shared-memory ring, MPI messages, ZeroMQ), and no
// transport reads it. A 24-byte header with a wire version, then the payload:
//
//   [u32 magic "WMF1"][u8 version][u8 type][u16 flags][u64 task sequence][u64 payload length][payload]
//
// Master -> worker: setup (first), task, task_lent (the request is in shared storage; payload: its
// u64 length), task_payload (the request follows as a payload of its own; payload: its u64 length),
// stop. Worker -> master: hello (after the setup), reply, reply_lent, reply_payload, bye (after a
// stop, its last frame). The Demux reads frames from bytes that come in pieces of any size, without
// trusting one of them.
#pragma once

#include <wm/sdk/remote/buffer.hpp>
#include <wm/sdk/remote/transport.hpp>

#include <cstddef>
#include <cstdint>
#include <cstring>
#include <memory>
#include <string>
#include <utility>
#include <vector>

namespace wm::sdk::remote {

constexpr std::uint32_t kFrameMagic = 0x31464d57;  // "WMF1" little-endian
/** Bumped on any change of the frame format, the hello or the setup; both sides must speak the same. */
constexpr std::uint8_t kWireVersion = 3;

enum FrameType : std::uint8_t {
  kFrameHello = 1,         // worker -> master: who it is (encode_hello)
  kFrameTask = 2,          // master -> worker: an encoded request
  kFrameTaskLent = 3,      // master -> worker: the request is in shared storage; payload: its u64 length
  kFrameReply = 4,         // worker -> master: an encoded reply
  kFrameReplyLent = 5,     // worker -> master: the reply is in shared storage; payload: its u64 length
  kFrameStop = 6,          // master -> worker: finish the tasks you have, reply, say bye, leave
  kFrameHeartbeat = 7,     // either way: ignored (reserved)
  kFrameSetup = 8,         // master -> worker, first: the WorkerSetup (encode_setup)
  kFrameTaskPayload = 9,   // master -> worker: the request follows as a payload; payload: its u64 length
  kFrameReplyPayload = 10, // worker -> master: the reply follows as a payload; payload: its u64 length
  kFrameBye = 11,          // worker -> master, after a stop: every reply is sent; it leaves
  kFrameTaskRef = 12,      // relay -> local worker: the request is in the relay's pooled memory, which the
                           // worker maps read-only; payload: where (encode_ref)
  kFrameLast = kFrameTaskRef
};

/** Task frame flag: the worker may put this task's reply in its shared storage (one task at a time
 *  holds that right). */
constexpr std::uint16_t kFlagReplyMayLend = 0x8000;

struct FrameHeader {
  std::uint32_t magic;
  std::uint8_t version;
  std::uint8_t type;
  std::uint16_t flags;
  std::uint64_t seq;  // the task's sequence number (replies name the task they answer)
  std::uint64_t len;  // bytes of payload after the header
};
static_assert(sizeof(FrameHeader) == 24, "the frame header is 24 bytes, no padding");

/** A corrupt length must not make a reader allocate the machine away: 64 GiB is far above any
 *  single argument and below the address space. */
constexpr std::uint64_t kMaxFrameLen = 1ull << 36;

inline FrameHeader make_header(std::uint8_t type, std::uint64_t seq, std::uint64_t len, std::uint16_t flags = 0) {
  return FrameHeader{kFrameMagic, kWireVersion, type, flags, seq, len};
}

/** Appends one frame: its header, then len bytes of payload (none if payload is nullptr). */
inline void put_frame(Buffer& out, std::uint8_t type, std::uint64_t seq, const void* payload = nullptr,
                      std::size_t len = 0, std::uint16_t flags = 0) {
  const FrameHeader h = make_header(type, seq, len, flags);
  out.append(&h, sizeof h);
  if (payload != nullptr && len != 0) out.append(payload, len);
}

/** Appends a frame whose payload is a u64 length (task_lent, reply_payload, ...). */
inline void put_length_frame(Buffer& out, std::uint8_t type, std::uint64_t seq, std::uint64_t length,
                             std::uint16_t flags = 0) {
  put_frame(out, type, seq, &length, sizeof length, flags);
}

/** Checks a header read from a peer. Empty if it is valid, else what is wrong with it. */
std::string check_header(const FrameHeader& h);

/** A frame as the Demux returns it: data points at its payload. */
struct Frame {
  std::uint8_t type = 0;
  std::uint16_t flags = 0;
  std::uint64_t seq = 0;
  const char* data = nullptr;
  std::size_t size = 0;
  /** The u64 length a task_lent / task_payload / reply_lent / reply_payload frame announces; false
   *  if its payload is not 8 bytes or the length is beyond kMaxFrameLen. */
  bool length(std::uint64_t& out) const {
    if (size != sizeof out) return false;
    std::memcpy(&out, data, sizeof out);
    return out <= kMaxFrameLen;
  }
};

// ---------------------------------------------------------------- hello and setup

/** What a worker says first: who it is, and the tasks it knows (registry.hpp). */
struct Hello {
  std::int32_t index = -1;  // WM_PROCESS_INDEX of the worker (its setup's index)
  std::int64_t pid = 0;
  std::int32_t rank = -1;  // MPI rank, -1: none
  std::string host;
  std::uint64_t registry_digest = 0;  // TaskListing::digest of the worker's process
  std::uint32_t n_tasks = 0;          // tasks registered there
  std::string extension;              // the worker's TaskListing::encode()
  /** What the worker has (wm::sdk::Resources: "gpu", "cpu", declared ones), sorted by name. */
  std::vector<std::pair<std::string, double>> resources;
};

std::string encode_hello(const Hello& hello);
/** Parses a hello payload; false (with why) if it is malformed. Never reads out of bounds. */
bool parse_hello(const char* data, std::size_t size, Hello& out, std::string& why);

std::string encode_setup(const WorkerSetup& setup);
/** Where a request in a relay's pooled memory is (kFrameTaskRef). */
std::string encode_ref(const wm_shared_ref& ref);
bool parse_ref(const char* data, std::size_t size, wm_shared_ref& out, std::string& why);
bool parse_setup(const char* data, std::size_t size, WorkerSetup& out, std::string& why);

// ---------------------------------------------------------------- the demultiplexer

/**
 * Reads frames from the bytes of one link, in pieces of any size: a stream transport reads straight
 * into space(); a message transport feeds whole messages, whose complete frames are read in place
 * (no copy) and whose partial frame at the end is kept. Frames up to kSmallLimit wait in one buffer
 * of kBufSize (many per read; it grows only while nobody reads); a larger one gets a buffer of its announced size, and the bytes still
 * due are read straight into it (a 64 MiB payload is copied once, by the kernel or the transport).
 */
class Demux final : public Inbox {
 public:
  static constexpr std::size_t kBufSize = std::size_t(1) << 20;
  static constexpr std::size_t kSmallLimit = std::size_t(256) << 10;

  enum class Status { frame, need_more, bad };

  Demux();

  std::pair<char*, std::size_t> space() override;
  void produced(std::size_t n) override { take(n); }
  /** A message: read in place by next() until keep() is called, which must be before it goes. */
  void feed(const char* data, std::size_t size);
  /** Copies what next() did not read of the fed message into the buffer. */
  void keep();

  /** The next complete frame (valid until the next call of any member), need_more, or bad (why
   *  says what; the link cannot be trusted after it). */
  Status next(Frame& f, std::string& why);

  /** True while it keeps a large-frame buffer it could give back. */
  bool holds_big() const { return !in_big_ && big_.capacity != 0; }
  void release_big() {
    if (!in_big_) big_.release();
  }
  void reset();

 private:
  void drop_last();
  void take(std::size_t n);
  void absorb(const char* p, std::size_t n);

  Buffer small_;  // frames up to kSmallLimit: bytes [beg_, small_.size)
  std::size_t beg_ = 0;
  const char* ext_ = nullptr;  // a fed message, read in place
  std::size_t ext_pos_ = 0, ext_len_ = 0;
  bool in_big_ = false;
  FrameHeader big_hdr_{};
  Buffer big_;
  enum class Last { none, small, ext, big } last_ = Last::none;
  std::size_t last_len_ = 0;
};

}  // namespace wm::sdk::remote
