// wm/sdk/remote/worker_loop.hpp: the one loop every remote backend's workers run: say hello, then
// take task frames, execute each by name through the core, reply; until the master says stop or is
// gone. Replies are batched while more tasks are waiting and they are short; the loop spins briefly
// before it sleeps.
#pragma once

#include <wm/abi.h>
#include <wm/sdk/backend.hpp>
#include <wm/sdk/remote/transport.hpp>

#include <cstddef>
#include <cstdint>

namespace wm::sdk::remote {

struct WorkerLoopOptions {
  int spin_us = 200;                             // look for the next frame this long before sleeping
  std::size_t flush_bytes = std::size_t(256) << 10;  // write replies out once this many are queued
  int flush_after_us = 1000;  // and after a task that took this long (its reply is not held)
};

/** How the loop ended. */
enum class WorkerEnd {
  stopped,  // the master said stop
  closed,   // the master closed the channel (end of file), or is gone
  broken    // the master sent bytes that are not frames (logged)
};

/** Serves tasks on one thread until the master ends it. me: who this worker is (sent in the hello
 *  and recorded by the core for failure records); seed: nonzero to seed the process's generators. */
WorkerEnd run_worker_loop(WorkerChannel& channel, const wm_core_services& services, const char* backend_name,
                          const WorkerIdentity& me, std::uint64_t seed, const WorkerLoopOptions& options);

/** This host's name (for hellos and labels). */
const std::string& this_host();

}  // namespace wm::sdk::remote
