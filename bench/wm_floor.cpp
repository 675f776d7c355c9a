// SPDX-License-Identifier: MIT
// wm_floor: the hardware floor the backends are compared with, measured in the same run.
// Prints JSON lines (see bench_common.hpp) with source "floor".
//
//   wm_floor --bench-figure pool|pipe|memcpy|fresh|memory|all [--bench-runs 5] [--bench-smoke]
//
//   pool    a plain std::thread pool (one thread per core, mutex + condition variable queue) with
//           std::packaged_task futures: tiny-task throughput and single submit + get round trip;
//   pipe    a raw pipe ping-pong (1 byte) between two processes: round trip;
//   memcpy  memcpy of 64 MiB (bytes copied / time);
//   fresh   64 MiB copied into freshly allocated memory (2 x bytes / time: an echo's bound);
//   memory  the pool's peak resident set with 100,000 packaged_task futures outstanding.
#include "bench_common.hpp"

#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/wait.h>

#include <condition_variable>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <csignal>
#include <deque>
#include <functional>
#include <future>
#include <iostream>
#include <mutex>
#include <new>
#include <string>
#include <thread>
#include <vector>

namespace {

const std::string src = "floor";

class Pool {
 public:
  explicit Pool(unsigned n) {
    for (unsigned i = 0; i < n; ++i) threads_.emplace_back([this] { loop(); });
  }
  ~Pool() {
    {
      std::lock_guard<std::mutex> lk(m_);
      stop_ = true;
    }
    cv_.notify_all();
    for (auto& t : threads_) t.join();
  }
  template <class F>
  auto submit(F f) {
    using R = decltype(f());
    std::packaged_task<R()> task(std::move(f));
    auto fut = task.get_future();
    {
      std::lock_guard<std::mutex> lk(m_);
      q_.emplace_back(std::move(task));
    }
    cv_.notify_one();
    return fut;
  }

