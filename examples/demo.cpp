// SPDX-License-Identifier: MIT
// demo.cpp: the demo host program: estimates pi by Monte Carlo on whichever backend the
// environment or command line picks (WM_WORK_MANAGER=threads, --work-manager threads, ...).
#include <wm/task.hpp>
#include <wm/wm.hpp>

#include <cstdint>
#include <iomanip>
#include <iostream>
#include <random>
#include <stdexcept>
#include <vector>

// Counts how many of n random points in the unit square fall inside the quarter circle.
std::int64_t count_hits(std::uint64_t seed, std::int64_t n) {
  if (n < 0) throw std::invalid_argument("count_hits: negative sample count");
  std::mt19937_64 rng(seed);
  std::uniform_real_distribution<double> u(0.0, 1.0);
  std::int64_t hits = 0;
  for (std::int64_t i = 0; i < n; ++i) {
    const double x = u(rng), y = u(rng);
    hits += (x * x + y * y <= 1.0);
  }
  return hits;
}
WM_TASK(count_hits);

int main(int argc, char** argv) {
  try {
    auto wm = wm::make_work_manager(argc, argv);
    const int chunks = 64;
    const std::int64_t per_chunk = 200000;
    std::cout << "work manager: " << wm->name() << " with " << wm->n_workers() << " worker(s)\n";

    std::vector<wm::TaskSpec<std::int64_t>> tasks;
    for (int i = 0; i < chunks; ++i) tasks.push_back(wm::task(count_hits, std::uint64_t(1000 + i), per_chunk));
    std::int64_t hits = 0;
    int done = 0;
    for (const auto& f : wm->as_completed(wm->submit_many(std::move(tasks)))) {
      hits += f.get_result();
      ++done;
    }
    const double pi = 4.0 * double(hits) / double(chunks * per_chunk);
    std::cout << done << " tasks done, pi ~= " << std::setprecision(6) << pi << "\n";

    // A task that throws: the error travels back with its type, message and where it ran.
    auto bad = wm->submit(count_hits, std::uint64_t(1), std::int64_t(-1));
    try {
      bad.get_result();
    } catch (const wm::TaskError& e) {
      std::cout << "expected failure: " << e.type_name() << ": " << e.info().message << "\n";
    }
    return (pi > 3.1 && pi < 3.2) ? 0 : 1;
  } catch (const wm::Error& e) {
    std::cerr << "demo: " << e.what() << "\n";
    return 2;
  }
}
