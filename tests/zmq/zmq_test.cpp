// SPDX-License-Identifier: MIT
// zmq_test.cpp: the zmq backend as its users meet it, on loopback: nodes that join, late or early;
// nodes killed (SIGKILL, SIGTERM) or stopped (SIGSTOP) while they run tasks; workers dying inside a
// node; a master killed or stopped; a node with another job's key; garbage on the master's port; 64 MiB
// payloads, also over a slow link (libzmq#2709); shutdown while tasks run; CURVE; bad options.
//
// This program is its own node (WMTEST_ZMQ_ROLE=node: it makes its work manager, which serves) and its
// own helper master (WMTEST_ZMQ_ROLE=master). Every process a test starts is bounded in time and ended;
// the program is the subreaper of its orphans, so the fixture sees every process that is left over.
#include "test_support.hpp"
#include "zmq_test_support.hpp"

#include <wm/shared_array.hpp>
#include <wm/task.hpp>
#include <wm/wm.hpp>

#include <gtest/gtest.h>

#include <arpa/inet.h>
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <future>
#include <random>
#include <set>
#include <sstream>
#include <stdexcept>
#include <thread>
#include <utility>

using namespace std::chrono_literals;
using Clock = std::chrono::steady_clock;
using zmqtest::eventually;

// ---------------------------------------------------------------- tasks (run in the nodes' workers)

int square(int x) { return x * x; }
WM_TASK(square);

struct Where {
  long pid = 0, ppid = 0;  // the worker, and its node
  std::string index;       // WM_PROCESS_INDEX
  template <class A>
  void serialize(A& a) {
    a(pid, ppid, index);
  }
};

Where here() {
  const char* i = std::getenv("WM_PROCESS_INDEX");
  return Where{static_cast<long>(getpid()), static_cast<long>(getppid()), i ? i : ""};
}

Where where_am_i(int sleep_ms) {
  std::this_thread::sleep_for(std::chrono::milliseconds(sleep_ms));
  return here();
}
WM_TASK(where_am_i);

// Writes "pid ppid" to path (atomically), then sleeps.
Where report_and_sleep(std::string path, int sleep_ms) {
  const std::string tmp = path + ".tmp";
  {
    std::ofstream out(tmp);
    out << getpid() << " " << getppid() << "\n";
  }
  std::rename(tmp.c_str(), path.c_str());
  std::this_thread::sleep_for(std::chrono::milliseconds(sleep_ms));
  return here();
}
WM_TASK(report_and_sleep);

// Appends the node's pid to path; the first run then sleeps long (to be killed), later ones do not.
int attempt(std::string path, int first_ms) {
  int runs = 0;
  {
    std::ifstream in(path);
    std::string line;
    while (std::getline(in, line)) ++runs;
  }
  {
    std::ofstream out(path, std::ios::app);
    out << getppid() << "\n";
  }
  if (runs == 0) std::this_thread::sleep_for(std::chrono::milliseconds(first_ms));
  return runs + 1;
}
WM_TASK(attempt);

std::vector<char> echo_bytes(std::vector<char> v) { return v; }
WM_TASK(echo_bytes);

int abort_now(int) { std::abort(); }
WM_TASK(abort_now);

// Writes bytes that are not a frame into the worker's channel to its node (the fd in WM_WORKER_ARG).
int garble(int) {
  int fd = -1;
  if (const char* a = std::getenv("WM_WORKER_ARG")) std::sscanf(a, "fd=%d", &fd);
  const char junk[] = "these bytes are not a frame header, not at all!!";
  if (fd >= 0) [[maybe_unused]] ssize_t r = write(fd, junk, sizeof junk);
  std::this_thread::sleep_for(50ms);
  return 1;
}
WM_TASK(garble);

int sleep_ms(int ms) {
  std::this_thread::sleep_for(std::chrono::milliseconds(ms));
  return ms;
}
WM_TASK(sleep_ms);

// Shared arrays through a node: the sum of an argument's words, and whether writing it threw (it
// was then read in place from the node's memory, read-only).
std::uint64_t words_sum(wm::SharedArray<std::uint32_t> a) {
  std::uint64_t s = 0;
  for (std::uint32_t x : std::as_const(a)) s += x;
  return s;
}
WM_TASK(words_sum);
int words_write(wm::SharedArray<std::uint32_t> a) {
  try {
    a[0] = 1;
    return 0;
  } catch (const std::logic_error&) {
    return 1;
  }
}
WM_TASK(words_write);

// ---------------------------------------------------------------- helpers

namespace {

using wmtest::fails_with;
using wmtest::failure_of;
using wmtest::within;

// "pid ppid" from a report file, once it is there.
bool read_report(const std::string& path, long& pid, long& ppid, std::chrono::milliseconds limit) {
  return eventually(
      [&] {
        std::ifstream in(path);
        return static_cast<bool>(in >> pid >> ppid);
      },
      limit);
}

std::string host_info_value(const std::string& path, const std::string& key) {
  std::istringstream in(zmqtest::read_file(path));
  std::string line;
  while (std::getline(in, line))
    if (line.rfind(key + " ", 0) == 0) return line.substr(key.size() + 1);
  return "";
}

// The process running this program (nodes and helper masters are this program too).
std::string self_exe() {
  char buf[4096];
  const ssize_t n = readlink("/proc/self/exe", buf, sizeof buf - 1);
  return n > 0 ? std::string(buf, static_cast<std::size_t>(n)) : std::string("/proc/self/exe");
}

std::unique_ptr<wm::WorkManager> make(std::vector<std::string> args) {
  args.insert(args.begin(), "zmq_test");
  std::vector<const char*> argv;
  for (auto& a : args) argv.push_back(a.c_str());
  return wm::make_work_manager(static_cast<int>(argv.size()), argv.data());
}

// Sets an environment variable for the life of the object.
class wmtest_env {
 public:
  wmtest_env(const char* name, const std::string& value) : name_(name) {
    if (const char* old = std::getenv(name)) old_ = old, had_ = true;
    setenv(name, value.c_str(), 1);
  }
  ~wmtest_env() { had_ ? setenv(name_.c_str(), old_.c_str(), 1) : unsetenv(name_.c_str()); }

