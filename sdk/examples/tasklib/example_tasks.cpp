// SPDX-License-Identifier: MIT
// example_tasks.cpp: an example task library, the whole of it: functions registered by name with
// WM_TASK, for a host that loads this file with wm::load_task_library() and submits them by name.
#include <wm/task.hpp>

#include <cstdint>
#include <stdexcept>

namespace example {

// Steps the Collatz sequence takes from n down to 1.
std::int64_t collatz_steps(std::int64_t n) {
  if (n < 1) throw std::invalid_argument("collatz_steps: n must be at least 1");
  std::int64_t steps = 0;
  for (; n != 1; ++steps) n = n % 2 == 0 ? n / 2 : 3 * n + 1;
  return steps;
}

// The sum of the digits of n.
std::int64_t digit_sum(std::int64_t n) {
  std::int64_t sum = 0;
  for (n = n < 0 ? -n : n; n > 0; n /= 10) sum += n % 10;
  return sum;
}

}  // namespace example

// Registered under plain names; a host calls them as task_by_name<std::int64_t>("collatz_steps", n).
WM_TASK_NAMED(example::collatz_steps, "collatz_steps");
WM_TASK_NAMED(example::digit_sum, "digit_sum");
