// SPDX-License-Identifier: MIT
// processes_test.cpp: the processes backend: crash matrix (after CPython's test_deadlock.py),
// worker and master death, shutdown, Ctrl-C, retries, timeouts, WM_PROCESS_INDEX and seeds.
// Every test checks that no process of ours is left: the fixture counts this process's children.
#include <wm/shared_array.hpp>
#include <wm/task.hpp>
#include <wm/wm.hpp>

#include "test_support.hpp"
#include "test_tasks.hpp"
#include "byte_ring.hpp"  // the layout of a worker's rings, to corrupt them

#include <gtest/gtest.h>

#include <dirent.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <spawn.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <future>
#include <map>
#include <numeric>
#include <set>
#include <sstream>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

extern char** environ;

using namespace std::chrono_literals;
using Clock = std::chrono::steady_clock;

// ---------------------------------------------------------------- tasks (run in the workers)

int square(int x) { return x * x; }
WM_TASK(square);

int process_index() {
  const char* v = std::getenv("WM_PROCESS_INDEX");
  return v ? std::atoi(v) : -1;
}

struct WhereInfo {
  int index = -1;
  long pid = 0;
  std::string seed;
  template <class A>
  void serialize(A& a) {
    a(index, pid, seed);
  }
};

WhereInfo where_am_i(int sleep_ms) {
  std::this_thread::sleep_for(std::chrono::milliseconds(sleep_ms));
  const char* seed = std::getenv("WM_PROCESS_SEED");
  return WhereInfo{process_index(), static_cast<long>(getpid()), seed ? seed : ""};
}
WM_TASK(where_am_i);

void sleep_ms(int ms) { std::this_thread::sleep_for(std::chrono::milliseconds(ms)); }
WM_TASK(sleep_ms);

std::vector<char> echo_bytes(std::vector<char> v) { return v; }
WM_TASK(echo_bytes);

std::uint64_t add_one(std::uint64_t x) { return x + 1; }
WM_TASK(add_one);

// How a task (or a type's serialization) misbehaves.
enum Mode : int { kAbort = 0, kSegv = 1, kExit = 2, kThrow = 3, kCorrupt = 4, kCorruptRing = 5, kNone = 9 };

[[noreturn]] void die_by(int mode) {
  switch (mode) {
    case kAbort: std::abort();
    case kSegv: raise(SIGSEGV); break;
    case kExit: _exit(3);
    default: break;
  }
  _exit(99);
}

void misbehave(int mode, const char* where) {
  if (mode == kNone) return;
  if (mode == kThrow) throw std::runtime_error(std::string("deliberate failure at ") + where);
  if (mode == kCorrupt || mode == kCorruptRing) {
    // Writes junk into the worker's channel to the master (the fds are in WM_WORKER_ARG): bytes on
    // the socket (with a ring there, nothing but doorbell bytes may come there), or an impossible
    // write position in the ring.
    int fd = -1, ring = -1;
    if (const char* a = std::getenv("WM_WORKER_ARG")) {
      std::sscanf(a, "fd=%d", &fd);
      if (const char* r = std::strstr(a, "ring=")) std::sscanf(r, "ring=%d", &ring);
    }
    wm::sdk::remote::RingFile file;
    if (mode == kCorruptRing && ring >= 0 && file.adopt(ring)) {
      file.control(wm::sdk::remote::RingFile::from_worker)->head.store(std::uint64_t(1) << 40);
      if (fd >= 0) [[maybe_unused]] ssize_t r = write(fd, &wm::sdk::remote::kDoorbellByte, 1);  // a sleeping master
    } else {
      const char junk[] = "this is not a frame header, not at all!!";
      if (fd >= 0) [[maybe_unused]] ssize_t r = write(fd, junk, sizeof junk);
    }
    // The master looks at the socket less often than at the ring: the junk must be seen before
    // the reply (the worker's own position overwrites the corrupt one with its next write).
    std::this_thread::sleep_for(50ms);
    return;
  }
  die_by(mode);
}

int misbehaving_task(int mode) {
  misbehave(mode, "execution");
  return 42;
}
WM_TASK(misbehaving_task);

// Argument whose encoding (in the master) throws.
struct SaveThrows {
  int x = 0;
  template <class A>
  void save(A&) const {
    throw std::runtime_error("SaveThrows cannot be encoded");
  }
  template <class A>
  void load(A& a) {
    a(x);
  }
};
int take_save_throws(SaveThrows s) { return s.x; }
WM_TASK(take_save_throws);

// Crashes the worker on the first `crashes` runs (counted in a file), then returns the run number.
int crash_first(std::string counter_file, int crashes, int mode) {
  int runs = 0;
  {
    std::ifstream in(counter_file);
    in >> runs;
  }
  ++runs;
  {
    std::ofstream out(counter_file, std::ios::trunc);
    out << runs;
  }
  if (runs <= crashes) misbehave(mode, "execution");
  return runs;
}
WM_TASK(crash_first);

// crash_first with a large argument that comes back: a retried large request must be sent again.
std::vector<char> crash_first_big(std::string counter_file, int crashes, std::vector<char> v) {
  crash_first(std::move(counter_file), crashes, kAbort);
  return v;
}
WM_TASK(crash_first_big);


// ---- shared arrays (wm::SharedArray) ----

// Makes a 64 MiB shared result, writes half of it, and kills its own process.
wm::SharedBytes die_while_writing_shared(int) {
  auto a = wm::make_shared_array<std::byte>(std::size_t(64) << 20);
  std::memset(a.data(), 1, a.size() / 2);
  raise(SIGKILL);
  return a;
}
WM_TASK(die_while_writing_shared);

