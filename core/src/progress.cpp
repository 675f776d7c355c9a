// SPDX-License-Identifier: MIT
// progress.cpp: the progress display (wm::progress, --wm-progress): one thread of the core draws
// every progress under way, in place on a terminal or as plain log lines every few seconds.
#include "progress.hpp"

#include "console.hpp"
#include "internal.hpp"
#include "link_stats.hpp"

#include <wm/progress.hpp>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdio>
#include <cstdlib>
#include <deque>
#include <mutex>
#include <thread>

namespace wm::detail {

class ProgressTracker : public std::enable_shared_from_this<ProgressTracker> {
 public:
  ProgressTracker(std::size_t total, std::string label)
      : label_(std::move(label)), total_(total), started_(Clock::now()) {}

  using Clock = std::chrono::steady_clock;

  // Counted by an owner (a range) ...
  void step(bool failed) noexcept {
    done_.fetch_add(1, std::memory_order_relaxed);
    if (failed) failed_.fetch_add(1, std::memory_order_relaxed);
  }
  void end() noexcept { ended_.store(true, std::memory_order_release); }
  bool ended() const noexcept { return ended_.load(std::memory_order_acquire); }
  bool reported = false;  // its last line was written by its owner (under the drawer's mutex)
  std::mutex mutex;       // look() and line(): the drawer's thread, or its owner's at the end

  // ... or by the drawer, from the tasks (vector mode) or a work manager's counters (mode on).
  std::vector<StatePtr> pending;          // the drawer's: tasks not seen finished yet
  std::shared_ptr<LinkStats> whole_run;   // mode on: a work manager's tasks

  /** The drawer's look: counts now, and whether it is over. */
  bool look() {
    if (whole_run) {
      std::uint64_t submitted = 0, finished = 0, failed = 0;
      whole_run->counts(submitted, finished, failed);
      total_ = static_cast<std::size_t>(submitted);
      done_.store(static_cast<std::size_t>(finished), std::memory_order_relaxed);
      failed_.store(static_cast<std::size_t>(failed), std::memory_order_relaxed);
      return whole_run->closed();
    }
    if (ranged_) return ended_.load(std::memory_order_acquire);
    std::size_t finished = 0, failed = 0;
    auto still = std::remove_if(pending.begin(), pending.end(), [&](const StatePtr& s) {
      if (!s->done()) return false;
      ++finished;
      if (s->status() == TaskState::failed) ++failed;
      return true;
    });
    pending.erase(still, pending.end());
    done_.fetch_add(finished, std::memory_order_relaxed);
    failed_.fetch_add(failed, std::memory_order_relaxed);
    return pending.empty();
  }

  std::size_t done() const noexcept { return done_.load(std::memory_order_relaxed); }

  /** "label: 512/1000 done (51%), 2 failed, 123.4/s, ETA 4s, 12.3 s" */
  std::string line(Clock::time_point now) {
    const std::size_t done_now = done(), failed = failed_.load(std::memory_order_relaxed);
    // The rate over the last 10 s (samples kept once a second).
    if (samples_.empty() || now - samples_.back().first >= std::chrono::seconds(1)) samples_.emplace_back(now, done_now);
    while (samples_.size() > 1 && now - samples_[1].first >= std::chrono::seconds(10)) samples_.pop_front();
    const auto [then, done_then] = samples_.front().first == now && samples_.size() == 1
                                       ? std::make_pair(started_, std::size_t(0))
                                       : samples_.front();
    const double span = std::chrono::duration<double>(now - then).count();
    const double rate = span > 0 ? double(done_now - std::min(done_now, done_then)) / span : 0;
    char buf[64];
    std::string out = label_ + ": " + std::to_string(done_now);
    if (total_ != 0) {
      std::snprintf(buf, sizeof buf, "/%zu done (%.0f%%)", total_, 100.0 * double(done_now) / double(total_));
      out += buf;
    } else {
      out += " done";
    }
    if (failed != 0) out += ", " + std::to_string(failed) + " failed";
    std::snprintf(buf, sizeof buf, ", %.1f/s", rate);
    out += buf;
    if (total_ != 0 && done_now < total_ && rate > 0) out += ", ETA " + duration_text(double(total_ - done_now) / rate);
    out += ", " + duration_text(std::chrono::duration<double>(now - started_).count());
    return out;
  }

  void mark_ranged() noexcept { ranged_ = true; }
  Clock::time_point started() const noexcept { return started_; }
  Clock::time_point last_plain{};  // non-terminal: when its last plain line was written

  static std::string duration_text(double s) {
    char buf[32];
    if (s < 60)
      std::snprintf(buf, sizeof buf, "%.1fs", s);
    else if (s < 3600)
      std::snprintf(buf, sizeof buf, "%dm%02ds", int(s) / 60, int(s) % 60);
    else
      std::snprintf(buf, sizeof buf, "%dh%02dm", int(s) / 3600, int(s) / 60 % 60);
    return buf;
  }

 private:
  const std::string label_;
  std::size_t total_;
  const Clock::time_point started_;
  std::atomic<std::size_t> done_{0}, failed_{0};
  std::atomic<bool> ended_{false};
  bool ranged_ = false;  // counted by an owner: over when it ends
  std::deque<std::pair<Clock::time_point, std::size_t>> samples_;
};

namespace {

using Clock = std::chrono::steady_clock;
// On a terminal: redrawn this often (and at once when a progress starts or ends).
constexpr auto kRedraw = std::chrono::milliseconds(200);
// Elsewhere: one plain line per progress this often.
constexpr auto kPlainEvery = std::chrono::seconds(5);

std::atomic<int> g_mode{-1};  // ProgressMode; -1: not set (WM_PROGRESS, else auto)

ProgressMode mode() {
  int m = g_mode.load(std::memory_order_relaxed);
  if (m < 0) {
    ProgressMode parsed = ProgressMode::automatic;
    if (const char* v = std::getenv("WM_PROGRESS")) parse_progress_mode(v, parsed);
    m = static_cast<int>(parsed);
    int expected = -1;
    if (!g_mode.compare_exchange_strong(expected, m)) m = expected;
  }
  return static_cast<ProgressMode>(m);
}

// The thread that draws. Never destroyed: trackers may end during exit.
class Drawer {
 public:
  static Drawer& get() {
    static auto* d = new Drawer;
    return *d;
  }

