// SPDX-License-Identifier: MIT
// wm/log.hpp: wm's log lines, each saying when, how urgent, who (master, worker N, rank R, node
// host:pid) and which pid; set_log_sink() routes them into the host's own logger.
//
// On stderr a line reads
//   2026-12-08T10:11:12.345Z master pid 4242 [wm processes] warning: worker 1 (pid 4250) was killed ...
// WM_LOG_LEVEL (debug, info, warning, error; default warning) says which lines are written.
//
// @code
//   // Into spdlog (the host's dependency, not wm's):
//   wm::set_log_sink([](const wm::LogRecord& r) {
//     static const spdlog::level::level_enum levels[] = {spdlog::level::debug, spdlog::level::info,
//                                                        spdlog::level::warn, spdlog::level::err};
//     spdlog::log(levels[static_cast<int>(r.level)], "[wm {}] {} (pid {}): {}", r.component, r.role, r.pid, r.message);
//   });
// @endcode
#pragma once

#include <chrono>
#include <cstdint>
#include <functional>
#include <string>

namespace wm {

/** How urgent a line is (WM_LOG_LEVEL names them). */
enum class LogLevel { debug = 0, info = 1, warning = 2, error = 3 };
/** "debug", "info", "warning", "error". */
const char* to_string(LogLevel level) noexcept;

/** One line wm logs. */
struct LogRecord {
  std::chrono::system_clock::time_point time;
  LogLevel level = LogLevel::warning;
  std::string role;       // "master", "worker 3", "rank 2" or "node host:pid": the process that logs
  std::int64_t pid = 0;
  std::string component;  // "core" or the backend's name ("processes", ...)
  std::string message;    // one line
  std::string line;       // the whole line as written on stderr, without its newline
};

/** Where wm's log lines go (set_log_sink). */
using LogSink = std::function<void(const LogRecord&)>;

/**
 * Routes wm's log lines (those WM_LOG_LEVEL lets through) to sink instead of stderr, in this
 * process; an empty sink puts them back on stderr. Returns the sink it replaces.
 *
 * The sink is called on the thread that logs (any of wm's threads, several at once), with no lock
 * of wm's held; it must not block for long, and what it throws is ignored. Worker processes that
 * the backend starts run the host program up to make_work_manager(): a sink set before that call
 * serves them too, otherwise their lines go to their stderr (the master's, unless redirected).
 */
LogSink set_log_sink(LogSink sink);

}  // namespace wm
