// SPDX-License-Identifier: MIT
// mpi_backend.cpp: the "mpi" backend: every rank of an MPI job runs the host program; rank 0 is the
// master, the other ranks serve tasks inside make_work_manager (one rank alone runs them on a thread).
// Here: MPI's set-up and end (threading, the one broadcast, who finalizes and when), and the roles.
#include "mpi_port.hpp"
#include "mpi_transport.hpp"

#include <wm/sdk/remote/in_process.hpp>
#include <wm/sdk/remote/parting.hpp>
#include <wm/sdk/remote/remote_backend.hpp>

#include <signal.h>
#include <strings.h>
#include <unistd.h>

#include <condition_variable>
#include <cstdio>
#include <cstdlib>
#include <iterator>
#include <mutex>
#include <stdexcept>

namespace {

using namespace wm_mpi;

class MpiBackend;

// This process's MPI job, across its work managers (one at a time): if the work manager initialised
// MPI, the ranks stay connected from one to the next (they serve each in turn) until rank 0 ends.
struct Job {
  std::mutex mutex;
  std::condition_variable cv;
  MpiBackend* live = nullptr;  // this process's work manager, until its end has run
  bool running = false;        // its end runs
  bool owns_mpi = false;
  MPI_Comm comm = MPI_COMM_NULL;  // the backend's duplicate of MPI_COMM_WORLD, once MPI is set up
  int rank = -1, size = 0;
  std::vector<int> doorbells;  // rank 0, between work managers: the ranks' doorbells
  std::string over;            // why no further work manager can be made ("": one can; at exit, the ranks stayed)
};
Job g_job;
void end_at_exit();

std::string thread_level_name(int level) {
  static_assert(MPI_THREAD_SINGLE == 0 && MPI_THREAD_MULTIPLE == 3);  // the four levels, in order
  const char* const names[] = {"SINGLE", "FUNNELED", "SERIALIZED", "MULTIPLE"};
  return level >= 0 && level < 4 ? std::string("MPI_THREAD_") + names[level] : "an unknown thread level";
}

// Waits for a start-up collective (begun by `call`): MPI gives nothing to sleep on, so a short spin,
// then a look every ms. Fails after limit s (a rank that never makes its work manager would hang all).
void wait_for_everyone(int rc, MPI_Request& r, const char* call, const char* what, double limit) {
  if (rc != MPI_SUCCESS) throw std::runtime_error(std::string(call) + " failed: " + mpi_error_text(rc));
  for (const auto start = Clock::now();;) {
    int done = 0;
    if ((rc = MPI_Test(&r, &done, MPI_STATUS_IGNORE)) != MPI_SUCCESS)
      throw std::runtime_error(std::string(what) + " failed: " + mpi_error_text(rc));
    if (done) return;
    const double waited = std::chrono::duration<double>(Clock::now() - start).count();
    if (waited >= limit)
      throw std::runtime_error("rank " + std::to_string(g_job.rank) +
                               ": not every rank of the job started the mpi work manager within " +
                               std::to_string(static_cast<int>(limit)) + " s (" + what +
                               "): every rank must call wm::make_work_manager (worker ranks serve inside it)");
    if (waited < 0.02)
      sched_yield();
    else
      poll(nullptr, 0, 1);
  }
}

class MpiBackend final : public remote::RemoteBackend {
 public:
  MpiBackend(const wm_core_services* s, const wm_backend_config* c, const char* name) : RemoteBackend(s, c, name) {
    engine_options().dead_hint =
        "every rank must call wm::make_work_manager early in main; run with WM_LOG_LEVEL=debug and read the "
        "worker ranks' standard error";
    // A death is logged at once, with the task: without --enable-recovery mpirun ends the job a second later.
    engine_options().on_worker_lost = [this](const std::string& worker, const std::string& status,
                                             const std::string& task) {
      std::string m = worker + " " + status + (task.empty() ? " while idle" : " while running " + task);
      if (!recovery_)
        m += "; mpirun ends the whole job when a rank dies (start it with --enable-recovery to carry on with "
             "the other ranks)";
      log(WM_LOG_ERROR, m);
    };
  }

  ~MpiBackend() override { end(this); }