  /** An owner ended its progress on its own thread: its last line is written now, before the
   *  owner goes on (and the program, maybe, writes to the terminal). */
  void end_now(const std::shared_ptr<ProgressTracker>& t) {
    take_status_line();
    std::string last;
    {
      std::lock_guard<std::mutex> lock(t->mutex);
      t->look();
      last = t->line(Clock::now());
    }
    log_always(WM_LOG_INFO, "progress", last);
    {
      std::lock_guard<std::mutex> lock(mutex_);
      t->reported = true;
    }
    cv_.notify_one();
  }

  void add(std::shared_ptr<ProgressTracker> t) {
    {
      std::lock_guard<std::mutex> lock(mutex_);
      incoming_.push_back(std::move(t));
      if (!started_) {
        started_ = true;
        std::thread([this] { run(); }).detach();
      }
    }
    cv_.notify_one();
  }
  void poke() { cv_.notify_one(); }

 private:
  void run() {
    const bool terminal = stderr_is_terminal();
    std::vector<std::shared_ptr<ProgressTracker>> active;
    std::string shown;
    unsigned drawn_generation = 0;
    auto last_draw = Clock::now();
    for (;;) {
      {
        std::unique_lock<std::mutex> lock(mutex_);
        if (active.empty() && incoming_.empty()) {
          cv_.wait(lock, [&] { return !incoming_.empty(); });
        } else {
          cv_.wait_for(lock, kRedraw);
        }
        for (auto& t : incoming_) active.push_back(std::move(t));
        incoming_.clear();
      }
      const auto now = Clock::now();
      const unsigned generation = status_generation();
      std::string status;
      for (std::size_t i = 0; i < active.size();) {
        ProgressTracker& t = *active[i];
        bool reported;
        {
          std::lock_guard<std::mutex> lock(mutex_);
          reported = t.reported;
        }
        if (reported) {  // its owner wrote its last line (end_now)
          active.erase(active.begin() + static_cast<std::ptrdiff_t>(i));
          continue;
        }
        bool over;
        std::string text;
        {
          std::lock_guard<std::mutex> lock(t.mutex);
          over = t.look();
          text = t.line(now);
        }
        if (over) {
          // Its last line, whole, as a log line of its own (time, role, pid; the host's sink).
          if (terminal && !shown.empty()) {
            draw_status_line("", generation);
            shown.clear();
          }
          log_always(WM_LOG_INFO, "progress", text);
          active.erase(active.begin() + static_cast<std::ptrdiff_t>(i));
          continue;
        }
        if (terminal) {
          status += (status.empty() ? "[wm] " : " | ") + text;
        } else if (now - std::max(t.started(), t.last_plain) >= kPlainEvery) {
          t.last_plain = now;
          log_always(WM_LOG_INFO, "progress", text);
        }
        ++i;
      }
      if (terminal && (status != shown || now - last_draw >= std::chrono::seconds(1) || generation != drawn_generation)) {
        if (!status.empty() || !shown.empty()) draw_status_line(status, generation);
        shown = status;
        last_draw = now;
        drawn_generation = generation;
      }
    }
  }

  std::mutex mutex_;
  std::condition_variable cv_;
  std::vector<std::shared_ptr<ProgressTracker>> incoming_;
  bool started_ = false;
};

}  // namespace

bool parse_progress_mode(const std::string& text, ProgressMode& out) {
  std::string t;
  for (char c : text)
    if (c != ' ' && c != '\t') t += static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  if (t == "auto") out = ProgressMode::automatic;
  else if (t == "on" || t == "yes" || t == "true" || t == "1") out = ProgressMode::on;
  else if (t == "off" || t == "no" || t == "false" || t == "0") out = ProgressMode::off;
  else return false;
  return true;
}

void set_progress_mode(ProgressMode m) noexcept { g_mode.store(static_cast<int>(m)); }
ProgressMode progress_mode() noexcept { return mode(); }

void track_progress(const StatePtr* states, std::size_t n, const std::string& label) {
  if (mode() == ProgressMode::off || n == 0) return;
  auto t = std::make_shared<ProgressTracker>(n, label);
  t->pending.assign(states, states + n);
  Drawer::get().add(std::move(t));
}

std::shared_ptr<ProgressTracker> start_progress(std::size_t total, const std::string& label) {
  if (mode() == ProgressMode::off) return nullptr;
  auto t = std::make_shared<ProgressTracker>(total, label);
  t->mark_ranged();
  Drawer::get().add(t);
  return t;
}

void progress_step(ProgressTracker& tracker, bool failed) noexcept { tracker.step(failed); }

void progress_end(ProgressTracker& tracker) noexcept {
  if (tracker.ended()) return;
  tracker.end();
  try {
    Drawer::get().end_now(tracker.shared_from_this());
  } catch (...) {
    Drawer::get().poke();
  }
}

void track_work_manager(const std::shared_ptr<LinkStats>& stats, const std::string& label) {
  if (mode() != ProgressMode::on) return;
  auto t = std::make_shared<ProgressTracker>(0, label);
  t->whole_run = stats;
  Drawer::get().add(std::move(t));
}

}  // namespace wm::detail
