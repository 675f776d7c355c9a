// frames.hpp: the wire between the processes master and its workers: length-prefixed frames on a
// Unix stream socket, and a reader that parses them from large reads without copying small frames
// and reads large ones straight into a buffer of the announced size.
#pragma once

#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/uio.h>

#include <algorithm>
#include <cerrno>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <memory>
#include <new>
#include <string>

namespace wm_processes {

constexpr std::uint32_t kFrameMagic = 0x46504d57;  // "WMPF"

enum FrameType : std::uint16_t {
  kFrameTask = 1,      // master -> worker: an encoded request (the payload follows)
  kFrameReply = 2,     // worker -> master: an encoded reply (the payload follows)
  kFrameHello = 4,     // worker -> master: the worker is ready (sent once, first)
  kFrameTaskShm = 5,   // master -> worker: a request in the shared region to the worker; the payload
                       // is its length (uint64)
  kFrameReplyShm = 6   // worker -> master: a reply in the shared region from the worker; the payload
                       // is its length (uint64)
};

inline bool known_frame_type(std::uint16_t t) {
  return t == kFrameTask || t == kFrameReply || t == kFrameHello || t == kFrameTaskShm || t == kFrameReplyShm;
}

// Flags of a task frame: the generation of the slot's shared regions (bumped when the master gives
// their memory back, so the worker maps them afresh), and whether the reply may use the region.
constexpr std::uint16_t kFlagGenerationMask = 0x7fff;
constexpr std::uint16_t kFlagReplyInShm = 0x8000;

struct FrameHeader {
  std::uint32_t magic;
  std::uint16_t type;
  std::uint16_t flags;  // task frames: kFlag*
  std::uint64_t seq;  // the task's sequence number (replies must come in the order sent)
  std::uint64_t len;  // bytes of payload after the header
};
static_assert(sizeof(FrameHeader) == 24, "frame header must be packed");

inline FrameHeader make_header(FrameType type, std::uint64_t seq, std::uint64_t len) {
  return FrameHeader{kFrameMagic, type, 0, seq, len};
}

/** The length a kFrameTaskShm / kFrameReplyShm frame announces (its 8-byte payload); false if the
 *  payload is not 8 bytes. */
inline bool region_length(const FrameHeader& h, const char* payload, std::uint64_t& len) {
  if (h.len != sizeof len) return false;
  std::memcpy(&len, payload, sizeof len);
  return true;
}

// A corrupt length must not make us allocate the machine away: 64 GiB is far above any sane
// single argument and below the address space.
constexpr std::uint64_t kMaxFrameLen = 1ull << 36;

/**
 * A growable byte buffer that is not zero-filled on growth (std::vector<char> would be). Large
 * buffers are mapped directly and advised to use transparent huge pages: a fresh 4 KiB page
 * fault costs 20-30 us on the virtual machines this was measured on, so a 64 MiB buffer would
 * spend 0.4 s faulting in; with huge pages it is 30 times less, and the buffer is kept for reuse.
 */
struct Buffer {
  static constexpr std::size_t kHuge = 2u << 20;

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

  void reserve(std::size_t n) {
    if (n <= capacity) return;
    std::size_t cap = capacity == 0 ? n : capacity;
    while (cap < n) cap += cap / 2 + 1;
    Buffer fresh;
    if (cap >= kHuge) {
      cap = (cap + kHuge - 1) / kHuge * kHuge;
      void* p = mmap(nullptr, cap, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
      if (p == MAP_FAILED) throw std::bad_alloc();
      madvise(p, cap, MADV_HUGEPAGE);
      fresh.data = static_cast<char*>(p);
      fresh.mapped = true;
    } else {
      fresh.data = new char[cap];
    }
    fresh.capacity = cap;
    if (size != 0) std::memcpy(fresh.data, data, size);
    fresh.size = size;
    swap(fresh);
  }
  void append(const void* p, std::size_t n) {
    reserve(size + n);
    if (n != 0) std::memcpy(data + size, p, n);
    size += n;
  }
  void release() noexcept {
    if (data != nullptr) {
      if (mapped)
        munmap(data, capacity);
      else
        delete[] data;
    }
    data = nullptr;
    size = capacity = 0;
    mapped = false;
  }
};

/**
 * Parses frames from a stream. Frames up to kSmallLimit bytes are parsed in place inside one large
 * read buffer (many per read); a larger frame gets a dedicated buffer of its announced size and
 * is read straight into it, so a 64 MiB payload is copied once by the kernel and never again.
 */
class FrameReader {
 public:
  static constexpr std::size_t kBufSize = 1u << 20;
  static constexpr std::size_t kSmallLimit = 256u << 10;

