// SPDX-License-Identifier: MIT
// bench_common.hpp: helpers shared by the benchmark programs (wm_bench, wm_floor, wm_mpi_floor):
// clocks, a CPU busy loop, statistics, /proc readers, and the JSON lines the driver (run.py) reads
// (written with nlohmann-json).
//
// Every program prints one JSON object per line on stdout; run.py keeps the lines that start with
// '{' and have a "kind" field. Kinds:
//   {"kind":"metric","source":S,"metric":M,"unit":U,"values":[one per run],...}
//   {"kind":"hist","source":S,"metric":M,"edges_us":[...],"counts":[...]}
//   {"kind":"na","source":S,"metric":M,"reason":"..."}
//   {"kind":"info","source":S,...}
#pragma once

#include <nlohmann/json.hpp>

#include <dirent.h>
#include <sys/types.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <ctime>
#include <fstream>
#include <map>
#include <sstream>
#include <string>
#include <utility>
#include <vector>

namespace bench {

inline double now_s() {
  return std::chrono::duration<double>(std::chrono::steady_clock::now().time_since_epoch()).count();
}

inline std::int64_t thread_cpu_ns() {
  timespec ts{};
  clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
  return std::int64_t(ts.tv_sec) * 1000000000LL + ts.tv_nsec;
}

/** Spins until this thread has used `us` microseconds of CPU time. */
inline void busy_cpu_us(std::int64_t us) {
  const std::int64_t end = thread_cpu_ns() + us * 1000;
  while (thread_cpu_ns() < end) {
  }
}

inline double quantile(std::vector<double> v, double q) {
  if (v.empty()) return NAN;
  std::sort(v.begin(), v.end());
  const double pos = q * double(v.size() - 1);
  const auto lo = std::size_t(std::floor(pos));
  const auto hi = std::min(lo + 1, v.size() - 1);
  return v[lo] + (v[hi] - v[lo]) * (pos - double(lo));
}

// ---------------------------------------------------------------- JSON output

/** A number for a human-readable note ("%.6g"). */
inline std::string short_number(double v) {
  char buf[40];
  std::snprintf(buf, sizeof buf, "%.6g", v);
  return buf;
}

/** One JSON object, built field by field (nlohmann-json; fields in the order given). */
class Json {
 public:
  Json& str(const std::string& k, const std::string& v) { return set(k, v); }
  /** A non-finite number is written as null. */
  Json& num(const std::string& k, double v) { return set(k, finite(v)); }
  Json& integer(const std::string& k, long long v) { return set(k, v); }
  Json& nums(const std::string& k, const std::vector<double>& v) {
    nlohmann::ordered_json a = nlohmann::ordered_json::array();
    for (double x : v) a.push_back(finite(x));
    return set(k, std::move(a));
  }
  Json& boolean(const std::string& k, bool v) { return set(k, v); }
  /** Prints the object as one line on stdout and flushes (text that is not UTF-8 becomes U+FFFD). */
  void emit() const {
    const std::string line = body_.dump(-1, ' ', false, nlohmann::ordered_json::error_handler_t::replace);
    std::printf("%s\n", line.c_str());
    std::fflush(stdout);
  }