  /** Rank 0's end of a work manager, once: the dispatcher's thread is joined and every worker rank is
   *  told what comes next (MpiTransport::finish). Run by the destructor, or at exit for one never
   *  destroyed (or destroyed on a thread the exit overtakes). b is untouched unless it is live. */
  static void end(MpiBackend* b) {
    std::unique_lock<std::mutex> lock(g_job.mutex);
    if (b == nullptr || g_job.live != b) return;
    if (g_job.running) {  // another thread runs it: wait for it (b lives until then)
      g_job.cv.wait_for(lock, std::chrono::seconds(60), [b] { return g_job.live != b; });
      return;
    }
    g_job.running = true;
    lock.unlock();
    try {
      b->shutdown(WM_SHUTDOWN_WAIT);  // done already when the core destroys the backend
    } catch (const std::exception& e) {
      b->log(WM_LOG_ERROR, std::string("shutdown failed: ") + e.what());
    }
    // The ranks stay for this process's next work manager when the work manager owns MPI (a
    // program that initialised MPI itself finalizes it, which waits for every rank).
    const bool stay = g_job.owns_mpi && b->master_ok_;
    std::vector<int> doorbells;
    const bool clean = b->master_ok_ && (b->transport_ == nullptr || b->transport_->finish(stay, doorbells));
    if (!clean)
      b->log(WM_LOG_WARNING,
             std::string("a rank died, was stopped by force or never started in this job, so MPI_Finalize could wait "
                         "for it forever (Open MPI 4.1): ") +
                 (g_job.owns_mpi ? "rank 0 leaves MPI unfinalized, and the other ranks leave without it when this "
                                   "program ends"
                                 : "the program initialised MPI itself: end it without MPI_Finalize (flush its output, "
                                   "then _exit), or it may hang"));
    else if (!stay)
      MPI_Comm_free(&g_job.comm);
    lock.lock();
    g_job.doorbells = std::move(doorbells);
    g_job.live = nullptr;
    g_job.running = false;
    if (!clean)
      g_job.over = "a rank died, was stopped by force or never started in an earlier mpi work manager of this job";
    else if (!stay)
      g_job.over = "the program initialised MPI itself, so the worker ranks left with its first mpi work manager";
    g_job.cv.notify_all();
  }

 protected:
  // MPI and the start-up broadcast, on every rank, before the roles: every rank is part of it, so a
  // failed start-up is not tried again.
  void prepare() override {
    if (prepared_)
      throw std::runtime_error("the start-up of the mpi work manager failed, and every rank takes part in it: it "
                               "cannot be tried again in this job");
    prepared_ = true;
    const char* recovery = std::getenv("OMPI_MCA_orte_enable_recovery");  // mpirun --enable-recovery
    for (const char* yes : {"1", "true", "yes", "on", "t", "y"})
      recovery_ = recovery_ || (recovery != nullptr && strcasecmp(recovery, yes) == 0);
    std::unique_lock<std::mutex> lock(g_job.mutex);
    // One whose shutdown has begun (destroyed by a thread of its own, say) is waited for.
    g_job.cv.wait_for(lock, std::chrono::seconds(60), [] { return g_job.live == nullptr || !g_job.live->stopping(); });
    if (g_job.live != nullptr)
      throw std::runtime_error("this process has an mpi work manager already: an MPI job has one at a time (its "
                               "worker ranks serve it); make the next one once it is gone");
    if (!g_job.over.empty())
      throw std::runtime_error("no further mpi work manager can be made in this job: " + g_job.over);
    g_job.live = this;  // until its end
    if (g_job.comm != MPI_COMM_NULL) {  // the ranks stayed: they serve this work manager too
      doorbells_.swap(g_job.doorbells);
      for (int fd : doorbells_) doorbell::ring(fd, kNext);
      return;
    }
    lock.unlock();
    init_mpi();
    if (g_job.rank != 0) {  // a worker rank serves until the job ends: only rank 0 ends work managers
      lock.lock();
      g_job.live = nullptr;
      lock.unlock();
      return exchange_setup();
    }
    if (g_job.size == 1)
      return log(WM_LOG_WARNING,
                 "one rank: the tasks run in this process, on a thread of the mpi work manager (start the program "
                 "with mpirun -np N for N-1 worker ranks)");
    exchange_setup();
    if (!recovery_)  // said once per job; if a rank dies, the error says it again
      log(WM_LOG_INFO,
          "if a worker rank dies, mpirun ends the whole job (its default); start it with mpirun --enable-recovery to "
          "let rank 0 carry on with the other ranks");
    const unsigned asked = requested_workers(), n = static_cast<unsigned>(g_job.size - 1);
    if (asked != 0 && asked != n)
      log(WM_LOG_WARNING, "n_workers " + std::to_string(asked) + " is not used: the job has " +
                              std::to_string(g_job.size) + " ranks, so " + std::to_string(n) +
                              " worker ranks (start mpirun with -np " + std::to_string(asked + 1) + " for " +
                              std::to_string(asked) + ")");
  }

