// wm/sdk/remote/transport.hpp: what a remote backend writes: how workers start and how bytes move.
// Everything else (the ready queue, windows, batching, retries, timeouts, the shutdown state
// machine, the blame rules, the worker loop) is the engine's, written once (dispatcher.hpp,
// worker_loop.hpp), the way Open MPI's ob1 PML serves every BTL.
//
// Master side: a Transport, driven by the Dispatcher on the dispatcher's thread; it reports what
// happens through TransportEvents. Worker side: a WorkerChannel, driven by run_worker_loop().
#pragma once

#include <wm/abi.h>
#include <wm/sdk/remote/frame.hpp>

#include <cstddef>
#include <cstdint>
#include <stdexcept>
#include <string>

namespace wm::sdk::remote {

/** A worker as the dispatcher knows it: a small dense number the transport hands out. */
using WorkerId = std::uint32_t;

/** Appends exactly the announced number of bytes (a task's encoded request) to out, or throws. */
class Encoder {
 public:
  virtual void operator()(wm_byte_buffer& out) const = 0;

 protected:
  ~Encoder() = default;
};

/** Encodes a request at the end of out, which must grow by exactly the announced size; if it does
 *  not, or encoding throws, out is left as it was and the error is thrown. */
inline void encode_request(Buffer& out, std::size_t size, const Encoder& encode) {
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

/** Appends a task frame: its header, then the request encoded in place (encode_request). */
inline void append_task_frame(Buffer& out, std::uint64_t seq, std::size_t size, const Encoder& encode,
                              std::uint16_t flags = 0) {
  const std::size_t at = out.size;
  const FrameHeader h = make_header(kFrameTask, seq, size, flags);
  out.append(&h, sizeof h);
  try {
    encode_request(out, size, encode);
  } catch (...) {
    out.size = at;
    throw;
  }
}

/**
 * What a transport reports, always from inside Transport::start() or Transport::progress(), on the
 * dispatcher's thread (never from send/flush/stop calls: those only queue).
 */
class TransportEvents {
 public:
  /** A worker slot exists and its worker is starting (at start(), or later: a node joined). */
  virtual void worker_added(WorkerId id) = 0;
  /** The worker said hello: it is ready for tasks. */
  virtual void worker_ready(WorkerId id, const Hello& hello) = 0;
  /** A reply to task `seq` (data valid during the call only). */
  virtual void reply(WorkerId id, std::uint64_t seq, const char* data, std::size_t size) = 0;
  /** The worker sent bytes that are not a valid frame or reply; the dispatcher decides what to do
   *  (it stops the worker by force; the worker is then reported lost). */
  virtual void protocol_error(WorkerId id, const std::string& why) = 0;
  /** The worker is gone (exited, killed, rank dead, node gone); status says how, e.g. "was killed
   *  by signal 9 (Killed)". Its transport state is reset: it may be restarted. */
  virtual void worker_lost(WorkerId id, const std::string& status) = 0;

 protected:
  ~TransportEvents() = default;
};

/** How stop_worker ends a worker. */
enum class StopMode {
  graceful,  // after the frames already queued: finish those tasks, reply, then exit
  force      // now: kill it (SIGTERM, then SIGKILL), or give it up if it cannot be killed
};

/**
 * The master side of a transport. Every call but wake() comes from the dispatcher's thread.
 * Sending only queues bytes; flush() pushes them out without blocking; progress() waits.
 */
class Transport {
 public:
  virtual ~Transport() = default;

  /** Starts: reports worker_added for each worker it starts now (others may be added later). */
  virtual void start(TransportEvents& events) = 0;
  /** Starts a new worker in a lost worker's slot (same WorkerId, same WM_PROCESS_INDEX). False if
   *  this transport cannot (an MPI rank, a node that left): the slot is then given up. */
  virtual bool restart_worker(WorkerId id) = 0;

  /** Queues a task frame for worker id: `size` bytes written by encode (into the transport's
   *  outgoing bytes, or into lent storage for a large one), task sequence seq. May grant the worker
   *  the lent reply storage (kFlagReplyMayLend). If encode throws, nothing is queued and the
   *  exception propagates. Returns false, queuing nothing, if the worker cannot take tasks any more
   *  (its channel is closing: worker_lost follows); the dispatcher then sends it nothing more. */
  virtual bool send_task(WorkerId id, std::uint64_t seq, std::size_t size, const Encoder& encode) = 0;
  /** Writes what is queued for worker id as far as it goes without blocking (the rest when the
   *  peer can take it, from progress()). */
  virtual void flush(WorkerId id) = 0;
  /** Ends worker id (see StopMode); the transport reports worker_lost once it is gone. */
  virtual void stop_worker(WorkerId id, StopMode mode) = 0;

  /** Waits up to timeout_ms (0: only looks, -1: until something happens) for events and delivers
   *  them. Returns the number of events delivered (0 after a timeout or a wake()). */
  virtual int progress(int timeout_ms) = 0;
  /** From any thread: makes a progress() that waits return soon. */
  virtual void wake() = 0;

  /** Threshold of "large" for send_task (the core's large_payload_bytes); set by the dispatcher. */
  std::size_t large_payload_bytes = std::size_t(1) << 20;
};

/** A task frame as a worker received it. */
struct Incoming {
  enum Kind { none, task, stop, closed } kind = none;
  std::uint64_t seq = 0;
  std::uint16_t flags = 0;
  const char* data = nullptr;  // the encoded request, valid until the next receive()
  std::size_t size = 0;
  std::string why;  // closed: why, if it was not an orderly end ("" for end of file)

  /** The task in a task frame: its request is the h.len bytes at data. */
  static Incoming task_from(const FrameHeader& h, const char* data) {
    Incoming in;
    in.kind = task;
    in.seq = h.seq;
    in.flags = h.flags;
    in.data = data;
    in.size = static_cast<std::size_t>(h.len);
    return in;
  }
  /** The master sent a frame a worker does not take: the worker leaves, saying so. */
  static Incoming unexpected_frame(std::uint8_t type, const char* from) {
    Incoming in;
    in.kind = closed;
    in.why = "a frame of type " + std::to_string(type) + " came from " + from;
    return in;
  }
};

/** The worker side of a transport, driven by run_worker_loop() on one thread. */
class WorkerChannel {
 public:
  virtual ~WorkerChannel() = default;
  /** Queues the hello. */
  virtual void send_hello(const Hello& hello) = 0;
  /** The next frame from the master: waits up to timeout_ms (0: only looks; -1: until one comes).
   *  none after a timeout; closed when the master is gone or sent bytes that are not a frame. */
  virtual Incoming receive(int timeout_ms) = 0;
  /** Where the reply to `task` is encoded (lent storage if the task frame granted it). */
  virtual wm_byte_buffer& begin_reply(const Incoming& task) = 0;
  /** Frames and queues the reply written since begin_reply. */
  virtual void end_reply(const Incoming& task) = 0;
  /** Bytes queued and not yet written. */
  virtual std::size_t pending() const = 0;
  /** Writes what is queued (blocking); false if the master is gone. */
  virtual bool flush() = 0;
};

}  // namespace wm::sdk::remote
