// SPDX-License-Identifier: MIT
// progress.cpp: the progress display (wm::progress, --wm-progress): one thread of the core draws
// every progress under way, in place on a terminal or as plain log lines every few seconds; the
// last line of each is written by whoever sees it end (the range's owner, the thread that finished
// the last task, the work manager's shutdown, the process's exit), at once.
#include "progress.hpp"

#include "console.hpp"
#include "duration_text.hpp"
#include "internal.hpp"
#include "link_stats.hpp"

#include <wm/progress.hpp>

#include <algorithm>
#include <atomic>
#include <cctype>
#include <chrono>
#include <condition_variable>
#include <cstdio>
#include <cstdlib>
#include <deque>
#include <mutex>
#include <thread>

namespace wm::detail {

using Clock = std::chrono::steady_clock;

class ProgressTracker final : public Listener, public std::enable_shared_from_this<ProgressTracker> {
 public:
  enum class Kind {
    owned,     // a range counts what it yields (progress_step, progress_end)
    futures,   // futures, counted as they finish (a listener on each)
    whole_run  // mode on: a work manager's own counts, until it is shut down
  };

  ProgressTracker(Kind kind, std::size_t total, std::string label)
      : kind_(kind), label_(std::move(label)), total_(total), started_(Clock::now()) {}

  void step(bool failed) noexcept {
    done_.fetch_add(1, std::memory_order_relaxed);
    if (failed) failed_.fetch_add(1, std::memory_order_relaxed);
  }
  void end() noexcept { ended_.store(true, std::memory_order_release); }
  bool ended() const noexcept { return ended_.load(std::memory_order_acquire); }

  // Listener (kind futures): the thread that finished the last one writes the last line.
  void on_done(TaskState* s) noexcept override {
    step(s->status() == TaskState::failed);
    if (done_.load(std::memory_order_relaxed) >= total_) report_end();
  }

  std::shared_ptr<LinkStats> whole_run;  // kind whole_run

  /** Over: the last line is due. */
  bool over() const noexcept {
    switch (kind_) {
      case Kind::owned: return ended();
      case Kind::futures: return done_.load(std::memory_order_relaxed) >= total_;
      case Kind::whole_run: return whole_run->closed();
    }
    return true;
  }
  bool reported() const noexcept { return reported_.load(std::memory_order_acquire); }

  /** Writes the last line, once, whoever calls first; the progress line comes off the terminal. */
  void report_end() noexcept {
    if (reported_.exchange(true, std::memory_order_acq_rel)) return;
    try {
      take_status_line();
      log_always(WM_LOG_INFO, "progress", line(Clock::now()));
    } catch (...) {
    }
  }

  /** "label: 512/1000 done (51%), 2 failed, 123.4/s, ETA 4s, 12.3s" */
  std::string line(Clock::time_point now) {
    std::lock_guard<std::mutex> lock(mutex_);
    if (kind_ == Kind::whole_run) {
      std::uint64_t submitted = 0, finished = 0, failed = 0;
      whole_run->counts(submitted, finished, failed);
      total_ = static_cast<std::size_t>(submitted);
      done_.store(static_cast<std::size_t>(finished), std::memory_order_relaxed);
      failed_.store(static_cast<std::size_t>(failed), std::memory_order_relaxed);
    }
    const std::size_t done = done_.load(std::memory_order_relaxed), failed = failed_.load(std::memory_order_relaxed);
    // The rate over the last 10 s (a sample kept once a second), from the start until then.
    if (samples_.empty()) samples_.emplace_back(started_, 0);
    if (now - samples_.back().first >= std::chrono::seconds(1)) samples_.emplace_back(now, done);
    while (samples_.size() > 1 && now - samples_[1].first >= std::chrono::seconds(10)) samples_.pop_front();
    const auto [then, done_then] = samples_.front();
    const double span = std::chrono::duration<double>(now - then).count();
    const double rate = span > 0 ? double(done - std::min(done, done_then)) / span : 0;
    char buf[64];
    std::string out = label_ + ": " + std::to_string(done);
    if (total_ != 0) {
      std::snprintf(buf, sizeof buf, "/%zu done (%.0f%%)", total_, 100.0 * double(done) / double(total_));
      out += buf;
    } else {
      out += " done";
    }
    if (failed != 0) out += ", " + std::to_string(failed) + " failed";
    std::snprintf(buf, sizeof buf, ", %.1f/s", rate);
    out += buf;
    if (total_ != 0 && done < total_ && rate > 0) out += ", ETA " + duration_text(double(total_ - done) / rate);
    out += ", " + duration_text(std::chrono::duration<double>(now - started_).count());
    return out;
  }

  Clock::time_point started() const noexcept { return started_; }
  Clock::time_point last_plain{};  // the drawer's: when its last plain line was written

 private:

