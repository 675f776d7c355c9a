// thread_transport.hpp: the mpi backend with one rank. There is no worker rank, so the tasks run in
// this process, on one thread of the work manager, through the same engine as with worker ranks:
// encoded, executed by name, decoded, with the same errors, windows and shutdown. Frames go from
// thread to thread in buffers that change hands (no copy).
#pragma once

#include <wm/sdk/remote/frame.hpp>
#include <wm/sdk/remote/transport.hpp>
#include <wm/sdk/remote/worker_loop.hpp>

#include <memory>
#include <string>
#include <thread>

namespace wm_mpi {

namespace remote = wm::sdk::remote;

class ThreadTransport final : public remote::Transport {
 public:
  ThreadTransport(const wm_core_services& services, std::string backend, wm::sdk::WorkerIdentity me,
                  remote::WorkerLoopOptions options);
  /** Joins the task thread if it has ended; a thread still running a task is left to finish it. */
  ~ThreadTransport() override;

  void start(remote::TransportEvents& events) override;
  /** A thread stopped by force (it cannot be killed) is left to finish its task; a new one takes
   *  its place. */
  bool restart_worker(remote::WorkerId id) override;
  bool send_task(remote::WorkerId id, std::uint64_t seq, std::size_t size, const remote::Encoder& encode) override;
  void flush(remote::WorkerId id) override;
  void stop_worker(remote::WorkerId id, remote::StopMode mode) override;
  int progress(int timeout_ms) override;
  void wake() override;

  struct Link;  // what the dispatcher's thread and the task thread share

 private:
  void launch();

  const wm_core_services& services_;
  const std::string backend_;
  const wm::sdk::WorkerIdentity me_;
  const remote::WorkerLoopOptions options_;
  remote::TransportEvents* events_ = nullptr;
  std::shared_ptr<Link> link_;
  std::thread thread_;
  remote::Buffer out_;  // frames for the task thread, not handed over yet
  remote::Buffer in_;   // frames from the task thread, being read
  bool lost_pending_ = false;
  bool gone_reported_ = false;  // the task thread's end was reported
  std::string lost_status_;
  int wake_fd_ = -1;
};

}  // namespace wm_mpi
