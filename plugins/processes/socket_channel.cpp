// socket_channel.cpp: the worker side of local worker processes (see socket_channel.hpp).
#include "socket_channel.hpp"

#include <poll.h>
#include <sys/socket.h>
#include <sys/uio.h>

#include <cerrno>
#include <chrono>
#include <cstring>

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

SocketChannel::SocketChannel(int fd, bool shm, std::size_t large_payload_bytes) : fd_(fd), large_(large_payload_bytes) {
  if (shm) {
    to_worker_.adopt(kToWorkerFd);
    from_worker_.adopt(kFromWorkerFd);
  }
}

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
  const bool ok = send_all(fd_, &iov, 1);
  out_.size = 0;
  if (!ok) broken_ = true;
  return ok;
}

// Reads more bytes: waits up to timeout_ms. True if bytes came; eof set at end of file.
bool SocketChannel::fill(int timeout_ms, bool& eof) {
  for (;;) {
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
    if (timeout_ms == 0) return false;
    // Asleep: while idle with large buffers, give them back to the system every so often.
    const bool big = reader_.holds_big() || reply_.capacity >= remote::Buffer::kHuge ||
                     out_.capacity >= remote::Buffer::kHuge;
    const int wait = big && (timeout_ms < 0 || timeout_ms > kIdleReleaseMs) ? kIdleReleaseMs : timeout_ms;
    pollfd pfd{fd_, POLLIN, 0};
    const int n = poll(&pfd, 1, wait);
    if (n < 0 && errno != EINTR) {
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
        in.kind = remote::Incoming::closed;
        in.why = "a frame of type " + std::to_string(h.type) + " came from the master";
        return in;
      }
      in.kind = remote::Incoming::task;
      in.seq = h.seq;
      in.flags = h.flags;
      in.data = data;
      in.size = static_cast<std::size_t>(h.len);
      return in;
    }
    bool eof = false;
    if (!fill(timeout_ms, eof)) {
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
    if (!flush() || !send_all(fd_, iov, 2)) broken_ = true;
  }
}

}  // namespace wm_processes
