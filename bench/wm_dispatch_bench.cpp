// SPDX-License-Identifier: MIT
// wm_dispatch_bench: the remote engine's dispatcher at scale, without processes: a fake transport
// simulates 2, 64 and 1,024 workers that answer at once, and the figure is the master's CPU time
// per task (submit + dispatch + completion, the whole process). The dispatcher must not scan its
// workers per task: its cost at 1,024 workers stays within 2x of its cost at 2.
//
//   wm_dispatch_bench [--bench-runs 5] [--bench-smoke]
#include "bench_common.hpp"
#include <wm/sdk/testkit/fake.hpp>

#include <sys/resource.h>

#include <cstdio>
#include <string>
#include <vector>

namespace {

double process_cpu_seconds() {
  rusage u{};
  getrusage(RUSAGE_SELF, &u);
  return double(u.ru_utime.tv_sec + u.ru_stime.tv_sec) + double(u.ru_utime.tv_usec + u.ru_stime.tv_usec) * 1e-6;
}

// CPU nanoseconds per task for n tasks through a dispatcher over `workers` fake workers.
double cost_per_task_ns(unsigned workers, std::size_t n) {
  wm::testkit::FakeCore core;
  wm::sdk::remote::EngineOptions o;
  o.spin_us = 0;  // spinning would bill idle waiting to the tasks
  wm::sdk::remote::Dispatcher d(core.services(), "fake", std::make_unique<wm::testkit::FakeTransport>(workers), o);
  d.start();
  constexpr std::size_t kBatch = 256;
  auto run = [&](std::size_t count) {
    const std::size_t base = core.finished();
    for (std::size_t done = 0; done < count; done += kBatch) {
      auto tasks = core.make(std::min(kBatch, count - done));
      d.submit(tasks.data(), tasks.size());
    }
    if (!core.wait_finished(base + count, std::chrono::seconds(120))) throw std::runtime_error("tasks did not finish");
  };
  run(n / 10);  // warm up: windows settle, buffers grow
  const double t0 = process_cpu_seconds();
  run(n);
  const double cpu = process_cpu_seconds() - t0;
  d.stop(false);
  d.join();
  return cpu / double(n) * 1e9;
}

}  // namespace

int main(int argc, char** argv) {
  const int runs = std::stoi(bench::arg_value(argc, argv, "--bench-runs", "5"));
  const bool smoke = bench::arg_flag(argc, argv, "--bench-smoke");
  const std::size_t n = smoke ? 5000 : 200000;
  try {
    for (unsigned w : {2u, 64u, 1024u}) {
      std::vector<double> values;
      for (int r = 0; r < runs; ++r) values.push_back(cost_per_task_ns(w, n));
      bench::emit_metric("dispatcher", "dispatch_ns_" + std::to_string(w), "ns/task", values,
                         std::to_string(n) + " tasks over " + std::to_string(w) +
                             " simulated workers (fake transport), CPU time of the whole process per task");
    }
  } catch (const std::exception& e) {
    bench::Json().str("kind", "error").str("source", "dispatcher").str("figure", "dispatch").str("message", e.what()).emit();
    return 1;
  }
  return 0;
}
