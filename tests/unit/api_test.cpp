// SPDX-License-Identifier: MIT
// api_test.cpp: small API promises: FutureWatcher's constructors.
#include "test_tasks.hpp"

#include <wm/task.hpp>

#include <gtest/gtest.h>

#include <type_traits>
#include <vector>

namespace {

// A threshold alone is a threshold, never taken for a range of futures.
static_assert(std::is_constructible_v<wm::FutureWatcher, int>);
static_assert(std::is_constructible_v<wm::FutureWatcher, std::size_t>);
static_assert(std::is_constructible_v<wm::FutureWatcher, std::vector<wm::Future<int>>, int>);
static_assert(!std::is_convertible_v<int, wm::FutureWatcher>);

TEST(FutureWatcher, ThresholdConstructor) {
  wm::FutureWatcher w(10);
  EXPECT_EQ(w.threshold(), 10u);
  EXPECT_EQ(w.pending(), 0u);
  wm::FutureWatcher one;
  EXPECT_EQ(one.threshold(), 1u);
}

TEST(FutureWatcher, RangeConstructorWithThreshold) {
  auto wm = wm::make_work_manager();
  std::vector<wm::Future<int>> futures;
  for (int i = 0; i < 4; ++i) futures.push_back(wm->submit(wmtest::square, i));
  wm::FutureWatcher w(futures, 2);
  EXPECT_EQ(w.threshold(), 2u);
  std::size_t seen = 0;
  while (w.pending() > 0) seen += w.wait().size();
  EXPECT_EQ(seen, 4u);
}

}  // namespace
