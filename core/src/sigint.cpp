// SPDX-License-Identifier: MIT
// sigint.cpp: Ctrl-C as users expect it (WorkManager::install_sigint_handler).
//
// The first SIGINT stops every work manager that asked for it at once (WM_SHUTDOWN_NOW: running
// tasks are not waited for) and the process then dies by SIGINT, within kGrace of the key press,
// whatever its threads are doing. A second SIGINT ends the process at once. The exit status is
// always death by SIGINT (unless the host's own, earlier handler decides otherwise): if main()
// returns while the work managers are still stopping, an exit handler delivers the signal.
#include "backend_link.hpp"
#include "internal.hpp"

#include <fcntl.h>
#include <signal.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <condition_variable>
#include <cstdlib>
#include <memory>
#include <mutex>
#include <thread>
#include <vector>

namespace wm::detail {
namespace {

// How long the first Ctrl-C waits for the work managers to stop (workers told, futures failed)
// before the process dies by the signal anyway.
constexpr auto kGrace = std::chrono::milliseconds(750);

int g_pipe[2] = {-1, -1};
volatile sig_atomic_t g_presses = 0;  // written by the handler only
volatile sig_atomic_t g_interrupted = 0;
struct sigaction g_previous;
std::mutex g_mutex;

std::vector<std::weak_ptr<BackendLink>>& registered() {
  static auto* v = new std::vector<std::weak_ptr<BackendLink>>;  // never destroyed: used at exit
  return *v;
}

// Hands the signal to whatever handled it before us (the default handler ends the process).
void die_by_sigint() {
  sigaction(SIGINT, &g_previous, nullptr);
  kill(getpid(), SIGINT);
}

void on_sigint(int) {
  const int saved = errno;
  g_presses = g_presses + 1;
  if (g_presses == 1) {
    g_interrupted = 1;
    const char b = 1;
    [[maybe_unused]] ssize_t r = write(g_pipe[1], &b, 1);
  } else {
    // Again: the user does not want to wait.
    signal(SIGINT, SIG_DFL);
    raise(SIGINT);
  }
  errno = saved;
}

// main() may return while the work managers are stopping: the process must still die by SIGINT.
void at_exit() {
  if (g_interrupted) die_by_sigint();
}

// The handler only writes a byte; this thread does what a signal handler may not.
void sigint_thread() {
  char b;
  while (read(g_pipe[0], &b, 1) < 0 && errno == EINTR) {
  }
  log(WM_LOG_WARNING, "core", "interrupted (Ctrl-C): stopping the work manager (Ctrl-C again to quit at once)");
  std::vector<std::shared_ptr<BackendLink>> links;
  {
    std::lock_guard<std::mutex> lock(g_mutex);
    for (auto& w : registered())
      if (auto l = w.lock()) links.push_back(std::move(l));
  }
  // One stopper per work manager, so that a slow one does not hold up the others. Each owns its
  // work manager (a shared reference), so whatever it still touches after we give up is alive.
  struct Progress {
    std::mutex mutex;
    std::condition_variable cv;
    std::size_t left;
  };
  auto progress = std::make_shared<Progress>();
  progress->left = links.size();
  std::vector<std::thread> stoppers;
  for (auto& l : links)
    stoppers.emplace_back([l, progress] {
      try {
        l->shutdown(WM_SHUTDOWN_NOW | WM_SHUTDOWN_WAIT);
      } catch (const std::exception& e) {
        log(WM_LOG_ERROR, l->name(), e.what());
      }
      std::lock_guard<std::mutex> lock(progress->mutex);
      if (--progress->left == 0) progress->cv.notify_all();
    });
  bool all_stopped;
  {
    std::unique_lock<std::mutex> lock(progress->mutex);
    all_stopped = progress->cv.wait_for(lock, kGrace, [&] { return progress->left == 0; });
  }
  for (auto& t : stoppers) {
    if (all_stopped)
      t.join();
    else
      t.detach();  // it owns what it uses; the process is about to end
  }
  die_by_sigint();
}

}  // namespace

void install_sigint_for(const std::shared_ptr<BackendLink>& link) {
  std::lock_guard<std::mutex> lock(g_mutex);
  registered().push_back(link);
  if (g_pipe[0] >= 0) return;
  if (pipe2(g_pipe, O_CLOEXEC) != 0) throw Error("install_sigint_handler: pipe failed");
  std::thread(sigint_thread).detach();  // touches only this file's globals, which are never freed
  std::atexit(at_exit);
  struct sigaction sa {};
  sa.sa_handler = &on_sigint;
  sigemptyset(&sa.sa_mask);
  sa.sa_flags = SA_RESTART;
  sigaction(SIGINT, &sa, &g_previous);
}

}  // namespace wm::detail
