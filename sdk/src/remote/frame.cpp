// frame.cpp: the frame format's checks, the hello, buffers and the two frame readers.
#include <wm/sdk/remote/frame.hpp>
#include <wm/sdk/remote/record.hpp>

#include <sys/mman.h>

#include <algorithm>
#include <new>

namespace wm::sdk::remote {

std::string check_header(const FrameHeader& h) {
  if (h.magic != kFrameMagic) return "a frame does not start with the frame marker (corrupt bytes, or not a wm peer)";
  if (h.version != kWireVersion)
    return "the peer speaks wire version " + std::to_string(h.version) + " and this build speaks version " +
           std::to_string(kWireVersion) + ": master and workers must run the same build of wm";
  if (h.type == 0 || (h.type > kFrameHeartbeat && h.type < kFrameTransportBase))
    return "unknown frame type " + std::to_string(h.type);
  if (h.len > kMaxFrameLen) return "a frame announces " + std::to_string(h.len) + " bytes";
  return {};
}

// ---------------------------------------------------------------- hello

namespace {

constexpr std::uint16_t kHelloVersion = 1;

constexpr std::uint32_t kMaxHost = 4096;
constexpr std::uint32_t kMaxExtension = 1u << 20;

}  // namespace

std::string encode_hello(const Hello& h) {
  RecordWriter w;
  w.put(kHelloVersion).put(std::uint16_t(0)).put(h.index).put(h.pid).put(h.rank).text(h.host, kMaxHost);
  w.put(h.registry_digest).put(h.n_tasks).text(h.extension);
  return std::move(w.bytes);
}

bool parse_hello(const char* data, std::size_t size, Hello& out, std::string& why) {
  RecordReader in(data, size);
  std::uint16_t version = 0, reserved = 0;
  if (!in.get(version) || !in.get(reserved)) {
    why = "a hello too short for its version";
    return false;
  }
  if (version == kHelloVersion && reserved != 0) {
    why = "a hello whose reserved field is not zero";
    return false;
  }
  if (version != kHelloVersion) {
    why = "a hello of version " + std::to_string(version) + " (this build reads version " +
          std::to_string(kHelloVersion) + ")";
    return false;
  }
  Hello h;
  if (!in.get(h.index) || !in.get(h.pid) || !in.get(h.rank) || !in.text(h.host, kMaxHost) ||
      !in.get(h.registry_digest) || !in.get(h.n_tasks) || !in.text(h.extension, kMaxExtension)) {
    why = "a truncated or malformed hello";
    return false;
  }
  if (!in.done()) {
    why = "a hello with " + std::to_string(in.left()) + " bytes left over";
    return false;
  }
  out = std::move(h);
  return true;
}

// ---------------------------------------------------------------- buffers

void Buffer::reserve(std::size_t n) {
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

void Buffer::release() noexcept {
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

int BufferWriter::grow(wm_byte_buffer* self, std::size_t need) noexcept {
  auto* w = static_cast<BufferWriter*>(self);
  w->buf_->size = w->size;
  try {
    w->buf_->reserve(need);
  } catch (const std::bad_alloc&) {
    return 1;
  }
  w->data = w->buf_->data;
  w->capacity = w->buf_->capacity;
  return 0;
}

// ---------------------------------------------------------------- stream reader

FrameReader::FrameReader() : small_(new char[kBufSize]) {}

FrameReader::Status FrameReader::next(FrameHeader& h, const char*& payload, std::string& why) {
  if (in_big_) {
    if (big_.size < big_hdr_.len) return Status::need_more;
    h = big_hdr_;
    payload = big_.data;
    consume_ = 0;
    return Status::frame;
  }
  const std::size_t avail = end_ - beg_;
  if (avail < sizeof(FrameHeader)) return Status::need_more;
  std::memcpy(&h, small_.get() + beg_, sizeof h);
  why = check_header(h);
  if (!why.empty()) return Status::bad;
  if (h.len > kSmallLimit) {
    // A large frame: move what arrived already into a buffer of its own and read the rest there.
    big_.size = 0;
    try {
      big_.reserve(h.len);
    } catch (const std::bad_alloc&) {
      why = "no memory for a frame of " + std::to_string(h.len) + " bytes";
      return Status::bad;
    }
    const std::size_t have = std::min<std::size_t>(avail - sizeof h, h.len);
    big_.append(small_.get() + beg_ + sizeof h, have);
    beg_ += sizeof h + have;
    if (beg_ == end_) beg_ = end_ = 0;
    big_hdr_ = h;
    in_big_ = true;
    return next(h, payload, why);
  }
  if (avail < sizeof h + h.len) return Status::need_more;
  payload = small_.get() + beg_ + sizeof h;
  consume_ = sizeof h + h.len;
  return Status::frame;
}

void FrameReader::consume() {
  if (in_big_) {
    in_big_ = false;
    big_.size = 0;
    return;
  }
  beg_ += consume_;
  consume_ = 0;
  if (beg_ == end_) beg_ = end_ = 0;
}

std::pair<char*, std::size_t> FrameReader::space() {
  if (in_big_) return {big_.data + big_.size, big_hdr_.len - big_.size};
  if (beg_ != 0) {
    std::memmove(small_.get(), small_.get() + beg_, end_ - beg_);
    end_ -= beg_;
    beg_ = 0;
  }
  return {small_.get() + end_, kBufSize - end_};
}

void FrameReader::produced(std::size_t n) {
  if (in_big_)
    big_.size += n;
  else
    end_ += n;
}

void FrameReader::reset() {
  beg_ = end_ = consume_ = 0;
  in_big_ = false;
  big_.size = 0;
}

// ---------------------------------------------------------------- message reader

FrameCursor::Status FrameCursor::next(FrameHeader& h, const char*& payload, std::string& why) {
  const auto left = static_cast<std::size_t>(end_ - p_);
  if (left == 0) return Status::end;
  if (left < sizeof h) {
    why = "a message ends in the middle of a frame header (" + std::to_string(left) + " bytes left)";
    return Status::bad;
  }
  std::memcpy(&h, p_, sizeof h);
  why = check_header(h);
  if (!why.empty()) return Status::bad;
  if (h.len > left - sizeof h) {
    why = "a frame announces " + std::to_string(h.len) + " bytes of payload where the message holds " +
          std::to_string(left - sizeof h);
    return Status::bad;
  }
  payload = p_ + sizeof h;
  p_ += sizeof h + h.len;
  return Status::frame;
}

}  // namespace wm::sdk::remote
