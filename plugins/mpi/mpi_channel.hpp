// mpi_channel.hpp: a worker rank's side of the mpi backend, a WorkerChannel of the remote engine:
// frames from rank 0 arrive as MPI messages (large payloads as messages of their own, received into
// a buffer of their size and decoded in place), replies go back the same way, and the rank sleeps
// when there is nothing to do. A watcher thread owns the doorbell: it wakes the loop when rank 0
// rings, and ends the process when rank 0 stops this rank by force or is gone, even in a task.
#pragma once

#include "mpi_wire.hpp"

#include <wm/sdk/remote/transport.hpp>

#include <atomic>
#include <deque>
#include <functional>
#include <optional>
#include <string>
#include <thread>
#include <vector>

namespace wm_mpi {

class MpiChannel final : public remote::WorkerChannel {
 public:
  using Log = std::function<void(int level, const std::string& message)>;
  /** doorbell: the connected doorbell socket (the channel closes it); me: "rank R (pid P on H)",
   *  for the messages of the watcher. Starts the watcher. */
  MpiChannel(MPI_Comm comm, int doorbell, std::string me, Log log);
  /** Stops the watcher; makes no MPI call (MPI may be finalized by then). */
  ~MpiChannel() override;

  void send_hello(const remote::Hello& hello) override;
  remote::Incoming receive(int timeout_ms) override;
  wm_byte_buffer& begin_reply(const remote::Incoming& task) override;
  void end_reply(const remote::Incoming& task) override;
  std::size_t pending() const override { return out_.size; }
  bool flush() override;

  /** After the loop ended on the stop frame: completes every send, says bye, cancels the posted
   *  receive and waits, asleep, for rank 0's verdict. True: every rank finalizes MPI (the watcher is
   *  stopped and the doorbell closed). False: this rank must not; wait_for_the_end() follows. */
  bool finish();
  /** Never returns: waits, asleep, until the watcher ends the process, which it does when rank 0's
   *  doorbell closes (code 0 after a verdict to leave without MPI_Finalize, 1 otherwise), or at
   *  once if rank 0 said so. */
  [[noreturn]] void wait_for_the_end();
  /** The loop failed (bytes from rank 0 it could not read, an MPI error): rank 0 is told (this side
   *  of the doorbell closes, as at a death). */
  void give_up();

  /** Rank 0 stopped this rank by force. */
  bool stopped_by_force() const { return parked_.load() || killed_.load(); }
  /** Rank 0 is gone (its doorbell closed without a verdict). */
  bool master_gone() const { return gone_.load(); }

 private:
  struct Sending {
    std::vector<MPI_Request> reqs;
    remote::Buffer buf;
  };
  void post_receive();
  void take_message(const MPI_Status& st);
  void send_batch();
  bool test_sends(bool wait);
  bool wait_all(std::vector<MPI_Request>& reqs);
  bool ended() const { return broken_ || gone_.load() || killed_.load() || parked_.load(); }
  void sleep(int timeout_ms);
  void tell_asleep();
  void watch();
  [[noreturn]] void leave(int code, const std::string& why);

  MPI_Comm comm_;
  int fd_;
  std::string me_;
  Log log_;
  // from rank 0
  remote::Buffer rbuf_[2];
  int posted_ = 0;
  MPI_Request rreq_ = MPI_REQUEST_NULL;
  bool parsing_ = false;
  remote::FrameCursor cursor_{nullptr, 0};
  remote::Buffer large_;  // the payload of the current large task
  // to rank 0
  remote::Buffer out_;
  std::deque<Sending> sending_;
  MessagePool pool_{8};  // free frames-message buffers
  remote::Buffer reply_;
  std::optional<remote::BufferWriter> writer_;
  bool broken_ = false;
  Clock::time_point last_large_{};
  // the watcher (the doorbell's only reader) and what it saw
  int wake_fd_ = -1, stop_fd_ = -1;
  std::thread watcher_;
  std::atomic<bool> in_task_{false}, killed_{false}, parked_{false}, gone_{false}, sleeping_{false};
  std::atomic<bool> late_ring_{false};  // rank 0 rang while the loop was awake (see watch())
  int recheck_ms_ = 0;                   // the loop's next look while a rung message is missing
  std::uint32_t taken_ = 0;              // frames messages taken from rank 0
  std::atomic<bool> told_asleep_{false};  // rank 0 was told this rank sleeps and has not rung since
  std::atomic<char> verdict_{0};
};

}  // namespace wm_mpi
