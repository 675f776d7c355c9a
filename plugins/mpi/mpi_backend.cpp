// mpi_backend.cpp: the "mpi" backend: every rank of an MPI job runs the host program; rank 0 is the
// master and the other ranks serve tasks inside make_work_manager, on the remote engine. What is
// here: MPI's set-up and end (threading, the one broadcast, who finalizes and when), the roles,
// and what a worker rank does after the engine's worker loop (how it leaves). Rank 0's transport is
// mpi_transport.cpp, a worker's port mpi_port.cpp; one rank alone runs its tasks on a thread (the
// SDK's in-process transport). See README.md beside this file.
#include "mpi_port.hpp"
#include "mpi_transport.hpp"
#include "mpi_wire.hpp"

#include <wm/sdk/remote/in_process.hpp>
#include <wm/sdk/remote/remote_backend.hpp>

#include <poll.h>
#include <signal.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <condition_variable>
#include <mutex>
#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <random>
#include <stdexcept>
#include <string>
#include <thread>

namespace {

using namespace wm_mpi;

class MpiBackend;

// The MPI job this process belongs to, across its work managers (one at a time): when the work
// manager initialised MPI, MPI stays initialised and the worker ranks stay connected from one work
// manager to the next (they serve each in turn), and the job ends when rank 0's program does.
struct Job {
  std::mutex mutex;
  std::condition_variable cv;
  MpiBackend* live = nullptr;  // this process's work manager, until its end has run
  bool running = false;        // its end runs
  bool initialized = false, owns_mpi = false;
  MPI_Comm comm = MPI_COMM_NULL;
  int rank = -1, size = 0;
  bool stays = false;           // rank 0: the ranks wait for its next work manager
  std::vector<int> doorbells;   // rank 0: theirs, meanwhile
  std::string over;             // why no further work manager can be made ("": one can)
};
Job g_job;
void end_at_exit();

bool truthy(const char* v) {
  if (v == nullptr) return false;
  std::string s(v);
  for (char& c : s) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  return s == "1" || s == "true" || s == "yes" || s == "on" || s == "t" || s == "y";
}

const char* thread_level_name(int level) {
  switch (level) {
    case MPI_THREAD_SINGLE: return "MPI_THREAD_SINGLE";
    case MPI_THREAD_FUNNELED: return "MPI_THREAD_FUNNELED";
    case MPI_THREAD_SERIALIZED: return "MPI_THREAD_SERIALIZED";
    case MPI_THREAD_MULTIPLE: return "MPI_THREAD_MULTIPLE";
    default: return "an unknown thread level";
  }
}

// Waits for a start-up collective. MPI gives nothing to sleep on, so: a short spin, then a look
// every millisecond; start-up only. Throws after limit seconds (a rank that never makes its work
// manager would otherwise hang every other rank).
void wait_for_everyone(MPI_Request& r, double limit, int rank, const char* what) {
  const auto start = Clock::now();
  const auto until = start + std::chrono::duration_cast<Clock::duration>(std::chrono::duration<double>(limit));
  for (;;) {
    int done = 0;
    const int rc = MPI_Test(&r, &done, MPI_STATUS_IGNORE);
    if (rc != MPI_SUCCESS) throw std::runtime_error(std::string(what) + " failed: " + mpi_error_text(rc));
    if (done) return;
    const auto now = Clock::now();
    if (now >= until)
      throw std::runtime_error("rank " + std::to_string(rank) + ": not every rank of the job started the mpi work manager within " +
                               std::to_string(static_cast<int>(limit)) + " s (" + what +
                               "): every rank must call wm::make_work_manager (worker ranks serve inside it)");
    if (now - start < std::chrono::milliseconds(20))
      sched_yield();
    else
      poll(nullptr, 0, 1);
  }
}

// ---------------------------------------------------------------- worker ranks: signals

char g_term_note[512];
struct sigaction g_term_previous;

void on_sigterm(int sig) {
  [[maybe_unused]] ssize_t w = write(STDERR_FILENO, g_term_note, std::strlen(g_term_note));
  sigaction(SIGTERM, &g_term_previous, nullptr);
  raise(sig);  // delivered once this returns, as it was before
}

// mpirun ends a job by SIGTERM (Ctrl-C, a failed rank): a worker rank says so before it goes.
// Left alone if the program ignores SIGTERM.
void note_sigterm(int rank, const std::string& host) {
  struct sigaction old {};
  sigaction(SIGTERM, nullptr, &old);
  if (old.sa_handler == SIG_IGN) return;
  std::snprintf(g_term_note, sizeof g_term_note,
                "[wm mpi] rank %d (pid %d on %s) ended by SIGTERM: mpirun is ending the job (Ctrl-C, or a rank "
                "failed)\n",
                rank, static_cast<int>(getpid()), host.c_str());
  struct sigaction sa {};
  sa.sa_handler = &on_sigterm;
  sigemptyset(&sa.sa_mask);
  sigaction(SIGTERM, &sa, &g_term_previous);
}

// ---------------------------------------------------------------- the backend

class MpiBackend final : public remote::RemoteBackend {
 public:
  MpiBackend(const wm_core_services* s, const wm_backend_config* c, const char* name) : RemoteBackend(s, c, name) {
    address_ = option_string("doorbell-address");
    engine_options().dead_hint =
        "every rank must call wm::make_work_manager early in main; run with WM_LOG_LEVEL=debug and read the "
        "worker ranks' standard error";
    // A death is logged at once, with the task: without --enable-recovery mpirun ends the job
    // about a second later, maybe before the program can say anything.
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

  /** Rank 0's end of MPI, once: the dispatcher's thread is joined, every worker rank is told
   *  whether to finalize, and MPI is finalized if that cannot hang (on the thread that initialised
   *  it; otherwise at exit). Run by the destructor, or at exit for a work manager never destroyed
   *  (or destroyed on a thread of its own that the exit overtakes). b is not touched unless it is
   *  rank 0's live backend. */
  static void end(MpiBackend* b) {
    {
      std::unique_lock<std::mutex> lock(g_job.mutex);
      if (b == nullptr || g_job.live != b) return;
      if (g_job.running) {  // another thread runs it: wait for it (b lives until then)
        g_job.cv.wait_for(lock, std::chrono::seconds(60), [b] { return g_job.live != b; });
        return;
      }
      g_job.running = true;
    }
    b->finish_job();
  }

 private:
  void finish_job() {
    try {
      shutdown(WM_SHUTDOWN_WAIT);  // done already when the core destroys the backend
    } catch (const std::exception& e) {
      log(WM_LOG_ERROR, std::string("shutdown failed: ") + e.what());
    }
    // The ranks stay for this process's next work manager when the work manager owns MPI (a
    // program that initialised MPI itself finalizes it, which waits for every rank).
    const bool stay = owns_mpi_ && master_ok_;
    const bool clean = master_ok_ && (transport_ == nullptr || transport_->finish(stay));
    std::string over;
    if (clean && stay) {
      std::lock_guard<std::mutex> lock(g_job.mutex);
      g_job.stays = true;
      if (transport_ != nullptr) g_job.doorbells = transport_->doorbells();
    } else if (!clean) {
      over = "a rank died, was stopped by force or never started in an earlier mpi work manager of this job";
      log(WM_LOG_WARNING,
          std::string("a rank died, was stopped by force or never started in this job, so MPI_Finalize could wait "
                      "for it forever (Open MPI 4.1): ") +
              (owns_mpi_ ? "rank 0 leaves MPI unfinalized, and the other ranks leave without it when this "
                           "program ends"
                         : "the program initialised MPI itself: end it without MPI_Finalize (flush its output, "
                           "then _exit), or it may hang"));
    } else {
      over = "the program initialised MPI itself, so the worker ranks left with its first mpi work manager";
      MPI_Comm_free(&comm_);
    }
    {
      std::lock_guard<std::mutex> lock(g_job.mutex);
      g_job.live = nullptr;
      g_job.running = false;
      if (!over.empty()) g_job.over = over;
    }
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
    recovery_ = truthy(std::getenv("OMPI_MCA_orte_enable_recovery"));
    bool next = false;
    {
      std::unique_lock<std::mutex> lock(g_job.mutex);
      // One whose shutdown has begun (destroyed by a thread of its own, say) is waited for.
      g_job.cv.wait_for(lock, std::chrono::seconds(60),
                        [] { return g_job.live == nullptr || !g_job.live->stopping(); });
      if (g_job.live != nullptr)
        throw std::runtime_error("this process has an mpi work manager already: an MPI job has one at a time (its "
                                 "worker ranks serve it); make the next one once it is gone");
      if (!g_job.over.empty())
        throw std::runtime_error("no further mpi work manager can be made in this job: " + g_job.over);
      g_job.live = this;  // until its end
      next = g_job.initialized;
      comm_ = g_job.comm;
      rank_ = g_job.rank;
      size_ = g_job.size;
      owns_mpi_ = g_job.owns_mpi;
    }
    if (!next) init_mpi();
    if (rank_ != 0) {  // a worker rank serves until the job ends: only rank 0 ends work managers
      std::lock_guard<std::mutex> lock(g_job.mutex);
      g_job.live = nullptr;
    }
    if (rank_ != 0) return prepare_worker();
    if (!next) return prepare_master();
    // The ranks stayed: they serve this work manager too.
    std::lock_guard<std::mutex> lock(g_job.mutex);
    doorbells_.swap(g_job.doorbells);
    for (int fd : doorbells_) doorbell::ring(fd, kNext);
    g_job.stays = false;
  }

  void started() override { master_ok_ = true; }

  remote::Role decide_role() override { return rank_ == 0 ? remote::Role::master : remote::Role::worker; }

  unsigned planned_workers() const override { return size_ > 1 ? static_cast<unsigned>(size_ - 1) : 1u; }

  wm::sdk::WorkerIdentity worker_identity() const override {
    return wm::sdk::WorkerIdentity{-1, static_cast<std::int64_t>(getpid()), std::max(rank_, 0), remote::this_host()};
  }

  std::unique_ptr<remote::Transport> make_transport() override {
    if (size_ == 1)
      return std::make_unique<remote::InProcessTransport>(services(), name(), worker_identity(), worker_loop_options());
    MpiTransport::Options o;
    o.comm = comm_;
    o.size = size_;
    o.acceptor = std::move(acceptor_);
    o.doorbells.swap(doorbells_);
    o.connect_limit = engine_options().startup_limit;
    o.park_on_force = !recovery_;
    auto t = std::make_unique<MpiTransport>(std::move(o), logger());
    transport_ = t.get();
    return t;
  }

  std::unique_ptr<remote::Port> make_port() override {
    note_sigterm(rank_, remote::this_host());
    auto port = std::make_unique<MpiPort>(comm_, doorbell_, me(), logger());
    doorbell_ = -1;  // the port's now
    return port;
  }

  // A worker rank serves rank 0's work managers one after another, until the job ends.
  void served(remote::Port& port, remote::WorkerEnd end) override {
    auto& p = static_cast<MpiPort&>(port);
    for (;;) {
      // Stopped by force, rank 0 gone, a verdict to leave without MPI_Finalize, or a broken loop:
      // the port's watcher ends the process when rank 0 ends (or at once, if rank 0 said so).
      if (end == remote::WorkerEnd::broken) {
        log(WM_LOG_ERROR, me() + " cannot go on serving; it leaves without MPI_Finalize when rank 0 ends");
        p.give_up();
      }
      if (end != remote::WorkerEnd::stopped) p.wait_for_the_end();
      switch (p.finish()) {
        case MpiPort::Verdict::finalize:
          MPI_Finalize();  // on the thread that initialised MPI: the one serving since start-up
          return;          // the core destroys the backend and exits with 0
        case MpiPort::Verdict::serve:
          end = remote::run_worker_loop(p, services(), name(), worker_identity(), worker_loop_options());
          break;
        case MpiPort::Verdict::leave: p.wait_for_the_end();
      }
    }
  }

 private:
  std::string me() const {
    return "rank " + std::to_string(rank_) + " (pid " + std::to_string(getpid()) + " on " + remote::this_host() + ")";
  }

  void init_mpi() {
    int finalized = 0, initialized = 0, provided = 0;
    MPI_Finalized(&finalized);
    if (finalized) throw std::runtime_error("MPI was finalized already in this process: the mpi work manager cannot start");
    MPI_Initialized(&initialized);
    if (initialized) {
      MPI_Query_thread(&provided);
      if (provided < MPI_THREAD_SERIALIZED)
        throw std::runtime_error(
            std::string("the program initialised MPI itself with ") + thread_level_name(provided) +
            ", and the mpi work manager calls MPI from a thread of its own on rank 0: initialise MPI with "
            "MPI_Init_thread(&argc, &argv, MPI_THREAD_MULTIPLE, &provided) (MPI_THREAD_SERIALIZED is enough if the "
            "program makes no MPI call of its own while the work manager runs), or let the work manager initialise "
            "MPI (Open MPI: OMPI_MPI_THREAD_LEVEL=3 makes MPI_Init ask for MPI_THREAD_MULTIPLE)");
    } else {
      // Serialized: MPI is called by one thread at a time: this one (start-up, and on worker ranks the
      // worker loop), then on rank 0 the dispatcher's thread, then this one again (the end).
      const int rc = MPI_Init_thread(nullptr, nullptr, MPI_THREAD_SERIALIZED, &provided);
      if (rc != MPI_SUCCESS) throw std::runtime_error("MPI_Init_thread failed: " + mpi_error_text(rc));
      owns_mpi_ = true;
      if (provided < MPI_THREAD_SERIALIZED)
        throw std::runtime_error(std::string("this MPI library gives only ") + thread_level_name(provided) +
                                 " and the mpi work manager needs MPI_THREAD_SERIALIZED");
    }
    int world_rank = 0;
    MPI_Comm_rank(MPI_COMM_WORLD, &world_rank);
    MPI_Request r = MPI_REQUEST_NULL;
    int rc = MPI_Comm_idup(MPI_COMM_WORLD, &comm_, &r);
    if (rc != MPI_SUCCESS) throw std::runtime_error("MPI_Comm_idup failed: " + mpi_error_text(rc));
    wait_for_everyone(r, engine_options().startup_limit, world_rank, "duplicating MPI_COMM_WORLD");
    MPI_Comm_set_errhandler(comm_, MPI_ERRORS_RETURN);
    MPI_Comm_rank(comm_, &rank_);
    MPI_Comm_size(comm_, &size_);
    std::lock_guard<std::mutex> lock(g_job.mutex);
    g_job.initialized = true;
    g_job.owns_mpi = owns_mpi_;
    g_job.comm = comm_;
    g_job.rank = rank_;
    g_job.size = size_;
    if (rank_ == 0) std::atexit(end_at_exit);
  }

  void prepare_master() {
    if (size_ == 1) {
      log(WM_LOG_WARNING,
          "one rank: the tasks run in this process, on a thread of the mpi work manager (start the program with "
          "mpirun -np N for N-1 worker ranks)");
      return;
    }
    std::memset(&setup_, 0, sizeof setup_);
    setup_.master_pid = static_cast<std::int32_t>(getpid());
    std::snprintf(setup_.host, sizeof setup_.host, "%s", remote::this_host().c_str());
    try {
      acceptor_ = std::make_unique<doorbell::Acceptor>(size_);
      setup_.port = acceptor_->port();
      setup_.nonce = acceptor_->nonce();
      const auto addresses = doorbell::addresses(address_, "WM_MPI_DOORBELL_ADDRESS");
      setup_.n_addresses = static_cast<std::uint16_t>(std::min<std::size_t>(addresses.size(), Setup::kMaxAddresses));
      std::copy_n(addresses.begin(), setup_.n_addresses, setup_.addresses);
    } catch (const std::exception& e) {
      std::snprintf(setup_.error, sizeof setup_.error, "%s", e.what());
    }
    broadcast_setup();
    if (setup_.error[0] != '\0') throw std::runtime_error(setup_.error);
    if (!recovery_)  // said once per job; if a rank dies, the error says it again
      log(WM_LOG_INFO,
          "if a worker rank dies, mpirun ends the whole job (its default); start it with mpirun --enable-recovery to "
          "let rank 0 carry on with the other ranks");
    if (requested_workers() != 0 && requested_workers() != static_cast<unsigned>(size_ - 1))
      log(WM_LOG_WARNING, "n_workers " + std::to_string(requested_workers()) + " is not used: the job has " +
                              std::to_string(size_) + " ranks, so " + std::to_string(size_ - 1) +
                              " worker ranks (start mpirun with -np " + std::to_string(requested_workers() + 1) + " for " +
                              std::to_string(requested_workers()) + ")");
  }

  void broadcast_setup() {
    MPI_Request r = MPI_REQUEST_NULL;
    const int rc = MPI_Ibcast(&setup_, static_cast<int>(sizeof setup_), MPI_BYTE, 0, comm_, &r);
    if (rc != MPI_SUCCESS) throw std::runtime_error("MPI_Ibcast failed: " + mpi_error_text(rc));
    wait_for_everyone(r, engine_options().startup_limit, rank_, "the start-up broadcast");
  }

  void prepare_worker() {
    broadcast_setup();
    setup_.error[sizeof setup_.error - 1] = setup_.host[sizeof setup_.host - 1] = '\0';
    if (setup_.error[0] != '\0')
      throw std::runtime_error("rank 0 could not start the mpi work manager: " + std::string(setup_.error));
    // What this rank is, for the program before it serves (the engine's setup says it again).
    setenv(WM_ENV_PROCESS_INDEX, std::to_string(rank_ - 1).c_str(), 1);
    std::vector<std::uint32_t> addresses(setup_.addresses, setup_.addresses + std::min<int>(setup_.n_addresses, Setup::kMaxAddresses));
    std::string why;
    const doorbell::Hail hail{setup_.nonce, rank_, static_cast<std::int32_t>(getpid())};
    doorbell_ = doorbell::connect(addresses, setup_.port, setup_.host == remote::this_host(), 5000, hail, why);
    if (doorbell_ < 0)
      throw std::runtime_error("rank " + std::to_string(rank_) + " cannot reach rank 0 (" + setup_.host +
                               ") on its doorbell port: " + why +
                               "; set WM_MPI_DOORBELL_ADDRESS to an address of rank 0's host the other ranks can reach");
    // What this rank is, for the program and for diagnostics (as a processes worker has it).
    const std::string arg = "rank=" + std::to_string(rank_) + ",doorbell=" + std::to_string(doorbell_);
    setenv(WM_ENV_WORKER_ARG, arg.c_str(), 1);
  }

  std::string address_;
  bool owns_mpi_ = false, recovery_ = false, prepared_ = false, master_ok_ = false;
  MPI_Comm comm_ = MPI_COMM_NULL;
  int rank_ = -1, size_ = 0;
  Setup setup_{};
  std::unique_ptr<doorbell::Acceptor> acceptor_;  // rank 0, its job's first work manager
  std::vector<int> doorbells_;                    // rank 0, later ones: the ranks' doorbells
  int doorbell_ = -1;                 // worker ranks: the connection to rank 0
  MpiTransport* transport_ = nullptr;  // rank 0: owned by the dispatcher
};

// At exit on rank 0: a work manager never destroyed (or whose destruction on another thread the
// exit overtook) is ended here; then, if the ranks stayed for another, the job ends: every rank
// finalizes MPI. Without it the worker ranks would wait for a verdict that never comes, and mpirun
// would count rank 0's exit without MPI_Finalize as a failure.
void end_at_exit() {
  MpiBackend* b;
  {
    std::lock_guard<std::mutex> lock(g_job.mutex);
    b = g_job.live;
  }
  MpiBackend::end(b);  // if another thread runs it, this waits for that one
  std::lock_guard<std::mutex> lock(g_job.mutex);
  if (!g_job.stays) return;
  g_job.stays = false;
  give_verdict(g_job.doorbells, true);
  MPI_Finalize();
}

}  // namespace

WM_DECLARE_BACKEND(mpi, MpiBackend, "1.0.0",
                   "Runs registered tasks on the ranks of an MPI job (mpirun -np N: rank 0 submits, N-1 ranks serve)",
                   WM_CAP_REMOTE | WM_CAP_SPMD, WM_REMOTE_ENGINE_OPTIONS,
                   wm::sdk::option_string("doorbell-address", "",
                                          "address of rank 0's host the worker ranks connect to (its doorbell; "
                                          "default: every address of that host, loopback first on the same host)"))
