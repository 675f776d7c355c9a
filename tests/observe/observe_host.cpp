// SPDX-License-Identifier: MIT
// observe_host.cpp: a host program for the tests of watching a run (observe_test.py): progress,
// log lines and the log sink, the status dump on a signal, the dashboard. Any backend, chosen the
// usual way (--work-manager, WM_WORK_MANAGER, wm's flags); under mpirun, ranks > 0 serve; as a zmq
// node (--wm-zmq-mode node) it serves a master. The first argument says what it does:
//
//   progress vector|as_completed|submit_as_completed|wait_all N MS   N tasks of MS ms, with wm::progress
//   run N MS [FAIL]      N tasks of MS ms (FAIL of them throw), no wm::progress (--wm-progress on shows them)
//   sink                 a log sink prints every line on stdout ("SINK|role|pid|level|component|message")
//   late LIBRARY         loads a task library after making the work manager, then submits one of its tasks
//   hang MS FILE         one task that creates FILE and sleeps MS ms; "started" on stdout once it runs
//   serve N MS           N tasks of MS ms, a few failing, while the dashboard serves; "done" on stdout
//                        once they finished, then waits until stdin closes (or 60 s) before it ends
//   stream MS            tasks of MS ms, 3 failing, submitted without end until stdin closes (or 120 s),
//                        so the run goes on however slowly the test watches it
//   snapshot             prints its statistics (format_stats) after a short known run
//   retry FILE           10 tasks, 2 failing, and one that kills its worker the first time (FILE marks
//                        it): with retries, it runs again; prints format_stats and a STATS line
//
// Progress and results go to stdout; wm writes to stderr.
#include <wm/task.hpp>
#include <wm/wm.hpp>

#include <poll.h>
#include <signal.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <optional>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

namespace observe {
int work(int ms, int value) {
  std::this_thread::sleep_for(std::chrono::milliseconds(ms));
  return value;
}
int failing(int ms, int value) {
  std::this_thread::sleep_for(std::chrono::milliseconds(ms));
  throw std::runtime_error("observe failure " + std::to_string(value));
}
int hang(int ms, std::string file) {
  { std::ofstream(file) << "started\n"; }
  std::this_thread::sleep_for(std::chrono::milliseconds(ms));
  return 1;
}
// Kills the process it runs in the first time (it leaves FILE behind), returns 7 when run again.
int die_once(std::string file) {
  if (access(file.c_str(), F_OK) != 0) {
    { std::ofstream(file) << "died\n"; }
    raise(SIGKILL);
  }
  return 7;
}
}  // namespace observe
WM_TASK(observe::work);
WM_TASK(observe::failing);
WM_TASK(observe::hang);
WM_TASK(observe::die_once);

namespace {

int usage() {
  std::fprintf(stderr, "usage: observe_host progress|run|sink|late|hang|serve|stream|snapshot|retry ARGS... [wm flags]\n");
  return 2;
}

// Waits until stdin closes (the test is done) or `seconds` pass.
void wait_for_stdin_to_close(int seconds) {
  const auto until = std::chrono::steady_clock::now() + std::chrono::seconds(seconds);
  while (std::chrono::steady_clock::now() < until) {
    pollfd p{0, POLLIN, 0};
    if (poll(&p, 1, 200) > 0) {
      char buf[64];
      if (read(0, buf, sizeof buf) <= 0) return;
    }
  }
}

std::vector<wm::TaskSpec<int>> tasks(int n, int ms, int failing = 0) {
  std::vector<wm::TaskSpec<int>> out;
  for (int i = 0; i < n; ++i) out.push_back(i < failing ? wm::task(observe::failing, ms, i) : wm::task(observe::work, ms, i));
  return out;
}

}  // namespace

