// wm/sdk/remote/frame.hpp: the one frame format every remote backend speaks between its master and
// its workers, whatever moves the bytes (a Unix socket, MPI messages, ZeroMQ): a 24-byte header with
// a wire version, the hello a worker sends first, and readers that parse frames from a byte stream
// or from a message without trusting a single byte of it.
//
//   [u32 magic "WMF1"][u8 version][u8 type][u16 flags][u64 task sequence][u64 payload length][payload]
//
// Frames from the master: task (the core's encoded request as payload), task_lent (the request sits
// in storage the transport lends, e.g. shared memory; the payload is its u64 length), stop (finish
// what you have, reply, then leave). From a worker: hello (first, once), reply, reply_lent.
// heartbeat is for transports that need one; types from kFrameTransportBase up belong to the
// transport (control messages of its own).
#pragma once

#include <wm/abi.h>

#include <cstddef>
#include <cstdint>
#include <cstring>
#include <memory>
#include <string>
#include <utility>

namespace wm::sdk::remote {

constexpr std::uint32_t kFrameMagic = 0x31464d57;  // "WMF1" little-endian
/** Bumped on any change of the frame format or of the hello; both sides must speak the same. */
constexpr std::uint8_t kWireVersion = 1;

enum FrameType : std::uint8_t {
  kFrameHello = 1,      // worker -> master: who it is (payload: encode_hello)
  kFrameTask = 2,       // master -> worker: an encoded request
  kFrameTaskLent = 3,   // master -> worker: a request in lent storage; payload: its u64 length
  kFrameReply = 4,      // worker -> master: an encoded reply
  kFrameReplyLent = 5,  // worker -> master: a reply in lent storage; payload: its u64 length
  kFrameStop = 6,       // master -> worker: finish the tasks you have, reply, then leave
  kFrameHeartbeat = 7,  // either way: I am alive (transports that cannot see a peer's death)
  kFrameTransportBase = 32  // 32..255: the transport's own frames
};

/** Task frame flags: the worker may put its reply in the lent reply storage (one task at a time
 *  holds that right); the low bits carry the generation of the lent storage (bumped when the
 *  master gives its memory back, so the worker maps it afresh). */
constexpr std::uint16_t kFlagReplyMayLend = 0x8000;
constexpr std::uint16_t kFlagGenerationMask = 0x7fff;

struct FrameHeader {
  std::uint32_t magic;
  std::uint8_t version;
  std::uint8_t type;
  std::uint16_t flags;
  std::uint64_t seq;  // the task's sequence number (replies name the task they answer)
  std::uint64_t len;  // bytes of payload after the header
};
static_assert(sizeof(FrameHeader) == 24, "the frame header is 24 bytes, no padding");

inline FrameHeader make_header(std::uint8_t type, std::uint64_t seq, std::uint64_t len, std::uint16_t flags = 0) {
  return FrameHeader{kFrameMagic, kWireVersion, type, flags, seq, len};
}

/** A corrupt length must not make a reader allocate the machine away: 64 GiB is far above any
 *  single argument and below the address space. */
constexpr std::uint64_t kMaxFrameLen = 1ull << 36;

/** Checks a header read from a peer. Empty if it is valid, else what is wrong with it. */
std::string check_header(const FrameHeader& h);

/** The length a task_lent / reply_lent frame announces (its 8-byte payload); false if the payload
 *  is not 8 bytes. */
inline bool lent_length(const FrameHeader& h, const char* payload, std::uint64_t& len) {
  if (h.len != sizeof len) return false;
  std::memcpy(&len, payload, sizeof len);
  return true;
}

// ---------------------------------------------------------------- hello

/** What a worker says first: who it is, and the tasks it knows (registry.hpp). */
struct Hello {
  std::int32_t index = -1;  // WM_PROCESS_INDEX of the worker, -1: none
  std::int64_t pid = 0;
  std::int32_t rank = -1;  // MPI rank, -1: none
  std::string host;
  std::uint64_t registry_digest = 0;  // TaskListing::digest of the worker's process
  std::uint32_t n_tasks = 0;          // tasks registered there
  std::string extension;              // the worker's TaskListing::encode()
};

/** The hello's payload (version 1: fixed fields, length-prefixed host and extension). */
std::string encode_hello(const Hello& hello);
/** Parses a hello payload; false (with why) if it is malformed. Never reads out of bounds. */
bool parse_hello(const char* data, std::size_t size, Hello& out, std::string& why);

// ---------------------------------------------------------------- buffers

/**
 * A growable byte buffer that is not zero-filled on growth. Large buffers (kHuge and up) are
 * mapped directly and advised to use transparent huge pages: a fresh 4 KiB page fault costs 10-30 us
 * on the virtual machines measured, so a 64 MiB buffer would spend 0.2-0.4 s faulting in; it is
 * kept for reuse, and given back by release() when idle.
 */
struct Buffer {
  static constexpr std::size_t kHuge = std::size_t(2) << 20;

