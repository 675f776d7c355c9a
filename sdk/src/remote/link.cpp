// SPDX-License-Identifier: MIT
// link.cpp: one link's protocol on each side (see link.hpp).
#include "link.hpp"

#include <new>
#include <stdexcept>

namespace wm::sdk::remote {
namespace {

// Replies below this go into the batch; larger ones are written from where they were encoded.
constexpr std::size_t kDirectReply = Demux::kSmallLimit;

// Encodes a request at the end of out, which must grow by exactly the announced size; if it does
// not, or encoding throws, out is left as it was and the error is thrown.
void encode_request(Buffer& out, std::size_t size, const Encoder& encode) {
  const std::size_t at = out.size;
  BufferWriter w(out);
  try {
    encode(w);
  } catch (...) {
    out.size = at;
    throw;
  }
  w.commit();
  if (out.size - at != size) {
    out.size = at;
    throw std::runtime_error("the request encoded to another size than announced");
  }
}

// True if a frame of this payload goes as a payload of its own on this transport: large, or too
// large for one of its messages.
bool as_payload(const Capabilities& caps, std::size_t size, std::size_t large) {
  return caps.payloads && (size >= large || (caps.batch_limit != 0 && size + sizeof(FrameHeader) > caps.batch_limit));
}

// True if a frame of this payload would grow a message transport's batch past its limit: the batch
// goes out first.
bool ends_batch(const Capabilities& caps, const Buffer& out, std::size_t size) {
  return caps.batch_limit != 0 && out.size != 0 && out.size + sizeof(FrameHeader) + size > caps.batch_limit;
}

}  // namespace

void TaskEncoder::operator()(wm_byte_buffer& out) const {
  wm_error err{};
  if (services_.encode(task_, &out, &err) != 0) throw std::runtime_error(err.message);
}

void CopyEncoder::operator()(wm_byte_buffer& out) const {
  if (out.capacity - out.size < n_ && out.grow(&out, out.size + n_) != 0) throw std::bad_alloc();
  std::memcpy(out.data + out.size, p_, n_);
  out.size += n_;
}

// ---------------------------------------------------------------- the master's side

MasterLink::MasterLink(Transport& transport, WorkerId id, MasterLinkEvents& events, std::size_t large_payload_bytes)
    : t_(transport), id_(id), events_(events), large_(large_payload_bytes), caps_(transport.capabilities()) {}

void MasterLink::reset() {
  demux_.reset();
  refused_ = request_lent_ = grant_out_ = paused_ = false;
}

void MasterLink::send_setup(const WorkerSetup& setup) {
  const std::string payload = encode_setup(setup);
  put_frame(t_.outbox(id_), kFrameSetup, 0, payload.data(), payload.size());
}

void MasterLink::send_stop() { put_frame(t_.outbox(id_), kFrameStop, 0); }

void MasterLink::send_request(std::uint64_t seq, std::size_t size, const Encoder& encode) {
  const std::uint16_t flags = caps_.shared_storage && !grant_out_ ? kFlagReplyMayLend : 0;
  bool sent = false;
  if (size >= large_ && caps_.shared_storage && !request_lent_) {
    // Encoded once, straight into memory the worker reads it from.
    if (wm_byte_buffer* b = t_.lend_request(id_, size)) {
      const std::size_t at = b->size;
      encode(*b);
      if (b->size - at != size) throw std::runtime_error("the request encoded to another size than announced");
      put_length_frame(t_.outbox(id_), kFrameTaskLent, seq, size, flags);
      request_lent_ = true;
      request_seq_ = seq;
      sent = true;
    }
  }
  if (!sent && as_payload(caps_, size, large_)) {
    // Encoded once, into a warm buffer the transport sends as a unit after the announcement.
    Buffer b = std::move(spare_);
    b.size = 0;
    encode_request(b, size, encode);
    put_length_frame(t_.outbox(id_), kFrameTaskPayload, seq, size, flags);
    t_.flush(id_);
    t_.send_payload(id_, std::move(b));
    sent = true;
  }
  if (!sent) {
    if (ends_batch(caps_, t_.outbox(id_), size)) t_.flush(id_);
    Buffer& o = t_.outbox(id_);
    const std::size_t at = o.size;
    const FrameHeader h = make_header(kFrameTask, seq, size, flags);
    o.append(&h, sizeof h);
    try {
      encode_request(o, size, encode);
    } catch (...) {
      o.size = at;
      throw;
    }
  }
  if (flags & kFlagReplyMayLend) {
    grant_out_ = true;
    grant_seq_ = seq;
  }
}

void MasterLink::send_request_ref(std::uint64_t seq, const wm_shared_ref& ref) {
  const std::uint16_t flags = caps_.shared_storage && !grant_out_ ? kFlagReplyMayLend : 0;
  const std::string where = encode_ref(ref);
  if (ends_batch(caps_, t_.outbox(id_), where.size())) t_.flush(id_);
  put_frame(t_.outbox(id_), kFrameTaskRef, seq, where.data(), where.size(), flags);
  if (flags & kFlagReplyMayLend) {
    grant_out_ = true;
    grant_seq_ = seq;
  }
}

void MasterLink::arrived() {
  if (!paused_) read();
}

void MasterLink::received(const char* data, std::size_t size) {
  demux_.feed(data, size);
  if (!paused_) read();
  demux_.keep();
}

void MasterLink::payload_received(Buffer&& payload) {
  payload_in_ = std::move(payload);
  if (!paused_) return;
  paused_ = false;
  const std::uint64_t seq = paused_seq_;
  events_.reply(id_, seq, payload_in_.data, payload_in_.size, payload_in_.block);
  replied(seq);
  read();
}

void MasterLink::payload_sent(Buffer&& buffer) {
  if (buffer.capacity > spare_.capacity) spare_ = std::move(buffer);
}

void MasterLink::release_idle() {
  demux_.release_big();
  if (!paused_) payload_in_.release();
  spare_.release();
}

void MasterLink::replied(std::uint64_t seq) {
  if (request_lent_ && request_seq_ == seq) request_lent_ = false;
  if (grant_out_ && grant_seq_ == seq) grant_out_ = false;
}

void MasterLink::fail(const std::string& why) {
  refused_ = true;
  events_.broken(id_, why);
}

void MasterLink::read() {
  while (!refused_ && !paused_) {
    Frame f;
    std::string why;
    const Demux::Status st = demux_.next(f, why);
    if (st == Demux::Status::need_more) return;
    if (st == Demux::Status::bad) return fail(why);
    std::uint64_t len = 0;
    switch (f.type) {
      case kFrameHello:
        events_.hello(id_, f.data, f.size);
        break;
      case kFrameReply:
        events_.reply(id_, f.seq, f.data, f.size, nullptr);
        replied(f.seq);
        break;
      case kFrameReplyLent: {
        if (!grant_out_ || grant_seq_ != f.seq)
          return fail("a reply in shared memory came for task number " + std::to_string(f.seq) +
                      ", which was not allowed to use it");
        const char* data = f.length(len) ? t_.lent_reply(id_, static_cast<std::size_t>(len)) : nullptr;
        if (data == nullptr)
          return fail("a reply of " + std::to_string(len) +
                      " bytes in shared memory was announced, more than the storage holds");
        events_.reply(id_, f.seq, data, static_cast<std::size_t>(len), nullptr);
        t_.reply_done(id_);
        replied(f.seq);
        break;
      }
      case kFrameReplyPayload: {
        if (!f.length(len) || len == 0)
          return fail("a reply announces a payload of a size that is not valid (" + std::to_string(len) + " bytes)");
        Buffer into = std::move(payload_in_);
        if (!events_.reply_storage(into, static_cast<std::size_t>(len)))
          return fail("no memory for a reply of " + std::to_string(len) + " bytes");
        into.size = static_cast<std::size_t>(len);
        paused_ = true;
        paused_seq_ = f.seq;
        if (!t_.receive_payload(id_, std::move(into))) {
          paused_ = false;
          return fail("its reply's payload cannot be received");
        }
        return;  // read() goes on at payload_received()
      }
      case kFrameBye:
        events_.bye(id_);
        break;
      case kFrameHeartbeat:
        break;
      default:
        return fail("a frame of type " + std::to_string(f.type) + " came from a worker");
    }
  }
}

// ---------------------------------------------------------------- the worker's side

WorkerLink::WorkerLink(Port& port, WorkerLinkEvents& events, std::size_t large_payload_bytes)
    : port_(port), events_(events), large_(large_payload_bytes), caps_(port.capabilities()) {
  writer_.link = this;
}

void WorkerLink::arrived() {
  if (!paused_) read();
}

void WorkerLink::received(const char* data, std::size_t size) {
  demux_.feed(data, size);
  if (!paused_) read();
  demux_.keep();
}

void WorkerLink::resume() {
  paused_ = false;
  read();
}

void WorkerLink::read() {
  while (!dead_ && !paused_) {
    Frame f;
    std::string why;
    const Demux::Status st = demux_.next(f, why);
    if (st == Demux::Status::need_more) return;
    if (st == Demux::Status::bad) {
      dead_ = true;
      return events_.broken(why);
    }
    if (!setup_seen_ && f.type != kFrameSetup && f.type != kFrameHeartbeat) {
      dead_ = true;
      return events_.broken("a frame of type " + std::to_string(f.type) + " came before the setup");
    }
    std::uint64_t len = 0;
    Incoming in{f.seq, f.flags, f.data, f.size};
    switch (f.type) {
      case kFrameSetup: {
        WorkerSetup s;
        if (!parse_setup(f.data, f.size, s, why)) {
          dead_ = true;
          return events_.broken("the master sent " + why);
        }
        setup_seen_ = true;
        events_.setup(s, f.data, f.size);
        break;
      }
      case kFrameTask:
        events_.task(in);
        break;
      case kFrameTaskLent:
        in.data = f.length(len) ? port_.lent_request(static_cast<std::size_t>(len)) : nullptr;
        if (in.data == nullptr) {
          dead_ = true;
          return events_.broken("a request of " + std::to_string(len) +
                                " bytes in shared memory was announced, more than the storage holds");
        }
        in.size = static_cast<std::size_t>(len);
        in.lent = true;
        events_.task(in);
        break;
      case kFrameTaskPayload:
        if (!f.length(len) || len == 0) {
          dead_ = true;
          return events_.broken("a task announces a payload of a size that is not valid (" + std::to_string(len) +
                                " bytes)");
        }
        in.data = nullptr;
        in.size = static_cast<std::size_t>(len);
        events_.task_payload(in);
        break;
      case kFrameTaskRef: {
        wm_shared_ref ref{};
        if (!parse_ref(f.data, f.size, ref, why)) {
          dead_ = true;
          return events_.broken("the master sent " + why);
        }
        in.data = nullptr;
        in.size = static_cast<std::size_t>(ref.size);
        events_.task_ref(in, ref);
        break;
      }
      case kFrameStop:
        events_.stop();
        break;
      case kFrameHeartbeat:
        break;
      default:
        dead_ = true;
        return events_.broken("a frame of type " + std::to_string(f.type) + " came from the master");
    }
  }
}

void WorkerLink::send_hello(const std::string& payload) {
  put_frame(port_.outbox(), kFrameHello, 0, payload.data(), payload.size());
}

void WorkerLink::send_bye() { put_frame(port_.outbox(), kFrameBye, 0); }

int WorkerLink::ReplyWriter::grow_reply(wm_byte_buffer* b, std::size_t need) {
  auto* w = static_cast<ReplyWriter*>(b);
  WorkerLink& l = *w->link;
  if (w->in_storage || (w->may_lend && need >= l.large_)) {
    char* data = nullptr;
    std::size_t capacity = 0;
    if (l.port_.lend_reply(need, data, capacity)) {
      if (!w->in_storage && b->size != 0) std::memcpy(data, b->data, b->size);
      w->in_storage = true;
      b->data = data;
      b->capacity = capacity;
      return 0;
    }
    if (w->in_storage) return 1;  // the storage cannot grow: the core reports out of memory
  }
  l.reply_.size = b->size;
  try {
    l.reply_.reserve(need);
  } catch (const std::bad_alloc&) {
    return 1;
  }
  b->data = l.reply_.data;
  b->capacity = l.reply_.capacity;
  return 0;
}

wm_byte_buffer& WorkerLink::begin_reply(const Incoming& task) {
  writer_.data = reply_.data;
  writer_.size = 0;
  writer_.capacity = reply_.capacity;
  writer_.context = nullptr;
  writer_.grow = &ReplyWriter::grow_reply;
  writer_.may_lend = (task.flags & kFlagReplyMayLend) != 0 && caps_.shared_storage;
  writer_.in_storage = false;
  return writer_;
}

bool WorkerLink::end_reply(const Incoming& task) {
  if (writer_.in_storage) {
    put_length_frame(port_.outbox(), kFrameReplyLent, task.seq, writer_.size);
    return true;
  }
  return send_unlent(task.seq, writer_.data, writer_.size);
}

bool WorkerLink::send_reply(const Incoming& task, const char* data, std::size_t size) {
  if ((task.flags & kFlagReplyMayLend) != 0 && caps_.shared_storage && size >= large_) {
    char* p = nullptr;
    std::size_t capacity = 0;
    if (port_.lend_reply(size, p, capacity)) {
      std::memcpy(p, data, size);
      put_length_frame(port_.outbox(), kFrameReplyLent, task.seq, size);
      return true;
    }
  }
  return send_unlent(task.seq, data, size);
}

// A reply not in storage: as a payload of its own, written from where it is, or batched.
bool WorkerLink::send_unlent(std::uint64_t seq, const char* data, std::size_t size) {
  Buffer& out = port_.outbox();
  if (as_payload(caps_, size, large_)) {
    put_length_frame(out, kFrameReplyPayload, seq, size);
    return port_.flush() && port_.send_payload(data, size);
  }
  if (size >= kDirectReply) {
    const FrameHeader h = make_header(kFrameReply, seq, size);
    out.append(&h, sizeof h);
    return port_.write(data, size);
  }
  if (ends_batch(caps_, out, size) && !port_.flush()) return false;
  put_frame(port_.outbox(), kFrameReply, seq, data, size);
  return true;
}

void WorkerLink::release_idle() {
  demux_.release_big();
  reply_.release();
}

}  // namespace wm::sdk::remote
