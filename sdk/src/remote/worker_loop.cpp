// worker_loop.cpp: the worker side of the remote engine (see worker_loop.hpp).
#include <wm/sdk/remote/worker_loop.hpp>

#include <wm/sdk/remote/registry.hpp>

#include <sched.h>
#include <unistd.h>

#include <chrono>
#include <string>

namespace wm::sdk::remote {

const std::string& this_host() {
  static const std::string name = [] {
    char buf[256] = {};
    return gethostname(buf, sizeof buf - 1) == 0 ? std::string(buf) : std::string("unknown-host");
  }();
  return name;
}

namespace {

using Clock = std::chrono::steady_clock;

// The next frame: at once if one is there, else after a short spin, else asleep in the channel.
Incoming wait_for_frame(WorkerChannel& ch, int spin_us) {
  if (spin_us > 0) {
    const auto until = std::chrono::steady_clock::now() + std::chrono::microseconds(spin_us);
    do {
      Incoming in = ch.receive(0);
      if (in.kind != Incoming::none) return in;
      sched_yield();  // on a busy machine, let whatever else wants this core run
    } while (std::chrono::steady_clock::now() < until);
  }
  for (;;) {
    Incoming in = ch.receive(-1);
    if (in.kind != Incoming::none) return in;
  }
}

}  // namespace

WorkerEnd run_worker_loop(WorkerChannel& ch, const wm_core_services& services, const char* backend_name,
                          const WorkerIdentity& me, std::uint64_t seed, const WorkerLoopOptions& options) {
  const wm_worker_identity id = me.c();
  services.set_worker(&id, seed);
  Hello hello;
  hello.index = me.index;
  hello.pid = me.pid;
  hello.rank = me.rank;
  hello.host = me.host.empty() ? this_host() : me.host;
  const TaskListing tasks = TaskListing::of_this_process(services);
  hello.registry_digest = tasks.digest;
  hello.n_tasks = static_cast<std::uint32_t>(tasks.tasks.size());
  hello.extension = tasks.encode();
  ch.send_hello(hello);
  if (!ch.flush()) return WorkerEnd::closed;
  const auto flush_after = std::chrono::microseconds(options.flush_after_us);
  auto tick = Clock::now();  // the end of the last task, or the last wake-up
  for (;;) {
    Incoming in = ch.receive(0);
    if (in.kind == Incoming::none) {
      // Nothing more waiting: the replies go out now, then wait for the next task.
      if (ch.pending() != 0 && !ch.flush()) return WorkerEnd::closed;
      in = wait_for_frame(ch, options.spin_us);
      tick = Clock::now();
    }
    switch (in.kind) {
      case Incoming::task: {
        const auto started = tick;
        wm_byte_buffer& out = ch.begin_reply(in);
        services.execute_encoded(in.data, in.size, &out);
        ch.end_reply(in);
        tick = Clock::now();
        // Replies of short tasks wait for more (one write for many). The reply of a task that took a
        // while goes out when it ends: held during the next task, it would keep its result from the
        // caller, and the master from knowing that this worker has room for more (the task it
        // prefetched then runs with none queued behind it).
        const std::size_t held = ch.pending();
        if ((held >= options.flush_bytes || (held != 0 && tick - started >= flush_after)) && !ch.flush())
          return WorkerEnd::closed;
        break;
      }
      case Incoming::stop:
        ch.flush();
        return WorkerEnd::stopped;
      case Incoming::closed:
        // The master closed its side once it had sent everything: the replies still go out.
        ch.flush();
        if (in.why.empty()) return WorkerEnd::closed;
        services.log(WM_LOG_ERROR, backend_name,
                     ("worker " + std::to_string(me.index) + ": the master sent bytes that are not a task frame (" +
                      in.why + "); leaving")
                         .c_str());
        return WorkerEnd::broken;
      case Incoming::none:
        break;
    }
  }
}

}  // namespace wm::sdk::remote
