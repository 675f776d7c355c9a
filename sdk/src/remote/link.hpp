// SPDX-License-Identifier: MIT
// link.hpp: the protocol of one link, on each side, over whatever the transport can do: frames in
// the transport's byte stream, large requests and replies in shared storage or as payloads of their
// own where it can, inline where it cannot. The master's side (MasterLink) serves the dispatcher and
// a relay's local workers; the worker's side (WorkerLink) serves the worker loop and a relay's links
// to its master.
#pragma once

#include "frame.hpp"

#include <wm/sdk/remote/transport.hpp>

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <string>

namespace wm::sdk::remote {

/** A link idle this long with nothing of it in storage or under way gives its large buffers and
 *  storage back (on every side: dispatcher, worker loop, relay). */
constexpr std::chrono::milliseconds kIdleRelease{2000};

/** Appends exactly the announced number of bytes (an encoded request) to out, or throws. */
class Encoder {
 public:
  virtual void operator()(wm_byte_buffer& out) const = 0;

 protected:
  ~Encoder() = default;
};

/** Encodes through the core (services.encode) into the transport's storage. */
class TaskEncoder final : public Encoder {
 public:
  TaskEncoder(const wm_core_services& s, wm_task* t) : services_(s), task_(t) {}
  void operator()(wm_byte_buffer& out) const override;

 private:
  const wm_core_services& services_;
  wm_task* task_;
};

/** Copies bytes that are encoded already (a relay forwards a request). */
class CopyEncoder final : public Encoder {
 public:
  CopyEncoder(const char* p, std::size_t n) : p_(p), n_(n) {}
  void operator()(wm_byte_buffer& out) const override;

 private:
  const char* p_;
  std::size_t n_;
};

/** What a master link reads from its worker. */
class MasterLinkEvents {
 public:
  virtual void hello(WorkerId id, const char* data, std::size_t size) = 0;
  /** A reply; block: the core's pooled memory it was received into (payloads), else nullptr. */
  virtual void reply(WorkerId id, std::uint64_t seq, const char* data, std::size_t size,
                     const wm_shared_block* block) = 0;
  /** Room for a reply of n bytes to be received into as a payload (Buffer::pooled_for where the
   *  replies are decoded here); false if there is no memory for it. */
  virtual bool reply_storage(Buffer& into, std::size_t n) { return into.clear_for(n); }
  virtual void bye(WorkerId id) = 0;
  /** Bytes that break the protocol: the link reads nothing more until reset(). */
  virtual void broken(WorkerId id, const std::string& why) = 0;

 protected:
  ~MasterLinkEvents() = default;
};

/** The master's side of one link. */
class MasterLink {
 public:
  MasterLink(Transport& transport, WorkerId id, MasterLinkEvents& events, std::size_t large_payload_bytes);

  /** A new worker serves the link: nothing of the last one counts. */
  void reset();
  /** Reads nothing more (the worker is being stopped for what it sent). */
  void refuse() { refused_ = true; }

  void send_setup(const WorkerSetup& setup);
  /** Queues a task: in shared storage, as a payload, or inline (see the file comment); may grant
   *  the worker its storage for the reply. If encode throws, nothing is queued and it propagates. */
  void send_request(std::uint64_t seq, std::size_t size, const Encoder& encode);
  /** Queues a task whose request the worker maps from this process's pooled memory (a relay's). */
  void send_request_ref(std::uint64_t seq, const wm_shared_ref& ref);
  void send_stop();

  // What the transport delivers (TransportHost).
  Inbox& inbox() { return demux_; }
  void arrived();
  void received(const char* data, std::size_t size);
  void payload_received(Buffer&& payload);
  void payload_sent(Buffer&& buffer);

  /** A large request or reply of this worker is in storage or under way. */
  bool lending() const { return request_lent_ || paused_; }
  /** Gives large buffers back (the link idled). */
  void release_idle();

 private:
  void read();
  void replied(std::uint64_t seq);
  void fail(const std::string& why);

  Transport& t_;
  const WorkerId id_;
  MasterLinkEvents& events_;
  const std::size_t large_;
  const Capabilities caps_;
  Demux demux_;
  bool refused_ = false;
  bool request_lent_ = false, grant_out_ = false, paused_ = false;
  std::uint64_t request_seq_ = 0, grant_seq_ = 0, paused_seq_ = 0;
  Buffer payload_in_;  // a reply received as a payload (kept warm)
  Buffer spare_;       // a request's payload buffer, back from the transport
};

/** A task as a worker link read it. */
struct Incoming {
  std::uint64_t seq = 0;
  std::uint16_t flags = 0;
  const char* data = nullptr;  // the encoded request
  std::size_t size = 0;
  bool lent = false;  // data is in the master's shared storage (Port::lent_request)
};

/** What a worker link reads from its master. */
class WorkerLinkEvents {
 public:
  virtual void setup(const WorkerSetup& setup, const char* raw, std::size_t raw_size) = 0;
  virtual void task(const Incoming& task) = 0;
  /** A request that follows as a payload of `size` bytes (Port::receive_payload). */
  virtual void task_payload(const Incoming& task) = 0;
  /** A request in its relay's pooled memory, to be mapped where ref says (kFrameTaskRef). */
  virtual void task_ref(const Incoming& task, const wm_shared_ref& ref) = 0;
  virtual void stop() = 0;
  virtual void broken(const std::string& why) = 0;

 protected:
  ~WorkerLinkEvents() = default;
};

/** The worker's side of one link (over a Port). */
class WorkerLink {
 public:
  WorkerLink(Port& port, WorkerLinkEvents& events, std::size_t large_payload_bytes);

  Inbox& inbox() { return demux_; }
  void arrived();
  void received(const char* data, std::size_t size);
  /** Stops reading in the middle of what arrived (keeps the rest); read() goes on. */
  void pause() { paused_ = true; }
  void resume();

  void send_hello(const std::string& payload);
  void send_bye();
  /** Where the reply to `task` is encoded (its storage, if the task was granted it and it grows large). */
  wm_byte_buffer& begin_reply(const Incoming& task);
  /** Frames and queues (or writes) the reply encoded since begin_reply. False: the master is gone. */
  bool end_reply(const Incoming& task);
  /** Sends a reply encoded elsewhere (a relay forwards one). False: the master is gone. */
  bool send_reply(const Incoming& task, const char* data, std::size_t size);
  /** Bytes queued and not yet written. */
  std::size_t pending() const { return port_.outbox().size; }

  /** Gives large buffers back (the worker idled). */
  void release_idle();
  bool holds_big() const { return reply_.capacity >= Buffer::kHuge || demux_.holds_big(); }

 private:
  struct ReplyWriter : wm_byte_buffer {
    WorkerLink* link = nullptr;
    bool may_lend = false, in_storage = false;
    static int grow_reply(wm_byte_buffer* self, std::size_t need);
  };
  void read();
  bool send_unlent(std::uint64_t seq, const char* data, std::size_t size);

  Port& port_;
  WorkerLinkEvents& events_;
  const std::size_t large_;
  const Capabilities caps_;
  Demux demux_;
  bool paused_ = false, dead_ = false, setup_seen_ = false;
  Buffer reply_;  // where replies are encoded (kept for the next one)
  ReplyWriter writer_;
};

}  // namespace wm::sdk::remote
