// SPDX-License-Identifier: MIT
// wm_bench: measures the figures of ONE backend, chosen the usual way (--work-manager NAME,
// WM_WORK_MANAGER, --n-workers, --wm-*), and prints them as JSON lines (see bench_common.hpp).
// bench/run.py runs it once per backend and figure and writes the report.
//
//   wm_bench --bench-list                      names of the installed backends, one per line
//   wm_bench --work-manager threads --bench-figure throughput [--bench-runs 5] [--bench-smoke]
//   mpirun -np 3 wm_bench --work-manager mpi --bench-figure roundtrip
//
// Figures: throughput roundtrip bandwidth idle efficiency death memory sweep node_death stats idle_dashboard
// shared_bandwidth shared_result.
// The program's own flags start with --bench- so that Boost.Program_options (which accepts
// unambiguous prefixes of the work manager's flags) never mistakes one for a --wm-/--n-... flag.
#include "bench_common.hpp"

#include <wm/environment.hpp>
#include <wm/shared_array.hpp>
#include <wm/task.hpp>
#include <wm/wm.hpp>

#include <malloc.h>
#include <signal.h>
#include <sys/stat.h>

#include <condition_variable>
#include <algorithm>
#include <cstdint>
#include <cstring>
#include <utility>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <mutex>
#include <optional>
#include <string>
#include <thread>
#include <vector>

namespace fs = std::filesystem;

// ------------------------------------------------------------------ tasks (registered by name)

int bench_noop(int x) { return x; }
WM_TASK(bench_noop);

std::string bench_echo(std::string s) { return s; }
WM_TASK(bench_echo);
// The shared-array echo: a new array holding a copy of the argument (one memcpy: the floor).
wm::SharedArray<double> bench_shared_echo(wm::SharedArray<double> in) {
  auto out = wm::make_shared_array<double>(in.size());
  std::memcpy(out.data(), std::as_const(in).data(), in.size_bytes());
  return out;
}
WM_TASK(bench_shared_echo);
// A shared-array result of `bytes` bytes made in the task.
wm::SharedBytes bench_shared_make(std::uint64_t bytes) {
  auto out = wm::make_shared_array<std::byte>(static_cast<std::size_t>(bytes));
  std::memset(out.data(), 1, out.size());
  return out;
}
WM_TASK(bench_shared_make);

std::int64_t bench_busy(std::int64_t us) {
  bench::busy_cpu_us(us);
  return us;
}
WM_TASK(bench_busy);

namespace {
void write_pid_file(const std::string& path) {
  const std::string tmp = path + ".tmp." + std::to_string(getpid());
  {
    std::ofstream out(tmp);
    out << getpid() << "\n";
  }
  std::rename(tmp.c_str(), path.c_str());
}
}  // namespace

/** Reports its pid through the file `path`, then burns CPU for up to max_ms (the worker-death victim). */
std::int64_t bench_report_and_spin(std::string path, std::int64_t max_ms) {
  write_pid_file(path);
  const double end = bench::now_s() + double(max_ms) / 1000.0;
  while (bench::now_s() < end) bench::busy_cpu_us(100);
  return getpid();
}
WM_TASK(bench_report_and_spin);

/** Reports the pid of its worker's parent (a zmq node) through the file `path`, then burns CPU for up
 *  to max_ms (the node-death victim). */
std::int64_t bench_report_node_and_spin(std::string path, std::int64_t max_ms) {
  const std::string tmp = path + ".tmp." + std::to_string(getpid());
  {
    std::ofstream out(tmp);
    out << getppid() << "\n";
  }
  std::rename(tmp.c_str(), path.c_str());
  const double end = bench::now_s() + double(max_ms) / 1000.0;
  while (bench::now_s() < end) bench::busy_cpu_us(100);
  return getppid();
}
WM_TASK(bench_report_node_and_spin);

/** Holds its worker: reports its pid in dir/pid.<index>, then waits (1 ms naps) until dir/release
 *  exists or max_ms pass. */
std::int64_t bench_gate(std::string dir, int index, std::int64_t max_ms) {
  write_pid_file(dir + "/pid." + std::to_string(index));
  const double end = bench::now_s() + double(max_ms) / 1000.0;
  while (bench::now_s() < end && !fs::exists(dir + "/release"))
    std::this_thread::sleep_for(std::chrono::milliseconds(1));
  return getpid();
}
WM_TASK(bench_gate);

