// SPDX-License-Identifier: MIT
// wm/progress.hpp: a progress line on stderr while tasks run: done/total, failures, rate, ETA.
//
// @code
//   auto futures = wm::progress(wm->submit_many(std::move(tasks)));   // counted as they finish
//   wm->wait_all(futures);
//
//   for (wm::Future<int> f : wm::progress(wm->as_completed(futures))) ...        // as they are yielded
//   for (wm::Future<int> f : wm::progress(wm->submit_as_completed(gen, 64), n)) ... // n: how many (0: unknown)
// @endcode
//
// On a terminal the line is redrawn in place (about five times a second); elsewhere (a batch job's
// log) one plain line every 5 s and one at the end, each a log line of wm's (time, role, pid; to
// the host's sink if it set one). wm's own log lines take the progress line off the terminal
// first; everything is written to stderr in whole lines, never to stdout. --wm-progress
// (WM_PROGRESS): auto (the default: these calls draw), on (every work manager also shows its own
// tasks, done/submitted, without a call here), off (nothing is drawn; these calls change nothing).
#pragma once

#include <wm/future.hpp>
#include <wm/work_manager.hpp>  // detail::NextIterator

#include <cstddef>
#include <memory>
#include <optional>
#include <string>
#include <type_traits>
#include <utility>
#include <vector>

namespace wm {

namespace detail {
class ProgressTracker;
/** Shows the progress of these tasks until each has finished (nothing when progress is off). */
void track_progress(const StatePtr* states, std::size_t n, const std::string& label);
/** A progress counted by its owner (null when progress is off); total 0: unknown. */
std::shared_ptr<ProgressTracker> start_progress(std::size_t total, const std::string& label);
/** The owner saw a task finish. */
void progress_step(ProgressTracker& tracker, bool failed) noexcept;
/** The owner is done (all finished, or it gave up): the last line is drawn. */
void progress_end(ProgressTracker& tracker) noexcept;

template <class R, class = void>
struct yields_futures : std::false_type {};
template <class R>
struct yields_futures<R, std::void_t<decltype(std::declval<R&>().next()->failed())>> : std::true_type {};
template <class R, class = void>
struct has_remaining : std::false_type {};
template <class R>
struct has_remaining<R, std::void_t<decltype(std::declval<const R&>().remaining())>> : std::true_type {};
}  // namespace detail

/** A range of futures (as_completed, submit_as_completed) whose progress is shown as it is
 *  iterated (wm::progress). Single pass. */
template <class Range>
class ProgressRange {
 public:
  using future_type = typename decltype(std::declval<Range&>().next())::value_type;

  ProgressRange(Range range, std::size_t total, const std::string& label)
      : range_(std::move(range)), tracker_(detail::start_progress(total, label)) {}
  ProgressRange(ProgressRange&&) noexcept = default;
  ProgressRange& operator=(ProgressRange&&) noexcept = default;
  ~ProgressRange() {
    if (tracker_) detail::progress_end(*tracker_);
  }

  /** The next future of the range (nullopt at its end), counted. */
  std::optional<future_type> next() {
    std::optional<future_type> f = range_.next();
    if (tracker_) {
      if (f)
        detail::progress_step(*tracker_, f->failed());
      else
        detail::progress_end(*tracker_);
    }
    return f;
  }

  using iterator = detail::NextIterator<ProgressRange, future_type>;
  iterator begin() { return iterator(this); }
  iterator end() { return iterator(); }

 private:
  Range range_;
  std::shared_ptr<detail::ProgressTracker> tracker_;
};

/**
 * Shows the progress of these futures on stderr until they have all finished (see above), and
 * returns them: wrap what submit_many returns, or what wait_all or as_completed are given.
 * label names them in the line ("tasks").
 */
template <class T>
std::vector<Future<T>> progress(std::vector<Future<T>> futures, const std::string& label = "tasks") {
  std::vector<detail::StatePtr> states;
  states.reserve(futures.size());
  for (const Future<T>& f : futures)
    if (f.valid()) states.push_back(f.state());
  detail::track_progress(states.data(), states.size(), label);
  return futures;
}

/**
 * Shows the progress of a range of futures (what as_completed or submit_as_completed returns) as
 * it is iterated. total: how many it will yield (0: as many as as_completed has; unknown, so no
 * ETA, for submit_as_completed).
 */
template <class Range, class = std::enable_if_t<detail::yields_futures<std::decay_t<Range>>::value>>
ProgressRange<std::decay_t<Range>> progress(Range&& range, std::size_t total = 0, const std::string& label = "tasks") {
  if constexpr (detail::has_remaining<std::decay_t<Range>>::value) {
    if (total == 0) total = range.remaining();
  }
  return ProgressRange<std::decay_t<Range>>(std::forward<Range>(range), total, label);
}

}  // namespace wm
