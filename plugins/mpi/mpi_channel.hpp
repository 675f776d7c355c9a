// mpi_channel.hpp: a worker rank's side of the mpi backend, a WorkerChannel of the remote engine:
// frames from rank 0 arrive as MPI messages (large payloads as messages of their own, received into
// a buffer of their size and decoded in place), replies go back the same way, and the rank sleeps
// in poll() on its doorbell when there is nothing to do.
#pragma once

#include "mpi_wire.hpp"

#include <wm/sdk/remote/transport.hpp>

#include <atomic>
#include <deque>
#include <functional>
#include <optional>
#include <string>
#include <vector>

namespace wm_mpi {

class MpiChannel final : public remote::WorkerChannel {
 public:
  using Log = std::function<void(int level, const std::string& message)>;
  /** doorbell: the connected doorbell socket (the channel does not own it). */
  MpiChannel(MPI_Comm comm, int doorbell, Log log);
  /** Makes no MPI call (MPI may be finalized by then): finish() or abandon() did. */
  ~MpiChannel() override;

  void send_hello(const remote::Hello& hello) override;
  remote::Incoming receive(int timeout_ms) override;
  wm_byte_buffer& begin_reply(const remote::Incoming& task) override;
  void end_reply(const remote::Incoming& task) override;
  std::size_t pending() const override { return out_.size; }
  bool flush() override;

  /** What rank 0 decided once every worker rank had left. */
  enum class Verdict { finalize, leave, master_gone };
  /** After the loop ended on the stop frame: completes every send, says bye, cancels the posted
   *  receive and waits (asleep) for rank 0's verdict. */
  Verdict finish();
  /** After the loop ended otherwise: lets go of what is posted without waiting for rank 0. */
  void abandon();

  /** Rank 0 stopped this rank by force (a kill byte on the doorbell). */
  bool killed() const { return killed_.load(); }
  /** Rank 0 is gone (its doorbell closed without a verdict). */
  bool master_gone() const { return gone_.load(); }
  /** True while a task runs (between begin_reply and end_reply): the guardian's business. */
  bool in_task() const { return in_task_.load(); }

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
  bool look_at_doorbell(int timeout_ms);
  remote::Buffer take_buffer();

  MPI_Comm comm_;
  int fd_;
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
  std::vector<remote::Buffer> pool_;
  remote::Buffer reply_;
  std::optional<remote::BufferWriter> writer_;
  bool broken_ = false;
  std::atomic<bool> killed_{false}, gone_{false}, in_task_{false};
  char verdict_ = 0;
  Clock::time_point last_large_{};
};

}  // namespace wm_mpi