  remote::Role decide_role() override { return g_job.rank == 0 ? remote::Role::master : remote::Role::worker; }
  void started() override { master_ok_ = true; }
  unsigned planned_workers() const override { return g_job.size > 1 ? static_cast<unsigned>(g_job.size - 1) : 1u; }
  wm::sdk::WorkerIdentity worker_identity() const override {
    return {-1, static_cast<std::int64_t>(getpid()), std::max(g_job.rank, 0), remote::this_host()};
  }

  std::unique_ptr<remote::Transport> make_transport() override {
    if (g_job.size == 1)
      return std::make_unique<remote::InProcessTransport>(services(), name(), worker_identity(), worker_loop_options());
    auto t = std::make_unique<MpiTransport>(g_job.comm, g_job.size, std::move(acceptor_), std::move(doorbells_),
                                            engine_options().startup_limit, !recovery_, logger());
    transport_ = t.get();
    return t;
  }

  std::unique_ptr<remote::Port> make_port() override {
    const std::string me = "rank " + std::to_string(g_job.rank) + " (pid " + std::to_string(getpid()) + " on " +
                           remote::this_host() + ")";
    // mpirun ends a job by SIGTERM (Ctrl-C, a failed rank): a worker rank says so before it goes.
    remote::say_on_signal(SIGTERM,
                          "[wm mpi] " + me + " ended by SIGTERM: mpirun is ending the job (Ctrl-C, or a rank failed)");
    return std::make_unique<MpiPort>(g_job.comm, std::exchange(doorbell_, -1), me, logger());
  }

  // A worker rank serves rank 0's work managers one after another, until the job ends (then the
  // core destroys the backend and exits with 0).
  void served(remote::Port& port, remote::WorkerEnd end) override {
    auto& p = static_cast<MpiPort&>(port);
    p.serve_until_the_end(
        end, [&] { return remote::run_worker_loop(p, services(), name(), worker_identity(), worker_loop_options()); });
  }

 private:
  void init_mpi() {
    int finalized = 0, initialized = 0, provided = 0;
    MPI_Finalized(&finalized);
    if (finalized)
      throw std::runtime_error("MPI was finalized already in this process: the mpi work manager cannot start");
    MPI_Initialized(&initialized);
    if (initialized) {
      MPI_Query_thread(&provided);
      if (provided < MPI_THREAD_SERIALIZED)
        throw std::runtime_error(
            "the program initialised MPI itself with " + thread_level_name(provided) +
            ", and the mpi work manager calls MPI from a thread of its own on rank 0: initialise MPI with "
            "MPI_Init_thread(&argc, &argv, MPI_THREAD_MULTIPLE, &provided) (MPI_THREAD_SERIALIZED is enough if the "
            "program makes no MPI call of its own while the work manager runs), or let the work manager initialise "
            "MPI (Open MPI: OMPI_MPI_THREAD_LEVEL=3 makes MPI_Init ask for MPI_THREAD_MULTIPLE)");
    } else {
      // Serialized: MPI is called by one thread at a time: this one (start-up, and on worker ranks the
      // worker loop), then on rank 0 the dispatcher's thread, then this one again (the end).
      const int rc = MPI_Init_thread(nullptr, nullptr, MPI_THREAD_SERIALIZED, &provided);
      if (rc != MPI_SUCCESS) throw std::runtime_error("MPI_Init_thread failed: " + mpi_error_text(rc));
      g_job.owns_mpi = true;
      if (provided < MPI_THREAD_SERIALIZED)
        throw std::runtime_error("this MPI library gives only " + thread_level_name(provided) +
                                 " and the mpi work manager needs MPI_THREAD_SERIALIZED");
    }
    MPI_Comm_rank(MPI_COMM_WORLD, &g_job.rank);  // the same in its duplicate
    MPI_Comm_size(MPI_COMM_WORLD, &g_job.size);
    // srun without a PMI this MPI can use starts every task as a job of one rank: each a master.
    const char* tasks = std::getenv("SLURM_STEP_NUM_TASKS");
    if (g_job.size == 1 && tasks != nullptr && std::atoi(tasks) > 1 && std::getenv("OMPI_COMM_WORLD_SIZE") == nullptr)
      throw std::runtime_error(std::string("srun started ") + tasks + " tasks, and MPI sees each as a job of one rank " +
                               "(it found no PMI it can use), so each would run every task itself: start the job " +
                               "with srun --mpi=pmix (srun --mpi=list shows what this Slurm offers), or with mpirun");
    MPI_Request r = MPI_REQUEST_NULL;
    wait_for_everyone(MPI_Comm_idup(MPI_COMM_WORLD, &g_job.comm, &r), r, "MPI_Comm_idup", "duplicating MPI_COMM_WORLD",
                      engine_options().startup_limit);
    MPI_Comm_set_errhandler(g_job.comm, MPI_ERRORS_RETURN);
    if (g_job.rank == 0) std::atexit(end_at_exit);
  }

