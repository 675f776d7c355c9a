// SPDX-License-Identifier: MIT
// progress.hpp: the progress display's setting (--wm-progress) and a work manager's own progress
// (mode on), for the environment and the backend link.
#pragma once

#include <memory>
#include <string>

namespace wm::detail {

class LinkStats;

/** --wm-progress: auto (wm::progress draws), on (every work manager too), off (nothing). */
enum class ProgressMode { automatic = 0, on = 1, off = 2 };
/** auto, on (yes, true, 1), off (no, false, 0), any case; false for anything else. */
bool parse_progress_mode(const std::string& text, ProgressMode& out);
inline constexpr const char* kProgressModes = "auto, on or off";
/** The process's setting (the last work manager made says; before that WM_PROGRESS, else auto). */
void set_progress_mode(ProgressMode mode) noexcept;
ProgressMode progress_mode() noexcept;
/** Mode on: shows a work manager's own tasks (done/submitted) until it is shut down. */
void track_work_manager(const std::shared_ptr<LinkStats>& stats, const std::string& label);
/** Its shutdown: the last line of its own progress, now. */
void end_work_manager_progress(const LinkStats* stats) noexcept;

}  // namespace wm::detail
