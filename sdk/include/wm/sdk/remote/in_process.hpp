// SPDX-License-Identifier: MIT
// wm/sdk/remote/in_process.hpp: a transport any remote backend can compose: one worker that is a
// thread of this process, served through the same engine as remote workers (tasks encoded,
// executed by name, replies decoded; the same errors, windows and shutdown). Bytes go from thread to
// thread in buffers that change hands, with no copy. The mpi backend runs its tasks so with one rank.
#pragma once

#include <wm/sdk/remote/transport.hpp>
#include <wm/sdk/remote/waker.hpp>
#include <wm/sdk/remote/worker_loop.hpp>

#include <memory>
#include <string>
#include <thread>

namespace wm::sdk::remote {

/** @brief One worker, a thread of this process. */
class InProcessTransport final : public Transport {
 public:
  /** me: the worker's identity for failure records (its rank, if any); backend: the backend's name. */
  InProcessTransport(const wm_core_services& services, std::string backend, WorkerIdentity me,
                     WorkerLoopOptions options = {});
  /** Joins the task thread if it has ended; a thread still running a task is left to finish it. */
  ~InProcessTransport() override;

  Capabilities capabilities() const override;
  void start(TransportHost& host) override;
  /** A thread stopped by force (it cannot be killed) is left to finish its task; a new one takes
   *  its place. */
  bool launch(WorkerId id, const WorkerSetup& setup) override;
  Buffer& outbox(WorkerId id) override;
  void flush(WorkerId id) override;
  void stop_worker(WorkerId id) override;
  int progress(int timeout_ms) override;
  void wake() override;

  struct Link;  // what the engine's thread and the task thread share

 private:
  const wm_core_services& services_;
  const std::string backend_;
  const WorkerIdentity me_;
  const WorkerLoopOptions options_;
  TransportHost* host_ = nullptr;
  std::shared_ptr<Link> link_;
  std::thread thread_;
  Buffer out_;  // bytes for the task thread, not handed over yet
  Buffer in_;   // bytes from the task thread, being read
  bool lost_pending_ = false;
  bool gone_reported_ = false;  // the task thread's end was reported
  std::string lost_status_;
  std::unique_ptr<Waker> waker_;
};

}  // namespace wm::sdk::remote
