// SPDX-License-Identifier: MIT
// wm/sdk/remote/transport.hpp: what a remote backend writes: how workers start and how bytes move.
//
// The remote engine (remote_backend.hpp) owns everything else: the frames and what they mean, the
// dispatcher (ready queue, windows, batching, retries, timeouts, shutdown, blame rules), the worker
// loop, large payloads and the relays of multi-level backends. A transport never reads or writes a
// frame: it moves the bytes the engine hands it, and hands over the bytes that arrive, the way an
// Open MPI BTL moves fragments for the PML.
//
//   master: Transport, one link per worker  <== bytes ==>  worker: Port, its one link to the master
//
// A transport says what more it can do (Capabilities): carry messages rather than a byte stream,
// map storage both sides can read (large payloads are then written once and read in place), or move
// a large payload as a unit of its own (received straight into memory of its size). The engine uses
// what is there and falls back where it is not: a plain byte stream is always enough.
#pragma once

#include <wm/abi.h>
#include <wm/sdk/backend.hpp>
#include <wm/sdk/remote/buffer.hpp>

#include <cstddef>
#include <cstdint>
#include <functional>
#include <string>
#include <utility>

namespace wm::sdk::remote {

/** How a transport logs: at a level, a message (RemoteBackend::logger(): the backend's log). */
using Log = std::function<void(wm_log_level level, const std::string& message)>;

/** This host's name (for labels and hellos). */
const std::string& this_host();
/** "2.5 s": a number of seconds for a message. */
std::string seconds_text(double seconds);
/** "some-option" -> "SOME_OPTION" (the variable of an option). */
std::string upper_snake(const std::string& text);

/** A worker as the master's engine knows it: a small dense number the transport hands out. It is
 *  also the worker's WM_PROCESS_INDEX. */
using WorkerId = std::uint32_t;

/** What a worker is told when it starts. The engine sends it to every worker as the first bytes on
 *  its link; a transport that starts worker processes also puts index and seed in their environment
 *  (WM_PROCESS_INDEX, WM_PROCESS_SEED), where the program may read them before the engine runs. */
struct WorkerSetup {
  std::int32_t index = 0;          // WM_PROCESS_INDEX
  std::uint64_t seed = 0;          // seeds rand(), random(), drand48() of the worker (0: not seeded)
  std::int32_t spin_us = 200;      // how long the worker looks for bytes before it sleeps
  std::int32_t keep_memory_mib = 0;  // freed memory the worker process keeps for reuse (0: malloc defaults)
  bool share_memory = false;  // the master maps the worker's memory: shared arrays go as references
};

/** What a transport can do besides moving bytes in order. */
struct Capabilities {
  /** 0: the transport carries a byte stream. Otherwise it carries messages and prefers them no
   *  larger than this: the engine ends a batch before it would grow past it (one frame larger than
   *  the limit still goes, alone). Either way the engine reads the bytes as one stream. */
  std::size_t batch_limit = 0;
  /** lend_request/lent_reply (master) and lent_request/lend_reply (worker): memory both sides
   *  map. Large requests and replies are then encoded into it and decoded in place. */
  bool shared_storage = false;
  /** send_payload/receive_payload: a large request or reply travels as a unit of its own after the
   *  bytes sent before it, and is received straight into memory of its size. */
  bool payloads = false;
  /** The workers are threads of this process: the engine seeds nothing and sets no memory policy. */
  bool in_process = false;
};

/** Where a link's incoming bytes go. A stream transport reads straight into space(), then says how
 *  much it put there (produced), then tells the engine (TransportHost::arrived / PortHost::arrived). */
class Inbox {
 public:
  /** Room for the next read: never empty. */
  virtual std::pair<char*, std::size_t> space() = 0;
  virtual void produced(std::size_t n) = 0;

