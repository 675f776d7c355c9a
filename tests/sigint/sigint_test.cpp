// SPDX-License-Identifier: MIT
// sigint_test.cpp: Ctrl-C as users expect it, on every backend whose tasks can run long: the host
// (this program started again as a helper, in its own process group, as a terminal's foreground job)
// is gone promptly after the first Ctrl-C whatever its tasks do, a second Ctrl-C ends it at once, the
// exit status is always death by SIGINT, and no process is left behind.
#include <wm/task.hpp>
#include <wm/wm.hpp>

#include <gtest/gtest.h>

#include "../common/proc_table.hpp"

#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <spawn.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

extern char** environ;

using namespace std::chrono_literals;
using Clock = std::chrono::steady_clock;

int nap_ms(int ms) {
  std::this_thread::sleep_for(std::chrono::milliseconds(ms));
  return ms;
}
WM_TASK(nap_ms);

namespace {

// ---------------------------------------------------------------- the helper host

// WM_ST_ROLE: "wait" (waits on its futures, then pauses for the signal), "return" (returns from
// main as soon as its futures fail), "stuck" (a done-callback of the shutdown blocks for 30 s).
int helper_main(const std::string& role) {
  // Running tasks would get 30 s to finish in an ordinary shutdown.
  const char* args[] = {"sigint_test", "--wm-processes-shutdown-timeout", "30"};
  const bool processes = std::string(std::getenv("WM_WORK_MANAGER")) == "processes";
  auto wm = wm::make_work_manager(processes ? 3 : 1, args);
  wm->startup();
  wm->install_sigint_handler();
  std::vector<wm::Future<int>> fs;
  for (int i = 0; i < 2 * static_cast<int>(wm->n_workers()) + 2; ++i) fs.push_back(wm->submit(nap_ms, 60000));
  if (role == "stuck")
    fs.back().add_done_callback([](const wm::WMFuture&) { std::this_thread::sleep_for(30s); });
  std::printf("ready %d\n", static_cast<int>(getpid()));
  std::fflush(stdout);
  for (auto& f : fs) f.wait();
  if (role == "return") return 0;  // main returns while the work manager may still be stopping
  for (;;) pause();
}

// ---------------------------------------------------------------- the test side

struct Helper {
  pid_t pid = -1;
  int out = -1;
};

Helper spawn_helper(const std::string& backend, const std::string& role) {
  Helper h;
  int p[2];
  if (pipe2(p, O_CLOEXEC) != 0) return h;
  posix_spawn_file_actions_t fa;
  posix_spawn_file_actions_init(&fa);
  posix_spawn_file_actions_adddup2(&fa, p[1], 1);
  posix_spawnattr_t attr;
  posix_spawnattr_init(&attr);
  posix_spawnattr_setpgroup(&attr, 0);  // its own process group, like a terminal's foreground job
  sigset_t none;
  sigemptyset(&none);
  posix_spawnattr_setsigmask(&attr, &none);
  posix_spawnattr_setflags(&attr, POSIX_SPAWN_SETPGROUP | POSIX_SPAWN_SETSIGMASK);
  std::vector<std::string> env;
  for (char** e = environ; *e; ++e) env.emplace_back(*e);
  env.push_back("WM_ST_ROLE=" + role);
  env.push_back("WM_WORK_MANAGER=" + backend);
  env.push_back("WM_N_WORKERS=2");
  std::vector<char*> envp;
  for (auto& e : env) envp.push_back(e.data());
  envp.push_back(nullptr);
  char self[] = "/proc/self/exe";
  char* argv[] = {self, nullptr};
  const int rc = posix_spawn(&h.pid, "/proc/self/exe", &fa, &attr, argv, envp.data());
  posix_spawn_file_actions_destroy(&fa);
  posix_spawnattr_destroy(&attr);
  close(p[1]);
  if (rc != 0) {
    close(p[0]);
    h.pid = -1;
    return h;
  }
  h.out = p[0];
  return h;
}

std::string read_line(int fd, std::chrono::milliseconds limit) {
  std::string line;
  const auto until = Clock::now() + limit;
  while (Clock::now() < until) {
    pollfd pfd{fd, POLLIN, 0};
    if (poll(&pfd, 1, 10) <= 0) continue;
    char c;
    if (read(fd, &c, 1) <= 0) break;
    if (c == '\n') return line;
    line += c;
  }
  return line;
}

// Waits for the helper to end; its wait status, or -1 after the limit (it is then killed).
int wait_for_exit(pid_t pid, std::chrono::milliseconds limit, Clock::duration* took = nullptr) {
  const auto t0 = Clock::now();
  for (;;) {
    int status = 0;
    if (waitpid(pid, &status, WNOHANG) == pid) {
      if (took) *took = Clock::now() - t0;
      return status;
    }
    if (Clock::now() - t0 > limit) {
      kill(-pid, SIGKILL);
      waitpid(pid, &status, 0);
      return -1;
    }
    std::this_thread::sleep_for(2ms);
  }
}

using wmtest::group_members;  // the helper's workers are in its process group

class CtrlC : public ::testing::TestWithParam<std::string> {};

bool died_by_sigint(int status) { return status != -1 && WIFSIGNALED(status) && WTERMSIG(status) == SIGINT; }

// The first Ctrl-C ends the host promptly, although its tasks run for a minute and its shutdown
// timeout is 30 s; it dies by SIGINT and leaves no worker.
TEST_P(CtrlC, TheFirstEndsTheHostPromptlyBySigint) {
  Helper h = spawn_helper(GetParam(), "wait");
  ASSERT_GT(h.pid, 0);
  ASSERT_EQ(read_line(h.out, 60000ms).rfind("ready", 0), 0u);
  ASSERT_EQ(kill(-h.pid, SIGINT), 0);  // as a terminal does: the whole foreground group
  Clock::duration took{};
  const int status = wait_for_exit(h.pid, 20000ms, &took);
  close(h.out);
  ASSERT_NE(status, -1) << "the host did not end within 20 s of Ctrl-C";
  EXPECT_TRUE(died_by_sigint(status)) << "wait status " << status;
  // Bounded by design at well under a second; 5 s tells "did not wait for the tasks or the 30 s
  // shutdown timeout" from "did", with room for a loaded machine.
  EXPECT_LT(took, 5s) << std::chrono::duration<double>(took).count() << " s";
  const auto until = Clock::now() + 5s;
  while (group_members(h.pid) > 0 && Clock::now() < until) std::this_thread::sleep_for(10ms);
  EXPECT_EQ(group_members(h.pid), 0) << "a worker outlived Ctrl-C";
}

// main() returning while the work manager stops must not turn the exit status into 0.
TEST_P(CtrlC, ExitStatusIsSigintEvenWhenMainReturns) {
  for (int run = 0; run < 8; ++run) {
    Helper h = spawn_helper(GetParam(), "return");
    ASSERT_GT(h.pid, 0);
    ASSERT_EQ(read_line(h.out, 60000ms).rfind("ready", 0), 0u);
    ASSERT_EQ(kill(-h.pid, SIGINT), 0);
    const int status = wait_for_exit(h.pid, 20000ms);
    close(h.out);
    ASSERT_TRUE(died_by_sigint(status)) << "run " << run << ": wait status " << status;
  }
}

// A second Ctrl-C does not wait for anything: here a done-callback blocks the stop for 30 s, and
// the second press, 20 ms after the first, ends the host well before the first one's grace.
TEST_P(CtrlC, ASecondEndsTheHostAtOnce) {
  Helper h = spawn_helper(GetParam(), "stuck");
  ASSERT_GT(h.pid, 0);
  ASSERT_EQ(read_line(h.out, 60000ms).rfind("ready", 0), 0u);
  ASSERT_EQ(kill(-h.pid, SIGINT), 0);
  std::this_thread::sleep_for(20ms);
  kill(-h.pid, SIGINT);
  Clock::duration took{};
  const int status = wait_for_exit(h.pid, 20000ms, &took);
  close(h.out);
  ASSERT_NE(status, -1);
  EXPECT_TRUE(died_by_sigint(status)) << "wait status " << status;
  EXPECT_LT(took, 400ms) << std::chrono::duration<double>(took).count() << " s";
  const auto until = Clock::now() + 5s;
  while (group_members(h.pid) > 0 && Clock::now() < until) std::this_thread::sleep_for(10ms);
  EXPECT_EQ(group_members(h.pid), 0) << "a worker outlived Ctrl-C";
}

std::vector<std::string> backends() {
  std::vector<std::string> out;
  std::stringstream ss(WM_SIGINT_BACKENDS);
  std::string item;
  while (std::getline(ss, item, ',')) out.push_back(item);
  return out;
}

INSTANTIATE_TEST_SUITE_P(Backends, CtrlC, ::testing::ValuesIn(backends()),
                         [](const ::testing::TestParamInfo<std::string>& i) { return i.param; });

}  // namespace

int main(int argc, char** argv) {
  wm::serve_if_worker();
  if (const char* role = std::getenv("WM_ST_ROLE")) {
    const std::string r = role;
    unsetenv("WM_ST_ROLE");
    return helper_main(r);
  }
  ::testing::InitGoogleTest(&argc, argv);
  return RUN_ALL_TESTS();
}
