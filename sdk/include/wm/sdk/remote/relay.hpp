// SPDX-License-Identifier: MIT
// wm/sdk/remote/relay.hpp: a relay is a process between a master and local workers of its own (a
// node of a multi-level backend such as zmq). Toward its master it is the worker side of one link
// per local worker, through an Uplink the backend writes; toward its workers it is their master,
// through LocalProcesses. The engine forwards what goes each way, starts each local worker with the
// setup its master sent for it, turns large payloads into what each side can carry, and tells the
// master when a local worker ends.
#pragma once

#include <wm/sdk/remote/dispatcher.hpp>
#include <wm/sdk/remote/local_processes.hpp>
#include <wm/sdk/remote/transport.hpp>

#include <cstddef>
#include <string>
#include <vector>

namespace wm::sdk::remote {

/** The relay's engine, as its uplink sees it. Called from inside Uplink::start() and progress(). */
class UplinkHost {
 public:
  virtual Inbox& inbox(WorkerId w) = 0;
  virtual void arrived(WorkerId w) = 0;
  virtual void received(WorkerId w, const char* data, std::size_t size) = 0;
  virtual void payload_received(WorkerId w, Buffer&& payload) = 0;
  virtual void payload_sent(WorkerId w, Buffer&& buffer) = 0;
  /** The master stopped local worker w by force. */
  virtual void stop_worker(WorkerId w) = 0;
  /** The master ended the job: the local workers finish and the relay leaves. */
  virtual void end() = 0;

 protected:
  ~UplinkHost() = default;
};

/** @brief A relay's side of its links to its master, one per local worker (w = 0 .. n-1). */
class Uplink {
 public:
  virtual ~Uplink() = default;

  virtual Capabilities capabilities() const { return {}; }

  /** Joins the master (waiting as the backend's options allow; throws with the reason if it
   *  cannot). Returns how many local workers this relay serves. */
  virtual unsigned start(UplinkHost& host) = 0;
  virtual Buffer& outbox(WorkerId w) = 0;
  /** Sends what is queued for link w, without blocking. */
  virtual void flush(WorkerId w) = 0;
  /** Local worker w is gone (how: status), or sent bytes that break the protocol (why). */
  virtual void worker_lost(WorkerId w, const std::string& status) = 0;
  virtual void worker_broken(WorkerId w, const std::string& why) = 0;
  /** Delivers what arrived, without waiting. Throws with the reason once the master is gone. */
  virtual int progress() = 0;
  /** Descriptors that become readable when progress() may have something to deliver (the relay
   *  sleeps on them together with its local workers). */
  virtual std::vector<int> wait_fds() = 0;
  /** True if something may wait that wait_fds() would not show again (edge-triggered descriptors). */
  virtual bool pending() { return false; }
  /** The longest the relay may sleep before progress() must look again (-1: no limit). */
  virtual int timeout_ms() { return -1; }
  /** The relay idled a while: large buffers may go back. */
  virtual void idle() {}

  // ---- shared storage (capabilities().shared_storage), per link, as on Port ----
  virtual const char* lent_request(WorkerId w, std::size_t size) {
    (void)w;
    (void)size;
    return nullptr;
  }
  /** The relay is done with the request lent_request() showed (it passed it on). */
  virtual void request_done(WorkerId w) { (void)w; }
  virtual bool lend_reply(WorkerId w, std::size_t size, char*& data, std::size_t& capacity) {
    (void)w;
    (void)size;
    (void)data;
    (void)capacity;
    return false;
  }

  // ---- payloads (capabilities().payloads), per link, as on Transport ----
  virtual void send_payload(WorkerId w, Buffer&& payload) {
    (void)w;
    (void)payload;
  }
  virtual bool receive_payload(WorkerId w, Buffer&& into) {
    (void)w;
    (void)into;
    return false;
  }
};

/** Runs a relay until its master ends the job (returns) or is gone (throws; the local workers are
 *  killed). local: how to start the local workers (n_workers is what the uplink says). */
void run_relay(Uplink& uplink, LocalProcessOptions local, const wm_core_services& services,
               const EngineOptions& options, Log log);

/** Makes this process keep up to `mib` MiB of freed memory for reuse (workers and relays). */
void keep_freed_memory(int mib);

}  // namespace wm::sdk::remote
