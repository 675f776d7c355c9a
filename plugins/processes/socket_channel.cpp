// socket_channel.cpp: the worker side of local worker processes (see socket_channel.hpp).
#include "socket_channel.hpp"

#include <poll.h>
#include <sys/socket.h>
#include <sys/uio.h>

#include <cerrno>
#include <chrono>
#include <cstring>
#include <stdexcept>

namespace wm_processes {
namespace {

using remote::FrameHeader;
using remote::FrameReader;

constexpr int kToWorkerFd = 4;
constexpr int kFromWorkerFd = 5;
constexpr int kIdleReleaseMs = 2000;                      // large buffers go back after this much idling
constexpr std::size_t kDirectReply = FrameReader::kSmallLimit;  // larger replies skip the batch

/** Sends all of iov (blocking socket); false on error (peer gone). Never raises SIGPIPE. */
bool send_all(int fd, iovec* iov, int n) {
  while (n > 0) {
    msghdr m{};
    m.msg_iov = iov;
    m.msg_iovlen = static_cast<std::size_t>(n);
    const ssize_t w = sendmsg(fd, &m, MSG_NOSIGNAL);
    if (w < 0) {
      if (errno == EINTR) continue;
      return false;
    }
    auto left = static_cast<std::size_t>(w);
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

}  // namespace

SocketChannel::SocketChannel(int fd, bool shm, int ring_fd, std::size_t large_payload_bytes)
    : fd_(fd), large_(large_payload_bytes) {
  if (shm) {
    to_worker_.adopt(kToWorkerFd);
    from_worker_.adopt(kFromWorkerFd);
  }
  if (ring_fd >= 0) {
    // The master reads our frames from the ring only: without it there is no talking to it.
    if (!ring_.adopt(ring_fd))
      throw std::runtime_error("processes worker: descriptor " + std::to_string(ring_fd) + " is not the ring file");
    in_ring_.attach(ring_.control(RingFile::to_worker), ring_.bytes(RingFile::to_worker));
    out_ring_.attach(ring_.control(RingFile::from_worker), ring_.bytes(RingFile::from_worker));
  }
}

void SocketChannel::doorbell() {
  [[maybe_unused]] ssize_t r = send(fd_, &kDoorbellByte, 1, MSG_NOSIGNAL | MSG_DONTWAIT);
}

// Reads what waits on the socket: doorbell bytes (dropped) and end of file (eof_seen_). False if
// the master sent anything else (why says so).
bool SocketChannel::take_doorbells(std::string& why) {
  for (;;) {
    unsigned char b[256];
    const ssize_t r = recv(fd_, b, sizeof b, MSG_DONTWAIT);
    if (r > 0) {
      for (ssize_t i = 0; i < r; ++i)
        if (b[i] != kDoorbellByte) {
          why = "bytes that are not a doorbell came on the socket";
          return false;
        }
      continue;
    }
    if (r < 0 && errno == EINTR) continue;
    if (r < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) return true;
    eof_seen_ = true;  // end of file, or the connection is gone
    return true;
  }
}

// The ring is full: sleeps until the master has made room. False if the master is gone.
bool SocketChannel::wait_for_room() {
  for (;;) {
    bool corrupt = false;
    if (out_ring_.free_bytes(corrupt) != 0 || corrupt) return !corrupt;
    // After end of file the master cannot ring any more (it shut down its sending side): look
    // again every millisecond, until it reads or closes (POLLHUP: gone).
    pollfd pfd{fd_, static_cast<short>(eof_seen_ ? 0 : POLLIN), 0};
    const int n = poll(&pfd, 1, eof_seen_ ? 1 : -1);
    if (n < 0 && errno != EINTR) return false;
    if (n <= 0) continue;
    if (pfd.revents & (POLLHUP | POLLERR | POLLNVAL)) return false;
    std::string why;
    if ((pfd.revents & POLLIN) && !take_doorbells(why)) return false;
  }
}

// Writes all of iov into the ring to the master, waiting for room when it is full.
bool SocketChannel::ring_send(const iovec* iov, int n) {
  for (int i = 0; i < n; ++i) {
    const char* p = static_cast<const char*>(iov[i].iov_base);
    std::size_t left = iov[i].iov_len;
    while (left > 0) {
      bool corrupt = false;
      const std::size_t w = out_ring_.write(p, left, corrupt);
      if (corrupt) return false;
      p += w;
      left -= w;
      if (left == 0 || out_ring_.announce_wait(corrupt)) continue;
      // Full: the master must hear of what is there before we wait for it to make room.
      if (out_ring_.consumer_needs_wake()) doorbell();
      const bool ok = wait_for_room();
      out_ring_.wait_done();
      if (!ok) return false;
    }
  }
  if (out_ring_.consumer_needs_wake()) doorbell();
  return true;
}

bool SocketChannel::send_bytes(iovec* iov, int n) { return out_ring_.attached() ? ring_send(iov, n) : send_all(fd_, iov, n); }

void SocketChannel::send_hello(const remote::Hello& hello) {
  const std::string payload = remote::encode_hello(hello);
  const FrameHeader h = remote::make_header(remote::kFrameHello, 0, payload.size());
  out_.append(&h, sizeof h);
  out_.append(payload.data(), payload.size());
}

bool SocketChannel::flush() {
  if (broken_) return false;
  if (out_.size == 0) return true;
  iovec iov{out_.data, out_.size};
  const bool ok = send_bytes(&iov, 1);
  out_.size = 0;
  if (!ok) broken_ = true;
  return ok;
}

// Reads more bytes: waits up to timeout_ms. True if bytes came; eof set at end of file (why: what
// was wrong, if it was not a plain end).
bool SocketChannel::fill(int timeout_ms, bool& eof, std::string& why) {
  const bool ring = in_ring_.attached();
  for (;;) {
    if (ring) {
      // From the ring: with timeout 0 (the worker loop's spin) no system call at all.
      bool corrupt = false;
      const std::size_t avail = in_ring_.available(corrupt);
      if (avail != 0) {
        auto [p, cap] = reader_.space();
        const std::size_t n = std::min(avail, cap);
        in_ring_.read(p, n);
        reader_.produced(n);
        if (in_ring_.producer_needs_wake()) doorbell();
        return true;
      }
      if (corrupt) why = "the ring from the master holds an impossible write position";
      if (corrupt || eof_seen_) {  // the master wrote its ring before it closed: all read by now
        eof = true;
        return false;
      }
    } else {
      auto [p, cap] = reader_.space();
      const ssize_t r = recv(fd_, p, cap, MSG_DONTWAIT);
      if (r > 0) {
        reader_.produced(static_cast<std::size_t>(r));
        return true;
      }
      if (r == 0) {
        eof = true;
        return false;
      }
      if (errno == EINTR) continue;
      if (errno != EAGAIN && errno != EWOULDBLOCK) {
        eof = true;
        return false;
      }
    }
    if (timeout_ms == 0) return false;
    // Asleep: while idle with large buffers, give them back to the system every so often.
    const bool big = reader_.holds_big() || reply_.capacity >= remote::Buffer::kHuge ||
                     out_.capacity >= remote::Buffer::kHuge;
    const int wait = big && (timeout_ms < 0 || timeout_ms > kIdleReleaseMs) ? kIdleReleaseMs : timeout_ms;
    // The master rings the doorbell only if it sees us sleeping: say so, then look once more.
    if (ring && in_ring_.announce_sleep()) {
      in_ring_.sleep_done();
      continue;
    }
    pollfd pfd{fd_, POLLIN, 0};
    const int n = poll(&pfd, 1, wait);
    if (ring) in_ring_.sleep_done();
    if (n < 0 && errno != EINTR) {
      eof = true;
      return false;
    }
    if (ring && n > 0 && !take_doorbells(why)) {
      eof = true;
      return false;
    }
    if (n == 0) {
      if (big) {
        reader_.release_big();
        reply_.release();
        out_.release();
      }
      if (timeout_ms >= 0) return false;
    }
  }
}

remote::Incoming SocketChannel::receive(int timeout_ms) {
  remote::Incoming in;
  if (holding_frame_) {
    reader_.consume();
    holding_frame_ = false;
  }
  for (;;) {
    FrameHeader h;
    const char* data = nullptr;
    const FrameReader::Status st = reader_.next(h, data, in.why);
    if (st == FrameReader::Status::bad) {
      in.kind = remote::Incoming::closed;
      return in;
    }
    if (st == FrameReader::Status::frame) {
      holding_frame_ = true;
      if (h.type == remote::kFrameStop) {
        in.kind = remote::Incoming::stop;
        return in;
      }
      if (h.type == remote::kFrameTaskLent) {
        std::uint64_t len = 0;
        data = remote::lent_length(h, data, len)
                   ? to_worker_.view(static_cast<std::size_t>(len), h.flags & remote::kFlagGenerationMask)
                   : nullptr;
        if (data == nullptr) {
          in.kind = remote::Incoming::closed;
          in.why = "a request of " + std::to_string(len) + " bytes in shared memory was announced, more than the region holds";
          return in;
        }
        h.len = len;
      } else if (h.type != remote::kFrameTask) {
        return remote::Incoming::unexpected_frame(h.type, "the master");
      }
      return remote::Incoming::task_from(h, data);
    }
    bool eof = false;
    if (!fill(timeout_ms, eof, in.why)) {
      in.kind = eof ? remote::Incoming::closed : remote::Incoming::none;
      return in;
    }
  }
}

int SocketChannel::ReplyBuffer::grow_reply(wm_byte_buffer* b, std::size_t need) {
  auto* self = static_cast<ReplyBuffer*>(b);
  SocketChannel& ch = *self->owner;
  if (self->in_region || (self->may_use_region && need >= ch.large_)) {
    if (ch.from_worker_.reserve(need, self->generation)) {
      if (!self->in_region && b->size != 0) std::memcpy(ch.from_worker_.data(), b->data, b->size);
      self->in_region = true;
      b->data = ch.from_worker_.data();
      b->capacity = ch.from_worker_.capacity();
      return 0;
    }
    if (self->in_region) return 1;  // the region cannot grow: the core reports out of memory
  }
  ch.reply_.size = b->size;
  try {
    ch.reply_.reserve(need);
  } catch (const std::bad_alloc&) {
    return 1;
  }
  b->data = ch.reply_.data;
  b->capacity = ch.reply_.capacity;
  return 0;
}

wm_byte_buffer& SocketChannel::begin_reply(const remote::Incoming& task) {
  current_.data = reply_.data;
  current_.size = 0;
  current_.capacity = reply_.capacity;
  current_.context = nullptr;
  current_.grow = &ReplyBuffer::grow_reply;
  current_.owner = this;
  current_.may_use_region = (task.flags & remote::kFlagReplyMayLend) != 0 && from_worker_.valid();
  current_.in_region = false;
  current_.generation = task.flags & remote::kFlagGenerationMask;
  return current_;
}

void SocketChannel::end_reply(const remote::Incoming& task) {
  const ReplyBuffer& r = current_;
  if (r.in_region) {
    const std::uint64_t len = r.size;
    const FrameHeader h = remote::make_header(remote::kFrameReplyLent, task.seq, sizeof len);
    out_.append(&h, sizeof h);
    out_.append(&len, sizeof len);
  } else if (r.size < kDirectReply) {
    const FrameHeader h = remote::make_header(remote::kFrameReply, task.seq, r.size);
    out_.append(&h, sizeof h);
    out_.append(r.data, r.size);
  } else {
    // A large reply without the region goes out at once, from where it was encoded.
    FrameHeader h = remote::make_header(remote::kFrameReply, task.seq, r.size);
    iovec iov[2] = {{&h, sizeof h}, {r.data, r.size}};
    if (!flush() || !send_bytes(iov, 2)) broken_ = true;
  }
}

}  // namespace wm_processes
