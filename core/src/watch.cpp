// SPDX-License-Identifier: MIT
// watch.cpp: the status dump on a signal, the summary at shutdown, and starting the dashboard
// module (see watch.hpp).
#include "watch.hpp"


#include "backend_link.hpp"
#include "console.hpp"
#include "dashboard_module.hpp"
#include "internal.hpp"
#include "link_stats.hpp"
#include "shared_memory.hpp"

#include <wm/errors.hpp>

#include <string>
#include <vector>
#include <boost/dll/shared_library.hpp>

#include <arpa/inet.h>
#include <dlfcn.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <strings.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <mutex>
#include <set>
#include <thread>

namespace wm::detail {
namespace {

constexpr WatchOption kWatchOptions[] = {
    {"progress", "MODE", "progress lines on stderr: auto (wm::progress draws), on (every work manager shows its tasks too) "
                         "or off", "auto"},
    {"dump-signal", "SIGNAL", "the signal that makes the master print its statistics and running tasks (USR1, USR2, "
                              "a number, or off)", "USR1"},
    {"dashboard", "HOST:PORT", "serve a live page, /metrics and /status.json from the master (any address but loopback "
                               "needs the token it prints)", "off"},
    {"shared-memory-limit", "SIZE", "the most memory the shared arrays (wm::SharedArray) of each process of the job keep, "
                                    "e.g. 8G or 512M", "half the machine's memory"},
};

constexpr std::size_t kMinTokenLength = 16;

int parse_signal(const std::string& given, bool& ok) {
  std::string t;
  for (char c : given)
    if (c != ' ' && c != '\t') t += static_cast<char>(std::toupper(static_cast<unsigned char>(c)));
  ok = true;
  if (t == "OFF" || t == "NONE" || t == "0" || t == "NO" || t == "FALSE") return 0;
  if (t.rfind("SIG", 0) == 0) t = t.substr(3);
  if (t == "USR1") return SIGUSR1;
  if (t == "USR2") return SIGUSR2;
  if (t == "HUP") return SIGHUP;
  if (t == "PWR") return SIGPWR;
  if (t == "URG") return SIGURG;
  if (t == "WINCH") return SIGWINCH;
  if (!t.empty() && std::all_of(t.begin(), t.end(), [](char c) { return c >= '0' && c <= '9'; }) && t.size() < 4) {
    const int n = std::atoi(t.c_str());
    // Not one that stops or kills the process, not SIGINT (Ctrl-C) nor the synchronous ones.
    if (n >= 1 && n <= SIGRTMAX && n != SIGKILL && n != SIGSTOP && n != SIGINT && n != SIGSEGV && n != SIGBUS &&
        n != SIGFPE && n != SIGILL && n != SIGABRT && n != SIGPIPE && n != SIGCHLD && n != SIGTERM)
      return n;
  }
  ok = false;
  return 0;
}

std::string signal_name(int sig) {
  if (sig == SIGUSR1) return "SIGUSR1";
  if (sig == SIGUSR2) return "SIGUSR2";
  const char* d = sigabbrev_np(sig);
  return d != nullptr ? std::string("SIG") + d : "signal " + std::to_string(sig);
}

// "HOST:PORT", "[V6]:PORT", ":PORT" or "PORT" (loopback).
bool parse_address(const std::string& text, std::string& host, int& port) {
  std::string h = "127.0.0.1", p = text;
  if (!text.empty() && text[0] == '[') {
    const auto close = text.find(']');
    if (close == std::string::npos || close + 1 >= text.size() || text[close + 1] != ':') return false;
    h = text.substr(1, close - 1);
    p = text.substr(close + 2);
  } else if (const auto colon = text.rfind(':'); colon != std::string::npos) {
    if (text.find(':') != colon) return false;  // a bare IPv6 address: it needs brackets
    if (colon != 0) h = text.substr(0, colon);
    p = text.substr(colon + 1);
  }
  if (h.empty() || p.empty() || p.size() > 5 || !std::all_of(p.begin(), p.end(), [](char c) { return c >= '0' && c <= '9'; }))
    return false;
  port = std::atoi(p.c_str());
  if (port > 65535) return false;
  host = h;
  return true;
}

bool is_loopback(const std::string& host) {
  if (host == "localhost" || host == "::1") return true;
  in_addr a{};
  return inet_pton(AF_INET, host.c_str(), &a) == 1 && (ntohl(a.s_addr) >> 24) == 127;
}

// 128 random bits as hex, from the kernel; empty if there are none to be had.
std::string random_token() {
  unsigned char bytes[16];
  const int fd = ::open("/dev/urandom", O_RDONLY | O_CLOEXEC);
  if (fd < 0) return {};
  std::size_t got = 0;
  while (got < sizeof bytes) {
    const ssize_t n = ::read(fd, bytes + got, sizeof bytes - got);
    if (n <= 0) break;
    got += static_cast<std::size_t>(n);
  }
  ::close(fd);
  if (got != sizeof bytes) return {};
  std::string out;
  char buf[3];
  for (unsigned char b : bytes) {
    std::snprintf(buf, sizeof buf, "%02x", b);
    out += buf;
  }
  return out;
}

// ---------------------------------------------------------------- the dump on a signal

// Its one thread reads what the handler writes; what it dumps are the work managers registered
// (weak: a dump does not keep one alive). Never destroyed: a signal may come during exit.
class Dumper {
 public:
  static Dumper& get() {
    static auto* d = new Dumper;
    return *d;
  }