  enum class Status { frame, need_more, bad };

  FrameReader() : small_(new char[kBufSize]) {}

  /** The next complete frame (valid until consume()), need_more, or bad (why says what). */
  Status next(FrameHeader& h, const char*& data, std::string& why) {
    if (in_big_) {
      if (big_.size < big_hdr_.len) return Status::need_more;
      h = big_hdr_;
      data = big_.data;
      consume_ = 0;
      return Status::frame;
    }
    const std::size_t avail = end_ - beg_;
    if (avail < sizeof(FrameHeader)) return Status::need_more;
    std::memcpy(&h, small_.get() + beg_, sizeof h);
    if (h.magic != kFrameMagic) {
      why = "frame does not start with the frame marker";
      return Status::bad;
    }
    if (!known_frame_type(h.type)) {
      why = "unknown frame type " + std::to_string(h.type);
      return Status::bad;
    }
    if (h.len > kMaxFrameLen) {
      why = "frame announces " + std::to_string(h.len) + " bytes";
      return Status::bad;
    }
    if (h.len > kSmallLimit) {
      // Large frame: move what arrived already into the dedicated buffer, read the rest there.
      big_.size = 0;
      big_.reserve(h.len);
      const std::size_t have = std::min<std::size_t>(avail - sizeof h, h.len);
      big_.append(small_.get() + beg_ + sizeof h, have);
      beg_ += sizeof h + have;
      if (beg_ == end_) beg_ = end_ = 0;
      big_hdr_ = h;
      in_big_ = true;
      return next(h, data, why);
    }
    if (avail < sizeof h + h.len) return Status::need_more;
    data = small_.get() + beg_ + sizeof h;
    consume_ = sizeof h + h.len;
    return Status::frame;
  }

  /** Drops the frame returned by next(). */
  void consume() {
    if (in_big_) {
      in_big_ = false;
      big_.size = 0;
      return;
    }
    beg_ += consume_;
    consume_ = 0;
    if (beg_ == end_) beg_ = end_ = 0;
  }

  /** Where the next read should go, and how much fits. Never call with a frame outstanding. */
  std::pair<char*, std::size_t> space() {
    if (in_big_) return {big_.data + big_.size, big_hdr_.len - big_.size};
    if (beg_ != 0) {
      std::memmove(small_.get(), small_.get() + beg_, end_ - beg_);
      end_ -= beg_;
      beg_ = 0;
    }
    return {small_.get() + end_, kBufSize - end_};
  }
  void produced(std::size_t n) {
    if (in_big_)
      big_.size += n;
    else
      end_ += n;
  }

  bool holds_big() const { return !in_big_ && big_.capacity != 0; }
  void release_big() {
    if (!in_big_) big_.release();
  }
  /** Bytes received and not yet parsed (for "did the peer stop mid-frame"). */
  bool mid_frame() const { return in_big_ || end_ != beg_; }
  void reset() {
    beg_ = end_ = consume_ = 0;
    in_big_ = false;
    big_.size = 0;
  }

 private:
  std::unique_ptr<char[]> small_;
  std::size_t beg_ = 0, end_ = 0, consume_ = 0;
  bool in_big_ = false;
  FrameHeader big_hdr_{};
  Buffer big_;
};

/** Sends all of iov (blocking socket); false on error (peer gone). Never raises SIGPIPE. */
inline bool send_all(int fd, struct iovec* iov, int n) {
  while (n > 0) {
    msghdr m{};
    m.msg_iov = iov;
    m.msg_iovlen = static_cast<std::size_t>(n);
    ssize_t w = sendmsg(fd, &m, MSG_NOSIGNAL);
    if (w < 0) {
      if (errno == EINTR) continue;
      return false;
    }
    std::size_t left = static_cast<std::size_t>(w);
    while (n > 0 && left >= iov->iov_len) {
      left -= iov->iov_len;
      ++iov;
      --n;
    }
    if (n > 0) {
      iov->iov_base = static_cast<char*>(iov->iov_base) + left;
      iov->iov_len -= left;
    }
  }
  return true;
}

}  // namespace wm_processes