// A result whose bytes name a region the way a broken or hostile worker could: the master must
// refuse each with a protocol error, and read nothing outside a region.
struct Forged {
  int mode = 0;
  wm::SharedArray<std::uint32_t> array;
  template <class Archive>
  void save(Archive& ar) const {
    const auto good = wm::make_shared_array<std::uint32_t>(std::size_t(1) << 16, 7u);  // 256 KiB, pooled
    struct stat st {};
    int fd = -1;
    // The region's descriptor: the lowest one at or above 10 whose file is a sealed wm region.
    for (int i = 10; i < 4096 && fd < 0; ++i) {
      char link[256] = {};
      const std::string path = "/proc/self/fd/" + std::to_string(i);
      if (readlink(path.c_str(), link, sizeof link - 1) > 0 && std::strstr(link, "wm-shared-array") != nullptr) fd = i;
    }
    if (fd >= 0) fstat(fd, &st);
    std::int64_t pid = getpid();
    std::uint64_t ino = st.st_ino, offset = 4096, bytes = std::uint64_t(1) << 18;
    switch (mode) {
      case 0: pid = getppid(); break;                    // another process's memory (the master's)
      case 1: fd = 1; ino = 1; break;                    // a descriptor that is no region
      case 2: bytes = std::uint64_t(1) << 40; break;     // past the region's end
      case 3: offset = 0; break;                         // the region's header
      case 4: ino += 1; break;                           // an inode the descriptor does not have
      case 5: offset = ~std::uint64_t(0) - 8; break;     // offset + size overflows
    }
    ar(std::uint8_t(1), pid, static_cast<std::int32_t>(fd), ino, offset, bytes);
    (void)good;
  }
  template <class Archive>
  void load(Archive& ar) {
    ar(array);
  }
};
Forged forge_reference(int mode) { return Forged{mode, {}}; }
WM_TASK(forge_reference);

// ---------------------------------------------------------------- helpers

namespace {

// Processes whose parent is `parent` (zombies included: an unreaped child is a leak too).
std::vector<pid_t> children_of(pid_t parent) {
  std::vector<pid_t> out;
  DIR* d = opendir("/proc");
  if (d == nullptr) return out;
  while (dirent* e = readdir(d)) {
    char* end = nullptr;
    long pid = std::strtol(e->d_name, &end, 10);
    if (*end != '\0' || pid <= 0) continue;
    std::ifstream f(std::string("/proc/") + e->d_name + "/stat");
    std::string line;
    if (!std::getline(f, line)) continue;
    auto close = line.rfind(')');
    if (close == std::string::npos) continue;
    std::istringstream rest(line.substr(close + 2));
    char state;
    long ppid;
    rest >> state >> ppid;
    if (ppid == parent) out.push_back(static_cast<pid_t>(pid));
  }
  closedir(d);
  return out;
}

// True while the process exists and is not a zombie.
bool running(pid_t pid) {
  std::ifstream f("/proc/" + std::to_string(pid) + "/stat");
  std::string line;
  if (!std::getline(f, line)) return false;
  auto close = line.rfind(')');
  return close != std::string::npos && close + 2 < line.size() && line[close + 2] != 'Z';
}

template <class Pred>
bool eventually(Pred pred, std::chrono::milliseconds limit) {
  const auto until = Clock::now() + limit;
  while (Clock::now() < until) {
    if (pred()) return true;
    std::this_thread::sleep_for(10ms);
  }
  return pred();
}

std::unique_ptr<wm::WorkManager> make_processes(int workers, std::map<std::string, std::string> options = {}) {
  std::vector<std::string> args = {"processes_test", "--work-manager", "processes", "--n-workers",
                                   std::to_string(workers)};
  for (auto& [k, v] : options) {
    args.push_back("--wm-processes-" + k);
    args.push_back(v);
  }
  std::vector<const char*> argv;
  for (auto& a : args) argv.push_back(a.c_str());
  auto wm = wm::make_work_manager(static_cast<int>(argv.size()), argv.data());
  EXPECT_EQ(wm->name(), "processes");
  return wm;
}

using wmtest::fails_with;
using wmtest::failure_of;

// Starts this test program as a helper (see helper_main) with its own process group; its
// standard output is a pipe whose read end is returned.
pid_t spawn_helper(const std::string& role, int& out_fd, const std::string& extra_env = "") {
  int p[2];
  if (pipe2(p, O_CLOEXEC) != 0) return -1;
  posix_spawn_file_actions_t fa;
  posix_spawn_file_actions_init(&fa);
  posix_spawn_file_actions_adddup2(&fa, p[1], 1);
  posix_spawnattr_t attr;
  posix_spawnattr_init(&attr);
  posix_spawnattr_setpgroup(&attr, 0);
  posix_spawnattr_setflags(&attr, POSIX_SPAWN_SETPGROUP);
  std::vector<std::string> env;
  for (char** e = environ; *e; ++e) env.emplace_back(*e);
  env.push_back("WM_PT_HELPER=" + role);
  if (!extra_env.empty()) env.push_back(extra_env);
  std::vector<char*> envp;
  for (auto& e : env) envp.push_back(e.data());
  envp.push_back(nullptr);
  std::string self = "/proc/self/exe";
  char* argv[] = {self.data(), nullptr};
  pid_t pid = -1;
  int rc = posix_spawn(&pid, "/proc/self/exe", &fa, &attr, argv, envp.data());
  posix_spawn_file_actions_destroy(&fa);
  posix_spawnattr_destroy(&attr);
  close(p[1]);
  if (rc != 0) {
    close(p[0]);
    return -1;
  }
  out_fd = p[0];
  return pid;
}

// Reads one line from fd within the limit ("" on timeout or end of file).
std::string read_line(int fd, std::chrono::milliseconds limit) {
  std::string line;
  const auto until = Clock::now() + limit;
  while (Clock::now() < until) {
    pollfd pfd{fd, POLLIN, 0};
    int left = static_cast<int>(std::chrono::duration_cast<std::chrono::milliseconds>(until - Clock::now()).count());
    if (poll(&pfd, 1, std::max(left, 1)) <= 0) continue;
    char c;
    ssize_t r = read(fd, &c, 1);
    if (r <= 0) break;
    if (c == '\n') return line;
    line += c;
  }
  return line;
}

// Waits for a child within the limit; returns its wait status or -1.
int wait_child(pid_t pid, std::chrono::milliseconds limit) {
  int status = 0;
  const auto until = Clock::now() + limit;
  for (;;) {
    pid_t r = waitpid(pid, &status, WNOHANG);
    if (r == pid) return status;
    if (Clock::now() >= until) return -1;
    std::this_thread::sleep_for(10ms);
  }
}

// This process's mappings of shared-array regions (lines of /proc/self/maps).
std::size_t region_mappings() {
  std::ifstream maps("/proc/self/maps");
  std::size_t n = 0;
  for (std::string line; std::getline(maps, line);) n += line.find("wm-shared-array") != std::string::npos ? 1 : 0;
  return n;
}
std::set<std::string> dev_shm() {
  std::set<std::string> out;
  if (DIR* d = opendir("/dev/shm")) {
    while (dirent* e = readdir(d)) out.insert(e->d_name);
    closedir(d);
  }
  return out;
}

class Processes : public ::testing::Test {
 protected:
  void SetUp() override { before_ = children_of(getpid()).size(); }
  void TearDown() override {
    // Every work manager of the test is gone: no worker (nor zombie) may be left.
    EXPECT_TRUE(eventually([&] { return children_of(getpid()).size() == before_; }, 5000ms))
        << "processes left behind: " << children_of(getpid()).size() - before_;
  }
  std::size_t before_ = 0;
};

}  // namespace

