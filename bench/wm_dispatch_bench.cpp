// SPDX-License-Identifier: MIT
// wm_dispatch_bench: the remote engine's dispatcher at scale, without processes: a fake transport
// simulates 2, 64 and 1,024 workers that answer at once, and the figure is the master's CPU time
// per task (submit + dispatch + completion, the whole process). The dispatcher must not scan its
// workers per task: its cost at 1,024 workers stays within 2x of its cost at 2; tasks that need
// resources cost at most 1.2x tasks that do not, at 2 and at 1,024 workers.
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

// CPU nanoseconds per task for n tasks through a dispatcher over `workers` fake workers. needs:
// every task needs memory that every worker has (the cost of placing tasks, none of waiting).
double cost_per_task_ns(unsigned workers, std::size_t n, bool needs) {
  wm::testkit::FakeCore core;
  wm::sdk::remote::EngineOptions o;
  o.spin_us = 0;  // spinning would bill idle waiting to the tasks
  auto transport = std::make_unique<wm::testkit::FakeTransport>(workers);
  for (unsigned w = 0; w < workers; ++w) transport->worker_resources(w, {{"cpu", 1}, {"mem", 64e9}});
  const std::vector<std::pair<std::string, double>> amounts{{"mem", 1e9}};
  wm::sdk::remote::Dispatcher d(core.services(), "fake", std::move(transport), o);
  d.start();
  constexpr std::size_t kBatch = 256;
  auto run = [&](std::size_t count) {
    const std::size_t base = core.finished();
    for (std::size_t done = 0; done < count; done += kBatch) {
      auto tasks = needs ? core.make(std::min(kBatch, count - done), amounts) : core.make(std::min(kBatch, count - done));
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
      // Alternating runs without and with needs, so that both see the same machine.
      std::vector<double> plain, placed;
      const bool with_needs = w != 64;
      for (int r = 0; r < runs; ++r) {
        plain.push_back(cost_per_task_ns(w, n, false));
        if (with_needs) placed.push_back(cost_per_task_ns(w, n, true));
      }
      bench::emit_metric("dispatcher", "dispatch_ns_" + std::to_string(w), "ns/task", plain,
                         std::to_string(n) + " tasks over " + std::to_string(w) +
                             " simulated workers (fake transport), CPU time of the whole process per task");
      if (with_needs)
        bench::emit_metric("dispatcher", "dispatch_needs_ns_" + std::to_string(w), "ns/task", placed,
                           "the same, every task needing mem=1e9 of workers that have mem=64e9 (placement)");
    }
  } catch (const std::exception& e) {
    bench::Json().str("kind", "error").str("source", "dispatcher").str("figure", "dispatch").str("message", e.what()).emit();
    return 1;
  }
  return 0;
}
