// SPDX-License-Identifier: MIT
// worker_loop.cpp: the worker side of the remote engine (see worker_loop.hpp).
#include <wm/sdk/remote/worker_loop.hpp>

#include "link.hpp"
#include "registry.hpp"

#include <wm/sdk/remote/relay.hpp>
#include <wm/sdk/resources.hpp>

#include <sched.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstddef>
#include <cstdlib>
#include <string>

namespace wm::sdk::remote {
namespace {

using Clock = std::chrono::steady_clock;

// Sets an environment variable unless it has that value already.
void set_variable(const char* name, const std::string& value) {
  const char* now = std::getenv(name);
  if (now == nullptr || value != now) setenv(name, value.c_str(), 1);
}

class Serving final : private PortHost, private WorkerLinkEvents {
 public:
  Serving(Port& port, const wm_core_services& services, const char* name, const WorkerIdentity& me,
          const WorkerLoopOptions& options)
      : port_(port),
        services_(services),
        name_(name),
        me_(me),
        options_(options),
        link_(port, *this, static_cast<std::size_t>(services.large_payload_bytes)) {}

  WorkerEnd run() {
    port_.start(*this);
    while (!done_) {
      if (port_.progress(0) > 0) {
        idle_since_ = Clock::now();
        continue;
      }
      if (done_) break;
      // Nothing more waiting: the replies go out now, then wait for the next bytes.
      if (link_.pending() != 0 && !port_.flush()) return end("");
      wait();
    }
    if (end_ == WorkerEnd::stopped) {
      link_.send_bye();
      port_.flush();
    } else if (end_ == WorkerEnd::closed) {
      port_.flush();  // the master closed its side once it had sent everything: the replies still go out
    }
    if (end_ == WorkerEnd::broken && !why_.empty())
      services_.log(WM_LOG_ERROR, name_,
                    ("worker " + std::to_string(me_.index) + ": " + why_ + "; leaving").c_str());
    return end_;
  }

 private:
  // The next bytes: at once if there, else after a short spin, else asleep in the port (waking
  // every so often to give large buffers back).
  void wait() {
    if (spin_us_ > 0) {
      const auto until = Clock::now() + std::chrono::microseconds(spin_us_);
      do {
        if (port_.progress(0) > 0 || done_) return;
        sched_yield();  // on a busy machine, let whatever else wants this core run
      } while (Clock::now() < until);
    }
    for (;;) {
      const bool big = link_.holds_big() || payload_.capacity != 0;
      if (port_.progress(big ? static_cast<int>(kIdleRelease.count()) : -1) > 0 || done_) return;
      if (big && Clock::now() - idle_since_ >= kIdleRelease) {
        link_.release_idle();
        payload_.release();
      }
    }
  }

  WorkerEnd end(const std::string& why) {
    end_ = why.empty() ? WorkerEnd::closed : WorkerEnd::broken;
    why_ = why;
    done_ = true;
    return end_;
  }

  void execute(const Incoming& task) {
    const auto started = Clock::now();
    wm_byte_buffer& out = link_.begin_reply(task);
    services_.execute_encoded(task.data, task.size, &out);
    if (!link_.end_reply(task)) {
      end("");
      return;
    }
    // Replies of short tasks wait for more (one write for many). The reply of a task that took a
    // while goes out when it ends: held during the next task, it would keep its result from the
    // caller, and the master from knowing that this worker has room for more (the task it
    // prefetched then runs with none queued behind it).
    const std::size_t held = link_.pending();
    if ((held >= options_.flush_bytes ||
         (held != 0 && Clock::now() - started >= std::chrono::microseconds(options_.flush_after_us))) &&
        !port_.flush())
      end("");
  }

  // ---- PortHost ----
  Inbox& inbox() override { return link_.inbox(); }
  void arrived() override {
    if (!done_) link_.arrived();
  }
  void received(const char* data, std::size_t size) override {
    if (!done_) link_.received(data, size);
  }
  void closed(const std::string& why) override { end(why.empty() ? "" : "the link to the master broke (" + why + ")"); }

