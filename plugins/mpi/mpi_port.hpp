// mpi_port.hpp: a worker rank's side of the mpi backend, a Port of the remote engine: the bytes from
// rank 0 arrive as MPI messages (large payloads as messages of their own, received into memory of
// their size), the rank's bytes go back the same way, and the rank sleeps when there is nothing to
// do. A watcher thread owns the doorbell: it wakes the loop when rank 0 rings, and ends the process
// when rank 0 stops this rank by force or is gone, even in a task.
#pragma once

#include "mpi_wire.hpp"

#include <wm/sdk/remote/transport.hpp>
#include <wm/sdk/remote/waker.hpp>

#include <atomic>
#include <deque>
#include <string>
#include <thread>
#include <vector>

namespace wm_mpi {

class MpiPort final : public remote::Port {
 public:
  /** doorbell: the connected doorbell socket (the port closes it); me: "rank R (pid P on H)", for
   *  the messages of the watcher. Starts the watcher. */
  MpiPort(MPI_Comm comm, int doorbell, std::string me, remote::Log log);
  /** Stops the watcher; makes no MPI call (MPI may be finalized by then). */
  ~MpiPort() override;

  remote::Capabilities capabilities() const override;
  void start(remote::PortHost& host) override { host_ = &host; }
  int progress(int timeout_ms) override;
  remote::Buffer& outbox() override { return out_; }
  bool flush() override;
  bool send_payload(const char* data, std::size_t size) override;
  bool receive_payload(char* into, std::size_t size) override;

  enum class Verdict {
    finalize,  // every rank finalizes MPI (the watcher is stopped and the doorbell closed)
    serve,     // rank 0 made its next work manager: serve it (run the loop again)
    leave      // this rank must not finalize: wait_for_the_end() follows
  };
  /** After the loop ended on the stop (its goodbye is sent): completes every send, cancels the
   *  posted receive and waits, asleep, for what rank 0 says comes next. */
  Verdict finish();
  /** Never returns: waits, asleep, until the watcher ends the process, which it does when rank 0's
   *  doorbell closes (code 0 after a verdict to leave without MPI_Finalize, 1 otherwise), or at
   *  once if rank 0 said so. */
  [[noreturn]] void wait_for_the_end();
  /** The loop failed (bytes from rank 0 it could not read, an MPI error): rank 0 is told (this side
   *  of the doorbell closes, as at a death). */
  void give_up();

 private:
  struct Sending {
    std::vector<MPI_Request> reqs;
    remote::Buffer buf;
  };
  void post_receive();
  int take_message(const MPI_Status& st);
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
  remote::Log log_;
  remote::PortHost* host_ = nullptr;
  bool closed_ = false;  // the host was told that the link ended
  // from rank 0
  remote::Buffer rbuf_[2];
  int posted_ = 0;
  MPI_Request rreq_ = MPI_REQUEST_NULL;
  // to rank 0
  remote::Buffer out_;
  std::deque<Sending> sending_;
  MessagePool pool_{8};  // free bytes-message buffers
  bool broken_ = false;
  // the watcher (the doorbell's only reader) and what it saw
  remote::Waker wake_, stop_;
  std::thread watcher_;
  std::atomic<bool> in_task_{false}, killed_{false}, parked_{false}, gone_{false}, sleeping_{false};
  std::atomic<bool> late_ring_{false};  // rank 0 rang while the loop was awake (see watch())
  int recheck_ms_ = 0;                   // the loop's next look while a rung message is missing
  std::uint32_t taken_ = 0;              // bytes messages taken from rank 0
  std::atomic<bool> told_asleep_{false};  // rank 0 was told this rank sleeps and has not rung since
  std::atomic<char> verdict_{0};
};

}  // namespace wm_mpi