 private:
  static nlohmann::ordered_json finite(double v) { return std::isfinite(v) ? nlohmann::ordered_json(v) : nullptr; }
  Json& set(const std::string& k, nlohmann::ordered_json v) {
    body_[k] = std::move(v);
    return *this;
  }
  nlohmann::ordered_json body_ = nlohmann::ordered_json::object();
};

inline void emit_metric(const std::string& source, const std::string& metric, const std::string& unit,
                        const std::vector<double>& values, const std::string& note = "") {
  Json j;
  j.str("kind", "metric").str("source", source).str("metric", metric).str("unit", unit).nums("values", values);
  if (!note.empty()) j.str("note", note);
  j.emit();
}

inline void emit_na(const std::string& source, const std::string& metric, const std::string& reason) {
  Json().str("kind", "na").str("source", source).str("metric", metric).str("reason", reason).emit();
}

/** Log-spaced histogram of latencies in microseconds (10 bins per decade, 0.1 us to 100 ms). */
inline void emit_hist(const std::string& source, const std::string& metric, const std::vector<double>& samples_us) {
  const int per_decade = 10, decades = 6;
  const double lo = 0.1;
  std::vector<double> edges, counts(per_decade * decades, 0.0);
  for (int i = 0; i <= per_decade * decades; ++i) edges.push_back(lo * std::pow(10.0, double(i) / per_decade));
  for (double s : samples_us) {
    int b = int(std::floor(std::log10(std::max(s, lo) / lo) * per_decade));
    b = std::clamp(b, 0, per_decade * decades - 1);
    counts[std::size_t(b)] += 1;
  }
  Json().str("kind", "hist").str("source", source).str("metric", metric).nums("edges_us", edges)
      .nums("counts", counts).emit();
}

// ---------------------------------------------------------------- /proc readers

/** A field of /proc/<pid>/status in kB ("VmHWM", "VmRSS"); -1 if unreadable. */
inline double proc_status_kb(pid_t pid, const char* field) {
  std::ifstream in("/proc/" + std::to_string(pid) + "/status");
  std::string line;
  const std::string key = std::string(field) + ":";
  while (std::getline(in, line)) {
    if (line.compare(0, key.size(), key) == 0) return std::atof(line.c_str() + key.size());
  }
  return -1;
}

/** Parent pid from /proc/<pid>/stat (the comm field may hold spaces and parentheses). */
inline pid_t proc_ppid(pid_t pid) {
  std::ifstream in("/proc/" + std::to_string(pid) + "/stat");
  std::string s((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  const auto close = s.rfind(')');
  if (close == std::string::npos) return -1;
  std::istringstream rest(s.substr(close + 2));
  std::string state;
  long ppid = -1;
  rest >> state >> ppid;
  return pid_t(ppid);
}

inline std::vector<pid_t> list_pids(const std::string& dir) {
  std::vector<pid_t> out;
  if (DIR* d = opendir(dir.c_str())) {
    while (dirent* e = readdir(d)) {
      char* end = nullptr;
      const long v = std::strtol(e->d_name, &end, 10);
      if (end != e->d_name && *end == '\0') out.push_back(pid_t(v));
    }
    closedir(d);
  }
  return out;
}

/** root and all its descendants. */
inline std::vector<pid_t> process_tree(pid_t root) {
  std::multimap<pid_t, pid_t> children;
  for (pid_t p : list_pids("/proc")) children.emplace(proc_ppid(p), p);
  std::vector<pid_t> tree{root};
  for (std::size_t i = 0; i < tree.size(); ++i) {
    auto [a, b] = children.equal_range(tree[i]);
    for (auto it = a; it != b; ++it) tree.push_back(it->second);
  }
  return tree;
}

/** CPU time (user + system) of every thread of pid, in seconds, from the nanosecond
 *  /proc/<pid>/task/<tid>/schedstat (falls back to utime+stime in clock ticks). */
inline double process_cpu_s(pid_t pid) {
  const std::string base = "/proc/" + std::to_string(pid);
  double total = 0;
  bool any = false;
  for (pid_t tid : list_pids(base + "/task")) {
    std::ifstream in(base + "/task/" + std::to_string(tid) + "/schedstat");
    double ns = 0;
    if (in >> ns) {
      total += ns * 1e-9;
      any = true;
    }
  }
  if (any) return total;
  std::ifstream in(base + "/stat");
  std::string s((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  const auto close = s.rfind(')');
  if (close == std::string::npos) return 0;
  std::istringstream rest(s.substr(close + 2));
  std::string tok;
  double utime = 0, stime = 0;
  for (int field = 3; rest >> tok; ++field) {
    if (field == 14) utime = std::atof(tok.c_str());
    if (field == 15) {
      stime = std::atof(tok.c_str());
      break;
    }
  }
  return (utime + stime) / double(sysconf(_SC_CLK_TCK));
}

/** CPU seconds used so far by the processes listed (see process_tree). */
inline double tree_cpu_s(const std::vector<pid_t>& tree) {
  double total = 0;
  for (pid_t p : tree) total += process_cpu_s(p);
  return total;
}

// ---------------------------------------------------------------- command line

/** Value of --flag VALUE or --flag=VALUE, or def. */
inline std::string arg_value(int argc, char** argv, const std::string& flag, const std::string& def) {
  for (int i = 1; i < argc; ++i) {
    const std::string a = argv[i];
    if (a == flag && i + 1 < argc) return argv[i + 1];
    if (a.compare(0, flag.size() + 1, flag + "=") == 0) return a.substr(flag.size() + 1);
  }
  return def;
}

inline bool arg_flag(int argc, char** argv, const std::string& flag) {
  for (int i = 1; i < argc; ++i)
    if (flag == argv[i]) return true;
  return false;
}

}  // namespace bench
