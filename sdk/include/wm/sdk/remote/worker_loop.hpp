// SPDX-License-Identifier: MIT
// wm/sdk/remote/worker_loop.hpp: the one loop every remote worker runs: take the setup, say hello,
// then execute each task by name through the core and reply, until the master says stop or is
// gone. Replies are batched while more tasks are waiting and they are short; the loop spins briefly
// before it sleeps. RemoteBackend runs it for a backend's workers.
#pragma once

#include <wm/abi.h>
#include <wm/sdk/backend.hpp>
#include <wm/sdk/remote/transport.hpp>

#include <cstddef>

namespace wm::sdk::remote {

struct WorkerLoopOptions {
  std::size_t flush_bytes = std::size_t(256) << 10;  // write replies out once this many are queued
  int flush_after_us = 1000;  // and after a task that took this long (its reply is not held)
};

/** How the loop ended. */
enum class WorkerEnd {
  stopped,  // the master said stop: every reply and the goodbye are sent
  closed,   // the master closed the link, or is gone
  broken    // the master sent bytes that are not the protocol (logged)
};

/** Serves tasks on this thread until the master ends it. me: who this worker is (its rank and host;
 *  its index comes with the setup), sent in the hello and recorded by the core for failure records. */
WorkerEnd run_worker_loop(Port& port, const wm_core_services& services, const char* backend_name,
                          const WorkerIdentity& me, const WorkerLoopOptions& options = {});

}  // namespace wm::sdk::remote