// ------------------------------------------------------------------ figures

namespace {

struct Ctx {
  wm::WorkManager* wm;
  std::string src;  // backend name, the "source" of every line
  int runs = 5;
  bool smoke = false;
  bool keep_memory = false;  // --bench-keep-memory: this process's malloc keeps freed memory
};

std::string make_tmpdir() {
  char tmpl[] = "/tmp/wm_bench.XXXXXX";
  const char* d = mkdtemp(tmpl);
  if (!d) throw std::runtime_error("mkdtemp failed");
  return d;
}

/** Waits (polling, 100 us) until the file exists and holds a pid; -1 on timeout. */
pid_t wait_pid_file(const std::string& path, double timeout_s) {
  const double end = bench::now_s() + timeout_s;
  while (bench::now_s() < end) {
    std::ifstream in(path);
    long pid = 0;
    if (in >> pid && pid > 0) return pid_t(pid);
    std::this_thread::sleep_for(std::chrono::microseconds(100));
  }
  return -1;
}

double run_throughput_once(wm::WorkManager& wm, int n) {
  const double t0 = bench::now_s();
  std::vector<wm::TaskSpec<int>> specs;
  specs.reserve(std::size_t(n));
  for (int i = 0; i < n; ++i) specs.push_back(wm::task(bench_noop, i));
  long long sum = 0;
  for (const auto& f : wm.as_completed(wm.submit_many(std::move(specs)))) sum += f.get_result();
  const double dt = bench::now_s() - t0;
  if (sum != (long long)n * (n - 1) / 2) throw std::runtime_error("throughput: wrong sum");
  return double(n) / dt;
}

void fig_throughput(Ctx& c) {
  const int n = c.smoke ? 2000 : 200000;
  run_throughput_once(*c.wm, n / 10);  // warm-up
  std::vector<double> v;
  for (int r = 0; r < c.runs; ++r) v.push_back(run_throughput_once(*c.wm, n));
  bench::emit_metric(c.src, "throughput", "tasks/s", v, "submit_many of " + std::to_string(n) + " no-op tasks + as_completed");
}

void fig_roundtrip(Ctx& c) {
  const int m = c.smoke ? 200 : 20000;
  for (int i = 0; i < 500; ++i) c.wm->submit(bench_noop, i).get_result();  // warm-up
  std::vector<double> med, p99, all;
  for (int r = 0; r < c.runs; ++r) {
    std::vector<double> s;
    s.reserve(std::size_t(m));
    for (int i = 0; i < m; ++i) {
      const auto t0 = std::chrono::steady_clock::now();
      const int got = c.wm->submit(bench_noop, i).get_result();
      const auto t1 = std::chrono::steady_clock::now();
      if (got != i) throw std::runtime_error("roundtrip: wrong result");
      s.push_back(std::chrono::duration<double, std::micro>(t1 - t0).count());
    }
    med.push_back(bench::quantile(s, 0.5));
    p99.push_back(bench::quantile(s, 0.99));
    all.insert(all.end(), s.begin(), s.end());
  }
  const std::string note = std::to_string(m) + " sequential submit+get_result per run";
  bench::emit_metric(c.src, "rt_median", "us", med, note);
  bench::emit_metric(c.src, "rt_p99", "us", p99, note);
  bench::emit_hist(c.src, "roundtrip", all);
}

void fig_bandwidth(Ctx& c) {
  const std::size_t size = c.smoke ? (std::size_t(4) << 20) : (std::size_t(64) << 20);
  auto once = [&] {
    std::string arg(size, 'x');
    arg[size / 2] = 'y';
    const double t0 = bench::now_s();
    std::string back = c.wm->submit(bench_echo, std::move(arg)).get_result();
    const double dt = bench::now_s() - t0;
    if (back.size() != size || back[size / 2] != 'y') throw std::runtime_error("bandwidth: wrong echo");
    return 2.0 * double(size) / dt / 1e9;
  };
  // Two warm-ups: the first maps the transport's buffers (a backend may keep them for the next
  // large message), the second runs on them. The figure is the steady state of repeated large
  // messages; the first one costs more (see plugins/processes/README.md).
  once();
  once();
  std::vector<double> v;
  for (int r = 0; r < c.runs; ++r) v.push_back(once());
  bench::emit_metric(c.src, c.keep_memory ? "bandwidth_keep" : "bandwidth", "GB/s", v,
                     std::to_string(size >> 20) + " MiB std::string echoed, bytes counted both ways, "
                     "after 2 warm-up echoes" +
                         std::string(c.keep_memory ? "; the host's malloc keeps freed memory "
                                                     "(M_MMAP_MAX 0, M_TRIM_THRESHOLD 1 GiB, M_ARENA_MAX 1)"
                                                   : ""));
}

// The shared-array echo (issue 23): 64 MiB of doubles made once by the host, echoed by a task that
// copies them into a new array; 2 x bytes / time. Beside it, in the same process, a memcpy of as
// many bytes between warm buffers, and the ratio: how many memcpys the whole echo costs.
void fig_shared_bandwidth(Ctx& c) {
  const std::size_t size = c.smoke ? (std::size_t(4) << 20) : (std::size_t(64) << 20);
  const std::size_t n = size / sizeof(double);
  auto arg = wm::make_shared_array<double>(n, 1.0);
  arg[n / 2] = 2.0;
  auto once = [&] {
    const double t0 = bench::now_s();
    wm::SharedArray<double> back = c.wm->submit(bench_shared_echo, arg).get_result();
    const double dt = bench::now_s() - t0;
    if (back.size() != n || back[n / 2] != 2.0) throw std::runtime_error("shared_bandwidth: wrong echo");
    return dt;
  };
  std::vector<char> a(size, 'a'), b(size, 'b');
  auto copy = [&] {
    const double t0 = bench::now_s();
    std::memcpy(b.data(), a.data(), size);
    const double dt = bench::now_s() - t0;
    if (b[size / 3] != 'a') throw std::runtime_error("memcpy");
    return dt;
  };
  once();
  once();
  copy();
  std::vector<double> gbs, ratio;
  for (int r = 0; r < c.runs; ++r) {
    // Echo and memcpy alternate, three of each per run, best of each: the ratio of two noisy times.
    double e = 1e9, m = 1e9;
    for (int k = 0; k < 3; ++k) e = std::min(e, once()), m = std::min(m, copy());
    gbs.push_back(2.0 * double(size) / e / 1e9);
    ratio.push_back(e / m);
  }
  const std::string what = std::to_string(size >> 20) + " MiB wm::SharedArray<double> echoed into a new array by the task";
  bench::emit_metric(c.src, "shared_bandwidth", "GB/s", gbs, what + ", bytes counted both ways");
  bench::emit_metric(c.src, "shared_echo_memcpys", "memcpys", ratio,
                     what + ": its time over a memcpy of as many bytes in the same run (best of 3 each)");
}

// A 1 GiB shared-array result (issue 23): the master's peak RSS once it holds it.
void fig_shared_result(Ctx& c) {
  const std::uint64_t size = c.smoke ? (std::uint64_t(64) << 20) : (std::uint64_t(1) << 30);
  wm::SharedBytes r = c.wm->submit(bench_shared_make, size).get_result();
  if (r.size() != size || r[size - 1] != std::byte{1}) throw std::runtime_error("shared_result: wrong result");
  const double hwm = bench::proc_status_kb(getpid(), "VmHWM");
  bench::emit_metric(c.src, "shared_result_hwm", "GiB", {hwm / 1024.0 / 1024.0},
                     "master VmHWM holding a " + std::to_string(size >> 20) + " MiB wm::SharedBytes result");
}

/** Root of the process tree whose CPU we count: this process, or mpirun (our parent) under MPI. */
pid_t tree_root() {
  if (std::getenv("OMPI_COMM_WORLD_SIZE") || std::getenv("PMI_RANK") || std::getenv("PMIX_RANK")) return getppid();
  // run.py starts a zmq master and its node side by side under one parent: that parent is the tree.
  if (std::getenv("WM_BENCH_TREE_IS_PARENT")) return getppid();
  return getpid();
}

void fig_idle(Ctx& c, const std::string& metric = "idle_cpu", const std::string& aside = "") {
  const double idle_s = c.smoke ? 0.3 : 3.0;
  const pid_t root = tree_root();
  std::vector<double> v;
  std::size_t nproc = 0;
  for (int r = 0; r < c.runs; ++r) {
    c.wm->submit(bench_noop, r).get_result();  // warm-up: every worker has run something lately
    // The tree is listed before the window, so walking /proc is not counted as idle cost.
    const auto tree = bench::process_tree(root);
    nproc = tree.size();
    const double a = bench::tree_cpu_s(tree);
    std::this_thread::sleep_for(std::chrono::duration<double>(idle_s));
    const double b = bench::tree_cpu_s(tree);
    v.push_back((b - a) * (3.0 / idle_s));  // scaled to 3 s (no-op unless smoke)
  }
  bench::emit_metric(c.src, metric, "CPU-s", v,
                     "CPU of the process tree (" + std::to_string(nproc) + " processes) over " +
                         bench::short_number(idle_s) + " s idle after a task" + (idle_s != 3.0 ? ", scaled to 3 s" : "") +
                         (aside.empty() ? "" : ", " + aside));
}

// What the statistics cost. (1) The counting, always on: where a second work manager of the backend
// can run beside the first (serial, threads, processes), one made with WM_BENCH_NO_STATS counts
// nothing; throughput runs alternate between the two in this process, and each pair gives a ratio.
// (2) Reading them: throughput runs with a thread calling stats() ten times a second, each paired
// with a run without it (alternating which goes first); and how long one call takes.
void fig_stats(Ctx& c) {
  // Throughput varies from run to run on these VMs by more than what is measured here: many short
  // pairs, and the median of their ratios.
  const int n = c.smoke ? 2000 : 200000;
  const int pairs = c.smoke ? 1 : 4 * c.runs;
  run_throughput_once(*c.wm, n / 10);  // warm-up
  if (c.src == "serial" || c.src == "threads" || c.src == "processes") {
    setenv("WM_BENCH_NO_STATS", "1", 1);
    auto quiet = wm::from_environ(c.src);
    unsetenv("WM_BENCH_NO_STATS");
    run_throughput_once(*quiet, n / 10);
    std::vector<double> counting;
    for (int r = 0; r < pairs; ++r) {
      double on = 0, off = 0;
      if (r % 2 == 0) {
        on = run_throughput_once(*c.wm, n);
        off = run_throughput_once(*quiet, n);
      } else {
        off = run_throughput_once(*quiet, n);
        on = run_throughput_once(*c.wm, n);
      }
      counting.push_back(on / off);
    }
    bench::emit_metric(c.src, "stats_counting_ratio", "ratio", counting,
                       std::to_string(n) + " no-op tasks on a work manager that counts, against one made with "
                       "WM_BENCH_NO_STATS, in this process (" + std::to_string(pairs) + " pairs, alternating order)");
  }
  std::vector<double> ratio, with_reader, call_us;
  for (int r = 0; r < pairs; ++r) {
    auto read_while_running = [&] {
      std::mutex m;
      std::condition_variable cv;
      bool stop = false;
      std::vector<double> calls;
      std::thread reader([&] {
        std::unique_lock<std::mutex> lock(m);
        do {  // at least once, however short the run
          lock.unlock();
          const double t0 = bench::now_s();
          const wm::Stats s = c.wm->stats();
          calls.push_back((bench::now_s() - t0) * 1e6);
          if (s.submitted == 0 && s.finished() != 0) throw std::logic_error("stats: finished without submitted");
          lock.lock();
          cv.wait_for(lock, std::chrono::milliseconds(100), [&] { return stop; });
        } while (!stop);
      });
      const double v = run_throughput_once(*c.wm, n);
      {
        std::lock_guard<std::mutex> lock(m);
        stop = true;
      }
      cv.notify_all();
      reader.join();
      if (!calls.empty()) call_us.push_back(bench::quantile(calls, 0.5));
      return v;
    };
    double plain = 0, read = 0;
    if (r % 2 == 0) {
      plain = run_throughput_once(*c.wm, n);
      read = read_while_running();
    } else {
      read = read_while_running();
      plain = run_throughput_once(*c.wm, n);
    }
    with_reader.push_back(read);
    ratio.push_back(read / plain);
  }
  const std::string note = std::to_string(n) + " no-op tasks, stats() called every 100 ms during the run, against a run "
                           "without (" + std::to_string(pairs) + " pairs, alternating order)";
  bench::emit_metric(c.src, "stats_ratio", "ratio", ratio, note);
  bench::emit_metric(c.src, "throughput_stats", "tasks/s", with_reader, note);
  bench::emit_metric(c.src, "stats_call_us", "us", call_us, "one stats() call during the run, median per run");
}

// The idle figure with the dashboard on (run.py sets WM_DASHBOARD=127.0.0.1:0): it listens, nobody
// asks.
void fig_idle_dashboard(Ctx& c) {
  const char* d = std::getenv("WM_DASHBOARD");
  if (d == nullptr || *d == '\0') throw std::runtime_error("idle_dashboard: set WM_DASHBOARD (run.py does)");
  fig_idle(c, "idle_cpu_dashboard", "with the dashboard listening (WM_DASHBOARD=" + std::string(d) + ")");
}

void fig_efficiency(Ctx& c) {
  const int n = c.smoke ? 20 : 200;
  const std::int64_t us = c.smoke ? 1000 : 10000;
  const std::size_t queue = 10;
  const double ideal = double(n) * double(us) * 1e-6 / double(c.wm->n_workers());
  std::vector<double> v;
  for (int r = 0; r < c.runs; ++r) {
    int i = 0, got = 0;
    auto gen = [&]() -> std::optional<wm::TaskSpec<std::int64_t>> {
      if (i >= n) return std::nullopt;
      ++i;
      return wm::task(bench_busy, us);
    };
    const double t0 = bench::now_s();
    for (const auto& f : c.wm->submit_as_completed(gen, queue)) got += (f.get_result() == us);
    const double dt = bench::now_s() - t0;
    if (got != n) throw std::runtime_error("efficiency: wrong results");
    v.push_back(ideal / dt);
  }
  bench::emit_metric(c.src, "efficiency", "ideal/wall", v,
                     std::to_string(n) + " tasks x " + std::to_string(us / 1000) + " ms CPU, queue_size 10, " +
                         std::to_string(c.wm->n_workers()) + " workers");
}

void fig_death(Ctx& c) {
  if (c.wm->runs_in_process()) {
    bench::emit_na(c.src, "death_ms", "tasks run in the master process: no worker to kill");
    return;
  }
  const std::string dir = make_tmpdir();
  std::vector<double> v;
  std::string note;
  for (int r = 0; r < c.runs; ++r) {
    const std::string path = dir + "/victim." + std::to_string(r);
    auto f = c.wm->submit(bench_report_and_spin, path, std::int64_t(30000));
    const pid_t pid = wait_pid_file(path, 20.0);
    if (pid <= 0 || pid == getpid()) {
      note = pid <= 0 ? "the task never reported its pid" : "the task ran in the master";
      break;
    }
    const double t0 = bench::now_s();
    kill(pid, SIGKILL);
    const bool done = f.wait_for(std::chrono::seconds(10));
    const double dt = (bench::now_s() - t0) * 1e3;
    if (!done) {
      note = "the future did not fail within 10 s of SIGKILL";
      break;
    }
    try {
      f.get_result();
      note = "the future succeeded although its worker was killed";
      break;
    } catch (const wm::WorkerLostError&) {
      v.push_back(dt);
    } catch (const std::exception& e) {
      note = std::string("the future failed with another error: ") + e.what();
      break;
    }
    // The work manager keeps working after a death.
    auto g = c.wm->submit(bench_noop, 7);
    if (!g.wait_for(std::chrono::seconds(10)) || g.get_result() != 7) {
      note = "no task ran after the worker death";
      break;
    }
  }
  fs::remove_all(dir);
  if (v.empty()) {
    bench::emit_na(c.src, "death_ms", note);
    return;
  }
  bench::emit_metric(c.src, "death_ms", "ms", v, note.empty() ? "SIGKILL of a busy worker -> WorkerLostError" : note);
}

// Backends whose workers run under nodes (zmq): SIGKILL of the node of a busy worker, timed until
// its future fails with WorkerLostError. A fresh program per run (its only node is gone after).
void fig_node_death(Ctx& c) {
  if (c.wm->runs_in_process()) {
    bench::emit_na(c.src, "node_death_ms", "tasks run in the master process: no node to kill");
    return;
  }
  const std::string dir = make_tmpdir();
  const std::string path = dir + "/node";
  std::vector<double> v;
  std::string note;
  auto f = c.wm->submit(bench_report_node_and_spin, path, std::int64_t(30000));
  const pid_t node = wait_pid_file(path, 20.0);
  if (node <= 0 || node == getpid()) {
    note = node <= 0 ? "the task never reported its node" : "the workers are children of the master: no node to kill";
  } else {
    const double t0 = bench::now_s();
    kill(node, SIGKILL);
    const bool done = f.wait_for(std::chrono::seconds(30));
    const double dt = (bench::now_s() - t0) * 1e3;
    try {
      if (!done) throw std::runtime_error("the future did not fail within 30 s of the SIGKILL of its node");
      f.get_result();
      note = "the future succeeded although its node was killed";
    } catch (const wm::WorkerLostError&) {
      v.push_back(dt);
    } catch (const std::exception& e) {
      note = e.what();
    }
  }
  fs::remove_all(dir);
  if (v.empty()) {
    bench::emit_na(c.src, "node_death_ms", note);
    return;
  }
  bench::emit_metric(c.src, "node_death_ms", "ms", v, "SIGKILL of the node of a busy worker -> WorkerLostError");
}

void fig_memory(Ctx& c) {
  const int n = c.smoke ? 2000 : 100000;
  const std::string dir = make_tmpdir();
  const unsigned nw = c.wm->n_workers();
  // serial runs every task inside submit(): a gate would block the master itself.
  const bool gated = c.wm->name() != "serial";
  c.wm->submit(bench_noop, 0).get_result();  // workers started
  const double rss_before = bench::proc_status_kb(getpid(), "VmRSS");
  std::vector<wm::Future<std::int64_t>> gates;
  pid_t worker = -1;
  int held = 0;
  if (gated) {
    for (unsigned i = 0; i < nw; ++i) gates.push_back(c.wm->submit(bench_gate, dir, int(i), std::int64_t(60000)));
    // Wait for every gate to hold its worker (a backend may queue two on one worker: then wait 2 s).
    const double end = bench::now_s() + 2.0;
    while (bench::now_s() < end && held < int(nw)) {
      held = 0;
      for (unsigned i = 0; i < nw; ++i) held += fs::exists(dir + "/pid." + std::to_string(i));
      std::this_thread::sleep_for(std::chrono::milliseconds(1));
    }
    const pid_t p = wait_pid_file(dir + "/pid.0", 10.0);
    if (p > 0 && p != getpid()) worker = p;
  }
  std::vector<wm::TaskSpec<int>> specs;
  specs.reserve(std::size_t(n));
  for (int i = 0; i < n; ++i) specs.push_back(wm::task(bench_noop, i));
  auto futures = c.wm->submit_many(std::move(specs));
  std::this_thread::sleep_for(std::chrono::milliseconds(c.smoke ? 20 : 200));  // let the backend ship what it ships
  std::size_t outstanding = 0;
  for (const auto& f : futures) outstanding += !f.done();
  const double master_hwm_held = bench::proc_status_kb(getpid(), "VmHWM");
  const double worker_hwm = worker > 0 ? bench::proc_status_kb(worker, "VmHWM") : -1;
  { std::ofstream(dir + "/release") << "go\n"; }
  long long sum = 0;
  for (const auto& f : c.wm->as_completed(std::move(futures))) sum += f.get_result();
  for (auto& g : gates) g.wait_for(std::chrono::seconds(60));
  const double master_hwm = bench::proc_status_kb(getpid(), "VmHWM");
  const double worker_hwm_end = worker > 0 ? bench::proc_status_kb(worker, "VmHWM") : -1;
  fs::remove_all(dir);
  if (sum != (long long)n * (n - 1) / 2) throw std::runtime_error("memory: wrong sum");
  const std::string note = std::to_string(n) + " futures submitted, " + std::to_string(outstanding) +
                           " outstanding at the measurement, " +
                           (gated ? std::to_string(held) + "/" + std::to_string(nw) + " workers held by a gate task"
                                  : std::string("tasks run inside submit (serial)"));
  bench::emit_metric(c.src, "mem_master_hwm", "MiB", {master_hwm / 1024.0}, note);
  bench::emit_metric(c.src, "mem_per_future", "bytes",
                     {(master_hwm_held - rss_before) * 1024.0 / double(n)},
                     "(master VmHWM with the futures outstanding - VmRSS before) / " + std::to_string(n));
  if (worker > 0)
    bench::emit_metric(c.src, "mem_worker_hwm", "MiB", {std::max(worker_hwm, worker_hwm_end) / 1024.0}, note);
  else
    bench::emit_na(c.src, "mem_worker_hwm", c.wm->runs_in_process() ? "tasks run in the master process" : "no worker pid");
}

void fig_sweep(Ctx& c) {
  const std::vector<std::int64_t> sizes{1, 10, 100, 1000, 10000};
  const double budget_s = c.smoke ? 0.01 : 0.25;
  for (const std::int64_t us : sizes) {
    const double want = budget_s * double(c.wm->n_workers()) / (double(us) * 1e-6);
    const int n = int(std::clamp(want, 8.0, c.smoke ? 2000.0 : 100000.0));
    std::vector<double> v;
    for (int r = 0; r < c.runs; ++r) {
      std::vector<wm::TaskSpec<std::int64_t>> specs;
      specs.reserve(std::size_t(n));
      const double t0 = bench::now_s();
      for (int i = 0; i < n; ++i) specs.push_back(wm::task(bench_busy, us));
      for (const auto& f : c.wm->as_completed(c.wm->submit_many(std::move(specs)))) f.get_result();
      v.push_back(double(n) / (bench::now_s() - t0));
    }
    bench::emit_metric(c.src, "sweep_" + std::to_string(us) + "us", "tasks/s", v,
                       std::to_string(n) + " tasks of " + std::to_string(us) + " us CPU");
  }
}

}  // namespace