  const Kind kind_;
  const std::string label_;
  std::size_t total_;  // under mutex_ (whole_run: updated from the counts)
  const Clock::time_point started_;
  std::atomic<std::size_t> done_{0}, failed_{0};
  std::atomic<bool> ended_{false}, reported_{false};
  std::mutex mutex_;
  std::deque<std::pair<Clock::time_point, std::size_t>> samples_;
};

namespace {

// On a terminal: redrawn this often.
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

// The thread that draws, and the progresses under way. Never destroyed: they may end during exit.
class Drawer {
 public:
  static Drawer& get() {
    static Drawer* d = [] {
      auto* made = new Drawer;
      std::atexit([] { get().at_exit(); });
      return made;
    }();
    return *d;
  }

  void add(const std::shared_ptr<ProgressTracker>& t) {
    {
      std::lock_guard<std::mutex> lock(mutex_);
      active_.push_back(t);
      if (!started_) {
        started_ = true;
        std::thread([this] { run(); }).detach();
      }
    }
    cv_.notify_one();
  }
  void poke() { cv_.notify_one(); }

  /** A work manager was shut down: its own progress (mode on) ends now, with its last line. */
  void end_whole_run(const LinkStats* stats) {
    for (const auto& t : snapshot())
      if (t->whole_run.get() == stats) t->report_end();
    poke();
  }

 private:
  std::vector<std::shared_ptr<ProgressTracker>> snapshot() {
    std::lock_guard<std::mutex> lock(mutex_);
    active_.erase(std::remove_if(active_.begin(), active_.end(), [](const auto& t) { return t->reported(); }),
                  active_.end());
    return active_;
  }

  // The program ends: what is over and not said yet is said (a vector of futures all finished just
  // before, a work manager never shut down).
  void at_exit() {
    for (const auto& t : snapshot())
      if (t->over()) t->report_end();
    take_status_line();
  }

  void run() {
    const bool terminal = stderr_is_terminal();
    std::string shown;
    unsigned drawn_generation = ~0u;
    auto last_draw = Clock::now();
    for (;;) {
      {
        std::unique_lock<std::mutex> lock(mutex_);
        if (active_.empty())
          cv_.wait(lock, [&] { return !active_.empty(); });
        else
          cv_.wait_for(lock, kRedraw);
      }
      const auto now = Clock::now();
      const unsigned generation = status_generation();
      std::string status;
      for (const auto& t : snapshot()) {
        if (t->over()) {
          t->report_end();
          continue;
        }
        const std::string text = t->line(now);
        if (terminal) {
          status += (status.empty() ? "[wm] " : " | ") + text;
        } else if (now - std::max(t->started(), t->last_plain) >= kPlainEvery) {
          t->last_plain = now;
          log_always(WM_LOG_INFO, "progress", text);
        }
      }
      if (terminal && (status != shown || now - last_draw >= std::chrono::seconds(1) || generation != drawn_generation)) {
        draw_status_line(status, generation);
        shown = status;
        last_draw = now;
        drawn_generation = generation;
      }
    }
  }

  std::mutex mutex_;
  std::condition_variable cv_;
  std::vector<std::shared_ptr<ProgressTracker>> active_;
  bool started_ = false;
};

}  // namespace

bool parse_progress_mode(const std::string& text, ProgressMode& out) {
  std::string t;
  for (char c : text)
    if (c != ' ' && c != '\t') t += static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  if (t == "auto")
    out = ProgressMode::automatic;
  else if (t == "on" || t == "yes" || t == "true" || t == "1")
    out = ProgressMode::on;
  else if (t == "off" || t == "no" || t == "false" || t == "0")
    out = ProgressMode::off;
  else
    return false;
  return true;
}

void set_progress_mode(ProgressMode m) noexcept { g_mode.store(static_cast<int>(m)); }
ProgressMode progress_mode() noexcept { return mode(); }

void track_progress(const StatePtr* states, std::size_t n, const std::string& label) {
  if (mode() == ProgressMode::off || n == 0) return;
  auto t = std::make_shared<ProgressTracker>(ProgressTracker::Kind::futures, n, label);
  Drawer::get().add(t);
  for (std::size_t i = 0; i < n; ++i) add_listener(states[i].get(), t);
}

std::shared_ptr<ProgressTracker> start_progress(std::size_t total, const std::string& label) {
  if (mode() == ProgressMode::off) return nullptr;
  auto t = std::make_shared<ProgressTracker>(ProgressTracker::Kind::owned, total, label);
  Drawer::get().add(t);
  return t;
}

void progress_step(ProgressTracker& tracker, bool failed) noexcept { tracker.step(failed); }

void progress_end(ProgressTracker& tracker) noexcept {
  if (tracker.ended()) return;
  tracker.end();
  // Said at once, on the owner's thread: before the program goes on (and writes, maybe, to the
  // same terminal).
  tracker.report_end();
  Drawer::get().poke();
}

void track_work_manager(const std::shared_ptr<LinkStats>& stats, const std::string& label) {
  if (mode() != ProgressMode::on) return;
  auto t = std::make_shared<ProgressTracker>(ProgressTracker::Kind::whole_run, 0, label);
  t->whole_run = stats;
  Drawer::get().add(t);
}

void end_work_manager_progress(const LinkStats* stats) noexcept {
  if (mode() != ProgressMode::on) return;
  try {
    Drawer::get().end_whole_run(stats);
  } catch (...) {
  }
}

}  // namespace wm::detail
