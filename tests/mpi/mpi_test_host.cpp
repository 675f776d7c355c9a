// SPDX-License-Identifier: MIT
// mpi_test_host.cpp: a host program for the mpi backend's tests, run under mpirun by run_mpi.py.
// argv[1] picks what it does (the roles are listed in main); the master checks what a user would
// and prints "RESULT ok" when every check passed ("RESULT failed" and the failures otherwise).
// The exit code says the same, but with mpirun --enable-recovery Open MPI 4.1 exits 0 whatever
// the ranks return, so the tests read the line.
#include "test_support.hpp"

#include <wm/task.hpp>
#include <wm/wm.hpp>

#include <signal.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <map>
#include <set>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

using namespace std::chrono_literals;
using Clock = std::chrono::steady_clock;

// ---------------------------------------------------------------- tasks (run on the worker ranks)

int square(int x) { return x * x; }
WM_TASK(square);

void sleep_ms(int ms) { std::this_thread::sleep_for(std::chrono::milliseconds(ms)); }
WM_TASK(sleep_ms);

std::vector<char> echo_bytes(std::vector<char> v) { return v; }
WM_TASK(echo_bytes);

std::vector<char> patterned(std::size_t size, int seed) {
  std::vector<char> v(size);
  for (std::size_t i = 0; i < size; ++i) v[i] = static_cast<char>(i * 131 + static_cast<std::size_t>(seed) * 7 + (i >> 20));
  return v;
}
std::vector<char> make_bytes(std::uint64_t size, int seed) { return patterned(static_cast<std::size_t>(size), seed); }
WM_TASK(make_bytes);

std::uint64_t checksum(std::vector<char> v) {
  std::uint64_t h = 1469598103934665603ull;
  for (char c : v) h = (h ^ static_cast<unsigned char>(c)) * 1099511628211ull;
  return h ^ v.size();
}
WM_TASK(checksum);

struct WhereInfo {
  std::string index, seed, rank;
  long pid = 0;
  int rand_value = 0;
  template <class A>
  void serialize(A& a) {
    a(index, seed, rank, pid, rand_value);
  }
};
std::string env(const char* name) {
  const char* v = std::getenv(name);
  return v ? v : "";
}
WhereInfo where_am_i(int ms) {
  std::this_thread::sleep_for(std::chrono::milliseconds(ms));
  return WhereInfo{env("WM_PROCESS_INDEX"), env("WM_PROCESS_SEED"), env("OMPI_COMM_WORLD_RANK"), static_cast<long>(getpid()),
                   std::rand()};
}
WM_TASK(where_am_i);

// Writes its pid to `path`, then sleeps (the victim of the kill tests).
long report_and_sleep(std::string path, int ms) {
  {
    std::ofstream out(path + ".tmp");
    out << getpid() << "\n";
  }
  std::rename((path + ".tmp").c_str(), path.c_str());
  std::this_thread::sleep_for(std::chrono::milliseconds(ms));
  return getpid();
}
WM_TASK(report_and_sleep);

// Writes junk on this rank's doorbell to rank 0 (WM_WORKER_ARG names it: rank=R,doorbell=FD). The
// doorbell is beside the MPI messages, not in line with them: the task goes on a while, so that
// rank 0 reads the junk while it runs (the test kit's crash matrix has the other cases).
int junk_on_doorbell() {
  int rank = -1, fd = -1;
  std::sscanf(env("WM_WORKER_ARG").c_str(), "rank=%d,doorbell=%d", &rank, &fd);
  const char junk[] = "this is no ring at all";
  if (fd >= 0) [[maybe_unused]] ssize_t r = send(fd, junk, sizeof junk, MSG_NOSIGNAL);
  std::this_thread::sleep_for(5s);
  return 42;
}
WM_TASK(junk_on_doorbell);

// ---------------------------------------------------------------- checks