// ---------------------------------------------------------------- basics

TEST_F(Processes, RunsTasksAndBatches) {
  auto wm = make_processes(2);
  EXPECT_EQ(wm->n_workers(), 2u);
  EXPECT_FALSE(wm->runs_in_process());
  EXPECT_EQ(wm->submit(square, 7).get_result(), 49);
  std::vector<wm::TaskSpec<std::uint64_t>> specs;
  for (std::uint64_t i = 0; i < 20000; ++i) specs.push_back(wm::task(add_one, i));
  std::uint64_t sum = 0;
  for (const auto& f : wm->as_completed(wm->submit_many(std::move(specs)))) sum += f.get_result();
  EXPECT_EQ(sum, 20000ull * 19999 / 2 + 20000);
}

TEST_F(Processes, WorkerStartsAreCountedAndReaped) {
  {
    auto wm = make_processes(3);
    wm->startup();
    EXPECT_EQ(children_of(getpid()).size(), before_ + 3);
  }
  EXPECT_EQ(children_of(getpid()).size(), before_);  // shutdown reaped them all
}

TEST_F(Processes, UnregisteredCallableIsRefusedAtSubmit) {
  auto wm = make_processes(1);
  EXPECT_THROW(wm->submit([](int x) { return x; }, 1), wm::TaskNotRegisteredError);
  EXPECT_EQ(wm->submit(square, 3).get_result(), 9);
}

TEST_F(Processes, ProcessIndexCoversAllWorkersAndSeedsDiffer) {
  const int n = 3;
  auto wm = make_processes(n);
  std::vector<wm::TaskSpec<WhereInfo>> specs;
  for (int i = 0; i < 12 * n; ++i) specs.push_back(wm::task(where_am_i, 40));
  std::set<int> indices;
  std::map<int, std::set<std::string>> seeds;
  std::set<std::string> all_seeds;
  for (const auto& f : wm->submit_many(std::move(specs))) {
    WhereInfo w = f.get_result();
    indices.insert(w.index);
    seeds[w.index].insert(w.seed);
    all_seeds.insert(w.seed);
  }
  EXPECT_EQ(indices, (std::set<int>{0, 1, 2}));
  for (auto& [i, s] : seeds) EXPECT_EQ(s.size(), 1u) << "worker " << i << " changed its seed";
  EXPECT_EQ(all_seeds.size(), static_cast<std::size_t>(n)) << "two workers got the same seed";
  for (const auto& s : all_seeds) EXPECT_FALSE(s.empty());
}

std::vector<char> patterned(std::size_t size, int seed = 7) {
  std::vector<char> v(size);
  for (std::size_t i = 0; i < size; ++i) v[i] = static_cast<char>(i * 131 + static_cast<std::size_t>(seed));
  return v;
}

// Sizes around the socket's large-frame limit (256 KiB) and the shared-memory limit (1 MiB), with
// shared memory on (the default) and off.
TEST_F(Processes, LargeArgumentsAndResultsRoundTrip) {
  for (const char* shm : {"true", "false"}) {
    SCOPED_TRACE(std::string("shared-memory ") + shm);
    auto wm = make_processes(2, {{"shared-memory", shm}});
    for (std::size_t size : {std::size_t(0), std::size_t(1), std::size_t(255 << 10), std::size_t(256 << 10),
                             std::size_t(300 << 10), std::size_t(1 << 20) - 9, std::size_t(1 << 20),
                             std::size_t(5 << 20), std::size_t(64 << 20), std::size_t(3 << 20)}) {
      const std::vector<char> v = patterned(size);
      auto f = wm->submit(echo_bytes, v);
      ASSERT_TRUE(f.wait_for(60s));
      EXPECT_TRUE(f.get_result() == v) << "size " << size;
    }
    // Several large ones at once, interleaved with small ones: one request at a time uses a
    // worker's shared region, the others go through its ring (in pieces: it holds 1 MiB).
    std::vector<wm::Future<std::vector<char>>> big;
    std::vector<wm::Future<int>> small;
    for (int i = 0; i < 6; ++i) {
      big.push_back(wm->submit(echo_bytes, patterned(std::size_t(3) << 20, i)));
      small.push_back(wm->submit(square, i));
    }
    for (int i = 0; i < 6; ++i) {
      EXPECT_TRUE(big[i].get_result() == patterned(std::size_t(3) << 20, i)) << i;
      EXPECT_EQ(small[i].get_result(), i * i);
    }
  }
}