  char* data = nullptr;
  std::size_t size = 0;
  std::size_t capacity = 0;
  bool mapped = false;

  Buffer() = default;
  Buffer(const Buffer&) = delete;
  Buffer& operator=(const Buffer&) = delete;
  Buffer(Buffer&& o) noexcept { swap(o); }
  Buffer& operator=(Buffer&& o) noexcept {
    if (this != &o) {
      release();
      swap(o);
    }
    return *this;
  }
  ~Buffer() { release(); }

  void swap(Buffer& o) noexcept {
    std::swap(data, o.data);
    std::swap(size, o.size);
    std::swap(capacity, o.capacity);
    std::swap(mapped, o.mapped);
  }
  /** Room for n bytes in all, keeping the first size; throws std::bad_alloc. */
  void reserve(std::size_t n);
  void append(const void* p, std::size_t n) {
    reserve(size + n);
    if (n != 0) std::memcpy(data + size, p, n);
    size += n;
  }
  void release() noexcept;
};

/**
 * A wm_byte_buffer over a Buffer: what the core encodes into (a request into a transport's outgoing
 * bytes, a reply into a worker's). Keeps Buffer::size in step when it grows.
 */
class BufferWriter : public wm_byte_buffer {
 public:
  explicit BufferWriter(Buffer& b) noexcept : wm_byte_buffer{b.data, b.size, b.capacity, nullptr, &grow}, buf_(&b) {}
  /** Writes the bytes appended so far back into the Buffer's size. */
  void commit() noexcept { buf_->size = size; }

 private:
  static int grow(wm_byte_buffer* self, std::size_t need) noexcept;
  Buffer* buf_;
};

// ---------------------------------------------------------------- readers

/**
 * Parses frames from a byte stream (a socket). Frames up to kSmallLimit are parsed in place in one
 * large read buffer (many per read); a larger frame gets a buffer of its announced size and is read
 * straight into it, so a 64 MiB payload is copied once by the kernel and never again.
 */
class FrameReader {
 public:
  static constexpr std::size_t kBufSize = std::size_t(1) << 20;
  static constexpr std::size_t kSmallLimit = std::size_t(256) << 10;

  enum class Status { frame, need_more, bad };

  FrameReader();

  /** The next complete frame (payload valid until consume()), need_more, or bad (why says what;
   *  the stream cannot be trusted after it). */
  Status next(FrameHeader& h, const char*& payload, std::string& why);
  /** Drops the frame next() returned. */
  void consume();
  /** Where the next read should go and how much fits. Never call with a frame outstanding. */
  std::pair<char*, std::size_t> space();
  void produced(std::size_t n);

  /** True while it keeps a large-frame buffer it could give back. */
  bool holds_big() const { return !in_big_ && big_.capacity != 0; }
  void release_big() {
    if (!in_big_) big_.release();
  }
  void reset();

 private:
  std::unique_ptr<char[]> small_;
  std::size_t beg_ = 0, end_ = 0, consume_ = 0;
  bool in_big_ = false;
  FrameHeader big_hdr_{};
  Buffer big_;
};

/** Parses the frames of one message (MPI, ZeroMQ): frames back to back, nothing left over. */
class FrameCursor {
 public:
  FrameCursor(const char* data, std::size_t size) : p_(data), end_(data + size) {}
  enum class Status { frame, end, bad };
  /** The next frame, end (nothing left), or bad (why says what; do not go on). */
  Status next(FrameHeader& h, const char*& payload, std::string& why);

 private:
  const char* p_;
  const char* end_;
};

}  // namespace wm::sdk::remote
