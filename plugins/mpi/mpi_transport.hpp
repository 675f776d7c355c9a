// mpi_transport.hpp: rank 0's side of the mpi backend, a transport of the remote engine. The
// worker ranks exist already (mpirun started them); this transport moves the engine's bytes to and
// from them as MPI messages on the backend's own communicator (large payloads as messages of their
// own), sleeps in poll() on one doorbell connection per worker rank (the SDK's doorbell part), and
// learns of a dead rank from its doorbell's end of file.
#pragma once

#include "mpi_wire.hpp"

#include <wm/sdk/remote/transport.hpp>
#include <wm/sdk/remote/waker.hpp>

#include <atomic>
#include <deque>
#include <memory>
#include <string>
#include <vector>

namespace wm_mpi {

class MpiTransport final : public remote::Transport {
 public:
  struct Options {
    MPI_Comm comm = MPI_COMM_NULL;  // the backend's duplicate of MPI_COMM_WORLD; rank 0 is this process
    int size = 0;                   // ranks in the job
    /** Where worker ranks connect their doorbells (the first work manager of the job), or */
    std::unique_ptr<doorbell::Acceptor> acceptor;
    /** the doorbells of the ranks, connected already (a later work manager of the job). */
    std::vector<int> doorbells;
    double connect_limit = 60;      // s a worker rank has to connect its doorbell
    /** A rank stopped by force stays until rank 0 ends instead of leaving at once (without
     *  --enable-recovery a rank that leaves makes mpirun end the whole job, rank 0 included). */
    bool park_on_force = true;
  };

  MpiTransport(Options options, remote::Log log);
  /** Closes sockets; makes no MPI call once finish() ran (MPI may be finalized by then). */
  ~MpiTransport() override;

  remote::Capabilities capabilities() const override;
  void start(remote::TransportHost& host) override;
  /** A rank serves from the start and cannot be started again: true once, then false. */
  bool launch(remote::WorkerId id, const remote::WorkerSetup& setup) override;
  remote::Buffer& outbox(remote::WorkerId id) override;
  void flush(remote::WorkerId id) override;
  void stop_worker(remote::WorkerId id) override;
  int progress(int timeout_ms) override;
  void wake() override;
  void identified(remote::WorkerId id, const wm::sdk::WorkerIdentity& who) override;
  void said_goodbye(remote::WorkerId id) override;
  void send_payload(remote::WorkerId id, remote::Buffer&& payload) override;
  bool receive_payload(remote::WorkerId id, remote::Buffer&& into) override;

  /** True while no rank has died, been stopped by force or been given up: then every rank can
   *  finalize MPI (after a death, Open MPI's MPI_Finalize may wait forever for the dead rank). */
  bool clean() const { return clean_.load(); }
  /**
   * On the thread that owns MPI once the engine's thread is gone: cancels the receives still
   * posted and tells every worker rank that left what happens next. stay (and clean()): it waits
   * for this process's next work manager, and its doorbell is handed back (doorbells()). Otherwise
   * the verdict: finalize MPI (if clean()) or leave without it when rank 0 ends. Returns clean().
   */
  bool finish(bool stay);
  /** After finish(true): the doorbell of every worker rank, for the next work manager. */
  std::vector<int> doorbells();

 private:
  struct Sending {
    std::vector<MPI_Request> reqs;
    remote::Buffer buf;
    bool payload = false;
  };
  enum class State { waiting, serving, forced, parked, left, gone };
  struct Slot {
    int rank = 0;
    State state = State::waiting;
    bool launched = false;
    int fd = -1;  // the doorbell, once the rank connected
    doorbell::Reader reader;
    std::string host;
    long long pid = 0;
    // to the worker
    remote::Buffer out;           // the bytes message being filled
    std::deque<Sending> sending;  // messages MPI has not finished sending
    std::size_t payloads_sending = 0;
    bool pulled = false;     // the worker waits for its payloads: push them (spin) until sent
    std::uint32_t sent = 0;  // bytes messages sent to it
    bool asleep = false;     // it said it sleeps and was not rung since: the next message rings
    // from the worker
    remote::Buffer rbuf[2];
    int posted = 0;      // the buffer the posted receive writes into
    bool ready = false;  // a message came (read once the doorbell is there too)
    int ready_len = 0;
    std::vector<MPI_Request> lreqs;  // a payload being received into lbuf
    remote::Buffer lbuf;
    Clock::time_point forced_at{};
  };

  void post_receive(remote::WorkerId id);
  int poll_mpi();
  int drain(remote::WorkerId id);
  void test_sends(remote::WorkerId id, Slot& s);
  void send_batch(Slot& s);
  void drop_receives(Slot& s);
  void lost(remote::WorkerId id, const std::string& status, int& events);
  void on_eof(remote::WorkerId id, int& events);
  void connected(const doorbell::Hail& hail, int fd, const std::string& after, int& events);
  void take_bytes(remote::WorkerId id, const std::string& bytes, int& events);
  void read_doorbell(remote::WorkerId id, int& events);
  int look(int timeout_ms);
  int housekeeping(Clock::time_point now);
  int internal_timeout_ms(Clock::time_point now) const;
  bool must_spin() const;
  /** Connected or connecting, and not stopped: its doorbell bytes are read as rings and notices. */
  static bool in_service(const Slot& s) { return s.state == State::serving || s.state == State::waiting; }
  std::string who(const Slot& s) const;

  Options o_;
  remote::Log log_;
  remote::TransportHost* host_ = nullptr;
  std::vector<Slot> slots_;
  std::vector<MPI_Request> rreqs_;  // the posted bytes receive of each worker (for MPI_Testsome)
  std::vector<int> indices_;
  std::vector<MPI_Status> statuses_;
  MessagePool pool_{64};  // free bytes-message buffers
  std::vector<std::pair<remote::WorkerId, std::string>> lost_later_;  // reported lost at the next progress()
  std::vector<pollfd> fds_;
  std::unique_ptr<remote::Waker> waker_;
  std::atomic<bool> woken_{false};
  std::atomic<bool> clean_{true};
  bool finished_ = false;
  std::size_t active_ = 0;  // payload receives under way
  Clock::time_point connect_until_{}, last_look_{};
};

/** The verdict to worker ranks that left in order (their doorbells fds): every rank finalizes MPI
 *  (clean), or they leave without it when rank 0's process ends (their doorbells stay open until it
 *  does). Waits up to 5 s for each rank to have read it. */
void give_verdict(std::vector<int>& fds, bool clean);

}  // namespace wm_mpi
