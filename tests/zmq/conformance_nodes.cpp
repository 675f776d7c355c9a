// SPDX-License-Identifier: MIT
// conformance_nodes.cpp: linked into the conformance suite for zmq. A test's master (made by the
// suite's fixture, WM_WORK_MANAGER=zmq) needs nodes: before each test this listener starts them as
// helper processes (the node host program, whose tasks are the suite's), and after the test checks
// that each node that joined ended by itself with exit code 0 once the master was gone, and that no
// process of the test is left (the test program is the subreaper of everything it starts).
//
// WMTEST_ZMQ_NODES=NxW: N nodes of W workers. Parameter "zmq:T": the master waits for T workers
// before the test runs; parameter "zmq": it does not, and the nodes after the first join while the
// test's tasks run.
#include "zmq_test_support.hpp"

#include <gtest/gtest.h>

#include <signal.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <memory>
#include <mutex>
#include <thread>

using namespace std::chrono_literals;

namespace {

class NodeLauncher : public testing::EmptyTestEventListener {
 public:
  void OnTestStart(const testing::TestInfo& info) override {
    const char* param = info.value_param();
    active_ = param != nullptr && std::strstr(param, "zmq") != nullptr;
    if (!active_) return;
    elastic_ = std::strstr(param, "zmq:") == nullptr;
    int nodes = 1, workers = 2;
    if (const char* layout = std::getenv("WMTEST_ZMQ_NODES")) std::sscanf(layout, "%dx%d", &nodes, &workers);
    dir_ = std::make_unique<zmqtest::TempDir>();
    const std::string host_info = dir_->file("host-info");
    setenv("WM_ZMQ_WRITE_HOST_INFO", host_info.c_str(), 1);
    // The master makes its Unix sockets' directory in TMPDIR: here, where the end of the test looks.
    const char* tmp = std::getenv("TMPDIR");
    saved_tmpdir_ = tmp != nullptr ? tmp : "";
    had_tmpdir_ = tmp != nullptr;
    setenv("TMPDIR", dir_->path().c_str(), 1);
    env_ = {{"WM_WORK_MANAGER", "zmq"},
            {"WM_ZMQ_MODE", "node"},
            {"WM_ZMQ_READ_HOST_INFO", host_info},
            {"WM_ZMQ_WRITE_HOST_INFO", zmqtest::kUnset},
            {"WM_N_WORKERS", std::to_string(workers)},
            {"WM_LOG_LEVEL", "info"}};  // a node says when it joined
    stop_ = false;
    // Every node waits for the host-info file: the master is made after this, in the fixture.
    start_node(0);
    if (!elastic_) {
      for (int i = 1; i < nodes; ++i) start_node(i);
    } else {
      spawner_ = std::thread([this, nodes] {
        for (int i = 1; i < nodes && !stop_; ++i) {
          std::this_thread::sleep_for(25ms);
          start_node(i);
        }
      });
    }
  }

  void OnTestEnd(const testing::TestInfo& info) override {
    if (!active_) return;
    stop_ = true;
    if (spawner_.joinable()) spawner_.join();
    unsetenv("WM_ZMQ_WRITE_HOST_INFO");
    if (had_tmpdir_)
      setenv("TMPDIR", saved_tmpdir_.c_str(), 1);
    else
      unsetenv("TMPDIR");
    // The fixture has destroyed the master (or let go of it in a callback: then a thread of the core
    // shuts it down a moment later): each node that joined was told the job is over.
    std::string problems;
    std::vector<pid_t> waiting;
    for (std::size_t i = 0; i < pids_.size(); ++i) {
      const std::string log = zmqtest::read_file(logs_[i]);
      if (log.find("joined the master") == std::string::npos) {
        waiting.push_back(pids_[i]);  // still waiting for a master (late joiners): ended below
        continue;
      }
      const int status = zmqtest::wait_for_exit(pids_[i], 20s);
      if (status == -1 || !WIFEXITED(status) || WEXITSTATUS(status) != 0) {
        problems += "node " + std::to_string(i) + " (pid " + std::to_string(pids_[i]) + ") " +
                    zmqtest::status_text(status) + " after its master ended; its log:\n" + log + "\n";
        if (status == -1) zmqtest::kill_and_reap(pids_[i]);
      }
    }
    if (!waiting.empty() && !elastic_) problems += std::to_string(waiting.size()) + " node(s) never joined\n";
    for (pid_t p : waiting) {
      kill(p, SIGTERM);  // SIGTERM is honoured: it ends, and so does everything it started
      if (zmqtest::wait_for_exit(p, 10s) == -1) {
        problems += "node pid " + std::to_string(p) + " did not end on SIGTERM\n";
        zmqtest::kill_and_reap(p);
      }
    }
    // The master removed its files.
    auto left_behind = [&] {
      std::vector<std::string> out;
      for (const auto& e : std::filesystem::directory_iterator(dir_->path()))
        if (e.path().filename().string().rfind("wm-zmq-", 0) == 0 || e.path().filename() == "host-info")
          out.push_back(e.path().string());
      return out;
    };
    if (!zmqtest::eventually([&] { return left_behind().empty(); }, 10s))
      for (const auto& f : left_behind()) problems += "the master left " + f + " behind\n";
    // Nothing else is left: workers of ended nodes died with them (they would be our children now).
    const bool clean = zmqtest::eventually(
        [] {
          int status;
          while (waitpid(-1, &status, WNOHANG) > 0) {
          }
          return zmqtest::children_of(getpid()).empty();
        },
        10s);
    if (!clean) {
      for (pid_t p : zmqtest::children_of(getpid())) {
        problems += "process " + std::to_string(p) + " was left over\n";
        zmqtest::kill_and_reap(p);
      }
    }
    pids_.clear();
    logs_.clear();
    dir_.reset();
    if (!problems.empty()) {
      std::fprintf(stderr, "zmq conformance: after %s.%s:\n%s", info.test_suite_name(), info.name(), problems.c_str());
      std::fflush(stderr);
      std::_Exit(1);  // a listener cannot fail the test any other way
    }
  }

 private:
  void start_node(int i) {
    const std::string log = dir_->file("node-" + std::to_string(i) + ".log");
    const pid_t pid = zmqtest::spawn(WM_ZMQ_NODE_HOST, env_, log);
    std::lock_guard<std::mutex> lock(mutex_);
    if (pid > 0) {
      pids_.push_back(pid);
      logs_.push_back(log);
    }
  }

  bool active_ = false, elastic_ = false, had_tmpdir_ = false;
  std::string saved_tmpdir_;
  std::atomic<bool> stop_{false};
  std::unique_ptr<zmqtest::TempDir> dir_;
  std::map<std::string, std::string> env_;
  std::mutex mutex_;
  std::vector<pid_t> pids_;
  std::vector<std::string> logs_;
  std::thread spawner_;
};

// Registered before main() runs; the subreaper setting makes every orphan of a test ours to find.
const bool registered = [] {
  prctl(PR_SET_CHILD_SUBREAPER, 1);
  testing::UnitTest::GetInstance()->listeners().Append(new NodeLauncher);
  return true;
}();

}  // namespace