 protected:
  ~Inbox() = default;
};

/**
 * The master's engine, as its transport sees it. Called from inside Transport::start() and
 * Transport::progress() only, on the engine's thread; a call may call back into the transport
 * (outbox, flush, stop_worker, ...), never into progress().
 */
class TransportHost {
 public:
  /** A link exists and its worker is (about to be) starting; the engine calls launch() for it. */
  virtual void worker_added(WorkerId id) = 0;
  /** The inbox of a worker's link (stream transports read into it, then call arrived()). */
  virtual Inbox& inbox(WorkerId id) = 0;
  virtual void arrived(WorkerId id) = 0;
  /** A message from a worker (message transports): read during the call, in place where it can be. */
  virtual void received(WorkerId id, const char* data, std::size_t size) = 0;
  /** The payload asked for with receive_payload() is complete: its buffer comes back, filled. */
  virtual void payload_received(WorkerId id, Buffer&& payload) = 0;
  /** A payload given to send_payload() is sent: its buffer comes back (kept warm for the next one). */
  virtual void payload_sent(WorkerId id, Buffer&& buffer) = 0;
  /** The worker broke the transport's own rules (a corrupt ring, bytes where none may be): the
   *  engine stops it by force, and the task it was running fails with a protocol error. */
  virtual void broken(WorkerId id, const std::string& why) = 0;
  /** The worker is gone (exited, killed, rank dead, node gone); status says how, e.g. "was killed by
   *  signal 9 (Killed)". Its link is reset: the engine may launch() it again. */
  virtual void worker_lost(WorkerId id, const std::string& status) = 0;

 protected:
  ~TransportHost() = default;
};

/**
 * The master side of a transport: one link per worker. Every call but wake() comes from the
 * engine's thread. Sending only queues bytes; flush() pushes them out without blocking; progress()
 * waits for bytes and events and delivers them.
 */
class Transport {
 public:
  virtual ~Transport() = default;

  virtual Capabilities capabilities() const { return {}; }

  /** Starts; reports worker_added() for each link it has now (more may be added later: nodes join). */
  virtual void start(TransportHost& host) = 0;
  /**
   * Makes a worker serve link id with this setup: at its start (after worker_added), and again
   * after worker_lost to replace it. Throws with the reason if the worker could not be started (the
   * engine counts it as a worker that died before it was ready); returns false if this transport
   * cannot start one (an MPI rank, a node that left): the link is then given up.
   */
  virtual bool launch(WorkerId id, const WorkerSetup& setup) = 0;

  /** The bytes queued for worker id: the engine appends to it, flush() sends them. */
  virtual Buffer& outbox(WorkerId id) = 0;
  /** Sends what is queued for worker id as far as it goes without blocking (the rest later, from
   *  progress()). Bytes of a link arrive in order. */
  virtual void flush(WorkerId id) = 0;
  /** Ends worker id now: kills it, or gives it up if it cannot be killed. worker_lost() follows,
   *  from a later progress(). (A gentle stop is the engine's business: it tells the worker.) */
  virtual void stop_worker(WorkerId id) = 0;
  /** True once the transport knows worker id is ending (its end of file came) and has not reported
   *  it lost yet: the engine sends it no new task (one sent now would be blamed for its end). */
  virtual bool closing(WorkerId id) const {
    (void)id;
    return false;
  }

  /** Waits up to timeout_ms (0: only looks, -1: until something happens) for bytes and events and
   *  delivers them. Returns the number of deliveries (0 after a timeout or a wake()). */
  virtual int progress(int timeout_ms) = 0;
  /** From any thread: makes a progress() that waits return soon. */
  virtual void wake() = 0;

  /** Who the worker of link id said it is (for this transport's own messages). */
  virtual void identified(WorkerId id, const WorkerIdentity& who) {
    (void)id;
    (void)who;
  }
  /** The worker of link id sent its last bytes and leaves (after the engine asked it to stop). */
  virtual void said_goodbye(WorkerId id) { (void)id; }
  /** Link id idled a while with nothing of its worker in storage or under way: large buffers and
   *  storage may go back to the system. */
  virtual void idle(WorkerId id) { (void)id; }