 private:
  void loop() {
    for (;;) {
      std::packaged_task<int()> t;
      {
        std::unique_lock<std::mutex> lk(m_);
        cv_.wait(lk, [this] { return stop_ || !q_.empty(); });
        if (q_.empty()) return;
        t = std::move(q_.front());
        q_.pop_front();
      }
      t();
    }
  }
  std::mutex m_;
  std::condition_variable cv_;
  std::deque<std::packaged_task<int()>> q_;
  std::vector<std::thread> threads_;
  bool stop_ = false;
};

unsigned cores() { return std::max(1u, std::thread::hardware_concurrency()); }

void fig_pool(int runs, bool smoke) {
  Pool pool(cores());
  const int n = smoke ? 2000 : 200000;
  auto tput = [&](int count) {
    const double t0 = bench::now_s();
    std::vector<std::future<int>> fs;
    fs.reserve(std::size_t(count));
    for (int i = 0; i < count; ++i) fs.push_back(pool.submit([i] { return i; }));
    long long sum = 0;
    for (auto& f : fs) sum += f.get();
    if (sum != (long long)count * (count - 1) / 2) throw std::runtime_error("pool: wrong sum");
    return double(count) / (bench::now_s() - t0);
  };
  tput(n / 10);
  std::vector<double> v;
  for (int r = 0; r < runs; ++r) v.push_back(tput(n));
  bench::emit_metric(src, "pool_throughput", "tasks/s", v,
                     "std::thread pool (" + std::to_string(cores()) + " threads) + packaged_task, " + std::to_string(n) + " no-op tasks");

  const int m = smoke ? 200 : 20000;
  for (int i = 0; i < 500; ++i) pool.submit([i] { return i; }).get();
  std::vector<double> med, p99, all;
  for (int r = 0; r < runs; ++r) {
    std::vector<double> s;
    for (int i = 0; i < m; ++i) {
      const auto t0 = std::chrono::steady_clock::now();
      pool.submit([i] { return i; }).get();
      s.push_back(std::chrono::duration<double, std::micro>(std::chrono::steady_clock::now() - t0).count());
    }
    med.push_back(bench::quantile(s, 0.5));
    p99.push_back(bench::quantile(s, 0.99));
    all.insert(all.end(), s.begin(), s.end());
  }
  bench::emit_metric(src, "pool_rt_median", "us", med, "std::thread pool submit + future.get");
  bench::emit_metric(src, "pool_rt_p99", "us", p99, "std::thread pool submit + future.get");
  bench::emit_hist(src, "pool_roundtrip", all);
}

void fig_pipe(int runs, bool smoke) {
  int ping[2], pong[2];
  if (pipe(ping) != 0 || pipe(pong) != 0) throw std::runtime_error("pipe failed");
  const pid_t child = fork();
  if (child < 0) throw std::runtime_error("fork failed");
  if (child == 0) {
    prctl(PR_SET_PDEATHSIG, SIGKILL);
    close(ping[1]);
    close(pong[0]);
    char b;
    while (read(ping[0], &b, 1) == 1)
      if (write(pong[1], &b, 1) != 1) break;
    _exit(0);
  }
  close(ping[0]);
  close(pong[1]);
  auto once = [&] {
    char b = 'x';
    if (write(ping[1], &b, 1) != 1 || read(pong[0], &b, 1) != 1) throw std::runtime_error("pipe ping-pong failed");
  };
  const int m = smoke ? 200 : 20000;
  for (int i = 0; i < 500; ++i) once();
  std::vector<double> med, p99, all;
  for (int r = 0; r < runs; ++r) {
    std::vector<double> s;
    for (int i = 0; i < m; ++i) {
      const auto t0 = std::chrono::steady_clock::now();
      once();
      s.push_back(std::chrono::duration<double, std::micro>(std::chrono::steady_clock::now() - t0).count());
    }
    med.push_back(bench::quantile(s, 0.5));
    p99.push_back(bench::quantile(s, 0.99));
    all.insert(all.end(), s.begin(), s.end());
  }
  close(ping[1]);
  close(pong[0]);
  waitpid(child, nullptr, 0);
  bench::emit_metric(src, "pipe_rt_median", "us", med, "1-byte ping-pong over two pipes between two processes");
  bench::emit_metric(src, "pipe_rt_p99", "us", p99, "1-byte ping-pong over two pipes between two processes");
  bench::emit_hist(src, "pipe_roundtrip", all);
}

void fig_memcpy(int runs, bool smoke) {
  const std::size_t size = smoke ? (std::size_t(4) << 20) : (std::size_t(64) << 20);
  std::vector<char> a(size, 'a'), b(size, 'b');  // both touched: no page faults in the timing
  std::memcpy(b.data(), a.data(), size);
  std::vector<double> v;
  for (int r = 0; r < runs; ++r) {
    a[std::size_t(r)] = char('c' + r);
    const double t0 = bench::now_s();
    std::memcpy(b.data(), a.data(), size);
    const double dt = bench::now_s() - t0;
    if (b[std::size_t(r)] != a[std::size_t(r)]) throw std::runtime_error("memcpy?");
    v.push_back(double(size) / dt / 1e9);
  }
  bench::emit_metric(src, "memcpy", "GB/s", v, std::to_string(size >> 20) + " MiB memcpy, bytes copied / time");
}

// What any echo of a large argument must pay at least once: its result is a new object, so 64 MiB
// are copied into memory the process has not touched yet. Done as well as a program can (the block
// advised to use transparent huge pages and faulted in with one call, as wm's decoder does), with
// the same memory traffic around it as the bandwidth figure (a fresh argument per run).
void fig_fresh(int runs, bool smoke) {
  const std::size_t size = smoke ? (std::size_t(4) << 20) : (std::size_t(64) << 20);
  std::vector<double> v;
  for (int r = -2; r < runs; ++r) {  // two warm-ups, as the bandwidth figure
    std::string arg(size, 'x');
    arg[size / 2] = 'y';
    const double t0 = bench::now_s();
    auto* p = static_cast<char*>(std::malloc(size));
    if (p == nullptr) throw std::bad_alloc();
    constexpr std::uintptr_t huge = std::uintptr_t(2) << 20;
    const auto b = (reinterpret_cast<std::uintptr_t>(p) + huge - 1) & ~(huge - 1);
    const auto e = (reinterpret_cast<std::uintptr_t>(p) + size) & ~(huge - 1);
    if (e > b) {
      madvise(reinterpret_cast<void*>(b), e - b, MADV_HUGEPAGE);
      madvise(reinterpret_cast<void*>(b), e - b, 23);  // MADV_POPULATE_WRITE (Linux 5.14)
    }
    std::memcpy(p, arg.data(), size);
    const double dt = bench::now_s() - t0;
    const bool ok = p[size / 2] == 'y';
    std::free(p);
    if (!ok) throw std::runtime_error("fresh copy?");
    if (r >= 0) v.push_back(2.0 * double(size) / dt / 1e9);
  }
  bench::emit_metric(src, "fresh_echo", "GB/s", v,
                     std::to_string(size >> 20) + " MiB copied into freshly allocated memory, 2 x bytes / time "
                     "(the bound of an echo whose result is a new object)");
}

void fig_memory(bool smoke) {
  const int n = smoke ? 2000 : 100000;
  const double rss_before = bench::proc_status_kb(getpid(), "VmRSS");
  std::mutex m;
  std::condition_variable cv;
  bool go = false;
  {
    Pool pool(cores());
    std::vector<std::future<int>> gates, fs;
    for (unsigned i = 0; i < cores(); ++i)
      gates.push_back(pool.submit([&] {
        std::unique_lock<std::mutex> lk(m);
        cv.wait(lk, [&] { return go; });
        return 0;
      }));
    fs.reserve(std::size_t(n));
    for (int i = 0; i < n; ++i) fs.push_back(pool.submit([i] { return i; }));
    const double hwm_held = bench::proc_status_kb(getpid(), "VmHWM");
    {
      std::lock_guard<std::mutex> lk(m);
      go = true;
    }
    cv.notify_all();
    for (auto& f : fs) f.get();
    bench::emit_metric(src, "pool_mem_master_hwm", "MiB", {bench::proc_status_kb(getpid(), "VmHWM") / 1024.0},
                       "std::thread pool with " + std::to_string(n) + " packaged_task futures outstanding");
    bench::emit_metric(src, "pool_mem_per_future", "bytes", {(hwm_held - rss_before) * 1024.0 / double(n)},
                       "(VmHWM with the futures outstanding - VmRSS before) / " + std::to_string(n));
  }
}

}  // namespace

int main(int argc, char** argv) {
  const bool smoke = bench::arg_flag(argc, argv, "--bench-smoke");
  const int runs = std::max(1, std::atoi(bench::arg_value(argc, argv, "--bench-runs", smoke ? "1" : "5").c_str()));
  const std::string fig = bench::arg_value(argc, argv, "--bench-figure", "all");
  try {
    if (fig == "all" || fig == "memory") fig_memory(smoke);  // first: VmHWM only grows
    if (fig == "all" || fig == "pool") fig_pool(runs, smoke);
    if (fig == "all" || fig == "pipe") fig_pipe(runs, smoke);
    if (fig == "all" || fig == "memcpy") fig_memcpy(runs, smoke);
    if (fig == "all" || fig == "fresh") fig_fresh(runs, smoke);
  } catch (const std::exception& e) {
    bench::Json().str("kind", "error").str("source", src).str("figure", fig).str("message", e.what()).emit();
    return 1;
  }
  return 0;
}