  void add(const std::shared_ptr<BackendLink>& link, int sig) {
    std::lock_guard<std::mutex> lock(mutex_);
    links_.push_back(link);
    if (installed_.count(sig) != 0) return;
    installed_.insert(sig);
    // A library leaves its host alone: a signal the host handles (or ignores) stays the host's.
    struct sigaction now {};
    sigaction(sig, nullptr, &now);
    if (now.sa_handler != SIG_DFL || (now.sa_flags & SA_SIGINFO) != 0) {
      log(WM_LOG_INFO, "core", signal_name(sig) + " has a handler of the program's: the status dump is not installed "
                                                  "on it (choose another with --wm-dump-signal)");
      return;
    }
    if (pipe_[0] < 0) {
      if (pipe2(pipe_, O_CLOEXEC | O_NONBLOCK) != 0) {
        log(WM_LOG_WARNING, "core", std::string("no status dump on ") + signal_name(sig) + ": pipe: " + std::strerror(errno));
        return;
      }
      std::thread([this] { run(); }).detach();
    }
    struct sigaction sa {};
    sa.sa_handler = &on_signal;
    sigemptyset(&sa.sa_mask);
    sa.sa_flags = SA_RESTART;
    sigaction(sig, &sa, nullptr);
    log(WM_LOG_DEBUG, "core", signal_name(sig) + " prints the statistics and running tasks (kill -" +
                                  signal_name(sig).substr(3) + " " + std::to_string(getpid()) + ")");
  }

  void remove(const BackendLink* link) {
    std::lock_guard<std::mutex> lock(mutex_);
    links_.erase(std::remove_if(links_.begin(), links_.end(),
                                [&](const std::weak_ptr<BackendLink>& w) {
                                  auto l = w.lock();
                                  return l == nullptr || l.get() == link;
                                }),
                 links_.end());
  }

 private:
  static void on_signal(int sig) {
    const int saved = errno;
    const char b = static_cast<char>(sig);
    [[maybe_unused]] const ssize_t n = ::write(get().pipe_[1], &b, 1);
    errno = saved;
  }

  void run() {
    for (;;) {
      wait_for_the_handler();
      char buf[64];
      ssize_t n;
      int sig = 0;
      while ((n = ::read(pipe_[0], buf, sizeof buf)) > 0) sig = buf[n - 1];
      std::vector<std::shared_ptr<BackendLink>> links;
      {
        std::lock_guard<std::mutex> lock(mutex_);
        for (const auto& w : links_)
          if (auto l = w.lock()) links.push_back(std::move(l));
      }
      if (links.empty()) {
        log_always(WM_LOG_INFO, "core", "status (" + signal_name(sig) + "): no work manager");
        continue;
      }
      for (const auto& l : links) {
        try {
          const std::string text = format_stats(l->stats());
          // One log line per line of the dump: each says when and who.
          std::size_t start = 0;
          bool first = true;
          while (start < text.size()) {
            const auto end = std::min(text.find('\n', start), text.size());
            std::string line = text.substr(start, end - start);
            if (first) line = "status (" + signal_name(sig) + "): " + line;
            first = false;
            if (!line.empty()) log_always(WM_LOG_INFO, l->name(), line);
            start = end + 1;
          }
        } catch (const std::exception& e) {
          log_always(WM_LOG_ERROR, l->name(), std::string("status dump failed: ") + e.what());
        }
      }
    }
  }

  // Waits for the handler's byte (the pipe does not block: the handler must never wait on it).
  void wait_for_the_handler() {
    pollfd p{pipe_[0], POLLIN, 0};
    while (poll(&p, 1, -1) <= 0) {
    }
  }