TEST_F(Processes, ALargeTaskLostToAWorkerDeathIsSentAgain) {
  char dir[] = "/tmp/wm_processes_test_XXXXXX";
  ASSERT_NE(mkdtemp(dir), nullptr);
  const std::string counter = std::string(dir) + "/runs";
  {
    auto wm = make_processes(1, {{"retries", "1"}});
    const std::vector<char> v = patterned(std::size_t(6) << 20);
    auto f = wm->submit(crash_first_big, counter, 1, v);
    ASSERT_TRUE(f.wait_for(30s));
    EXPECT_TRUE(f.get_result() == v) << failure_of(f);
    std::ifstream in(counter);
    int runs = 0;
    in >> runs;
    EXPECT_EQ(runs, 2);  // it died once and ran again
    EXPECT_TRUE(wm->submit(echo_bytes, v).get_result() == v);  // the replacement serves large tasks too
  }
  std::remove(counter.c_str());
  rmdir(dir);
}

// Sizes of this process's shared regions with its workers (memfds named wm-processes-*).
std::vector<long long> shared_region_sizes() {
  std::vector<long long> sizes;
  DIR* d = opendir("/proc/self/fd");
  if (d == nullptr) return sizes;
  while (dirent* e = readdir(d)) {
    const std::string path = std::string("/proc/self/fd/") + e->d_name;
    char target[256] = {};
    const ssize_t n = readlink(path.c_str(), target, sizeof target - 1);
    if (n <= 0 || std::string(target, static_cast<std::size_t>(n)).find("memfd:wm-processes-") == std::string::npos)
      continue;
    struct stat st;
    if (stat(path.c_str(), &st) == 0) sizes.push_back(static_cast<long long>(st.st_size));
  }
  closedir(d);
  return sizes;
}

TEST_F(Processes, SharedRegionsAreKeptWithinTheBudgetAndGivenBackAboveIt) {
  const std::vector<char> v = patterned(std::size_t(8) << 20);
  auto total = [] {
    long long t = 0;
    for (long long s : shared_region_sizes()) t += s;
    return t;
  };
  {
    auto wm = make_processes(1);  // worker-keep-memory 256 MiB: the regions stay
    EXPECT_TRUE(wm->submit(echo_bytes, v).get_result() == v);
    EXPECT_GE(total(), 2 * 8ll << 20);
    std::this_thread::sleep_for(2500ms);
    EXPECT_GE(total(), 2 * 8ll << 20);
  }
  {
    auto wm = make_processes(1, {{"worker-keep-memory", "0"}});
    EXPECT_TRUE(wm->submit(echo_bytes, v).get_result() == v);
    EXPECT_GE(total(), 2 * 8ll << 20);
    EXPECT_TRUE(eventually([&] { return total() == 0; }, 6000ms)) << total();
    // Mapped afresh on both sides, they carry the next large task as before.
    const std::vector<char> w = patterned(std::size_t(9) << 20, 3);
    EXPECT_TRUE(wm->submit(echo_bytes, w).get_result() == w);
  }
  EXPECT_TRUE(shared_region_sizes().empty());  // closed with the work manager
}

TEST_F(Processes, ConcurrentSubmittersFromSeveralThreads) {
  auto wm = make_processes(2);
  std::atomic<int> wrong{0};
  std::vector<std::thread> threads;
  for (int t = 0; t < 4; ++t)
    threads.emplace_back([&, t] {
      std::vector<wm::Future<int>> fs;
      for (int i = 0; i < 2000; ++i) fs.push_back(wm->submit(square, t * 10000 + i));
      for (int i = 0; i < 2000; ++i)
        if (fs[i].get_result() != (t * 10000 + i) * (t * 10000 + i)) ++wrong;
    });
  for (auto& th : threads) th.join();
  EXPECT_EQ(wrong.load(), 0);
}

TEST_F(Processes, TaskLibrariesAreLoadedInWorkers) {
  wm::load_task_library(WM_TEST_TASK_LIBRARY);
  auto wm = make_processes(2);
  EXPECT_EQ(wm->submit(wm::task_by_name<int>("tasklib::triple", 5)).get_result(), 15);
}

TEST_F(Processes, FutureOutlivesWorkManager) {
  std::vector<wm::Future<int>> fs;
  {
    auto wm = make_processes(1);
    for (int i = 0; i < 20; ++i) fs.push_back(wm->submit(square, i));
    fs[0].wait();
  }
  // Each finished: with its result, or (not run before the shutdown) with ShutdownError.
  for (int i = 0; i < 20; ++i) {
    ASSERT_TRUE(fs[i].done());
    if (fs[i].failed())
      EXPECT_TRUE(fails_with<wm::ShutdownError>(fs[i])) << failure_of(fs[i]);
    else
      EXPECT_EQ(fs[i].get_result(), i * i);
  }
  EXPECT_FALSE(fs[0].failed());
}

// Done-callbacks run on the master's I/O thread: they may submit more work and may shut down.
TEST_F(Processes, CallbacksMaySubmitAndShutDown) {
  auto wm = make_processes(2);
  wm::WorkManager* w = wm.get();
  std::promise<wm::Future<int>> chained;
  auto first = wm->submit(square, 3);
  first.add_done_callback([&](const wm::WMFuture&) { chained.set_value(w->submit(square, 4)); });
  auto second = chained.get_future().get();
  ASSERT_TRUE(second.wait_for(10s));
  EXPECT_EQ(second.get_result(), 16);
  auto last = wm->submit(sleep_ms, 10);
  std::atomic<bool> called{false};
  last.add_done_callback([&](const wm::WMFuture&) {
    w->shutdown();  // returns at once on the I/O thread; the destructor waits for the rest
    called = true;
  });
  ASSERT_TRUE(last.wait_for(10s));
  EXPECT_TRUE(eventually([&] { return called.load(); }, 10000ms));
  EXPECT_THROW(wm->submit(square, 1), wm::ShutdownError);
  const auto t0 = Clock::now();
  wm.reset();
  EXPECT_LT(Clock::now() - t0, 10s);
}

// ---------------------------------------------------------------- bytes that break the protocol
// (The crash matrix of every remote backend is the test kit's: test_conformance runs it here.)

