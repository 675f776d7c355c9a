// SPDX-License-Identifier: MIT
// watch.hpp: watching a run from outside the program: the status dump on a signal (SIGUSR1 by
// default), the summary at shutdown, and the dashboard (--wm-dashboard, served by the module
// wm_dashboard.so, loaded only then). Set up by make_work_manager() for a master.
#pragma once

#include "progress.hpp"

#include <wm/stats.hpp>

#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>

namespace wm::detail {

class BackendLink;

/** wm's watching settings of one work manager (--wm-progress, --wm-dump-signal, --wm-dashboard). */
struct WatchSettings {
  ProgressMode progress = ProgressMode::automatic;
  int dump_signal = 0;  // 0: none
  std::string dashboard;  // "HOST:PORT"; empty: none
  std::string token;      // WM_DASHBOARD_TOKEN; empty: one is made where it is needed
  std::uint64_t shared_memory_limit = 0;  // --wm-shared-memory-limit; 0: the default
};

/** How each setting is read: its text and where it came from ("option --wm-x", "environment
 *  variable WM_X"), or nullopt if not given. */
using SettingReader = std::function<std::optional<std::pair<std::string, std::string>>(const std::string& name)>;
/** The settings, checked: throws ConfigError naming the flag or variable and the value. */
WatchSettings read_watch_settings(const SettingReader& read);

/** One of wm's watching settings, for help and `wm config`. */
struct WatchOption {
  const char* name;        // "progress" (--wm-progress, WM_PROGRESS)
  const char* value_name;  // "MODE"
  const char* help;
  const char* default_text;
};
/** The watching options, in the order help lists them. */
const WatchOption* watch_options(std::size_t& n) noexcept;

/** What a master's work manager runs to be watched: the dump on the signal, the dashboard, its
 *  own progress (mode on). Stopped (the dashboard served no more) by stop() or the destructor. */
class Watch {
 public:
  Watch(const std::shared_ptr<BackendLink>& link, const WatchSettings& settings);
  ~Watch();
  Watch(const Watch&) = delete;
  Watch& operator=(const Watch&) = delete;
  /** Stops the dashboard (waits for requests being answered) and leaves the dump's list. */
  void stop() noexcept;

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

/** At a master's shutdown, at level info: one line of totals and one of each worker's busy time. */
void log_shutdown_summary(const Stats& stats) noexcept;
/** In a process that serves a master: the dump signal (WM_DUMP_SIGNAL, else SIGUSR1), still at its
 *  default (which ends a process), is ignored: a signal meant for the master (mpirun forwards it to
 *  every rank, `kill -USR1 -PGID` reaches the whole group) must not end a worker. */
void ignore_dump_signal_in_worker() noexcept;

}  // namespace wm::detail