  // The start-up broadcast: rank 0's doorbell (its port, addresses and a nonce), or why it could not
  // start (every rank then fails with it); a worker rank connects to it.
  void exchange_setup() {
    Setup setup{};
    if (g_job.rank == 0) {
      std::snprintf(setup.host, sizeof setup.host, "%s", remote::this_host().c_str());
      try {
        acceptor_ = std::make_unique<doorbell::Acceptor>(g_job.size);
        setup.port = acceptor_->port();
        setup.nonce = acceptor_->nonce();
        const auto addresses = doorbell::addresses(option_string("doorbell-address"), "WM_MPI_DOORBELL_ADDRESS");
        setup.n_addresses = static_cast<std::uint16_t>(std::min(addresses.size(), std::size(setup.addresses)));
        std::copy_n(addresses.begin(), setup.n_addresses, setup.addresses);
      } catch (const std::exception& e) {
        std::snprintf(setup.error, sizeof setup.error, "%s", e.what());
      }
    }
    MPI_Request r = MPI_REQUEST_NULL;
    wait_for_everyone(MPI_Ibcast(&setup, static_cast<int>(sizeof setup), MPI_BYTE, 0, g_job.comm, &r), r, "MPI_Ibcast",
                      "the start-up broadcast", engine_options().startup_limit);
    setup.error[sizeof setup.error - 1] = setup.host[sizeof setup.host - 1] = '\0';
    if (setup.error[0] != '\0')
      throw std::runtime_error((g_job.rank == 0 ? "" : "rank 0 could not start the mpi work manager: ") +
                               std::string(setup.error));
    if (g_job.rank == 0) return;
    const std::vector<std::uint32_t> addresses(
        setup.addresses, setup.addresses + std::min<std::size_t>(setup.n_addresses, std::size(setup.addresses)));
    const doorbell::Hail hail{setup.nonce, g_job.rank, static_cast<std::int32_t>(getpid())};
    std::string why;
    doorbell_ = doorbell::connect(addresses, setup.port, setup.host == remote::this_host(), 5000, hail, why);
    if (doorbell_ < 0)
      throw std::runtime_error("rank " + std::to_string(g_job.rank) + " cannot reach rank 0 (" + setup.host +
                               ") on its doorbell port: " + why + "; set WM_MPI_DOORBELL_ADDRESS to an address of " +
                               "rank 0's host the other ranks can reach");
    // What this rank is, for the program before it serves and for diagnostics (as a processes worker has it).
    setenv(WM_ENV_PROCESS_INDEX, std::to_string(g_job.rank - 1).c_str(), 1);
    setenv(WM_ENV_WORKER_ARG, ("rank=" + std::to_string(g_job.rank) + ",doorbell=" + std::to_string(doorbell_)).c_str(), 1);
  }

  bool recovery_ = false, prepared_ = false, master_ok_ = false;
  std::unique_ptr<doorbell::Acceptor> acceptor_;  // rank 0, its job's first work manager
  std::vector<int> doorbells_;                    // rank 0, later ones: the ranks' doorbells
  int doorbell_ = -1;                             // worker ranks: the connection to rank 0
  MpiTransport* transport_ = nullptr;             // rank 0: owned by the dispatcher
};

// At exit on rank 0: a work manager never destroyed (or whose destruction on another thread the
// exit overtook) is ended here; then, if the ranks stayed for another, the job ends: every rank
// finalizes MPI. Without it the worker ranks would wait for a verdict that never comes, and mpirun
// would count rank 0's exit without MPI_Finalize as a failure.
void end_at_exit() {
  std::unique_lock<std::mutex> lock(g_job.mutex);
  MpiBackend* b = g_job.live;
  lock.unlock();
  MpiBackend::end(b);  // if another thread runs it, this waits for that one
  lock.lock();
  if (!g_job.over.empty()) return;  // otherwise the ranks stayed for another work manager
  remote::say_last(std::move(g_job.doorbells), kFinalize, 5);
  MPI_Finalize();
}

}  // namespace

WM_DECLARE_BACKEND(mpi, MpiBackend, "1.0.0",
                   "Runs registered tasks on the ranks of an MPI job (mpirun -np N: rank 0 submits, N-1 ranks serve)",
                   WM_CAP_REMOTE | WM_CAP_SPMD, WM_REMOTE_ENGINE_OPTIONS,
                   wm::sdk::option_string("doorbell-address", "",
                                          "address of rank 0's host the worker ranks connect to (its doorbell; "
                                          "default: every address of that host, loopback first on the same host)"))
