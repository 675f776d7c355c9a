// SPDX-License-Identifier: MIT
// console.hpp: wm's stderr, shared by the log, the progress display and the status dump (whole
// lines, one write each, a progress line on a terminal taken off first), and who this process is
// in its job, for the log lines (master, worker N, rank R, node host:pid).
#pragma once

#include <cstdint>
#include <string>

namespace wm::detail {

/** True if a line of this level passes WM_LOG_LEVEL. */
bool log_enabled(int level) noexcept;
/** Logs a line whatever WM_LOG_LEVEL says: output the user asked for (a status dump). */
void log_always(int level, const std::string& component, const std::string& message) noexcept;

/** This process serves a master (a spawned worker, an SPMD rank, a node) from now on; index: its
 *  worker index if known (-1). */
void set_serving(std::int32_t index) noexcept;
/** A spawned worker (WM_WORKER_BACKEND): serving, its index from WM_PROCESS_INDEX. */
void set_serving_worker() noexcept;
/** set_worker(): in a serving process, the worker it is (index, rank; -1 leaves one as it was). */
void note_process_worker(std::int32_t index, std::int32_t rank) noexcept;
/** "master", "worker N", "rank R" or "node host:pid". */
std::string process_role();

/** True if stderr is a terminal (checked once). */
bool stderr_is_terminal() noexcept;
/** Writes whole lines (text ends with '\n') to stderr in one write; on a terminal, a progress line
 *  drawn in place is taken off first (its owner draws it again). */
void write_stderr_lines(const std::string& text) noexcept;
/** Draws the progress line in place on the terminal ("": takes it off), unless the line was
 *  taken off (take_status_line) since `generation` was read (status_generation). */
void draw_status_line(const std::string& text, unsigned generation) noexcept;
unsigned status_generation() noexcept;
/** Takes the progress line off now; a draw prepared before does not put it back. */
void take_status_line() noexcept;

}  // namespace wm::detail