  // ---- WorkerLinkEvents ----
  void setup(const WorkerSetup& s, const char*, std::size_t) override {
    me_.index = s.index;
    spin_us_ = s.spin_us;
    const wm_worker_identity id = me_.c();
    services_.set_worker(&id, s.seed);
    keep_freed_memory(s.keep_memory_mib);
    if (services_.struct_size > offsetof(wm_core_services, share_memory_with_master) &&
        services_.share_memory_with_master != nullptr)
      services_.share_memory_with_master(s.share_memory ? 1 : 0);
    if (!port_.capabilities().in_process) {
      // What a task reads: a worker process's environment says who it is (a spawn set these
      // already; a worker that was not spawned for this, such as an MPI rank, learns them now).
      set_variable(WM_ENV_PROCESS_INDEX, std::to_string(s.index));
      if (s.seed != 0) set_variable(WM_ENV_PROCESS_SEED, std::to_string(s.seed));
    }
    Hello hello;
    hello.index = me_.index;
    hello.pid = me_.pid != 0 ? me_.pid : static_cast<std::int64_t>(getpid());
    hello.rank = me_.rank;
    hello.host = me_.host.empty() ? this_host() : me_.host;
    const TaskListing tasks = TaskListing::of_this_process(services_);
    hello.registry_digest = tasks.digest;
    hello.n_tasks = static_cast<std::uint32_t>(tasks.tasks.size());
    hello.extension = tasks.encode();
    // What this worker has: a worker process reports itself (the arguments are ignored there); the
    // one worker of an in-process transport is worker 0 of 1 of this process's plan.
    hello.resources = Resources::of_worker(services_, 0, 1).amounts();
    link_.send_hello(encode_hello(hello));
    if (!port_.flush()) end("");
  }
  void task(const Incoming& t) override {
    if (!done_) execute(t);
  }
  void task_payload(const Incoming& t) override {
    if (done_) return;
    if (!payload_.pooled_for(services_, t.size)) {
      end("no memory for a request of " + std::to_string(t.size) + " bytes");
      return;
    }
    if (!port_.receive_payload(payload_.data, t.size)) {
      end("");
      return;
    }
    Incoming in = t;
    in.data = payload_.data;
    // Received into pooled memory: a large shared array argument is read where it landed.
    if (payload_.block != nullptr) services_.decode_from_block(payload_.block);
    execute(in);
    if (payload_.block != nullptr) services_.decode_from_block(nullptr);
  }
  void task_ref(const Incoming& t, const wm_shared_ref& ref) override {
    if (done_) return;
    if (services_.struct_size <= offsetof(wm_core_services, shared_block_map) || services_.shared_block_map == nullptr) {
      end("the relay sent a request in shared memory, which this core cannot map");
      return;
    }
    char* data = nullptr;
    wm_error err{};
    wm_shared_block* block = services_.shared_block_map(&ref, &data, &err);
    if (block == nullptr) {
      end(std::string("the relay's request in shared memory could not be mapped: ") + err.message);
      return;
    }
    Incoming in = t;
    in.data = data;
    // Read in place: a large shared array argument stays in the relay's memory (read-only).
    services_.decode_from_block(block);
    execute(in);
    services_.decode_from_block(nullptr);
    services_.shared_block_release(block);
  }
  void stop() override {
    end_ = WorkerEnd::stopped;
    done_ = true;
    link_.pause();  // nothing after a stop is read
  }
  void broken(const std::string& why) override { end("the master sent bytes that are not a task frame (" + why + ")"); }

  Port& port_;
  const wm_core_services& services_;
  const char* name_;
  WorkerIdentity me_;
  const WorkerLoopOptions options_;
  WorkerLink link_;
  Buffer payload_;  // a request received as a payload (kept warm)
  int spin_us_ = 200;
  bool done_ = false;
  WorkerEnd end_ = WorkerEnd::closed;
  std::string why_;
  Clock::time_point idle_since_ = Clock::now();
};

}  // namespace

WorkerEnd run_worker_loop(Port& port, const wm_core_services& services, const char* backend_name,
                          const WorkerIdentity& me, const WorkerLoopOptions& options) {
  Serving s(port, services, backend_name, me, options);
  return s.run();
}

}  // namespace wm::sdk::remote