// Junk on a worker's socket, or an impossible position in its ring: its running task fails with a
// protocol error, the worker is replaced, and the work manager goes on.
class CorruptChannel : public Processes, public ::testing::WithParamInterface<int> {};

TEST_P(CorruptChannel, FailsTheRunningTaskWithAProtocolErrorAndThePoolKeepsWorking) {
  auto wm = make_processes(2);
  wm::WMFuture f = wm->submit(misbehaving_task, GetParam());
  std::vector<wm::Future<int>> others;
  for (int i = 0; i < 50; ++i) others.push_back(wm->submit(square, i));
  ASSERT_TRUE(f.wait_for(10s)) << "the future did not finish";
  EXPECT_TRUE(fails_with<wm::ProtocolError>(f)) << failure_of(f);
  for (auto& o : others) ASSERT_TRUE(o.wait_for(10s));  // its worker's other tasks may fail with it
  auto follow = wm->submit(square, 11);
  ASSERT_TRUE(follow.wait_for(10s));
  EXPECT_EQ(follow.get_result(), 121);
}

INSTANTIATE_TEST_SUITE_P(Processes, CorruptChannel, ::testing::Values(int(kCorrupt), int(kCorruptRing)),
                         [](const ::testing::TestParamInfo<int>& i) {
                           return std::string(i.param == kCorrupt ? "socket" : "ring");
                         });

// Argument encoding happens in the master, at submit: the submit itself fails, naming the task.
TEST_F(Processes, ArgumentEncodingFailureFailsSubmit) {
  auto wm = make_processes(1);
  try {
    wm->submit(take_save_throws, SaveThrows{});
    FAIL() << "submit should have thrown";
  } catch (const wm::TaskNotRegisteredError& e) {
    EXPECT_NE(std::string(e.what()).find("take_save_throws"), std::string::npos) << e.what();
    EXPECT_NE(std::string(e.what()).find("SaveThrows cannot be encoded"), std::string::npos) << e.what();
  }
  EXPECT_EQ(wm->submit(square, 5).get_result(), 25);
}

// ---------------------------------------------------------------- worker death

TEST_F(Processes, SigkillDuringTaskFailsOnlyThatTask) {
  auto wm = make_processes(1);
  const long pid = wm->submit(where_am_i, 0).get_result().pid;
  auto victim = wm->submit(sleep_ms, 30000);
  auto queued = wm->submit(square, 6);  // waits behind the victim on the only worker
  std::this_thread::sleep_for(200ms);   // let it start
  ASSERT_EQ(kill(static_cast<pid_t>(pid), SIGKILL), 0);
  ASSERT_TRUE(victim.wait_for(10s));
  const std::string what = failure_of(victim);
  EXPECT_TRUE(fails_with<wm::WorkerLostError>(victim)) << what;
  EXPECT_NE(what.find("sleep_ms"), std::string::npos) << what;
  EXPECT_NE(what.find("worker 0"), std::string::npos) << what;
  EXPECT_NE(what.find("pid " + std::to_string(pid)), std::string::npos) << what;
  EXPECT_NE(what.find("signal 9"), std::string::npos) << what;
  // The record names the worker too, not only the message.
  const auto info = victim.error_info();
  ASSERT_TRUE(info.has_value());
  EXPECT_EQ(info->kind, wm::FailureKind::worker_lost);
  EXPECT_EQ(info->worker_index, 0);
  EXPECT_EQ(info->pid, pid);
  EXPECT_EQ(info->attempts, 1u);
  ASSERT_TRUE(queued.wait_for(10s));
  EXPECT_EQ(queued.get_result(), 36) << failure_of(queued);
  WhereInfo after = wm->submit(where_am_i, 0).get_result();
  EXPECT_EQ(after.index, 0);  // the replacement serves the same slot
  EXPECT_NE(after.pid, pid);
}

TEST_F(Processes, DeathOfAnIdleWorkerIsReplaced) {
  auto wm = make_processes(2);
  wm->startup();
  auto kids = children_of(getpid());
  ASSERT_EQ(kids.size(), before_ + 2);
  // Kill one of the (idle) workers.
  pid_t victim = -1;
  for (pid_t k : kids)
    if (running(k)) victim = k;
  ASSERT_GT(victim, 0);
  ASSERT_EQ(kill(victim, SIGKILL), 0);
  ASSERT_TRUE(eventually(
      [&] {
        auto now = children_of(getpid());
        return now.size() == before_ + 2 && std::find(now.begin(), now.end(), victim) == now.end();
      },
      5000ms));
  std::set<int> indices;
  std::vector<wm::Future<WhereInfo>> fs;
  for (int i = 0; i < 20; ++i) fs.push_back(wm->submit(where_am_i, 30));
  for (auto& f : fs) indices.insert(f.get_result().index);
  EXPECT_EQ(indices, (std::set<int>{0, 1}));
}

TEST_F(Processes, RetriesRerunTasksLostToWorkerDeath) {
  char dir[] = "/tmp/wm_processes_test_XXXXXX";
  ASSERT_NE(mkdtemp(dir), nullptr);
  const std::string ok_file = std::string(dir) + "/ok", lost_file = std::string(dir) + "/lost",
                    throw_file = std::string(dir) + "/throw";
  {
    auto wm = make_processes(2, {{"retries", "2"}});
    // Crashes twice, succeeds on the third run.
    auto ok = wm->submit(crash_first, ok_file, 2, int(kAbort));
    ASSERT_TRUE(ok.wait_for(20s));
    EXPECT_EQ(ok.get_result(), 3) << failure_of(ok);
    // Crashes every time: three attempts, then it fails and says so.
    auto lost = wm->submit(crash_first, lost_file, 100, int(kExit));
    ASSERT_TRUE(lost.wait_for(20s));
    const std::string what = failure_of(lost);
    EXPECT_TRUE(fails_with<wm::WorkerLostError>(lost)) << what;
    EXPECT_NE(what.find("attempts made: 3"), std::string::npos) << what;
    EXPECT_EQ(lost.error_info()->attempts, 3u);
    // Exceptions are never retried.
    auto thrown = wm->submit(crash_first, throw_file, 100, int(kThrow));
    ASSERT_TRUE(thrown.wait_for(20s));
    EXPECT_TRUE(fails_with<wm::TaskError>(thrown)) << failure_of(thrown);
  }
  std::ifstream in(throw_file);
  int runs = 0;
  in >> runs;
  EXPECT_EQ(runs, 1);
  std::remove(ok_file.c_str());
  std::remove(lost_file.c_str());
  std::remove(throw_file.c_str());
  rmdir(dir);
}