int main(int argc, char** argv) {
  const std::string role = argc > 1 ? argv[1] : "";
  if (role == "sink" || std::getenv("OBSERVE_SINK") != nullptr) {
    // Before make_work_manager: worker processes (started without the arguments, with the
    // environment) run this far too, and route their lines as well.
    wm::set_log_sink([](const wm::LogRecord& r) {
      std::printf("SINK|%s|%lld|%s|%s|%s\n", r.role.c_str(), static_cast<long long>(r.pid), wm::to_string(r.level),
                  r.component.c_str(), r.message.c_str());
      std::fflush(stdout);
    });
  }
  auto wm = wm::make_work_manager(&argc, argv);
  std::vector<std::string> args(argv + 1, argv + argc);
  auto arg = [&](std::size_t i, int fallback) { return i < args.size() ? std::atoi(args[i].c_str()) : fallback; };
  try {
    if (role == "progress" && args.size() >= 2) {
      const std::string how = args[1];
      const int n = arg(2, 20), ms = arg(3, 50);
      long total = 0;
      if (how == "vector") {
        auto fs = wm::progress(wm->submit_many(tasks(n, ms)), "observe");
        for (auto& f : wm->wait_all(fs)) total += f.get_result();
      } else if (how == "wait_all") {
        auto fs = wm->submit_many(tasks(n, ms));
        for (auto& f : wm->wait_all(wm::progress(fs))) total += f.get_result();
      } else if (how == "as_completed") {
        for (wm::Future<int> f : wm::progress(wm->as_completed(wm->submit_many(tasks(n, ms))), 0, "observe"))
          total += f.get_result();
      } else if (how == "submit_as_completed") {
        int i = 0;
        auto gen = [&]() -> std::optional<wm::TaskSpec<int>> {
          if (i >= n) return std::nullopt;
          return wm::task(observe::work, ms, i++);
        };
        for (wm::Future<int> f : wm::progress(wm->submit_as_completed(gen, 4), static_cast<std::size_t>(n), "observe"))
          total += f.get_result();
      } else {
        return usage();
      }
      std::printf("RESULT %ld\n", total);
    } else if (role == "run") {
      const int n = arg(1, 20), ms = arg(2, 50), failing = arg(3, 0);
      int failed = 0;
      for (auto& f : wm->wait_all(wm->submit_many(tasks(n, ms, failing)))) failed += f.failed() ? 1 : 0;
      std::printf("RESULT %d failed\n", failed);
    } else if (role == "sink") {
      int failed = 0;
      for (auto& f : wm->wait_all(wm->submit_many(tasks(6, 10, 2)))) failed += f.failed() ? 1 : 0;
      std::printf("RESULT %d failed\n", failed);
    } else if (role == "late" && args.size() >= 2) {
      wm::load_task_library(args[1]);  // too late: the work manager exists
      try {
        auto f = wm->submit<int>("tasklib::triple", 5);
        std::printf("RESULT %d\n", f.get_result());
      } catch (const std::exception& e) {
        std::printf("ERROR %s\n", e.what());
      }
    } else if (role == "hang" && args.size() >= 3) {
      auto f = wm->submit(observe::hang, arg(1, 3000), args[2]);
      std::printf("submitted %s\n", f.task_id().c_str());
      std::fflush(stdout);
      std::printf("RESULT %d\n", f.get_result());
    } else if (role == "serve") {
      const int n = arg(1, 40), ms = arg(2, 100);
      auto fs = wm->submit_many(tasks(n, ms, 3));
      wm->wait_all(fs);
      std::printf("done\n");
      std::fflush(stdout);
      wait_for_stdin_to_close(60);
    } else if (role == "stream") {
      const int ms = arg(1, 60);
      std::atomic<bool> closed{false};
      std::thread watch([&] {
        wait_for_stdin_to_close(120);
        closed = true;
      });
      int i = 0;
      auto gen = [&]() -> std::optional<wm::TaskSpec<int>> {
        if (closed) return std::nullopt;
        ++i;
        return i <= 3 ? wm::task(observe::failing, ms, i) : wm::task(observe::work, ms, i);
      };
      long done = 0;
      for (wm::Future<int> f : wm->submit_as_completed(gen, 8)) done += f.failed() ? 0 : 1;
      watch.join();
      std::printf("RESULT %ld done\n", done);
    } else if (role == "retry" && args.size() >= 2) {
      auto fs = wm->submit_many(tasks(10, 20, 2));
      auto dies = wm->submit(observe::die_once, args[1]);
      wm->wait_all(fs);
      dies.wait();
      const wm::Stats s = wm->stats();
      std::uint32_t restarts = 0;
      std::size_t lost = 0;
      for (const wm::WorkerStats& w : s.workers) {
        restarts += w.restarts;
        lost += w.state == wm::WorkerState::lost ? 1 : 0;
      }
      std::printf("%sSTATS submitted=%llu completed=%llu failed=%llu task_exception=%llu worker_lost=%llu "
                  "retried=%llu restarts=%u lost=%zu workers=%zu result=%s\n",
                  wm::format_stats(s).c_str(), static_cast<unsigned long long>(s.submitted),
                  static_cast<unsigned long long>(s.completed), static_cast<unsigned long long>(s.failed),
                  static_cast<unsigned long long>(s.failures(wm::FailureKind::task_exception)),
                  static_cast<unsigned long long>(s.failures(wm::FailureKind::worker_lost)),
                  static_cast<unsigned long long>(s.retried), restarts, lost, s.workers.size(),
                  dies.failed() ? "failed" : std::to_string(dies.get_result()).c_str());
    } else if (role == "snapshot") {
      wm->wait_all(wm->submit_many(tasks(10, 1, 2)));
      std::printf("%s", wm::format_stats(wm->stats()).c_str());
    } else {
      return usage();
    }
  } catch (const std::exception& e) {
    std::printf("ERROR %s\n", e.what());
    return 1;
  }
  std::fflush(stdout);
  return 0;
}