 private:
  std::string name_, old_;
  bool had_ = false;
};


class Zmq : public testing::Test {
 protected:
  // Masters make their Unix sockets' directory in TMPDIR: the test's own, where the end looks.
  void SetUp() override { tmpdir_ = std::make_unique<wmtest_env>("TMPDIR", dir_.path()); }

  void TearDown() override {
    within(60s, "the master's destruction", [&] { masters_.clear(); });
    tmpdir_.reset();
    for (const auto& e : std::filesystem::directory_iterator(dir_.path()))
      if (e.path().filename().string().rfind("wm-zmq-", 0) == 0 && !killed_master_)
        ADD_FAILURE() << "a master left " << e.path() << " behind";
    // Every node ends once its master is gone (exit 0 when the master ended the job).
    for (Node& n : nodes_) {
      if (n.status == -1) n.status = zmqtest::wait_for_exit(n.pid, 20s);
      if (n.status == -1) {
        ADD_FAILURE() << "node " << n.pid << " did not end within 20 s of its master; its log:\n"
                      << zmqtest::read_file(n.log);
        zmqtest::kill_and_reap(n.pid);
      }
    }
    for (pid_t p : helpers_) zmqtest::kill_and_reap(p);
    // Nothing is left over: the nodes' workers ended with them (orphans would be ours now).
    const bool clean = eventually(
        [] {
          int status;
          while (waitpid(-1, &status, WNOHANG) > 0) {
          }
          return zmqtest::children_of(getpid()).empty();
        },
        10s);
    if (!clean)
      for (pid_t p : zmqtest::children_of(getpid())) {
        ADD_FAILURE() << "process " << p << " was left over";
        zmqtest::kill_and_reap(p);
      }
  }

  // A master on loopback with fast heartbeats (0.2 s, declared gone after 1 s); options: flag -> value
  // (--wm-zmq-... or --n-workers), replacing the defaults.
  wm::WorkManager& master(std::map<std::string, std::string> options = {}, const std::string& host_info = "") {
    std::map<std::string, std::string> o = {{"--wm-zmq-write-host-info", host_info.empty() ? hi_ : host_info},
                                            {"--wm-zmq-endpoint", "tcp://127.0.0.1:*"},
                                            {"--wm-zmq-heartbeat-interval", "0.2"},
                                            {"--wm-zmq-heartbeat-timeout", "1"}};
    for (auto& [k, v] : options) o[k] = v;
    std::vector<std::string> args = {"--work-manager", "zmq"};
    for (auto& [k, v] : o) {
      args.push_back(k);
      args.push_back(v);
    }
    masters_.push_back(make(args));
    return *masters_.back();
  }

  struct Node {
    pid_t pid = -1;
    std::string log;
    int status = -1;  // wait status once ended
  };

  // A node of this program that reads the host-info file (env overrides or removes settings).
  pid_t node(int workers, std::map<std::string, std::string> env = {}) {
    Node n;
    n.log = dir_.file("node-" + std::to_string(nodes_.size()) + ".log");
    std::map<std::string, std::string> e = {{"WMTEST_ZMQ_ROLE", "node"},          {"WM_WORK_MANAGER", "zmq"},
                                            {"WM_ZMQ_MODE", "node"},              {"WM_ZMQ_READ_HOST_INFO", hi_},
                                            {"WM_N_WORKERS", std::to_string(workers)}, {"WM_LOG_LEVEL", "info"},
                                            {"WM_ZMQ_STARTUP_TIMEOUT", "30"}};
    for (auto& [k, v] : env) e[k] = v;
    n.pid = zmqtest::spawn(self_exe(), e, n.log);
    EXPECT_GT(n.pid, 0);
    nodes_.push_back(n);
    return n.pid;
  }

  Node& node_of(pid_t pid) {
    for (Node& n : nodes_)
      if (n.pid == pid) return n;
    throw std::logic_error("not a node of this test");
  }

  // Waits for a node to end; its wait status (-1 if it did not within the limit).
  int node_exit(pid_t pid, std::chrono::milliseconds limit) {
    Node& n = node_of(pid);
    if (n.status == -1) n.status = zmqtest::wait_for_exit(pid, limit);
    return n.status;
  }

  std::string node_log(pid_t pid) { return zmqtest::read_file(node_of(pid).log); }

  // Two nodes of one worker each, and their master.
  wm::WorkManager& two_nodes_of_one_worker(std::map<std::string, std::string> options = {}) {
    node(1);
    node(1);
    options["--n-workers"] = "2";
    return master(options);
  }

  // A task that runs 30 s on one of the workers; its worker's and node's pids once it runs (0 if it
  // did not say within 20 s).
  wm::Future<Where> long_task(wm::WorkManager& wm, long& worker, long& node_pid) {
    const std::string report = dir_.file("report");
    auto f = wm.submit(report_and_sleep, report, 30000);
    if (!read_report(report, worker, node_pid, 20s)) worker = node_pid = 0;
    return f;
  }