TEST_F(Processes, TaskTimeoutKillsAndReplacesTheWorker) {
  // 2 s: far beyond a square on a loaded machine (and under sanitizers), far below the slow task.
  auto wm = make_processes(1, {{"task-timeout", "2"}});
  const auto t0 = Clock::now();
  auto slow = wm->submit(sleep_ms, 60000);
  auto behind = wm->submit(square, 4);  // sent to the same worker; it did not run, so it runs again
  ASSERT_TRUE(slow.wait_for(10s));
  EXPECT_TRUE(fails_with<wm::TaskTimeoutError>(slow)) << failure_of(slow);
  EXPECT_NE(failure_of(slow).find("timeout of 2 s"), std::string::npos) << failure_of(slow);
  EXPECT_LT(Clock::now() - t0, 10s);
  ASSERT_TRUE(behind.wait_for(10s));
  EXPECT_EQ(behind.get_result(), 16) << failure_of(behind);
  EXPECT_EQ(wm->submit(square, 9).get_result(), 81);
}

TEST_F(Processes, WorkersThatCannotStartFailStartupWithTheReason) {
  setenv("WM_PT_BROKEN_WORKER", "1", 1);
  auto wm = make_processes(2);
  const auto t0 = Clock::now();
  try {
    wm->startup();
    ADD_FAILURE() << "startup should have failed";
  } catch (const wm::PluginError& e) {
    EXPECT_NE(std::string(e.what()).find("exited with code 7"), std::string::npos) << e.what();
  }
  EXPECT_LT(Clock::now() - t0, 30s);
  // Once the cause is gone, the same work manager starts.
  unsetenv("WM_PT_BROKEN_WORKER");
  EXPECT_EQ(wm->submit(square, 8).get_result(), 64);
}

// ---------------------------------------------------------------- the registry handshake

TEST_F(Processes, WorkersThatKnowOtherTasksFailStartupWithAReport) {
  setenv("WM_PT_WORKER_EXTRA_LIBRARY", WM_TEST_TASK_LIBRARY, 1);
  auto wm = make_processes(2);
  try {
    wm->startup();
    ADD_FAILURE() << "startup should have failed";
  } catch (const wm::PluginError& e) {
    const std::string what = e.what();
    EXPECT_NE(what.find("does not have the tasks the master has"), std::string::npos) << what;
    EXPECT_NE(what.find("known only there: tasklib::shout, tasklib::triple"), std::string::npos) << what;
    EXPECT_NE(what.find("worker "), std::string::npos) << what;
  }
  // Once master and workers agree, the same work manager starts.
  unsetenv("WM_PT_WORKER_EXTRA_LIBRARY");
  EXPECT_EQ(wm->submit(square, 3).get_result(), 9);
}

// The same path, another build: a task library rebuilt on disk after the master loaded it.
TEST_F(Processes, ATaskLibraryOfAnotherBuildIsRefusedByName) {
  char dir[] = "/tmp/wm_processes_test_XXXXXX";
  ASSERT_NE(mkdtemp(dir), nullptr);
  const std::string lib = std::string(dir) + "/libtasks.so";
  std::string bytes;
  {
    std::ifstream in(WM_TEST_TASK_LIBRARY, std::ios::binary);
    bytes.assign(std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>());
    std::ofstream(lib, std::ios::binary) << bytes;
  }
  wm::load_task_library(lib);
  // Its GNU build-id note: namesz 4, descsz 20, type 3 (NT_GNU_BUILD_ID), "GNU\0", then the id.
  const char note[] = {4, 0, 0, 0, 20, 0, 0, 0, 3, 0, 0, 0, 'G', 'N', 'U', 0};
  const auto at = bytes.find(std::string(note, sizeof note));
  ASSERT_NE(at, std::string::npos) << "the test library has no build id";
  bytes[at + sizeof note] ^= 0x5a;
  std::ofstream(lib + ".new", std::ios::binary) << bytes;
  ASSERT_EQ(std::rename((lib + ".new").c_str(), lib.c_str()), 0);  // the master keeps the old one mapped
  {
    auto wm = make_processes(1);
    try {
      wm->startup();
      ADD_FAILURE() << "startup should have failed";
    } catch (const wm::PluginError& e) {
      const std::string what = e.what();
      EXPECT_NE(what.find("task libraries of another build: " + lib), std::string::npos) << what;
    }
  }
  std::remove(lib.c_str());
  rmdir(dir);
}

TEST_F(Processes, ATaskTheMasterLoadedLateIsUnknownToWorkersAndTheErrorSaysSo) {
  auto wm = make_processes(1);
  wm->startup();
  wm::load_task_library(WM_TEST_TASK_LIBRARY);  // too late for the workers (a warning says so)
  auto f = wm->submit(wm::task_by_name<int>("tasklib::triple", 5));
  ASSERT_TRUE(f.wait_for(10s));
  const std::string what = failure_of(f);
  EXPECT_TRUE(fails_with<wm::UnknownTaskError>(f)) << what;
  EXPECT_NE(what.find("registered in the master"), std::string::npos) << what;
  EXPECT_NE(what.find("but not in the worker that got it"), std::string::npos) << what;
  EXPECT_EQ(wm->submit(square, 4).get_result(), 16);
}

// ---------------------------------------------------------------- shutdown, master death, Ctrl-C