int main(int argc, char** argv) {
  wm::serve_if_worker();  // the processes backend re-executes this program as its workers
  if (bench::arg_flag(argc, argv, "--bench-list")) {
    for (const auto& name : wm::scan_plugins().names()) std::cout << name << "\n";
    return 0;
  }
  try {
    const bool keep_memory = bench::arg_flag(argc, argv, "--bench-keep-memory");
    if (keep_memory) {
      // What a host can do in one place to keep large results on warm pages: malloc then reuses
      // freed blocks instead of unmapping them and mapping fresh ones, and with one arena the
      // backend's I/O thread (which decodes results) reuses the same heap as the caller.
      mallopt(M_MMAP_MAX, 0);
      mallopt(M_TRIM_THRESHOLD, 1 << 30);
      mallopt(M_ARENA_MAX, 1);
    }
    auto wm = wm::make_work_manager(argc, argv);
    if (!wm->is_master()) {  // SPMD backends (mpi): the other ranks serve tasks
      wm->run();
      return 0;
    }
    Ctx c{wm.get(), wm->name()};
    c.smoke = bench::arg_flag(argc, argv, "--bench-smoke");
    c.keep_memory = keep_memory;
    c.runs = std::max(1, std::atoi(bench::arg_value(argc, argv, "--bench-runs", c.smoke ? "1" : "5").c_str()));
    const std::string figure = bench::arg_value(argc, argv, "--bench-figure", "all");
    wm->startup();
    bench::Json()
        .str("kind", "info").str("source", c.src).integer("n_workers", wm->n_workers())
        .boolean("in_process", wm->runs_in_process()).integer("pid", getpid()).emit();
    const std::vector<std::pair<std::string, void (*)(Ctx&)>> figures{
        {"throughput", fig_throughput}, {"roundtrip", fig_roundtrip}, {"bandwidth", fig_bandwidth},
        {"idle", [](Ctx& x) { fig_idle(x); }}, {"efficiency", fig_efficiency}, {"death", fig_death},
        {"memory", fig_memory},         {"sweep", fig_sweep},           {"node_death", fig_node_death},
        {"stats", fig_stats},           {"idle_dashboard", fig_idle_dashboard},
        {"shared_bandwidth", fig_shared_bandwidth}, {"shared_result", fig_shared_result}};
    bool found = false;
    for (const auto& [name, fn] : figures) {
      if (figure != "all" && figure != name) continue;
      found = true;
      try {
        fn(c);
      } catch (const std::exception& e) {
        bench::Json().str("kind", "error").str("source", c.src).str("figure", name).str("message", e.what()).emit();
      }
    }
    if (!found) {
      std::cerr << "wm_bench: unknown figure '" << figure << "'\n";
      return 2;
    }
    wm->shutdown();
    return 0;
  } catch (const std::exception& e) {
    std::cerr << "wm_bench: " << e.what() << "\n";
    return 1;
  }
}