  std::mutex mutex_;
  std::vector<std::weak_ptr<BackendLink>> links_;
  std::set<int> installed_;
  int pipe_[2] = {-1, -1};
};

// ---------------------------------------------------------------- the dashboard module

std::mutex g_module_mutex;

DashboardStartFn* dashboard_entry(std::string& error) {
  std::lock_guard<std::mutex> lock(g_module_mutex);
  // Never unloaded (as the plugins): its threads and code may be running until the server stops.
  static auto* library = new boost::dll::shared_library;
  static DashboardStartFn* entry = nullptr;
  if (entry != nullptr) return entry;
  const std::string dir = default_plugin_directory();
  const std::filesystem::path path = std::filesystem::path(dir).parent_path() / kDashboardModule;
  std::error_code ec;
  library->load(path.string(), boost::dll::load_mode::rtld_now | boost::dll::load_mode::rtld_local, ec);
  if (ec) {
    const char* e = dlerror();
    error = "cannot load the dashboard module " + path.string() + ": " + (e != nullptr ? e : ec.message()) +
            " (this wm was installed without it, or libcpp-httplib is missing)";
    return nullptr;
  }
  if (!library->has(kDashboardEntry)) {
    error = "the dashboard module " + path.string() + " has no " + kDashboardEntry;
    return nullptr;
  }
  entry = &library->get<DashboardStartFn>(kDashboardEntry);
  return entry;
}

}  // namespace

const WatchOption* watch_options(std::size_t& n) noexcept {
  n = sizeof kWatchOptions / sizeof kWatchOptions[0];
  return kWatchOptions;
}

WatchSettings read_watch_settings(const SettingReader& read) {
  WatchSettings s;
  s.dump_signal = SIGUSR1;
  auto bad = [](const std::pair<std::string, std::string>& v, const std::string& problem) {
    throw ConfigError(v.second + "='" + v.first + "' " + problem);
  };
  if (auto v = read("progress"))
    if (!parse_progress_mode(v->first, s.progress)) bad(*v, std::string("is not a progress mode; use ") + kProgressModes);
  if (auto v = read("dump-signal")) {
    bool ok = false;
    s.dump_signal = parse_signal(v->first, ok);
    if (!ok)
      bad(*v, "is not a signal for the status dump; use USR1, USR2, HUP, PWR, URG, WINCH, a number of another signal "
              "that does not stop the program, or off");
  }
  if (auto v = read("shared-memory-limit")) {
    if (!parse_memory_size(v->first, s.shared_memory_limit))
      bad(*v, "is not a size for the shared arrays' memory; use bytes or a number with K, M, G or T (8G, 512M, 1.5GiB)");
  }
  if (auto v = read("dashboard")) {
    std::string lower = v->first;
    std::transform(lower.begin(), lower.end(), lower.begin(), [](unsigned char c) { return std::tolower(c); });
    if (lower != "off" && lower != "" && lower != "none") {
      std::string host;
      int port = 0;
      if (!parse_address(v->first, host, port))
        bad(*v, "is not an address to serve the dashboard on; use HOST:PORT (127.0.0.1:8787, [::1]:8787, "
                "0.0.0.0:8787) or PORT alone (on loopback)");
      s.dashboard = v->first;
    }
  }
  if (const char* t = std::getenv("WM_DASHBOARD_TOKEN")) {
    s.token = t;
    if (!s.dashboard.empty() && s.token.size() < kMinTokenLength)
      throw ConfigError("environment variable WM_DASHBOARD_TOKEN is " + std::to_string(s.token.size()) +
                        " characters long; a dashboard token needs at least " + std::to_string(kMinTokenLength) +
                        " (e.g. `openssl rand -hex 16`)");
  }
  return s;
}

struct Watch::Impl {
  const BackendLink* link = nullptr;
  bool dumping = false;
  std::unique_ptr<DashboardServer> dashboard;
  std::mutex mutex;
};

Watch::Watch(const std::shared_ptr<BackendLink>& link, const WatchSettings& settings) : impl_(std::make_unique<Impl>()) {
  impl_->link = link.get();
  set_progress_mode(settings.progress);
  if (settings.progress == ProgressMode::on) track_work_manager(link->shared_counters(), link->name());
  if (settings.dump_signal != 0) {
    Dumper::get().add(link, settings.dump_signal);
    impl_->dumping = true;
  }
  if (settings.dashboard.empty()) return;
  DashboardRequest request;
  parse_address(settings.dashboard, request.host, request.port);
  request.need_token = !is_loopback(request.host);
  request.token = settings.token.empty() ? random_token() : settings.token;
  if (request.need_token && request.token.empty()) {
    log(WM_LOG_ERROR, link->name(), "the dashboard is not started: it listens on " + request.host +
                                        ", which is not loopback, and no token could be made (no /dev/urandom); set "
                                        "WM_DASHBOARD_TOKEN");
    return;
  }
  // The handler calls into the link, which the server never outlives (stop() before destroy).
  BackendLink* raw = link.get();
  request.snapshot = [raw] { return raw->stats(); };
  std::string error;
  DashboardStartFn* start = dashboard_entry(error);
  DashboardServer* server = start != nullptr ? start(&request, &error) : nullptr;
  if (server == nullptr) {
    log(WM_LOG_ERROR, link->name(), "the dashboard is not started: " + error);
    return;
  }
  impl_->dashboard.reset(server);
  // Every address: the URL names this host, which is what a browser elsewhere needs.
  const std::string shown = request.host == "0.0.0.0" || request.host == "::" ? host_name() : request.host;
  const bool v6 = shown.find(':') != std::string::npos;
  const std::string base = "http://" + (v6 ? "[" + shown + "]" : shown) + ":" + std::to_string(server->port()) + "/";
  if (request.need_token)
    log_always(WM_LOG_WARNING, link->name(),
               "dashboard: " + base + "?token=" + request.token + " (" + base +
                   "metrics and status.json take the token as ?token= or Authorization: Bearer; requests without it "
                   "are refused)");
  else
    log_always(WM_LOG_INFO, link->name(), "dashboard: " + base + " (" + base + "metrics, " + base + "status.json)");
}

Watch::~Watch() { stop(); }

void Watch::stop() noexcept {
  std::unique_ptr<DashboardServer> server;
  {
    std::lock_guard<std::mutex> lock(impl_->mutex);
    server = std::move(impl_->dashboard);
    if (impl_->dumping) {
      impl_->dumping = false;
      try {
        Dumper::get().remove(impl_->link);
      } catch (...) {
      }
    }
  }
  if (server) server->stop();
}

void log_shutdown_summary(const Stats& s) noexcept {
  try {
    if (s.submitted == 0) return;
    std::string kinds;
    for (std::size_t k = 0; k < kFailureKinds; ++k)
      if (s.failed_by_kind[k] != 0 && static_cast<FailureKind>(k) != FailureKind::cancelled)
        kinds += (kinds.empty() ? "" : ", ") + std::to_string(s.failed_by_kind[k]) + " " +
                 to_string(static_cast<FailureKind>(k));
    char up[32];
    std::snprintf(up, sizeof up, "%.1f", s.uptime_seconds);
    log(WM_LOG_INFO, s.backend,
        "summary after " + std::string(up) + " s: " + std::to_string(s.submitted) + " tasks submitted, " +
            std::to_string(s.completed) + " completed, " + std::to_string(s.failed) + " failed" +
            (kinds.empty() ? "" : " (" + kinds + ")") + ", " + std::to_string(s.cancelled) + " cancelled, " +
            std::to_string(s.retried) + " retried");
    if (s.workers.empty()) return;
    std::string busy;
    double total = 0;
    std::size_t shown = 0;
    for (const WorkerStats& w : s.workers) {
      total += w.busy_fraction;
      if (shown++ < 32) {
        char f[48];
        std::snprintf(f, sizeof f, "%sworker %d %.0f%%", busy.empty() ? "" : ", ", w.index, 100 * w.busy_fraction);
        busy += f;
      }
    }
    if (s.workers.size() > 32) busy += ", ... (" + std::to_string(s.workers.size() - 32) + " more)";
    char mean[48];
    std::snprintf(mean, sizeof mean, "; mean %.0f%%", 100 * total / double(s.workers.size()));
    log(WM_LOG_INFO, s.backend, "busy: " + busy + mean);
  } catch (...) {
  }
}

namespace {
void ignore_signal(int) {}
}  // namespace

void ignore_dump_signal_in_worker() noexcept {
  int sig = SIGUSR1;
  if (const char* v = std::getenv("WM_DUMP_SIGNAL")) {
    bool ok = false;
    sig = parse_signal(v, ok);
    if (!ok) sig = SIGUSR1;
  }
  if (sig == 0) return;
  struct sigaction now {};
  if (sigaction(sig, nullptr, &now) != 0 || now.sa_handler != SIG_DFL || (now.sa_flags & SA_SIGINFO) != 0) return;
  // A handler that does nothing, not SIG_IGN: programs a task starts get the default back at exec.
  struct sigaction sa {};
  sa.sa_handler = &ignore_signal;
  sigemptyset(&sa.sa_mask);
  sa.sa_flags = SA_RESTART;
  sigaction(sig, &sa, nullptr);
}

}  // namespace wm::detail