namespace {

int g_failures = 0;

void check(bool ok, const std::string& what) {
  if (ok) return;
  ++g_failures;
  std::printf("CHECK FAILED: %s\n", what.c_str());
  std::fflush(stdout);
}

int result() {
  std::printf("RESULT %s\n", g_failures == 0 ? "ok" : "failed");
  std::fflush(stdout);
  return g_failures == 0 ? 0 : 1;
}

using wmtest::failure_of;

bool contains(const std::string& s, const std::string& part) { return s.find(part) != std::string::npos; }

std::string host() {
  char buf[256] = {};
  gethostname(buf, sizeof buf - 1);
  return buf;
}

std::string temp_path(const char* tag) {
  return "/tmp/wm_mpi_test_" + std::to_string(getpid()) + "_" + tag;
}

long wait_for_pid_file(const std::string& path, std::chrono::seconds limit) {
  const auto until = Clock::now() + limit;
  while (Clock::now() < until) {
    std::ifstream in(path);
    long pid = 0;
    if (in >> pid && pid > 0) return pid;
    std::this_thread::sleep_for(2ms);
  }
  return -1;
}

// Checks a WorkerLostError: it names the rank, its pid and host, and the task.
void check_lost(const wm::WMFuture& f, const std::string& task, long pid = 0) {
  const std::string what = failure_of(f);
  check(contains(what, "WorkerLostError"), "the future failed with WorkerLostError: " + what);
  const auto info = f.error_info();
  check(info.has_value() && info->kind == wm::FailureKind::worker_lost, "its record says worker lost: " + what);
  if (!info) return;
  check(info->rank >= 1, "the record names the rank: " + what);
  check(contains(what, "rank " + std::to_string(info->rank)), "the message names the rank: " + what);
  check(info->pid > 0 && contains(what, "pid " + std::to_string(info->pid)), "the message names the pid: " + what);
  if (pid != 0) check(info->pid == pid, "the pid is the one killed (" + std::to_string(pid) + "): " + what);
  check(info->host == host() && contains(what, host()), "the message names the host: " + what);
  check(contains(what, task), "the message names the task " + task + ": " + what);
}

// ---------------------------------------------------------------- roles

// A worker rank that writes junk on its doorbell: the task it runs fails with ProtocolError, the
// rank is stopped, and the work manager goes on with the other rank.
int corrupt_doorbell(wm::WorkManager& wm) {
  auto f = wm.submit(junk_on_doorbell);
  std::vector<wm::Future<int>> others;
  for (int i = 0; i < 50; ++i) others.push_back(wm.submit(square, i));
  check(f.wait_for(20s), "the future finished");
  const std::string what = failure_of(f);
  std::printf("exec_corrupt_doorbell: %s\n", what.c_str());
  check(contains(what, "ProtocolError:"), "expected ProtocolError, got " + what);
  for (int i = 0; i < 50; ++i) check(others[i].wait_for(20s), "a task beside it finished");  // its rank's may fail
  auto follow = wm.submit(square, 11);
  check(follow.wait_for(20s) && !follow.failed() && follow.get_result() == 121, "a task after it runs");
  return result();
}

// Large arguments and results around every limit, 64 MiB included, alone and mixed with small ones.
int large(wm::WorkManager& wm) {
  const std::size_t K = 1024, M = K * K;
  for (std::size_t size : {std::size_t(0), std::size_t(1), 64 * K - 200, 64 * K - 24, 64 * K, 64 * K + 1, 300 * K, M - 9, M,
                           5 * M, 64 * M, 3 * M}) {
    const std::vector<char> v = patterned(size, 3);
    auto f = wm.submit(echo_bytes, v);
    check(f.wait_for(120s), "echo of " + std::to_string(size) + " bytes finished");
    check(!f.failed() && f.get_result(false) == v, "echo of " + std::to_string(size) + " bytes intact: " + failure_of(f));
  }
  // A large argument with a small result, and a small argument with a large result.
  const std::vector<char> big = patterned(64 * M, 5);
  auto sum = wm.submit(checksum, big);
  auto made = wm.submit(make_bytes, std::uint64_t(64 * M), 9);
  check(sum.get_result() == checksum(big), "64 MiB argument arrived intact");
  check(made.get_result() == patterned(64 * M, 9), "64 MiB result arrived intact");
  // Several at once, beside small ones.
  std::vector<wm::Future<std::vector<char>>> bigs;
  std::vector<wm::Future<int>> smalls;
  for (int i = 0; i < 6; ++i) {
    bigs.push_back(wm.submit(echo_bytes, patterned(3 * M, i)));
    smalls.push_back(wm.submit(square, i));
  }
  for (int i = 0; i < 6; ++i) {
    check(bigs[i].get_result() == patterned(3 * M, i), "concurrent large echo " + std::to_string(i));
    check(smalls[i].get_result() == i * i, "small task beside the large ones");
  }
  return result();
}

// Who runs the tasks: WM_PROCESS_INDEX 0..N-2, one seed per rank (also in rand()), the rank.
int where(wm::WorkManager& wm, int size) {
  check(wm.n_workers() == static_cast<unsigned>(std::max(1, size - 1)), "n_workers is " + std::to_string(wm.n_workers()));
  std::vector<wm::Future<WhereInfo>> fs;
  for (int i = 0; i < 12 * std::max(1, size - 1); ++i) fs.push_back(wm.submit(where_am_i, 30));
  std::set<std::string> indices, seeds;
  std::map<std::string, std::set<std::string>> seed_of;
  for (auto& f : fs) {
    const WhereInfo w = f.get_result();
    indices.insert(w.index);
    seeds.insert(w.seed);
    seed_of[w.index].insert(w.seed);
    check(w.pid != static_cast<long>(getpid()), "a task ran on a worker rank, not on rank 0");
    check(!w.index.empty() && w.rank == std::to_string(std::stoi(w.index) + 1),
          "rank " + w.rank + " has WM_PROCESS_INDEX " + w.index);
  }
  std::set<std::string> expected;
  for (int i = 0; i < size - 1; ++i) expected.insert(std::to_string(i));
  check(indices == expected, "every worker rank ran tasks, with WM_PROCESS_INDEX 0.." + std::to_string(size - 2));
  check(seeds.size() == static_cast<std::size_t>(size - 1) && !seeds.count(""), "each worker rank has a seed of its own");
  for (auto& [i, s] : seed_of) check(s.size() == 1, "worker " + i + " kept its seed");
  check(env("WM_PROCESS_INDEX").empty(), "rank 0 has no WM_PROCESS_INDEX");
  return 0;
}

// Kills the worker rank running a task (SIGKILL), as a crash would. Without --enable-recovery mpirun
// ends the job; with it, the future fails at once and the other ranks carry on.
int kill_worker(wm::WorkManager& wm, bool expect_survival) {
  const std::string path = temp_path("victim");
  std::remove(path.c_str());
  auto victim = wm.submit(report_and_sleep, path, 60000);
  const long pid = wait_for_pid_file(path, 30s);
  std::remove(path.c_str());
  check(pid > 0, "the victim task started");
  if (pid <= 0) return result();
  std::printf("killing worker pid %ld\n", pid);
  std::fflush(stdout);
  const auto t0 = Clock::now();
  kill(static_cast<pid_t>(pid), SIGKILL);
  const bool done = victim.wait_for(10s);
  const double ms = std::chrono::duration<double, std::milli>(Clock::now() - t0).count();
  check(done, "the victim's future finished after the kill");
  if (!expect_survival) {
    std::printf("the job survived the kill (%.1f ms): %s\n", ms, failure_of(victim).c_str());
    return result();
  }
  std::printf("victim failed after %.1f ms: %s\n", ms, failure_of(victim).c_str());
  check(ms < 1000, "the victim's future failed within 1 s (" + std::to_string(ms) + " ms)");
  check_lost(victim, "report_and_sleep", pid);
  // The other ranks carry on.
  std::vector<wm::Future<int>> more;
  for (int i = 0; i < 200; ++i) more.push_back(wm.submit(square, i));
  for (int i = 0; i < 200; ++i) check(more[i].get_result() == i * i, "a task after the death");
  check(wm.n_workers() >= 1, "workers left");
  return result();
}

// shutdown() while tasks run longer than the shutdown timeout, with more queued behind them.
int pending(wm::WorkManager& wm) {
  std::vector<wm::Future<void>> fs;
  for (unsigned i = 0; i < wm.n_workers() + 4; ++i) fs.push_back(wm.submit(sleep_ms, 60000));
  std::this_thread::sleep_for(500ms);
  const auto t0 = Clock::now();
  wm.shutdown();
  const double s = std::chrono::duration<double>(Clock::now() - t0).count();
  std::printf("shutdown returned after %.2f s\n", s);
  check(s < 5, "shutdown() returned within its deadline");
  for (auto& f : fs) check(f.done() && contains(failure_of(f), "ShutdownError"), "a pending task: " + failure_of(f));
  return result();
}

// Long tasks, then "ready": the test interrupts mpirun.
int interrupted(wm::WorkManager& wm) {
  std::vector<wm::Future<void>> fs;
  for (unsigned i = 0; i < wm.n_workers() + 2; ++i) fs.push_back(wm.submit(sleep_ms, 60000));
  std::this_thread::sleep_for(300ms);
  std::printf("ready\n");
  std::fflush(stdout);
  for (auto& f : fs) f.wait();
  std::printf("the tasks ended without an interruption\n");
  return 1;
}

// A task past its timeout fails with TaskTimeoutError; its rank is stopped and the others go on.
int timeout(wm::WorkManager& wm) {
  auto slow = wm.submit(sleep_ms, 60000);
  auto f = wm.submit(square, 5);
  check(slow.wait_for(20s), "the slow task ended");
  const std::string what = failure_of(slow);
  check(contains(what, "TaskTimeoutError") && contains(what, "timeout of 0.5 s"), "the slow task timed out: " + what);
  check(f.get_result() == 25, "a task beside it");
  check(wm.submit(square, 6).get_result() == 36, "a task after it");
  return result();
}

// cancel(wm::kill_running) on a running task: it fails with CancelledError, its rank is stopped
// (ranks cannot be replaced), the other rank runs what comes next; a queued task is cancelled
// without a rank; map keeps input order; a task that needs what no rank has fails at submit.
int cancel(wm::WorkManager& wm) {
  auto slow = wm.submit(sleep_ms, 60000);
  std::this_thread::sleep_for(500ms);  // it runs on a rank now
  check(slow.cancel(wm::kill_running), "cancel(kill_running) says it stops the running task");
  check(slow.wait_for(20s), "the cancelled task ended");
  check(slow.cancelled() && contains(failure_of(slow), "CancelledError"), "it failed as cancelled: " + failure_of(slow));
  auto squares = wm.map(square, std::vector<int>{1, 2, 3, 4});
  for (int i = 0; i < 4; ++i) check(squares[i].get_result() == (i + 1) * (i + 1), "map keeps input order");
  std::vector<wm::Future<void>> busy;
  for (int i = 0; i < 3; ++i) busy.push_back(wm.submit(sleep_ms, 300));
  auto queued = wm.submit(square, 9);
  const bool cancelled = queued.cancel();
  check(cancelled == queued.cancelled(), "cancel() says what happened");
  for (auto& b : busy) b.wait();
  check(wm.submit(wm::task(square, 2).needs({{"license", 1}})).failed(), "a task that needs what no rank has fails at submit");
  return result();
}

}  // namespace