  zmqtest::TempDir dir_;
  std::string hi_ = dir_.file("host-info");
  std::vector<std::unique_ptr<wm::WorkManager>> masters_;
  std::vector<Node> nodes_;
  std::vector<pid_t> helpers_;
  bool killed_master_ = false;  // a master killed by SIGKILL cannot remove its files
  std::unique_ptr<wmtest_env> tmpdir_;
};

// ---------------------------------------------------------------- joining and sharing the work

TEST_F(Zmq, NodesJoinAndShareTheWork) {
  const pid_t a = node(2), b = node(2);
  auto& wm = master({{"--n-workers", "4"}});
  EXPECT_EQ(wm.n_workers(), 4u);
  std::vector<wm::Future<Where>> fs;
  for (int i = 0; i < 40; ++i) fs.push_back(wm.submit(where_am_i, 20));
  std::set<std::string> indices;
  std::set<long> nodes;
  for (auto& f : fs) {
    const Where w = f.get_result();
    indices.insert(w.index);
    nodes.insert(w.ppid);
  }
  EXPECT_EQ(indices, (std::set<std::string>{"0", "1", "2", "3"})) << "each worker of the job has its own index";
  EXPECT_EQ(nodes, (std::set<long>{a, b}));
  const std::string ipc = host_info_value(hi_, "ipc").substr(6);
  ASSERT_FALSE(ipc.empty());
  masters_.clear();
  // The master ended the job: its nodes exit 0, its files are gone.
  for (pid_t n : {a, b}) {
    const int status = node_exit(n, 10s);
    EXPECT_TRUE(status != -1 && WIFEXITED(status) && WEXITSTATUS(status) == 0)
        << zmqtest::status_text(status) << "\n" << node_log(n);
  }
  EXPECT_NE(access(hi_.c_str(), F_OK), 0) << "the host-info file is removed at shutdown";
  EXPECT_NE(access(ipc.c_str(), F_OK), 0) << "the master's Unix socket is removed at shutdown";
}

// A large shared-array argument reaches a node's worker without a copy between them: the node
// receives the request into its pooled memory and the worker reads it there (so writing it throws);
// a small one travels inside the request and is the task's own.
TEST_F(Zmq, ALargeArrayArgumentIsReadInPlaceFromItsNodesMemory) {
  node(2);
  auto& wm = master({{"--n-workers", "2"}});
  auto big = wm::make_shared_array<std::uint32_t>(std::size_t(1) << 20);  // 4 MiB: a payload of its own
  std::uint64_t expected = 0;
  for (std::size_t i = 0; i < big.size(); ++i) expected += big[i] = static_cast<std::uint32_t>(i * 7);
  std::vector<wm::Future<std::uint64_t>> sums;
  for (int k = 0; k < 8; ++k) sums.push_back(wm.submit(words_sum, big));  // blocks and mappings reused
  for (auto& f : sums) EXPECT_EQ(f.get_result(), expected);
  EXPECT_EQ(wm.submit(words_write, big).get_result(), 1);
  EXPECT_EQ(big[0], 0u);
  EXPECT_EQ(wm.submit(words_write, wm::make_shared_array<std::uint32_t>(16, 3u)).get_result(), 0);
}

// Heterogeneous nodes: tasks that need what one node declares (--wm-resources, per node) all run
// there, none is lost, and the others run everywhere; a task no node has enough for waits until
// one that has joins (nodes come and go: it does not fail at submit here).
TEST_F(Zmq, TasksThatNeedWhatOneNodeHasRunOnlyThere) {
  const pid_t licensed = node(1, {{"WM_RESOURCES", "license=1"}});
  const pid_t plain = node(2);
  auto& wm = master({{"--n-workers", "3"}});
  ASSERT_TRUE(eventually([&] { return wm.n_workers() == 3; }, 20s)) << wm.n_workers();
  std::vector<wm::Future<Where>> needy, any;
  for (int i = 0; i < 30; ++i) {
    needy.push_back(wm.submit(wm::task(where_am_i, 2).needs({{"license", 1}})));
    any.push_back(wm.submit(where_am_i, 2));
  }
  std::set<long> any_nodes;
  for (auto& f : needy) {
    ASSERT_TRUE(f.wait_for(60s));
    EXPECT_EQ(f.get_result().ppid, licensed) << "a task that needs the license ran on a node without it";
  }
  for (auto& f : any) {
    ASSERT_TRUE(f.wait_for(60s));
    any_nodes.insert(f.get_result().ppid);
  }
  EXPECT_EQ(any_nodes.count(plain), 1u) << "tasks that need nothing ran on the plain node too";
  auto big = wm.submit(wm::task(where_am_i, 0).needs({{"license", 2}}));
  EXPECT_FALSE(big.wait_for(500ms)) << "no node has 2 licenses yet: it waits";
  const pid_t two = node(1, {{"WM_RESOURCES", "license=2"}});
  ASSERT_TRUE(big.wait_for(60s));
  EXPECT_EQ(big.get_result().ppid, two);
}

TEST_F(Zmq, HostInfoFileIsPrivateAndWrittenWhole) {
  master();
  struct stat st {};
  ASSERT_EQ(stat(hi_.c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 0777, 0600u);
  const std::string key = host_info_value(hi_, "key");
  EXPECT_EQ(key.size(), 64u);
  EXPECT_EQ(key.find_first_not_of("0123456789abcdef"), std::string::npos) << key;
  EXPECT_EQ(host_info_value(hi_, "tcp").rfind("tcp://127.0.0.1:", 0), 0u) << zmqtest::read_file(hi_);
  EXPECT_EQ(host_info_value(hi_, "ipc").rfind("ipc://", 0), 0u);
  EXPECT_EQ(host_info_value(hi_, "pid"), std::to_string(getpid()));
  // Written through a temporary file renamed into place: nothing else in the directory.
  int files = 0;
  for (const auto& e : std::filesystem::directory_iterator(dir_.path())) files += e.is_regular_file();
  EXPECT_EQ(files, 1);
}

TEST_F(Zmq, WorkerCountFollowsTheNodesConnectedNow) {
  auto& wm = master();
  EXPECT_EQ(wm.n_workers(), 0u);
  const pid_t a = node(2);
  EXPECT_TRUE(eventually([&] { return wm.n_workers() == 2; }, 20s)) << wm.n_workers();
  const pid_t b = node(1);
  EXPECT_TRUE(eventually([&] { return wm.n_workers() == 3; }, 20s)) << wm.n_workers();
  EXPECT_EQ(wm.submit(square, 3).get_result(), 9);
  // SIGTERM is honoured: the node and its worker end, and the master counts it out.
  kill(b, SIGTERM);
  const int status = node_exit(b, 10s);
  EXPECT_TRUE(status != -1 && WIFSIGNALED(status) && WTERMSIG(status) == SIGTERM) << zmqtest::status_text(status);
  EXPECT_TRUE(eventually([&] { return wm.n_workers() == 2; }, 10s)) << wm.n_workers();
  EXPECT_EQ(wm.submit(where_am_i, 0).get_result().ppid, a);
}

TEST_F(Zmq, NodeJoinsAfterWorkIsQueued) {
  auto& wm = master();
  std::vector<wm::Future<int>> fs;
  for (int i = 0; i < 20; ++i) fs.push_back(wm.submit(square, i));
  std::this_thread::sleep_for(300ms);
  for (auto& f : fs) EXPECT_FALSE(f.done()) << "no node: nothing can have run";
  node(2);
  for (int i = 0; i < 20; ++i) {
    ASSERT_TRUE(fs[i].wait_for(30s));
    EXPECT_EQ(fs[i].get_result(), i * i);
  }
}

TEST_F(Zmq, NodeStartedBeforeItsMasterWaitsForIt) {
  const pid_t a = node(2);
  std::this_thread::sleep_for(500ms);
  EXPECT_TRUE(zmqtest::running(a)) << node_log(a);
  auto& wm = master({{"--n-workers", "2"}});
  EXPECT_EQ(wm.n_workers(), 2u);
  EXPECT_EQ(wm.submit(square, 12).get_result(), 144);
  masters_.clear();
  const int status = node_exit(a, 10s);
  EXPECT_TRUE(status != -1 && WIFEXITED(status) && WEXITSTATUS(status) == 0) << zmqtest::status_text(status);
}

// A node waiting for a master that does not answer reads its host-info file again every second (a
// master started again writes a new one): what is wrong with the file is said once, not each time.
TEST_F(Zmq, NodeWaitingForItsMasterWarnsOnceAboutItsHostInfoFile) {
  master();
  const std::string copy = dir_.file("readable-host-info");
  ASSERT_EQ(std::system(("cp " + hi_ + " " + copy + " && chmod 0644 " + copy).c_str()), 0);
  masters_.clear();  // its endpoint answers no more
  const pid_t a = node(1, {{"WM_ZMQ_READ_HOST_INFO", copy}, {"WM_ZMQ_STARTUP_TIMEOUT", "3.5"}});
  const int status = node_exit(a, 20s);
  EXPECT_TRUE(status != -1 && WIFEXITED(status) && WEXITSTATUS(status) == 1) << zmqtest::status_text(status);
  const std::string log = node_log(a);
  const std::string warning = "can be read by other users";
  const auto first = log.find(warning);
  EXPECT_NE(first, std::string::npos) << log;
  EXPECT_EQ(log.find(warning, first + 1), std::string::npos) << "said more than once:\n" << log;
  EXPECT_NE(log.find("no master answered"), std::string::npos) << log;
}

TEST_F(Zmq, NodeWithoutAMasterGivesUpAfterItsStartupTimeout) {
  const pid_t a = node(1, {{"WM_ZMQ_STARTUP_TIMEOUT", "0.5"}});
  const int status = node_exit(a, 15s);
  EXPECT_TRUE(status != -1 && WIFEXITED(status) && WEXITSTATUS(status) == 1) << zmqtest::status_text(status);
  EXPECT_NE(node_log(a).find("no master"), std::string::npos) << node_log(a);
  EXPECT_NE(node_log(a).find("--wm-zmq-write-host-info"), std::string::npos) << node_log(a);
}

TEST_F(Zmq, MasterWithoutNodesFailsPendingTasksAfterItsStartupTimeout) {
  auto& wm = master({{"--wm-zmq-startup-timeout", "0.5"}});
  auto f = wm.submit(square, 2);
  ASSERT_TRUE(f.wait_for(20s));
  EXPECT_TRUE(fails_with<wm::BackendError>(f)) << failure_of(f);
  EXPECT_NE(failure_of(f).find("no worker joined"), std::string::npos) << failure_of(f);
  EXPECT_NE(failure_of(f).find("start nodes"), std::string::npos) << failure_of(f);
}

TEST_F(Zmq, NodesJoinWhileTasksRun) {
  const pid_t a = node(1);
  auto& wm = master({{"--n-workers", "1"}});
  std::vector<wm::Future<Where>> fs;
  for (int i = 0; i < 300; ++i) fs.push_back(wm.submit(where_am_i, 5));
  const pid_t b = node(1), c = node(1);
  std::set<long> ran_on;
  for (auto& f : fs) {
    ASSERT_TRUE(f.wait_for(60s));
    ran_on.insert(f.get_result().ppid);
  }
  EXPECT_TRUE(ran_on.count(a));
  EXPECT_TRUE(ran_on.count(b) || ran_on.count(c)) << "nodes that joined later got some of the queued tasks";
}

// ---------------------------------------------------------------- deaths and silence

TEST_F(Zmq, KilledNodeFailsItsTaskAndTheOthersGoOn) {
  long worker = 0, victim = 0;
  auto& wm = two_nodes_of_one_worker();
  auto f = long_task(wm, worker, victim);
  ASSERT_GT(victim, 0);
  kill(static_cast<pid_t>(victim), SIGKILL);
  ASSERT_TRUE(f.wait_for(20s)) << "the future of a task on a killed node must fail";
  EXPECT_TRUE(fails_with<wm::WorkerLostError>(f)) << failure_of(f);
  const std::string why = failure_of(f);
  char host[256] = {};
  gethostname(host, sizeof host - 1);
  EXPECT_NE(why.find("node '" + std::string(host) + "' (pid " + std::to_string(victim) + ")"), std::string::npos)
      << why;
  EXPECT_NE(why.find("report_and_sleep"), std::string::npos) << why;
  EXPECT_TRUE(eventually([&] { return !zmqtest::running(static_cast<pid_t>(worker)); }, 10s))
      << "the killed node's worker ended with it";
  // The other node goes on.
  for (int i = 0; i < 10; ++i) {
    auto g = wm.submit(where_am_i, 0);
    ASSERT_TRUE(g.wait_for(20s));
    EXPECT_NE(g.get_result().ppid, victim);
  }
  EXPECT_TRUE(eventually([&] { return wm.n_workers() == 1; }, 10s)) << wm.n_workers();
  node_exit(static_cast<pid_t>(victim), 10s);
}

TEST_F(Zmq, TaskOfAKilledNodeRunsAgainWithRetries) {
  auto& wm = two_nodes_of_one_worker({{"--wm-zmq-retries", "1"}});
  const std::string runs = dir_.file("runs");
  auto f = wm.submit(attempt, runs, 30000);
  long victim = 0;
  ASSERT_TRUE(eventually(
      [&] {
        std::ifstream in(runs);
        return static_cast<bool>(in >> victim);
      },
      20s));
  kill(static_cast<pid_t>(victim), SIGKILL);
  ASSERT_TRUE(f.wait_for(30s));
  EXPECT_EQ(f.get_result(), 2) << "run again on the other node";
  node_exit(static_cast<pid_t>(victim), 10s);
}

TEST_F(Zmq, StoppedNodeIsDeclaredSilentAndLeavesWhenContinued) {
  long worker = 0, victim = 0;
  auto& wm = two_nodes_of_one_worker();
  auto f = long_task(wm, worker, victim);
  ASSERT_GT(victim, 0);
  const auto stopped = std::chrono::steady_clock::now();
  kill(static_cast<pid_t>(victim), SIGSTOP);  // silence, not death: its connections stay open
  ASSERT_TRUE(f.wait_for(20s)) << "a silent node's task must fail after the heartbeat timeout";
  // The README's bound is interval + timeout + 0.25 s (1.45 s here); the time is recorded, not
  // asserted (machines here are shared: bench/NOTES.md has the measured spread).
  RecordProperty("silence_detected_ms",
                 static_cast<int>(std::chrono::duration_cast<std::chrono::milliseconds>(
                                      std::chrono::steady_clock::now() - stopped)
                                      .count()));
  EXPECT_TRUE(fails_with<wm::WorkerLostError>(f)) << failure_of(f);
  EXPECT_NE(failure_of(f).find("went silent"), std::string::npos) << failure_of(f);
  EXPECT_NE(failure_of(f).find("pid " + std::to_string(victim)), std::string::npos) << failure_of(f);
  EXPECT_EQ(wm.submit(square, 5).get_result(), 25) << "the other node goes on";
  // Continued, it learns it was given up: it ends, and its worker with it.
  kill(static_cast<pid_t>(victim), SIGCONT);
  const int status = node_exit(static_cast<pid_t>(victim), 15s);
  EXPECT_TRUE(status != -1 && WIFEXITED(status) && WEXITSTATUS(status) != 0) << zmqtest::status_text(status);
  EXPECT_TRUE(eventually([&] { return !zmqtest::running(static_cast<pid_t>(worker)); }, 10s));
}

TEST_F(Zmq, WorkerDyingInsideANodeIsReplaced) {
  const pid_t a = node(2);
  auto& wm = master({{"--n-workers", "2"}});
  auto f = wm.submit(abort_now, 0);
  ASSERT_TRUE(f.wait_for(20s));
  EXPECT_TRUE(fails_with<wm::WorkerLostError>(f)) << failure_of(f);
  EXPECT_NE(failure_of(f).find("abort_now"), std::string::npos) << failure_of(f);
  EXPECT_NE(failure_of(f).find("node '"), std::string::npos) << failure_of(f);
  EXPECT_NE(failure_of(f).find("(pid " + std::to_string(a) + ")"), std::string::npos) << failure_of(f);
  // The node started a new worker in its place.
  EXPECT_TRUE(eventually([&] { return wm.n_workers() == 2; }, 10s));
  std::set<long> pids;
  std::vector<wm::Future<Where>> fs;
  for (int i = 0; i < 20; ++i) fs.push_back(wm.submit(where_am_i, 20));
  for (auto& g : fs) pids.insert(g.get_result().pid);
  EXPECT_EQ(pids.size(), 2u);
}

TEST_F(Zmq, BytesThatAreNotFramesFailOnlyTheirTask) {
  node(2);
  auto& wm = master({{"--n-workers", "2"}});
  auto bad = wm.submit(garble, 0);
  std::vector<wm::Future<int>> good;
  for (int i = 0; i < 20; ++i) good.push_back(wm.submit(sleep_ms, 10));
  ASSERT_TRUE(bad.wait_for(20s));
  EXPECT_TRUE(fails_with<wm::ProtocolError>(bad)) << failure_of(bad);
  for (auto& g : good) EXPECT_EQ(g.get_result(), 10);
  EXPECT_TRUE(eventually([&] { return wm.n_workers() == 2; }, 10s));
}

// A helper master in its own process (see helper_master), with a node of 2 workers running tasks.
pid_t start_helper_master(const std::string& dir, const std::string& host_info) {
  return zmqtest::spawn(self_exe(),
                        {{"WMTEST_ZMQ_ROLE", "master"},
                         {"WMTEST_ZMQ_DIR", dir},
                         {"WM_WORK_MANAGER", "zmq"},
                         {"WM_ZMQ_WRITE_HOST_INFO", host_info},
                         {"WM_ZMQ_ENDPOINT", "tcp://127.0.0.1:*"},
                         {"WM_ZMQ_HEARTBEAT_INTERVAL", "0.2"},
                         {"WM_ZMQ_HEARTBEAT_TIMEOUT", "1"},
                         {"WM_N_WORKERS", "2"},
                         {"TMPDIR", dir}},
                        dir + "/master.log");
}

TEST_F(Zmq, KilledMasterTakesItsNodesWithIt) {
  const pid_t m = start_helper_master(dir_.path(), hi_);
  helpers_.push_back(m);
  const pid_t a = node(2);
  ASSERT_TRUE(eventually([&] { return access(dir_.file("ready").c_str(), F_OK) == 0; }, 30s))
      << zmqtest::read_file(dir_.file("master.log"));
  long w1 = 0, p1 = 0;
  ASSERT_TRUE(read_report(dir_.file("report-0"), w1, p1, 10s));
  kill(m, SIGKILL);
  killed_master_ = true;
  const int status = node_exit(a, 10s);  // well within: the closed connection is seen at once
  EXPECT_TRUE(status != -1 && WIFEXITED(status) && WEXITSTATUS(status) != 0) << zmqtest::status_text(status);
  EXPECT_NE(node_log(a).find("closed"), std::string::npos) << node_log(a);
  EXPECT_TRUE(eventually([&] { return !zmqtest::running(static_cast<pid_t>(w1)); }, 10s)) << "its worker ended too";
}

TEST_F(Zmq, StoppedMasterIsLeftByItsNodesAfterTheHeartbeatTimeout) {
  const pid_t m = start_helper_master(dir_.path(), hi_);
  helpers_.push_back(m);
  const pid_t a = node(2);
  ASSERT_TRUE(eventually([&] { return access(dir_.file("ready").c_str(), F_OK) == 0; }, 30s))
      << zmqtest::read_file(dir_.file("master.log"));
  kill(m, SIGSTOP);
  killed_master_ = true;
  const int status = node_exit(a, 15s);
  EXPECT_TRUE(status != -1 && WIFEXITED(status) && WEXITSTATUS(status) != 0) << zmqtest::status_text(status);
  EXPECT_NE(node_log(a).find("went silent"), std::string::npos) << node_log(a);
  kill(m, SIGKILL);
}

// ---------------------------------------------------------------- who gets in

TEST_F(Zmq, NodeOfAnotherJobIsRefused) {
  auto& first = master();
  const std::string other_info = dir_.file("other-host-info");
  auto& second = master({}, other_info);
  // A node with the second master's key, pointed at the first master.
  testing::internal::CaptureStderr();
  const pid_t stranger = node(1, {{"WM_ZMQ_READ_HOST_INFO", zmqtest::kUnset},
                                  {"WM_ZMQ_ENDPOINT", host_info_value(hi_, "tcp")},
                                  {"WM_ZMQ_KEY", host_info_value(other_info, "key")},
                                  {"WM_ZMQ_STARTUP_TIMEOUT", "2"}});
  const int status = node_exit(stranger, 20s);
  const std::string master_log = testing::internal::GetCapturedStderr();
  EXPECT_TRUE(status != -1 && WIFEXITED(status) && WEXITSTATUS(status) == 1) << zmqtest::status_text(status);
  EXPECT_NE(node_log(stranger).find("refused this node's job key"), std::string::npos) << node_log(stranger);
  EXPECT_NE(master_log.find("refused a connection"), std::string::npos) << master_log;
  EXPECT_EQ(first.n_workers(), 0u);
  EXPECT_EQ(second.n_workers(), 0u);
  // Its own node gets in.
  node(1);
  EXPECT_EQ(first.submit(square, 7).get_result(), 49);
}

// Connects to 127.0.0.1:port and writes bytes; false if it cannot connect.
bool send_raw(unsigned port, const std::string& bytes) {
  const int s = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_port = htons(static_cast<std::uint16_t>(port));
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  const bool ok = connect(s, reinterpret_cast<sockaddr*>(&a), sizeof a) == 0;
  if (ok) [[maybe_unused]] ssize_t w = send(s, bytes.data(), bytes.size(), MSG_NOSIGNAL);
  std::this_thread::sleep_for(20ms);
  close(s);
  return ok;
}

TEST_F(Zmq, GarbageOnTheMastersPortIsRefused) {
  auto& wm = master();
  const std::string tcp = host_info_value(hi_, "tcp");
  const unsigned port = static_cast<unsigned>(std::stoul(tcp.substr(tcp.rfind(':') + 1)));
  std::mt19937 rng(42);
  std::string garbage(64 << 10, '\0');
  for (char& c : garbage) c = static_cast<char>(rng());
  // A ZeroMQ greeting that is almost right, then nonsense; and one that announces a huge frame.
  std::string greeting("\xff\0\0\0\0\0\0\0\x01\x7f\x03\x01NULL", 16);
  greeting.resize(64, '\0');
  for (const std::string& bytes : {garbage, greeting + garbage, std::string("\x01\x02\xff\xff\xff\xff", 6)})
    EXPECT_TRUE(send_raw(port, bytes));
  node(1);
  EXPECT_EQ(wm.submit(square, 9).get_result(), 81) << "the master serves its node as before";
  EXPECT_EQ(wm.n_workers(), 1u);
}

TEST_F(Zmq, CurveEncryptsAndRefusesANodeWithoutIt) {
  node(1);  // it follows the host-info file, which says CURVE (and joins over IPC)
  auto& wm = master({{"--wm-zmq-curve", "1"}, {"--n-workers", "1"}});
  EXPECT_EQ(host_info_value(hi_, "curve"), "1");
  // One more over TCP, where large payloads travel in encrypted chunks.
  node(1, {{"WM_ZMQ_READ_HOST_INFO", zmqtest::kUnset},
           {"WM_ZMQ_ENDPOINT", host_info_value(hi_, "tcp")},
           {"WM_ZMQ_KEY", host_info_value(hi_, "key")},
           {"WM_ZMQ_CURVE", "1"}});
  ASSERT_TRUE(eventually([&] { return wm.n_workers() == 2; }, 20s));
  EXPECT_EQ(wm.submit(square, 11).get_result(), 121);
  std::vector<char> big(3 << 20);
  for (std::size_t i = 0; i < big.size(); ++i) big[i] = static_cast<char>(i * 7);
  std::vector<wm::Future<std::vector<char>>> echoes;
  for (int i = 0; i < 4; ++i) echoes.push_back(wm.submit(echo_bytes, big));
  for (auto& f : echoes) EXPECT_TRUE(f.get_result() == big);
  const pid_t plain = node(1, {{"WM_ZMQ_READ_HOST_INFO", zmqtest::kUnset},
                               {"WM_ZMQ_ENDPOINT", host_info_value(hi_, "tcp")},
                               {"WM_ZMQ_KEY", host_info_value(hi_, "key")},
                               {"WM_ZMQ_STARTUP_TIMEOUT", "2"}});
  const int status = node_exit(plain, 20s);
  EXPECT_TRUE(status != -1 && WIFEXITED(status) && WEXITSTATUS(status) == 1) << zmqtest::status_text(status);
  EXPECT_NE(node_log(plain).find("does not speak this protocol"), std::string::npos) << node_log(plain);
  EXPECT_EQ(wm.n_workers(), 2u);
}

// ---------------------------------------------------------------- large payloads

std::vector<char> pattern(std::size_t n, int seed) {
  std::vector<char> v(n);
  for (std::size_t i = 0; i < n; ++i) v[i] = static_cast<char>((i * 131 + seed) % 251);
  return v;
}

TEST_F(Zmq, LargePayloadsOf64MiB) {
  // One node on this host (IPC: large payloads through shared memory, one at a time, the others in
  // chunks), one over TCP (chunks).
  node(2);
  auto& wm = master({{"--n-workers", "2"}});
  node(1, {{"WM_ZMQ_READ_HOST_INFO", zmqtest::kUnset},
           {"WM_ZMQ_ENDPOINT", host_info_value(hi_, "tcp")},
           {"WM_ZMQ_KEY", host_info_value(hi_, "key")}});
  ASSERT_TRUE(eventually([&] { return wm.n_workers() == 3; }, 20s));
  const auto a = pattern(64 << 20, 1), b = pattern(64 << 20, 2);
  std::vector<wm::Future<std::vector<char>>> fs;
  for (int i = 0; i < 3; ++i) fs.push_back(wm.submit(echo_bytes, i % 2 ? b : a));  // one on each worker
  for (int i = 0; i < 3; ++i) EXPECT_TRUE(fs[i].get_result() == (i % 2 ? b : a)) << i;
}

// A TCP relay that moves at most `rate` bytes per second each way: a slow link.
class SlowLink {
 public:
  SlowLink(unsigned target_port, double rate) : target_(target_port), rate_(rate) {
    listener_ = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    sockaddr_in a{};
    a.sin_family = AF_INET;
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    bind(listener_, reinterpret_cast<sockaddr*>(&a), sizeof a);
    listen(listener_, 4);
    socklen_t len = sizeof a;
    getsockname(listener_, reinterpret_cast<sockaddr*>(&a), &len);
    port_ = ntohs(a.sin_port);
    thread_ = std::thread([this] { run(); });
  }
  ~SlowLink() {
    stop_ = true;
    thread_.join();
    close(listener_);
  }
  unsigned port() const { return port_; }

 private:
  void run() {
    std::vector<std::thread> pumps;
    std::vector<int> fds;
    while (!stop_) {
      pollfd p{listener_, POLLIN, 0};
      if (poll(&p, 1, 50) <= 0) continue;
      const int in = accept4(listener_, nullptr, nullptr, SOCK_CLOEXEC);
      if (in < 0) continue;
      const int out = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
      sockaddr_in a{};
      a.sin_family = AF_INET;
      a.sin_port = htons(static_cast<std::uint16_t>(target_));
      a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
      if (connect(out, reinterpret_cast<sockaddr*>(&a), sizeof a) != 0) {
        close(in);
        close(out);
        continue;
      }
      fds.push_back(in);
      fds.push_back(out);
      pumps.emplace_back([this, in, out] { pump(in, out); });
      pumps.emplace_back([this, in, out] { pump(out, in); });
    }
    for (int fd : fds) shutdown(fd, SHUT_RDWR);
    for (auto& t : pumps) t.join();
    for (int fd : fds) close(fd);
  }
  void pump(int from, int to) {
    std::vector<char> buf(16 << 10);
    const auto per_chunk = std::chrono::duration<double>(double(buf.size()) / rate_);
    while (!stop_) {
      pollfd p{from, POLLIN, 0};
      if (poll(&p, 1, 50) <= 0) continue;
      const ssize_t r = recv(from, buf.data(), buf.size(), 0);
      if (r <= 0) return;
      for (ssize_t done = 0; done < r;) {
        const ssize_t w = send(to, buf.data() + done, static_cast<std::size_t>(r - done), MSG_NOSIGNAL);
        if (w <= 0) return;
        done += w;
      }
      std::this_thread::sleep_for(per_chunk);
    }
  }

  unsigned target_;
  double rate_;
  int listener_ = -1;
  unsigned port_ = 0;
  std::atomic<bool> stop_{false};
  std::thread thread_;
};

TEST_F(Zmq, LargePayloadOverASlowLinkDoesNotTripTheHeartbeat) {
  // libzmq#2709: a heartbeat queued behind a large message times the connection out. Heartbeats have
  // their own connection here: 4 MiB at 4 MB/s takes 1 s each way, the heartbeat timeout is 0.6 s.
  auto& wm = master({{"--wm-zmq-heartbeat-interval", "0.1"}, {"--wm-zmq-heartbeat-timeout", "0.6"}});
  const std::string tcp = host_info_value(hi_, "tcp");
  SlowLink link(static_cast<unsigned>(std::stoul(tcp.substr(tcp.rfind(':') + 1))), 4e6);
  const pid_t a = node(1, {{"WM_ZMQ_READ_HOST_INFO", zmqtest::kUnset},
                           {"WM_ZMQ_ENDPOINT", "tcp://127.0.0.1:" + std::to_string(link.port())},
                           {"WM_ZMQ_KEY", host_info_value(hi_, "key")}});
  ASSERT_TRUE(eventually([&] { return wm.n_workers() == 1; }, 20s));
  const auto big = pattern(4 << 20, 3);
  auto f = wm.submit(echo_bytes, big);
  ASSERT_TRUE(f.wait_for(60s));
  EXPECT_TRUE(f.get_result() == big) << failure_of(f);
  EXPECT_EQ(wm.n_workers(), 1u);
  EXPECT_EQ(node_log(a).find("went silent"), std::string::npos) << node_log(a);
  masters_.clear();
  node_exit(a, 10s);
}

// ---------------------------------------------------------------- shutdown

TEST_F(Zmq, ShutdownWhileTasksRunKeepsItsDeadline) {
  const pid_t a = node(2);
  auto& wm = master({{"--n-workers", "2"}, {"--wm-zmq-shutdown-timeout", "0.5"}});
  // One long task on each worker (the second is submitted once the first runs: both could otherwise
  // go to one worker's window), then some that wait behind them.
  std::vector<wm::Future<Where>> running;
  long w0 = 0, w1 = 0, n = 0;
  running.push_back(wm.submit(report_and_sleep, dir_.file("r0"), 20000));
  ASSERT_TRUE(read_report(dir_.file("r0"), w0, n, 20s));
  running.push_back(wm.submit(report_and_sleep, dir_.file("r1"), 20000));
  ASSERT_TRUE(read_report(dir_.file("r1"), w1, n, 20s));
  std::vector<wm::Future<int>> queued;
  for (int i = 0; i < 5; ++i) queued.push_back(wm.submit(square, i));
  const auto t0 = Clock::now();
  within(60s, "shutdown", [&] { masters_.clear(); });
  const double took = std::chrono::duration<double>(Clock::now() - t0).count();
  EXPECT_LT(took, 10.0) << "the shutdown timeout is 0.5 s, the workers are then stopped by force";
  for (auto& f : running) EXPECT_TRUE(fails_with<wm::ShutdownError>(f)) << failure_of(f);
  for (auto& f : queued) EXPECT_TRUE(fails_with<wm::ShutdownError>(f)) << failure_of(f);
  const int status = node_exit(a, 10s);
  EXPECT_TRUE(status != -1 && WIFEXITED(status) && WEXITSTATUS(status) == 0) << zmqtest::status_text(status);
  EXPECT_FALSE(zmqtest::running(static_cast<pid_t>(w0)));
  EXPECT_FALSE(zmqtest::running(static_cast<pid_t>(w1)));
}

// ---------------------------------------------------------------- options

std::string creation_error(std::vector<std::string> args) {
  try {
    make(std::move(args));
  } catch (const wm::Error& e) {
    return e.what();
  }
  return "(no error)";
}

TEST_F(Zmq, BadOptionsAreRefusedWithWhatToDo) {
  EXPECT_NE(creation_error({"--work-manager", "zmq"}).find("--wm-zmq-write-host-info"), std::string::npos);
  EXPECT_NE(creation_error({"--work-manager", "zmq", "--wm-zmq-mode", "boss"}).find("WM_ZMQ_MODE"), std::string::npos);
  EXPECT_NE(creation_error({"--work-manager", "zmq", "--wm-zmq-key", "abc"}).find("64 hexadecimal digits"),
            std::string::npos);
  EXPECT_NE(creation_error({"--work-manager", "zmq", "--wm-zmq-write-host-info", hi_, "--wm-zmq-heartbeat-interval",
                            "2", "--wm-zmq-heartbeat-timeout", "1"})
                .find("must be longer than"),
            std::string::npos);
  EXPECT_NE(creation_error({"--work-manager", "zmq", "--wm-zmq-write-host-info", hi_, "--wm-zmq-endpoint", "localhost"})
                .find("tcp://HOST:PORT"),
            std::string::npos);
  // A node without its master's address says what it needs.
  const pid_t lost = node(1, {{"WM_ZMQ_READ_HOST_INFO", zmqtest::kUnset}});
  const int status = node_exit(lost, 20s);
  EXPECT_TRUE(status != -1 && WIFEXITED(status) && WEXITSTATUS(status) != 0) << zmqtest::status_text(status);
  EXPECT_NE(node_log(lost).find("--wm-zmq-read-host-info"), std::string::npos) << node_log(lost);
}

}  // namespace

// ---------------------------------------------------------------- helper roles and main

namespace {

// A master in a process of its own, for the tests that kill or stop it: it waits for its node's two
// workers, keeps them busy and says so in the file "ready"; then it waits to be killed (60 s at most).
int helper_master() {
  const std::string dir = std::getenv("WMTEST_ZMQ_DIR");
  auto wm = wm::make_work_manager();
  std::vector<wm::Future<Where>> busy;
  for (int i = 0; i < 2; ++i) busy.push_back(wm->submit(report_and_sleep, dir + "/report-" + std::to_string(i), 60000));
  long pid = 0, ppid = 0;
  if (read_report(dir + "/report-0", pid, ppid, 30s)) std::ofstream(dir + "/ready") << "ready\n";
  std::this_thread::sleep_for(60s);
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  wm::serve_if_worker();  // a node's workers are this program too
  if (const char* role = std::getenv("WMTEST_ZMQ_ROLE")) {
    const std::string r = role;
    unsetenv("WMTEST_ZMQ_ROLE");
    if (r == "node") {
      try {
        auto wm = wm::make_work_manager(&argc, argv);  // a node serves in here, then exits
      } catch (const std::exception& e) {
        std::fprintf(stderr, "zmq_test node: %s\n", e.what());
        return 1;
      }
      std::fprintf(stderr, "zmq_test: the node role made a master\n");
      return 2;
    }
    if (r == "master") return helper_master();
    return 2;
  }
  prctl(PR_SET_CHILD_SUBREAPER, 1);
  testing::InitGoogleTest(&argc, argv);
  return RUN_ALL_TESTS();
}