TEST_F(Processes, ShutdownWhileTasksRunFailsThemWithinTheDeadline) {
  auto wm = make_processes(2, {{"shutdown-timeout", "0.5"}});
  std::vector<wm::Future<void>> fs;
  for (int i = 0; i < 10; ++i) fs.push_back(wm->submit(sleep_ms, 30000));
  std::this_thread::sleep_for(200ms);
  const auto t0 = Clock::now();
  wm->shutdown();
  EXPECT_LT(Clock::now() - t0, 5s);
  for (auto& f : fs) {
    ASSERT_TRUE(f.done());
    EXPECT_TRUE(fails_with<wm::ShutdownError>(f)) << failure_of(f);
  }
  EXPECT_EQ(children_of(getpid()).size(), before_);
  EXPECT_THROW(wm->submit(square, 1), wm::ShutdownError);
}

TEST_F(Processes, ShutdownLetsShortRunningTasksFinish) {
  auto wm = make_processes(2);
  std::vector<wm::Future<void>> fs;
  for (int i = 0; i < 2; ++i) fs.push_back(wm->submit(sleep_ms, 300));
  std::this_thread::sleep_for(100ms);
  wm->shutdown();
  for (auto& f : fs) EXPECT_FALSE(f.failed()) << failure_of(f);
}

TEST_F(Processes, ShutdownFromAnotherThreadWhileWaiting) {
  auto wm = make_processes(2, {{"shutdown-timeout", "0.2"}});
  auto f = wm->submit(sleep_ms, 30000);
  std::thread t([&] {
    std::this_thread::sleep_for(200ms);
    wm->shutdown();
  });
  EXPECT_TRUE(f.wait_for(10s));
  t.join();
  EXPECT_TRUE(fails_with<wm::ShutdownError>(f)) << failure_of(f);
}

TEST_F(Processes, WorkersEndWhenTheMasterIsKilled) {
  int out = -1;
  pid_t helper = spawn_helper("master", out);
  ASSERT_GT(helper, 0);
  ASSERT_EQ(read_line(out, 30000ms), "ready");
  auto workers = children_of(helper);
  ASSERT_EQ(workers.size(), 2u);
  const auto shm_before = dev_shm();
  ASSERT_EQ(kill(helper, SIGKILL), 0);
  ASSERT_NE(wait_child(helper, 10000ms), -1);
  close(out);
  EXPECT_TRUE(eventually(
      [&] {
        for (pid_t w : workers)
          if (running(w)) return false;
        return true;
      },
      5000ms))
      << "a worker outlived its master";
  // Its shared arrays were memory files: nothing is left behind in /dev/shm.
  EXPECT_EQ(dev_shm(), shm_before);
}

TEST_F(Processes, CtrlCShutsDownAndChainsThePreviousHandler) {
  int out = -1;
  pid_t helper = spawn_helper("sigint", out);
  ASSERT_GT(helper, 0);
  ASSERT_EQ(read_line(out, 30000ms), "ready");
  auto workers = children_of(helper);
  ASSERT_EQ(workers.size(), 2u);
  // As a terminal does: SIGINT to the whole foreground process group.
  ASSERT_EQ(kill(-helper, SIGINT), 0);
  // The helper reports that its futures failed with ShutdownError, then dies by the SIGINT.
  // (It may die before it gets to print the line; it must not report another failure.)
  EXPECT_NE(read_line(out, 20000ms), "other");
  const int status = wait_child(helper, 20000ms);
  close(out);
  ASSERT_NE(status, -1) << "the host did not end after Ctrl-C";
  EXPECT_TRUE(WIFSIGNALED(status) && WTERMSIG(status) == SIGINT) << "wait status " << status;
  for (pid_t w : workers) EXPECT_FALSE(running(w)) << "worker " << w << " outlived Ctrl-C";
}


// ---------------------------------------------------------------- shared arrays


TEST_F(Processes, SharedArraysLiveInMemoryFilesNeverInDevShm) {
  const auto before = dev_shm();
  auto wm = make_processes(2);
  auto in = wm::make_shared_array<std::uint32_t>(std::size_t(4) << 20, 3u);
  std::vector<wm::Future<wmtest::Words>> fs;
  for (int i = 0; i < 8; ++i) fs.push_back(wm->submit(wmtest::sa_echo, in));
  for (auto& f : fs) EXPECT_EQ(f.get_result()[12345], 3u);
  EXPECT_GT(region_mappings(), 0u);
  // A worker's regions are memory files of its own (memfd), close-on-exec.
  bool worker_has_region = false;
  for (pid_t w : children_of(getpid()))
    if (DIR* d = opendir(("/proc/" + std::to_string(w) + "/fd").c_str())) {
      while (dirent* e = readdir(d)) {
        char link[256] = {};
        const std::string path = "/proc/" + std::to_string(w) + "/fd/" + e->d_name;
        if (readlink(path.c_str(), link, sizeof link - 1) > 0 && std::string(link).find("/memfd:wm-shared-array") == 0)
          worker_has_region = true;
      }
      closedir(d);
    }
  EXPECT_TRUE(worker_has_region);
  wm.reset();
  EXPECT_EQ(dev_shm(), before);
}

TEST_F(Processes, AWorkerKilledWhileWritingASharedResultFailsOnlyThatTask) {
  auto wm = make_processes(1);
  const std::size_t mapped = region_mappings();
  auto f = wm->submit(die_while_writing_shared, 0);
  EXPECT_TRUE(fails_with<wm::WorkerLostError>(f));
  // Its region went with it: the master never mapped it, and the next worker runs the next task.
  EXPECT_EQ(region_mappings(), mapped);
  auto in = wm::make_shared_array<std::uint32_t>(std::size_t(1) << 20);
  for (std::size_t i = 0; i < in.size(); ++i) in[i] = wmtest::pattern(i, 9);
  EXPECT_EQ(wm->submit(wmtest::sa_check, in, 9u).get_result(), 0u);
  auto e = wm->submit(wmtest::sa_echo, in).get_result();
  EXPECT_EQ(e.size(), in.size());
  EXPECT_TRUE(std::equal(e.begin(), e.end(), std::as_const(in).begin()));
}