int main(int argc, char** argv) {
  const std::string role = argc > 1 ? argv[1] : "";
  const std::string arg = argc > 2 ? argv[2] : "";
  if (role == "throw") {
    auto wm = wm::make_work_manager();  // worker ranks serve here
    std::vector<wm::Future<void>> fs;
    for (int i = 0; i < 4; ++i) fs.push_back(wm->submit(sleep_ms, 60000));
    std::this_thread::sleep_for(300ms);
    throw std::runtime_error("an exception nobody catches, on rank 0");
  }
  try {
    auto wm = wm::make_work_manager();  // worker ranks serve inside and never return
    // The WESTPA pattern works as well: a worker rank would serve here (it never gets this far).
    if (!wm->is_master()) {
      wm->run();
      return 0;
    }
    int size = 0;
    if (const char* s = std::getenv("OMPI_COMM_WORLD_SIZE")) size = std::atoi(s);
    if (role == "corrupt_doorbell") return corrupt_doorbell(*wm);
    if (role == "large") return large(*wm);
    if (role == "kill") return kill_worker(*wm, arg == "survive");
    if (role == "pending") return pending(*wm);
    if (role == "interrupted") return interrupted(*wm);
    if (role == "timeout") return timeout(*wm);
    if (role == "cancel") return cancel(*wm);
    if (role == "where") {
      where(*wm, size);
      // While it lives, a second one is refused; once it is gone, the next one has every rank again.
      try {
        wm::make_work_manager();
        check(false, "a second mpi work manager at the same time was refused");
      } catch (const wm::Error& e) {
        check(contains(e.what(), "one at a time"), std::string("a second one at the same time is refused clearly: ") + e.what());
      }
      wm.reset();
      auto next = wm::make_work_manager();
      check(next->is_master(), "the next work manager is on rank 0 too");
      where(*next, size);
      return result();
    }
    std::fprintf(stderr, "mpi_test_host: unknown role '%s'\n", role.c_str());
    return 2;
  } catch (const std::exception& e) {
    std::printf("CHECK FAILED: exception: %s\nRESULT failed\n", e.what());
    return 1;
  }
}