  // ---- shared storage (capabilities().shared_storage) ----
  /** Memory the worker reads a request of `size` bytes from, in place; the engine encodes into it
   *  and does not ask again for this worker until the request's reply came. nullptr: not now. */
  virtual wm_byte_buffer* lend_request(WorkerId id, std::size_t size) {
    (void)id;
    (void)size;
    return nullptr;
  }
  /** The reply of `size` bytes the worker wrote into its storage; nullptr if it cannot hold that
   *  many (a broken worker). reply_done() follows once it is read. */
  virtual const char* lent_reply(WorkerId id, std::size_t size) {
    (void)id;
    (void)size;
    return nullptr;
  }
  virtual void reply_done(WorkerId id) { (void)id; }

  // ---- payloads (capabilities().payloads) ----
  /** Sends payload after what was flushed before, as one unit; gives the buffer back with
   *  payload_sent() when done. */
  virtual void send_payload(WorkerId id, Buffer&& payload) {
    (void)id;
    (void)payload;
  }
  /** The next payload of worker id goes into `into` (its size bytes); payload_received() gives the
   *  buffer back when it is complete. False if it cannot be received (the engine then treats the
   *  worker as broken). A transport that cannot make MPI-like machinery let go of a buffer keeps it. */
  virtual bool receive_payload(WorkerId id, Buffer&& into) {
    (void)id;
    (void)into;
    return false;
  }
};

/** The worker's engine, as its port sees it. Called from inside Port::progress() only. */
class PortHost {
 public:
  virtual Inbox& inbox() = 0;
  virtual void arrived() = 0;
  virtual void received(const char* data, std::size_t size) = 0;
  /** The master is gone: why is "" if it closed the link in order, else what was wrong. */
  virtual void closed(const std::string& why) = 0;

 protected:
  ~PortHost() = default;
};

/**
 * The worker side of a transport: its one link to the master, driven by the engine's worker loop
 * on one thread. The engine runs tasks from inside progress() (when bytes arrive) and may call
 * outbox(), flush() and send_payload() from there.
 */
class Port {
 public:
  virtual ~Port() = default;

  virtual Capabilities capabilities() const { return {}; }

  virtual void start(PortHost& host) = 0;
  /** Waits up to timeout_ms (0: only looks; -1: until something comes) for bytes from the master
   *  and delivers them. Returns the number of deliveries. */
  virtual int progress(int timeout_ms) = 0;
  /** The bytes queued for the master; flush() writes them (blocking). False: the master is gone. */
  virtual Buffer& outbox() = 0;
  virtual bool flush() = 0;
  /** Writes data (a large reply) after what is queued, blocking. The default queues a copy. */
  virtual bool write(const char* data, std::size_t size) {
    outbox().append(data, size);
    return flush();
  }

  // ---- shared storage (capabilities().shared_storage) ----
  /** The request of `size` bytes the master put in the storage; nullptr if it cannot hold that many. */
  virtual const char* lent_request(std::size_t size) {
    (void)size;
    return nullptr;
  }
  /** Storage for a reply of at least `size` bytes (data and capacity set), or false. */
  virtual bool lend_reply(std::size_t size, char*& data, std::size_t& capacity) {
    (void)size;
    (void)data;
    (void)capacity;
    return false;
  }

  // ---- payloads (capabilities().payloads) ----
  /** Sends a payload as one unit, after what is flushed; blocking. False: the master is gone. */
  virtual bool send_payload(const char* data, std::size_t size) {
    (void)data;
    (void)size;
    return false;
  }
  /** Receives the next payload from the master into [into, into + size); blocking. */
  virtual bool receive_payload(char* into, std::size_t size) {
    (void)into;
    (void)size;
    return false;
  }
};

}  // namespace wm::sdk::remote
