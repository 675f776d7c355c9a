// SPDX-License-Identifier: MIT
// log.cpp: the core's log (every line with its time, level, role and pid; set_log_sink) and its
// stderr, shared with the progress display (see console.hpp).
#include "console.hpp"
#include "internal.hpp"
#include "log_level.hpp"

#include <wm/log.hpp>

#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <ctime>
#include <memory>
#include <mutex>
#include <utility>

namespace wm {

const char* to_string(LogLevel level) noexcept {
  switch (level) {
    case LogLevel::debug: return "debug";
    case LogLevel::info: return "info";
    case LogLevel::warning: return "warning";
    case LogLevel::error: return "error";
  }
  return "log";
}

}  // namespace wm

namespace wm::detail {
namespace {

// A bad WM_LOG_LEVEL keeps the default here (the log cannot throw); the configuration refuses it
// with a ConfigError when a work manager is made.
int log_threshold() {
  static const int level = [] {
    const char* v = std::getenv("WM_LOG_LEVEL");
    const int parsed = v == nullptr ? -1 : parse_log_level(v);
    return parsed < 0 ? int(WM_LOG_WARNING) : parsed;
  }();
  return level;
}

// The host's sink, replaced whole, read by every line. Never destroyed: lines come until exit.
struct SinkSlot {
  std::mutex mutex;
  std::shared_ptr<const LogSink> sink;
};
SinkSlot& sink_slot() {
  static auto* slot = new SinkSlot;
  return *slot;
}

std::shared_ptr<const LogSink> current_sink() {
  SinkSlot& slot = sink_slot();
  std::lock_guard<std::mutex> lock(slot.mutex);
  return slot.sink;
}

// Who this process is.
std::atomic<bool> g_serving{false};
std::atomic<std::int32_t> g_index{-1};
std::atomic<std::int32_t> g_rank{-1};

// stderr: whole lines under one mutex; `g_status` says whether a progress line is drawn (on a
// terminal) and must come off before a line is written.
std::mutex g_err_mutex;
bool g_status = false;
unsigned g_generation = 0;  // take_status_line() calls so far

void write_all(const char* data, std::size_t size) {
  while (size > 0) {
    const ssize_t n = ::write(STDERR_FILENO, data, size);
    if (n < 0) {
      if (errno == EINTR) continue;
      return;
    }
    data += n;
    size -= static_cast<std::size_t>(n);
  }
}

// "2026-12-08T10:11:12.345Z" (UTC: one clock for the lines of every host of a job).
std::string utc_text(std::chrono::system_clock::time_point t) {
  const auto since = t.time_since_epoch();
  const std::time_t secs = static_cast<std::time_t>(std::chrono::duration_cast<std::chrono::seconds>(since).count());
  const int ms = static_cast<int>(std::chrono::duration_cast<std::chrono::milliseconds>(since).count() % 1000);
  std::tm tm{};
  gmtime_r(&secs, &tm);
  char buf[64];
  std::snprintf(buf, sizeof buf, "%04d-%02d-%02dT%02d:%02d:%02d.%03dZ", tm.tm_year + 1900, tm.tm_mon + 1, tm.tm_mday,
                tm.tm_hour, tm.tm_min, tm.tm_sec, ms);
  return buf;
}

void emit(int level, const std::string& component, const std::string& message) noexcept {
  try {
    static const char* names[] = {"debug", "info", "warning", "error"};
    const char* lvl = (level >= 0 && level <= 3) ? names[level] : "log";
    LogRecord r;
    r.time = std::chrono::system_clock::now();
    r.level = static_cast<LogLevel>(level >= 0 && level <= 3 ? level : WM_LOG_ERROR);
    r.role = process_role();
    r.pid = static_cast<std::int64_t>(getpid());
    r.component = component;
    // One event, one line: a message of several lines is written as one.
    r.message = message;
    for (char& c : r.message)
      if (c == '\n' || c == '\r') c = ' ';
    r.line = utc_text(r.time) + " " + r.role + " pid " + std::to_string(r.pid) + " [wm " + component + "] " + lvl +
             ": " + r.message;
    if (const std::shared_ptr<const LogSink> sink = current_sink(); sink && *sink) {
      try {
        (*sink)(r);
      } catch (...) {
        // The host's logger failed: nothing more to do about it here.
      }
      return;
    }
    write_stderr_lines(r.line + "\n");
  } catch (...) {
    // Out of memory: the line is lost.
  }
}

}  // namespace

bool log_enabled(int level) noexcept { return level >= log_threshold(); }

void log(int level, const std::string& component, const std::string& message) noexcept {
  if (level < log_threshold()) return;
  emit(level, component, message);
}

void log_always(int level, const std::string& component, const std::string& message) noexcept {
  emit(level, component, message);
}

void set_serving(std::int32_t index) noexcept {
  g_serving.store(true);
  if (index >= 0) g_index.store(index);
}

void note_process_worker(std::int32_t index, std::int32_t rank) noexcept {
  if (!g_serving.load(std::memory_order_relaxed)) return;  // a thread of the master (threads, serial)
  if (index >= 0) g_index.store(index);
  if (rank >= 0) g_rank.store(rank);
}

void set_serving_worker() noexcept {
  std::int32_t index = -1;
  if (const char* i = std::getenv(WM_ENV_PROCESS_INDEX)) {
    char* end = nullptr;
    const long v = std::strtol(i, &end, 10);
    if (*i != '\0' && *end == '\0' && v >= 0 && v < (1L << 30)) index = static_cast<std::int32_t>(v);
  }
  set_serving(index);
}

// A rank > 0 of a parallel job is never a master: so it is called from its first line on, before
// its backend has said who it is (it decides that as it starts). 0: none or rank 0.
const char* launcher_rank_above_0() {
  for (const char* var : {"OMPI_COMM_WORLD_RANK", "PMIX_RANK", "PMI_RANK"})
    if (const char* v = std::getenv(var); v != nullptr && *v != '\0') return std::strcmp(v, "0") != 0 ? v : nullptr;
  return nullptr;
}

std::string process_role() {
  const char* launcher = launcher_rank_above_0();
  if (!g_serving.load()) return launcher != nullptr ? std::string("rank ") + launcher : "master";
  if (const std::int32_t rank = g_rank.load(); rank >= 0) return "rank " + std::to_string(rank);
  if (const std::int32_t index = g_index.load(); index >= 0) return "worker " + std::to_string(index);
  if (launcher != nullptr) return std::string("rank ") + launcher;
  return "node " + host_name() + ":" + std::to_string(getpid());
}

bool stderr_is_terminal() noexcept {
  static const bool tty = isatty(STDERR_FILENO) == 1;
  return tty;
}

void write_stderr_lines(const std::string& text) noexcept {
  std::lock_guard<std::mutex> lock(g_err_mutex);
  if (g_status) {
    // The progress line comes off first (its owner draws it again): one write for both.
    g_status = false;
    try {
      const std::string all = "\r\033[K" + text;
      write_all(all.data(), all.size());
      return;
    } catch (...) {
      write_all("\r\033[K", 4);
    }
  }
  write_all(text.data(), text.size());
}

void draw_status_line(const std::string& text, unsigned generation) noexcept {
  std::lock_guard<std::mutex> lock(g_err_mutex);
  if (generation != g_generation || (text.empty() && !g_status)) return;
  try {
    const std::string all = "\r" + text + "\033[K";
    write_all(all.data(), all.size());
    g_status = !text.empty();
  } catch (...) {
  }
}

unsigned status_generation() noexcept {
  std::lock_guard<std::mutex> lock(g_err_mutex);
  return g_generation;
}

void take_status_line() noexcept {
  std::lock_guard<std::mutex> lock(g_err_mutex);
  ++g_generation;
  if (g_status) write_all("\r\033[K", 4);
  g_status = false;
}

}  // namespace wm::detail

namespace wm {

LogSink set_log_sink(LogSink sink) {
  auto next = std::make_shared<const LogSink>(std::move(sink));
  std::shared_ptr<const LogSink> before;
  {
    detail::SinkSlot& slot = detail::sink_slot();
    std::lock_guard<std::mutex> lock(slot.mutex);
    before = std::exchange(slot.sink, std::move(next));
  }
  return before ? *before : LogSink();
}

}  // namespace wm