TEST_F(Processes, AForgedRegionReferenceFailsTheTaskAndNothingElse) {
  auto wm = make_processes(1);
  for (int mode = 0; mode <= 5; ++mode) {
    SCOPED_TRACE("mode " + std::to_string(mode));
    auto f = wm->submit(forge_reference, mode);
    const std::string failure = failure_of(f);
    EXPECT_EQ(failure.rfind("ProtocolError: ", 0), 0u) << failure;
    EXPECT_NE(failure.find("shared-array reference"), std::string::npos) << failure;
    const char* why[] = {"not of the worker that sent it", "not the region it says", "reaches past its region",
                         "bad offset or size", "not the region it says", "bad offset or size"};
    EXPECT_NE(failure.find(why[mode]), std::string::npos) << failure;
  }
  auto in = wm::make_shared_array<std::uint32_t>(std::size_t(1) << 18, 4u);
  EXPECT_EQ(wm->submit(wmtest::sa_echo, in).get_result()[77], 4u);
}

TEST_F(Processes, TheSharedMemoryLimitFailsWhatWouldExceedItWithTheLimitAndTheSize) {
  const char* argv[] = {"processes_test", "--work-manager", "processes", "--n-workers", "1",
                        "--wm-shared-memory-limit", "32M"};
  auto wm = wm::make_work_manager(7, argv);
  // In the host:
  try {
    (void)wm::make_shared_array<char>(std::size_t(64) << 20);
    ADD_FAILURE() << "a 64 MiB array was made under a 32 MiB limit";
  } catch (const wm::SharedMemoryError& e) {
    EXPECT_NE(std::string(e.what()).find("32.00 MiB"), std::string::npos) << e.what();
    EXPECT_NE(std::string(e.what()).find("64.00 MiB"), std::string::npos) << e.what();
    EXPECT_NE(std::string(e.what()).find("--wm-shared-memory-limit"), std::string::npos) << e.what();
  }
  // At the limit: arrays held at once up to it, then reused once let go.
  std::vector<wm::SharedArray<char>> held;
  try {
    for (int i = 0; i < 64; ++i) held.push_back(wm::make_shared_array<char>(std::size_t(1) << 20));
    ADD_FAILURE() << "64 arrays of 1 MiB were held under a 32 MiB limit";
  } catch (const wm::SharedMemoryError&) {
  }
  EXPECT_GE(held.size(), 20u);
  const std::size_t n = held.size();
  held.clear();
  for (std::size_t i = 0; i < n; ++i) held.push_back(wm::make_shared_array<char>(std::size_t(1) << 20));
  held.clear();
  // In a task (its worker has the master's limit):
  auto f = wm->submit(wmtest::sa_make, std::uint64_t(16) << 20, 1u);  // 64 MiB of words
  const std::string failure = failure_of(f);
  EXPECT_EQ(failure.rfind("TaskError: ", 0), 0u) << failure;
  EXPECT_NE(failure.find("32.00 MiB"), std::string::npos) << failure;
  EXPECT_NE(failure.find("64.00 MiB"), std::string::npos) << failure;
  EXPECT_EQ(wm->submit(wmtest::sa_make, std::uint64_t(1) << 18, 1u).get_result().size(), std::size_t(1) << 18);
}

TEST_F(Processes, AMalformedSharedMemoryLimitIsRefusedWithTheValue) {
  const char* argv[] = {"processes_test", "--work-manager", "processes", "--wm-shared-memory-limit", "lots"};
  try {
    (void)wm::make_work_manager(5, argv);
    ADD_FAILURE() << "accepted";
  } catch (const wm::ConfigError& e) {
    EXPECT_NE(std::string(e.what()).find("'lots'"), std::string::npos) << e.what();
    EXPECT_NE(std::string(e.what()).find("--wm-shared-memory-limit"), std::string::npos) << e.what();
  }
}

// ---------------------------------------------------------------- helper processes

int helper_main(const std::string& role) {
  auto wm = make_processes(2, {{"shutdown-timeout", "1"}});
  wm->startup();
  if (role == "master") {
    // Holding a shared array of its own and one a worker made when it is killed.
    auto mine = wm::make_shared_array<std::uint32_t>(std::size_t(1) << 20, 1u);
    auto theirs = wm->submit(wmtest::sa_echo, mine).get_result();
    std::printf("ready\n");
    std::fflush(stdout);
    for (;;) pause();
  }
  if (role == "sigint") {
    wm->install_sigint_handler();
    std::vector<wm::Future<void>> fs;
    for (int i = 0; i < 4; ++i) fs.push_back(wm->submit(sleep_ms, 60000));
    std::printf("ready\n");
    std::fflush(stdout);
    bool all_shutdown = true;
    for (auto& f : fs) all_shutdown = all_shutdown && fails_with<wm::ShutdownError>(f);
    std::printf("%s\n", all_shutdown ? "shutdown" : "other");
    std::fflush(stdout);
    for (;;) pause();  // the chained SIGINT ends the process
  }
  return 2;
}

int main(int argc, char** argv) {
  // Test hook: workers that die before they are ready (as with a host that never serves).
  if (std::getenv("WM_PT_BROKEN_WORKER") != nullptr && std::getenv("WM_WORKER_BACKEND") != nullptr) _exit(7);
  // Test hook: workers that know more tasks than their master.
  if (const char* lib = std::getenv("WM_PT_WORKER_EXTRA_LIBRARY"); lib != nullptr && std::getenv("WM_WORKER_BACKEND") != nullptr)
    wm::load_task_library(lib);
  wm::serve_if_worker();
  if (const char* role = std::getenv("WM_PT_HELPER")) {
    unsetenv("WM_PT_HELPER");
    return helper_main(role);
  }
  ::testing::InitGoogleTest(&argc, argv);
  return RUN_ALL_TESTS();
}
