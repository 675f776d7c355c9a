// SPDX-License-Identifier: MIT
// conformance_test.cpp: the behaviour every backend must have, run on each backend by name through
// the real WM_WORK_MANAGER variable (after WESTPA's CommonWorkManagerTests). A parameter is
// "name" or "name:workers" (then WM_N_WORKERS is set too).
#include "test_support.hpp"
#include "test_tasks.hpp"

#include <wm/task.hpp>

#include <gtest/gtest.h>
#include <signal.h>
#include <unistd.h>

#include <algorithm>
#include <array>
#include <atomic>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <functional>
#include <future>
#include <mutex>
#include <memory>
#include <numeric>
#include <regex>
#include <set>
#include <thread>

using namespace std::chrono_literals;
using wmtest::ScopedEnv;

namespace {

std::string param_name(const testing::TestParamInfo<std::string>& info) {
  std::string s = info.param;
  std::replace(s.begin(), s.end(), ':', '_');
  return s;
}

class Conformance : public testing::TestWithParam<std::string> {
 protected:
  void SetUp() override {
    const std::string p = GetParam();
    const auto colon = p.find(':');
    backend_ = p.substr(0, colon);
    workers_ = colon == std::string::npos ? "" : p.substr(colon + 1);
    env_wm_ = std::make_unique<ScopedEnv>("WM_WORK_MANAGER", backend_.c_str());
    env_n_ = std::make_unique<ScopedEnv>("WM_N_WORKERS", workers_.empty() ? nullptr : workers_.c_str());
    wm_ = wm::make_work_manager();
    ASSERT_EQ(wm_->name(), backend_);
  }
  void TearDown() override {
    within(60s, "the work manager's destructor", [&] { wm_.reset(); });
  }

  static void within(std::chrono::seconds limit, const char* what, const std::function<void()>& fn) {
    wmtest::within(limit, what, fn);
  }

  // Every future finished: with its result, or with ShutdownError.
  static void expect_result_or_shutdown(const std::vector<wm::Future<int>>& futures, const std::vector<int>& expected) {
    for (std::size_t i = 0; i < futures.size(); ++i) {
      ASSERT_TRUE(futures[i].done()) << "future " << i << " not finished";
      if (futures[i].failed())
        EXPECT_THROW(futures[i].get_result(false), wm::ShutdownError) << "future " << i;
      else
        EXPECT_EQ(futures[i].get_result(false), expected[i]) << "future " << i;
    }
  }

  // Generous bound for "it finished": failing it means a hang, not slowness.
  template <class F>
  void expect_done(const F& f, std::chrono::seconds limit = 60s) {
    ASSERT_TRUE(f.wait_for(limit)) << "future did not finish within " << limit.count() << " s";
  }

  std::string backend_, workers_;
  std::unique_ptr<ScopedEnv> env_wm_, env_n_;
  std::unique_ptr<wm::WorkManager> wm_;
};

TEST_P(Conformance, SubmitReturnsResult) {
  wm::Future<int> f = wm_->submit(wmtest::square, 7);
  expect_done(f);
  EXPECT_TRUE(f.done());
  EXPECT_FALSE(f.failed());
  EXPECT_EQ(f.get_result(), 49);
  EXPECT_EQ(f.task_name(), "wmtest::square");
  EXPECT_TRUE(std::regex_match(f.task_id(), std::regex("[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}")))
      << f.task_id();
}

TEST_P(Conformance, TaskIdsAreUnique) {
  std::set<std::string> ids;
  for (int i = 0; i < 200; ++i) ids.insert(wm_->submit(wmtest::square, i).task_id());
  EXPECT_EQ(ids.size(), 200u);
}

TEST_P(Conformance, VoidAndStringTasks) {
  auto v = wm_->submit(wmtest::nothing);
  auto s = wm_->submit(wmtest::echo, std::string("hello, world"));
  v.get_result();
  EXPECT_EQ(s.get_result(), "hello, world");
}

TEST_P(Conformance, SubmitManyKeepsOrder) {
  std::vector<wm::TaskSpec<int>> specs;
  for (int i = 0; i < 1000; ++i) specs.push_back(wm::task(wmtest::square, i));
  auto futures = wm_->submit_many(std::move(specs));
  ASSERT_EQ(futures.size(), 1000u);
  for (int i = 0; i < 1000; ++i) EXPECT_EQ(futures[i].get_result(), i * i);
}

TEST_P(Conformance, SubmitManyFromArgumentTuples) {
  std::vector<std::tuple<int, int>> args;
  for (int i = 0; i < 100; ++i) args.emplace_back(i, 2 * i);
  auto futures = wm_->submit_many(wmtest::add, args);
  for (int i = 0; i < 100; ++i) EXPECT_EQ(futures[i].get_result(), 3 * i);
}

TEST_P(Conformance, AsCompletedYieldsEachFutureOnce) {
  std::vector<wm::TaskSpec<int>> specs;
  for (int i = 0; i < 20; ++i) specs.push_back(wm::task(wmtest::sleep_then, (i % 4) * 5, i));
  auto futures = wm_->submit_many(std::move(specs));
  std::multiset<int> seen;
  std::set<const void*> identities;  // futures compare by the task they refer to
  for (const auto& f : wm_->as_completed(futures)) {
    EXPECT_TRUE(f.done());
    seen.insert(f.get_result());
    identities.insert(f.state().get());
  }
  std::multiset<int> expected;
  for (int i = 0; i < 20; ++i) expected.insert(i);
  EXPECT_EQ(seen, expected);
  EXPECT_EQ(identities.size(), 20u);
}

TEST_P(Conformance, AsCompletedOfNothing) {
  std::vector<wm::Future<int>> none;
  int n = 0;
  for (const auto& f : wm_->as_completed(none)) n += f.valid();
  EXPECT_EQ(n, 0);
}

TEST_P(Conformance, SubmitAsCompletedBoundsInFlight) {
  for (std::size_t queue_size : {std::size_t(1), std::size_t(5), std::size_t(0)}) {
    int generated = 0, yielded = 0;
    std::size_t max_in_flight = 0;
    auto gen = [&]() -> std::optional<wm::TaskSpec<int>> {
      if (generated == 60) return std::nullopt;
      max_in_flight = std::max<std::size_t>(max_in_flight, std::size_t(generated - yielded + 1));
      const int i = generated++;
      return wm::task(wmtest::sleep_then, i % 3, i);
    };
    std::set<int> results;
    for (const auto& f : wm_->submit_as_completed(gen, queue_size)) {
      ++yielded;
      results.insert(f.get_result());
    }
    EXPECT_EQ(generated, 60);
    EXPECT_EQ(yielded, 60);
    EXPECT_EQ(results.size(), 60u);
    if (queue_size > 0) {
      EXPECT_LE(max_in_flight, queue_size) << "queue_size " << queue_size;
    } else {
      EXPECT_EQ(max_in_flight, 60u);
    }
  }
}

// The generator fails after returning some tasks: they run all the same, the caller gets the
// generator's exception, and the range still yields every task it pulled.
struct GeneratorFailure : std::exception {
  const char* what() const noexcept override { return "generator failure"; }
};

TEST_P(Conformance, SubmitAsCompletedGeneratorThrowingMidway) {
  // (queue_size, tasks before the throw): the throw comes with pulled tasks not yet submitted
  // (first two), and with none pending (third).
  const std::vector<std::pair<std::size_t, int>> cases{{0, 10}, {4, 2}, {3, 7}};
  for (const auto& [queue_size, before] : cases) {
    SCOPED_TRACE("queue_size " + std::to_string(queue_size) + ", throw after " + std::to_string(before));
    int calls = 0;
    std::vector<wm::WMFuture> pulled;
    auto gen = [&, before = before]() -> std::optional<wm::TaskSpec<int>> {
      if (calls++ == before) throw GeneratorFailure();
      auto spec = wm::task(wmtest::square, int(pulled.size()));
      pulled.emplace_back(spec.state());
      return spec;
    };
    auto range = wm_->submit_as_completed(gen, queue_size);
    std::multiset<int> results;
    bool thrown = false;
    try {
      for (const auto& f : range) results.insert(f.get_result());
    } catch (const GeneratorFailure&) {
      thrown = true;
    }
    EXPECT_TRUE(thrown) << "the generator's exception did not reach the caller";
    ASSERT_EQ(pulled.size(), std::size_t(before));
    for (const auto& f : pulled) {
      ASSERT_TRUE(f.wait_for(60s)) << "a task the generator returned never finished";
      EXPECT_FALSE(f.failed());
    }
    while (auto f = range.next()) results.insert(f->get_result());
    EXPECT_EQ(calls, before + 1) << "the generator was called again after it threw";
    std::multiset<int> expected;
    for (int i = 0; i < before; ++i) expected.insert(i * i);
    EXPECT_EQ(results, expected);
  }
}

TEST_P(Conformance, SubmitAsCompletedOutlivingItsWorkManagerFailsClearly) {
  int generated = 0;
  auto gen = [&]() -> std::optional<wm::TaskSpec<int>> {
    if (generated == 6) return std::nullopt;
    return wm::task(wmtest::square, generated++);
  };
  auto range = wm_->submit_as_completed(gen, 2);
  auto first = range.next();
  ASSERT_TRUE(first.has_value());
  EXPECT_LE(first->get_result(), 1);  // 0 or 1: two were submitted
  wm_.reset();
  EXPECT_THROW(range.next(), wm::ShutdownError);
  // What it had submitted still comes out, each finished: with its result or a ShutdownError.
  int yielded = 0;
  while (auto f = range.next()) {
    ASSERT_TRUE(f->done());
    if (f->failed()) {
      EXPECT_THROW(f->get_result(), wm::ShutdownError);
    }
    ++yielded;
  }
  EXPECT_EQ(yielded, 2);    // the other of the first two, and the one refused after the reset
  EXPECT_EQ(generated, 3) << "the range went on pulling tasks for a work manager that is gone";
}

TEST_P(Conformance, MoveOnlyResults) {
  auto blob = wm_->submit(wmtest::make_blob, 5);
  expect_done(blob);
  EXPECT_THROW(blob.get_result(false), std::logic_error);  // would copy a move-only result
  EXPECT_THROW(blob.get_result_any(false), std::logic_error);
  wmtest::Blob b = blob.get_result();
  EXPECT_EQ(b.values, (std::vector<int>{1, 2, 3, 4, 5}));
  EXPECT_THROW(blob.get_result(), std::logic_error);  // taken

  auto box = wm_->submit(wmtest::boxed, std::string("in a box"));
  std::unique_ptr<std::string> p = box.get_result(true);
  ASSERT_TRUE(p);
  EXPECT_EQ(*p, "in a box");

  auto words = wm_->submit(wmtest::split_words, std::string("three short words"));
  expect_done(words);
  EXPECT_THROW(words.get_result(false), std::logic_error);
  std::vector<std::unique_ptr<std::string>> got_words = words.get_result();
  ASSERT_EQ(got_words.size(), 3u);
  ASSERT_TRUE(got_words[2]);
  EXPECT_EQ(*got_words[2], "words");

  if (wm_->runs_in_process()) {
    auto alive = std::make_shared<int>(7);
    auto f = wm_->submit([alive] { return std::make_unique<std::shared_ptr<int>>(alive); });
    std::unique_ptr<std::shared_ptr<int>> got = f.get_result();
    ASSERT_TRUE(got);
    EXPECT_EQ(got->get(), alive.get());  // the very object the task made, not a copy
    EXPECT_THROW(f.get_result(false), std::logic_error);
  }
}

TEST_P(Conformance, WaitAnyReturnsAFinishedFuture) {
  std::vector<wm::Future<int>> futures;
  futures.push_back(wm_->submit(wmtest::sleep_then, 300, 1));
  futures.push_back(wm_->submit(wmtest::sleep_then, 0, 2));
  futures.push_back(wm_->submit(wmtest::sleep_then, 300, 3));
  wm::Future<int> first = wm_->wait_any(futures);
  EXPECT_TRUE(first.done());
  EXPECT_NE(std::find(futures.begin(), futures.end(), first), futures.end());
  wm_->wait_all(futures);
}

TEST_P(Conformance, WaitAllWaitsForEveryFuture) {
  std::vector<wm::Future<int>> futures;
  for (int i = 0; i < 10; ++i) futures.push_back(wm_->submit(wmtest::sleep_then, 10, i));
  auto same = wm_->wait_all(futures);
  ASSERT_EQ(same.size(), futures.size());
  for (std::size_t i = 0; i < futures.size(); ++i) {
    EXPECT_TRUE(futures[i].done());
    EXPECT_EQ(same[i], futures[i]);
  }
}

TEST_P(Conformance, ExceptionIsRaisedWithTypeMessageAndPlace) {
  auto f = wm_->submit(wmtest::throw_runtime, std::string("boom 42"));
  expect_done(f);
  EXPECT_TRUE(f.failed());
  try {
    f.get_result();
    FAIL() << "get_result did not throw";
  } catch (const wm::TaskError& e) {
    EXPECT_EQ(e.type_name(), "std::runtime_error");
    EXPECT_EQ(e.info().message, "boom 42");
    EXPECT_EQ(e.task_name(), "wmtest::throw_runtime");
    EXPECT_EQ(e.info().backend, backend_);
    EXPECT_FALSE(e.info().host.empty());
    EXPECT_GT(e.info().pid, 0);
    EXPECT_GE(e.info().worker_index, 0);
    EXPECT_NE(std::string(e.what()).find("boom 42"), std::string::npos);
  }
}

TEST_P(Conformance, ExceptionIsRetrievedWithTraceback) {
  auto f = wm_->submit(wmtest::throw_runtime, std::string("retrieved"));
  std::exception_ptr e = f.get_exception();
  ASSERT_TRUE(e);
  EXPECT_THROW(std::rethrow_exception(e), wm::TaskError);
  const std::string tb = f.get_traceback();
  EXPECT_NE(tb.find("throw_runtime"), std::string::npos) << tb;
  auto info = f.error_info();
  ASSERT_TRUE(info.has_value());
  EXPECT_EQ(info->kind, wm::FailureKind::task_exception);
  // A succeeded future has neither.
  auto ok = wm_->submit(wmtest::square, 2);
  EXPECT_FALSE(ok.get_exception());
  EXPECT_EQ(ok.get_traceback(), "");
  EXPECT_FALSE(ok.error_info().has_value());
}

TEST_P(Conformance, NonStdExceptionStillCompletes) {
  auto f = wm_->submit(wmtest::throw_int, 7);
  expect_done(f);
  try {
    f.get_result();
    FAIL() << "no exception";
  } catch (const wm::TaskError& e) {
    EXPECT_EQ(e.type_name(), "int");
  }
}

TEST_P(Conformance, GetResultDiscard) {
  auto f = wm_->submit(wmtest::echo, std::string("kept"));
  EXPECT_EQ(f.get_result(false), "kept");
  EXPECT_EQ(f.get_result(false), "kept");
  EXPECT_EQ(f.get_result(true), "kept");
  EXPECT_THROW(f.get_result(), std::logic_error);
}

TEST_P(Conformance, ConcurrentReadersOfOneResultEachGetItOrAClearError) {
  for (int round = 0; round < 20; ++round) {
    auto f = wm_->submit(wmtest::echo, std::string(1000, 'x'));
    expect_done(f);
    std::atomic<int> copies{0}, takes{0}, refused{0};
    std::vector<std::thread> readers;
    for (int t = 0; t < 4; ++t)
      readers.emplace_back([&, t] {
        const bool take = t % 2 == 0;
        try {
          if (f.get_result(take) == std::string(1000, 'x')) (take ? takes : copies)++;
        } catch (const std::logic_error&) {
          refused++;
        }
      });
    for (auto& r : readers) r.join();
    EXPECT_EQ(takes.load(), 1) << "exactly one reader moves the result out";
    EXPECT_EQ(copies + takes + refused, 4) << "every reader gets the whole result or a clear error";
  }
}

TEST_P(Conformance, AFinishedTaskLetsGoOfItsArguments) {
  auto alive = std::make_shared<int>(0);
  auto f = wm_->submit(wmtest::token_value, wmtest::Token{alive, 5});
  expect_done(f);
  // Released by the thread that finished the task, right after it woke the waiters: a future
  // kept for its result does not keep (possibly large) arguments alive.
  const auto until = std::chrono::steady_clock::now() + 10s;
  while (alive.use_count() > 1 && std::chrono::steady_clock::now() < until) std::this_thread::sleep_for(1ms);
  EXPECT_EQ(alive.use_count(), 1);
  EXPECT_EQ(f.get_result(), 5);
}

TEST_P(Conformance, FutureWatcherThresholds) {
  std::vector<wm::WMFuture> futures;
  for (int i = 0; i < 10; ++i) futures.push_back(wm_->submit(wmtest::sleep_then, 5 * (i % 3), i));
  wm::FutureWatcher watcher(futures, 3);
  EXPECT_EQ(watcher.threshold(), 3u);
  std::set<const void*> seen;
  int rounds = 0;
  while (watcher.pending() > 0 && rounds < 20) {
    const std::size_t before = watcher.pending();
    auto done = watcher.wait();
    ++rounds;
    EXPECT_GE(done.size(), std::min<std::size_t>(3, before));
    for (auto& f : done) {
      EXPECT_TRUE(f.done());
      EXPECT_TRUE(seen.insert(f.state().get()).second) << "a future was returned twice";
    }
  }
  EXPECT_EQ(seen.size(), 10u);
  // A threshold above the number of futures wakes once all have finished.
  std::vector<wm::WMFuture> few{wm_->submit(wmtest::square, 1), wm_->submit(wmtest::square, 2)};
  wm::FutureWatcher big(few, 10);
  EXPECT_EQ(big.wait().size(), 2u);
  EXPECT_EQ(big.wait().size(), 0u);  // nothing left: returns at once
}

TEST_P(Conformance, CallbacksRunOnceAndThrowingOnesAreIgnored) {
  std::atomic<int> calls{0};
  auto f = wm_->submit(wmtest::sleep_then, 20, 5);
  f.add_done_callback([](const wm::WMFuture&) { throw std::runtime_error("callback failure"); });
  f.add_done_callback([&](const wm::WMFuture& done) {
    EXPECT_TRUE(done.done());
    calls++;
  });
  EXPECT_EQ(f.get_result(false), 5);
  // The callback runs on the finishing thread, possibly just after the waiter woke.
  for (int i = 0; i < 1000 && calls.load() == 0; ++i) std::this_thread::sleep_for(1ms);
  EXPECT_EQ(calls.load(), 1);
  f.add_done_callback([&](const wm::WMFuture&) { calls++; });  // already done: runs now
  EXPECT_EQ(calls.load(), 2);
}

TEST_P(Conformance, WaitForTimesOutOnLongTask) {
  auto f = wm_->submit(wmtest::sleep_then, 400, 1);
  if (!f.done()) {
    EXPECT_FALSE(f.wait_for(5ms));
  }
  EXPECT_TRUE(f.wait_for(60s));
  EXPECT_EQ(f.get_result(), 1);
}

TEST_P(Conformance, AResultIsNotHeldWhileTheWorkerRunsItsNextTask) {
  if (backend_ == "serial") GTEST_SKIP() << "serial runs each task inside submit(), one after the other";
  // Submitted together, the two may go to one worker at once (with one worker they do): the first
  // one's result must reach the caller while that worker runs the second, which waits for the
  // caller to have it.
  char dir[] = "/tmp/wm_gate_XXXXXX";
  ASSERT_NE(mkdtemp(dir), nullptr);
  const std::string gate = std::string(dir) + "/open";
  auto first = wm_->submit(wmtest::sleep_then, 20, 7);
  auto second = wm_->submit(wmtest::wait_for_file, gate, 30000);
  const bool in_time = first.wait_for(20s);
  { std::ofstream(gate) << "open\n"; }
  expect_done(second);
  std::remove(gate.c_str());
  rmdir(dir);
  ASSERT_TRUE(in_time) << "the first task's result was held back while its worker ran the next task";
  EXPECT_EQ(first.get_result(), 7);
  EXPECT_EQ(second.get_result(), 1) << "the second task ended before the caller had the first one's result";
}

TEST_P(Conformance, FutureOutlivesItsWorkManager) {
  std::vector<wm::Future<int>> futures;
  for (int i = 0; i < 50; ++i) futures.push_back(wm_->submit(wmtest::square, i));
  futures[0].wait();
  wm_.reset();  // shuts down and destroys the backend
  int succeeded = 0;
  for (int i = 0; i < 50; ++i) {
    ASSERT_TRUE(futures[i].done()) << "future " << i << " not finished after its work manager went";
    if (!futures[i].failed()) {
      EXPECT_EQ(futures[i].get_result(), i * i);
      ++succeeded;
    } else {
      EXPECT_THROW(futures[i].get_result(), wm::ShutdownError);
    }
  }
  EXPECT_GE(succeeded, 1);
}

TEST_P(Conformance, ShutdownFinishesEveryFutureAndRefusesNewTasks) {
  std::vector<wm::Future<int>> futures;
  for (int i = 0; i < 40; ++i) futures.push_back(wm_->submit(wmtest::sleep_then, 20, i));
  wm_->shutdown();
  for (auto& f : futures) {
    ASSERT_TRUE(f.wait_for(60s));
    if (f.failed()) {
      EXPECT_THROW(f.get_result(), wm::ShutdownError);
    }
  }
  EXPECT_THROW(wm_->submit(wmtest::square, 1), wm::ShutdownError);
  wm_->shutdown();  // idempotent
}

TEST_P(Conformance, ConcurrentSubmitters) {
  std::vector<std::thread> threads;
  std::atomic<int> wrong{0};
  for (int t = 0; t < 4; ++t)
    threads.emplace_back([&, t] {
      std::vector<wm::Future<int>> fs;
      for (int i = 0; i < 500; ++i) fs.push_back(wm_->submit(wmtest::add, t, i));
      for (int i = 0; i < 500; ++i)
        if (fs[i].get_result() != t + i) wrong++;
    });
  for (auto& t : threads) t.join();
  EXPECT_EQ(wrong.load(), 0);
}

TEST_P(Conformance, ByNameAndSignatureChecks) {
  EXPECT_EQ(wm_->submit<int>("wmtest::square", 9).get_result(), 81);
  auto wrong_types = wm_->submit<int>("wmtest::square", std::string("nine"));
  expect_done(wrong_types);
  EXPECT_THROW(wrong_types.get_result(), wm::SignatureMismatchError);
  auto wrong_result = wm_->submit<std::string>("wmtest::square", 9);
  EXPECT_THROW(wrong_result.get_result(), wm::SignatureMismatchError);
  auto unknown = wm_->submit<int>("no_such_task", 1);
  EXPECT_THROW(unknown.get_result(), wm::UnknownTaskError);
  // The pool keeps working.
  EXPECT_EQ(wm_->submit(wmtest::square, 3).get_result(), 9);
}

TEST_P(Conformance, LambdasRunInProcessOrAreRefusedClearly) {
  int captured = 10;
  if (wm_->runs_in_process()) {
    auto f = wm_->submit([captured](int x) { return x + captured; }, 5);
    EXPECT_EQ(f.get_result(), 15);
  } else {
    try {
      wm_->submit([captured](int x) { return x + captured; }, 5);
      FAIL() << "a lambda was accepted by a backend that runs tasks elsewhere";
    } catch (const wm::TaskNotRegisteredError& e) {
      EXPECT_NE(std::string(e.what()).find("WM_TASK"), std::string::npos) << e.what();
    }
    EXPECT_EQ(wm_->submit(wmtest::square, 4).get_result(), 16);
  }
}

TEST_P(Conformance, WorkerCount) {
  if (backend_ == "serial") {
    EXPECT_EQ(wm_->n_workers(), 1u);
  } else if (!workers_.empty()) {
    EXPECT_EQ(wm_->n_workers(), static_cast<unsigned>(std::stoi(workers_)));
  } else {
    EXPECT_GE(wm_->n_workers(), 1u);
  }
  EXPECT_TRUE(wm_->is_master());
  wm_->run();  // the master returns at once
}

TEST_P(Conformance, LargeArgumentRoundTrip) {
  std::string big(8 << 20, '\0');
  for (std::size_t i = 0; i < big.size(); ++i) big[i] = static_cast<char>(i * 131 % 251);
  auto f = wm_->submit(wmtest::echo, big);
  EXPECT_EQ(f.get_result(), big);
}

// ---- shared arrays (wm::SharedArray): every size class, both ways, inside a user's struct ----

namespace {
// Under a sanitizer (make test-asan, test-tsan: every access instrumented) the largest array is
// 4 MiB and the crowd 200 arrays: what they check there is races and memory errors, not sizes.
#if defined(__SANITIZE_ADDRESS__) || defined(__SANITIZE_THREAD__)
constexpr std::size_t kLargestWords = std::size_t(1) << 20;
constexpr std::uint32_t kCrowd = 200;
#else
constexpr std::size_t kLargestWords = std::size_t(16) << 20;  // 64 MiB
constexpr std::uint32_t kCrowd = 1000;
#endif

wmtest::Words host_words(std::size_t n, std::uint32_t seed) {
  wmtest::Words a = wm::make_shared_array<std::uint32_t>(n);
  for (std::size_t i = 0; i < n; ++i) a[i] = wmtest::pattern(i, seed);
  return a;
}
std::uint64_t wrong_words(const wmtest::Words& a, std::uint32_t seed) {
  std::uint64_t wrong = 0;
  for (std::size_t i = 0; i < a.size(); ++i) wrong += a[i] != wmtest::pattern(i, seed) ? 1 : 0;
  return wrong;
}
}  // namespace

TEST_P(Conformance, SharedArraysOfEverySizeRoundTrip) {
  // 0, one element, a page, 1 MiB and 64 MiB (in words of 4 bytes).
  for (std::size_t n : {std::size_t(0), std::size_t(1), std::size_t(1024), std::size_t(256) << 10, kLargestWords}) {
    SCOPED_TRACE("words: " + std::to_string(n));
    const auto seed = static_cast<std::uint32_t>(n + 3);
    wmtest::Words in = host_words(n, seed);
    auto echoed = wm_->submit(wmtest::sa_echo, in);
    auto same = wm_->submit(wmtest::sa_identity, in);
    auto checked = wm_->submit(wmtest::sa_check, in, seed);
    auto made = wm_->submit(wmtest::sa_make, static_cast<std::uint64_t>(n), seed + 1);
    expect_done(echoed);
    wmtest::Words e = echoed.get_result();
    ASSERT_EQ(e.size(), n);
    EXPECT_EQ(wrong_words(e, seed), 0u);
    wmtest::Words i = same.get_result();
    ASSERT_EQ(i.size(), n);
    EXPECT_EQ(wrong_words(i, seed), 0u);
    EXPECT_EQ(checked.get_result(), 0u);
    wmtest::Words m = made.get_result();
    ASSERT_EQ(m.size(), n);
    EXPECT_EQ(wrong_words(m, seed + 1), 0u);
    // A result made by a worker goes on to another task as it is.
    EXPECT_EQ(wm_->submit(wmtest::sa_check, m, seed + 1).get_result(), 0u);
    // The host's array is as it was.
    EXPECT_EQ(wrong_words(in, seed), 0u);
    // A result is the host's to change.
    if (n != 0) {
      e[0] = 1;
      EXPECT_EQ(e[0], 1u);
      EXPECT_FALSE(e.read_only());
    }
  }
}

TEST_P(Conformance, SharedArraysInsideAUserStruct) {
  wmtest::Frame f;
  f.step = 41;
  f.coords = wm::make_shared_array<double>(std::size_t(100000), 0.5);
  f.note = wm::make_shared_array(std::vector<std::byte>{std::byte{1}, std::byte{2}, std::byte{3}});
  wmtest::Frame g = wm_->submit(wmtest::sa_advance, f).get_result();
  EXPECT_EQ(g.step, 42);
  ASSERT_EQ(g.coords.size(), 100000u);
  EXPECT_TRUE(std::all_of(g.coords.begin(), g.coords.end(), [](double x) { return x == 1.5; }));
  ASSERT_EQ(g.note.size(), 3u);
  EXPECT_EQ(g.note[2], std::byte{3});
  EXPECT_TRUE(std::all_of(f.coords.begin(), f.coords.end(), [](double x) { return x == 0.5; }));
}

TEST_P(Conformance, AnArgumentArrayMappedFromTheHostIsReadOnlyInTheTask) {
  // Where the worker maps the host's memory (processes), an argument is read-only there: writing
  // it throws, and the host's array is untouched. Elsewhere the task writes its own copy, or (serial,
  // threads: the array is passed as it is) the host's own array.
  wmtest::Words in = host_words(std::size_t(64) << 10, 5);
  const int read_only = wm_->submit(wmtest::sa_write_argument, in).get_result();
  if (backend_ == "processes") {
    EXPECT_EQ(read_only, 1);
  }
  if (read_only == 1) {
    EXPECT_EQ(wrong_words(in, 5), 0u);
  }
}

TEST_P(Conformance, AThousandSharedArraysAtOnce) {
  std::vector<wm::Future<wmtest::Words>> futures;
  std::vector<wmtest::Words> inputs;
  for (std::uint32_t k = 0; k < kCrowd; ++k) {
    inputs.push_back(host_words(std::size_t(16) << 10, k));  // 64 KiB each: pooled
    futures.push_back(wm_->submit(wmtest::sa_echo, inputs.back()));
  }
  std::vector<wmtest::Words> results;
  for (std::uint32_t k = 0; k < kCrowd; ++k) {
    expect_done(futures[k]);
    results.push_back(futures[k].get_result());
  }
  // All held at once, each still its own.
  for (std::uint32_t k = 0; k < kCrowd; ++k) ASSERT_EQ(wrong_words(results[k], k), 0u) << "array " << k;
}

TEST_P(Conformance, ManyTinyTasks) {
  std::vector<wm::TaskSpec<int>> specs;
  for (int i = 0; i < 20000; ++i) specs.push_back(wm::task(wmtest::add, i, 1));
  long long total = 0;
  for (const auto& f : wm_->as_completed(wm_->submit_many(std::move(specs)))) total += f.get_result();
  EXPECT_EQ(total, 20000LL * 19999 / 2 + 20000);
}

// ---- re-entrant shutdown: no call hangs, whichever thread makes it, and every future finishes ----

// A done-callback that shuts down returns at once (it may run on a thread the shutdown would wait
// for); the host's own shutdown, meanwhile, returns once everything is finished.
TEST_P(Conformance, ShutdownFromDoneCallbacksWhileTheHostShutsDown) {
  std::vector<wm::Future<int>> futures;
  std::vector<int> expected;
  for (int i = 0; i < 40; ++i) {
    futures.push_back(wm_->submit(wmtest::sleep_then, 5, i));
    expected.push_back(i);
  }
  std::atomic<int> returned{0};
  wm::WorkManager* w = wm_.get();
  for (int i = 0; i < 40; i += 4)
    futures[i].add_done_callback([w, &returned](const wm::WMFuture&) {
      w->shutdown();
      returned++;
    });
  futures[0].wait();
  within(60s, "shutdown() on the host thread", [&] { wm_->shutdown(); });
  expect_result_or_shutdown(futures, expected);
  EXPECT_EQ(returned.load(), 10) << "every callback ran to its end";
  EXPECT_THROW(wm_->submit(wmtest::square, 1), wm::ShutdownError);
}

TEST_P(Conformance, ShutdownFromADoneCallbackAlone) {
  std::atomic<bool> returned{false};
  wm::WorkManager* w = wm_.get();
  auto f = wm_->submit(wmtest::sleep_then, 10, 7);
  std::vector<wm::Future<int>> behind;
  for (int i = 0; i < 20; ++i) behind.push_back(wm_->submit(wmtest::sleep_then, 10, i));
  f.add_done_callback([w, &returned](const wm::WMFuture&) {
    w->shutdown();
    returned = true;
  });
  expect_done(f);
  const auto until = std::chrono::steady_clock::now() + 60s;
  while (!returned && std::chrono::steady_clock::now() < until) std::this_thread::sleep_for(1ms);
  ASSERT_TRUE(returned.load()) << "shutdown() from a done-callback did not return";
  EXPECT_EQ(f.get_result(), 7);
  EXPECT_THROW(wm_->submit(wmtest::square, 1), wm::ShutdownError);
  // The destructor (TearDown) waits for the rest; every future is finished after it.
  within(60s, "the destructor", [&] { wm_.reset(); });
  for (auto& b : behind) EXPECT_TRUE(b.done());
}

// Tasks run in this process only on in-process backends; a task of a remote backend runs in another
// process, which has no work manager of the master's to call.
TEST_P(Conformance, ShutdownFromATaskWhileTheHostShutsDown) {
  if (!wm_->runs_in_process()) GTEST_SKIP() << "tasks of " << backend_ << " run in other processes";
  wm::WorkManager* w = wm_.get();
  std::vector<wm::Future<int>> queued;
  std::vector<int> expected;
  for (int i = 0; i < 10; ++i) {
    queued.push_back(wm_->submit(wmtest::sleep_then, 1, i));
    expected.push_back(i);
  }
  // serial runs the task inside submit(), before there is a host thread to wait for.
  const auto patience = backend_ == "serial" ? 0s : 5s;
  std::atomic<bool> task_started{false}, host_stopping{false}, task_returned{false};
  auto f = wm_->submit([w, patience, &task_started, &host_stopping, &task_returned] {
    task_started = true;
    const auto until = std::chrono::steady_clock::now() + patience;
    while (!host_stopping && std::chrono::steady_clock::now() < until) std::this_thread::sleep_for(1ms);
    w->shutdown();
    task_returned = true;
    return 5;
  });
  std::thread host([&] {
    const auto until = std::chrono::steady_clock::now() + 30s;
    while (!task_started && std::chrono::steady_clock::now() < until) std::this_thread::sleep_for(1ms);
    host_stopping = true;
    wm_->shutdown();
  });
  within(60s, "the host's shutdown() while a task shuts down", [&] { host.join(); });
  EXPECT_TRUE(task_returned.load());
  EXPECT_EQ(f.get_result(), 5);
  expect_result_or_shutdown(queued, expected);
}

TEST_P(Conformance, ShutdownFromSeveralThreadsAtOnce) {
  std::vector<wm::Future<int>> futures;
  std::vector<int> expected;
  for (int i = 0; i < 30; ++i) {
    futures.push_back(wm_->submit(wmtest::sleep_then, 10, i));
    expected.push_back(i);
  }
  std::atomic<int> returned{0};
  std::vector<std::thread> threads;
  for (int t = 0; t < 4; ++t)
    threads.emplace_back([&] {
      wm_->shutdown();
      // A shutdown that returned leaves nothing running: every future is finished.
      for (auto& f : futures) EXPECT_TRUE(f.done());
      returned++;
    });
  within(60s, "four concurrent shutdown() calls", [&] {
    for (auto& t : threads) t.join();
  });
  EXPECT_EQ(returned.load(), 4);
  expect_result_or_shutdown(futures, expected);
}

TEST_P(Conformance, SubmitRacingShutdown) {
  wm_->startup();  // the race is with a running work manager (a shutdown during startup is another case)
  std::mutex m;
  std::vector<wm::Future<int>> futures;
  std::vector<int> expected;
  std::atomic<int> refused{0};
  std::vector<std::thread> submitters;
  for (int t = 0; t < 4; ++t)
    submitters.emplace_back([&, t] {
      for (int i = 0;; ++i) {
        try {
          auto f = wm_->submit(wmtest::add, t, i);
          std::lock_guard<std::mutex> lock(m);
          futures.push_back(f);
          expected.push_back(t + i);
        } catch (const wm::ShutdownError&) {
          refused++;
          return;
        }
        if (i % 64 == 0) std::this_thread::yield();
      }
    });
  const auto until = std::chrono::steady_clock::now() + 30s;
  for (;;) {  // until each submitter is under way
    {
      std::lock_guard<std::mutex> lock(m);
      if (futures.size() >= 100 || std::chrono::steady_clock::now() > until) break;
    }
    std::this_thread::sleep_for(1ms);
  }
  within(60s, "shutdown() racing four submitters", [&] {
    wm_->shutdown();
    for (auto& t : submitters) t.join();
  });
  EXPECT_EQ(refused.load(), 4) << "every submitter was refused once the work manager had shut down";
  EXPECT_FALSE(futures.empty());
  expect_result_or_shutdown(futures, expected);
}

// The last reference to the work manager dropped inside a done-callback: nothing hangs, the
// futures all finish, and the work manager is gone afterwards (no thread of it is left running
// that uses freed memory: ASan and TSan check this part).
TEST_P(Conformance, DestroyedFromADoneCallback) {
  auto holder = std::make_shared<std::unique_ptr<wm::WorkManager>>(std::move(wm_));
  std::vector<wm::Future<int>> futures;
  std::vector<int> expected;
  for (int i = 0; i < 20; ++i) {
    futures.push_back((*holder)->submit(wmtest::sleep_then, 5, i));
    expected.push_back(i);
  }
  std::promise<void> destroyed;
  futures[0].add_done_callback([holder, &destroyed](const wm::WMFuture&) {
    holder->reset();
    destroyed.set_value();
  });
  ASSERT_EQ(destroyed.get_future().wait_for(60s), std::future_status::ready) << "the callback did not return";
  for (auto& f : futures) ASSERT_TRUE(f.wait_for(60s));
  expect_result_or_shutdown(futures, expected);
}

TEST_P(Conformance, DestroyedFromATask) {
  if (!wm_->runs_in_process()) GTEST_SKIP() << "tasks of " << backend_ << " run in other processes";
  auto holder = std::make_shared<std::unique_ptr<wm::WorkManager>>(std::move(wm_));
  std::promise<void> destroyed;
  auto f = (*holder)->submit([holder, &destroyed] {
    holder->reset();
    destroyed.set_value();
    return 3;
  });
  ASSERT_EQ(destroyed.get_future().wait_for(60s), std::future_status::ready) << "the task did not return";
  ASSERT_TRUE(f.wait_for(60s));
  EXPECT_EQ(f.get_result(), 3);
}

INSTANTIATE_TEST_SUITE_P(Backends, Conformance, testing::ValuesIn(wmtest::split_backends(wmtest::conformance_backends())), param_name);

}  // namespace

// ---------------------------------------------------------------- map, cancel, needs

TEST_P(Conformance, MapReturnsOneFuturePerInputInInputOrder) {
  std::vector<int> inputs(200);
  std::iota(inputs.begin(), inputs.end(), 0);
  auto futures = wm_->map(wmtest::square, inputs);
  ASSERT_EQ(futures.size(), inputs.size());
  for (int i = 0; i < 200; ++i) EXPECT_EQ(futures[i].get_result(), i * i) << i;
  const std::array<std::string, 3> words{"a", "bb", "ccc"};  // any range
  auto echoed = wm_->map(wmtest::echo, words);
  ASSERT_EQ(echoed.size(), 3u);
  EXPECT_EQ(echoed[2].get_result(), "ccc");
  EXPECT_TRUE(wm_->map(wmtest::square, std::vector<int>{}).empty());
}

TEST_P(Conformance, CancelledBeforeItStartsATaskNeverRunsAndItsCallbacksRunOnce) {
  char dir[] = "/tmp/wm_cancel_XXXXXX";
  ASSERT_NE(mkdtemp(dir), nullptr);
  const std::string gate = std::string(dir) + "/open";
  struct Opener {  // the gate opens however the test ends: no worker waits out its limit
    std::string path;
    bool open = false;
    void operator()() {
      if (!open) std::ofstream(path) << "open\n";
      open = true;
    }
    ~Opener() { (*this)(); }
  } opener{gate};
  // Every worker busy until the gate opens, each blocker sent once the one before it runs (workers
  // take tasks ahead: a threads worker a batch, a remote one its window), then tasks that leave a
  // file when they run.
  std::vector<wm::Future<int>> blockers;
  for (unsigned i = 0; backend_ != "serial" && i < wm_->n_workers(); ++i) {
    const std::string started = std::string(dir) + "/blocker" + std::to_string(i);
    blockers.push_back(wm_->submit(wmtest::touch_then_wait, started, gate, 30000));
    const auto limit = std::chrono::steady_clock::now() + 30s;
    while (access(started.c_str(), F_OK) != 0 && std::chrono::steady_clock::now() < limit)
      std::this_thread::sleep_for(1ms);
    ASSERT_EQ(access(started.c_str(), F_OK), 0) << "blocker " << i << " did not start within 30 s";
    std::remove(started.c_str());
  }
  const int n = static_cast<int>(4 * wm_->n_workers() + 40);
  std::vector<wm::Future<int>> futures;
  std::vector<std::shared_ptr<std::atomic<int>>> calls;
  for (int i = 0; i < n; ++i) {
    futures.push_back(wm_->submit(wmtest::touch_then_sleep, std::string(dir) + "/ran" + std::to_string(i), 0));
    calls.push_back(std::make_shared<std::atomic<int>>(0));
    futures.back().add_done_callback([c = calls.back()](const wm::WMFuture&) { ++*c; });
  }
  std::vector<bool> cancelled(n, false);
  for (int i = n - 20; i < n; ++i) {
    cancelled[i] = futures[i].cancel();
    if (backend_ == "serial") {
      EXPECT_FALSE(cancelled[i]) << "serial ran it inside submit(): it cannot be cancelled";
      continue;
    }
    ASSERT_TRUE(cancelled[i]) << "task " << i << " of " << n << " had not started";
    EXPECT_TRUE(futures[i].done());
    EXPECT_TRUE(futures[i].cancelled());
    EXPECT_EQ(calls[i]->load(), 1) << "its callbacks ran before cancel() returned";
    EXPECT_TRUE(futures[i].cancel()) << "cancelling it again says it is cancelled";
    EXPECT_THROW(futures[i].get_result(false), wm::CancelledError);
    const auto info = futures[i].error_info();
    ASSERT_TRUE(info.has_value());
    EXPECT_EQ(info->kind, wm::FailureKind::cancelled);
  }
  opener();
  for (auto& b : blockers) expect_done(b);
  for (int i = 0; i < n; ++i) {
    expect_done(futures[i]);
    if (!cancelled[i]) {
      EXPECT_EQ(futures[i].get_result(false), 1) << i;
    }
  }
  EXPECT_FALSE(futures[0].cancel()) << "a finished task cannot be cancelled";
  within(60s, "the work manager's shutdown", [&] { wm_->shutdown(); });  // every task that ran has ended
  for (int i = 0; i < n; ++i) {
    EXPECT_EQ(calls[i]->load(), 1) << "task " << i << ": callbacks run exactly once";
    const std::string ran = std::string(dir) + "/ran" + std::to_string(i);
    EXPECT_EQ(access(ran.c_str(), F_OK) == 0, !cancelled[i]) << "task " << i << (cancelled[i] ? " was cancelled and ran" : " did not run");
    std::remove(ran.c_str());
  }
  std::remove(gate.c_str());
  rmdir(dir);
}

TEST_P(Conformance, CancelsRacingWithStartsResolveEveryFutureExactlyOnce) {
  constexpr int kTasks = 10000;
  std::vector<wm::Future<int>> futures;
  std::vector<std::atomic<int>> calls(kTasks);
  // In-process backends run lambdas: they count runs too, so "cancelled and ran" would show.
  std::vector<std::atomic<int>> runs(kTasks);
  const bool local = wm_->runs_in_process();
  std::vector<wm::TaskSpec<int>> specs;
  for (int i = 0; i < kTasks; ++i) {
    if (local)
      specs.push_back(wm::task([&runs, i] { return ++runs[i], i * i; }));
    else
      specs.push_back(wm::task(wmtest::square, i));
  }
  futures = wm_->submit_many(std::move(specs));
  for (int i = 0; i < kTasks; ++i) futures[i].add_done_callback([&calls, i](const wm::WMFuture&) { ++calls[i]; });
  futures.front().wait();  // the workers are at it: the cancels below race with their starts
  // Two threads cancel every future (odd and even) while the workers start them.
  std::vector<char> said(kTasks, 0);
  auto cancel_every = [&](int from) {
    for (int i = from; i < kTasks; i += 2) said[i] = futures[i].cancel() ? 1 : 0;
  };
  std::thread other(cancel_every, 1);
  cancel_every(0);
  other.join();
  int cancelled = 0;
  for (int i = 0; i < kTasks; ++i) {
    expect_done(futures[i]);
    if (said[i]) {
      ++cancelled;
      ASSERT_TRUE(futures[i].cancelled()) << i;
      EXPECT_THROW(futures[i].get_result(false), wm::CancelledError) << i;
    } else {
      ASSERT_FALSE(futures[i].failed()) << i << ": " << futures[i].error_info()->describe();
      EXPECT_EQ(futures[i].get_result(false), i * i) << i;
    }
  }
  within(60s, "the work manager's shutdown", [&] { wm_->shutdown(); });
  for (int i = 0; i < kTasks; ++i) {
    EXPECT_EQ(calls[i].load(), 1) << "task " << i << ": callbacks run exactly once";
    if (local) {
      EXPECT_EQ(runs[i].load(), said[i] ? 0 : 1) << "task " << i << (said[i] ? " was cancelled and ran" : " ran not once");
    }
  }
  std::printf("[          ] %d of %d cancelled before they started\n", cancelled, kTasks);
}

TEST_P(Conformance, KillRunningStopsARunningTaskWhereItsWorkerCanBeStopped) {
  if (backend_ == "mpi") GTEST_SKIP() << "a stopped rank is not replaced: test mpi.cancel_running has its own job";
  // This project's backends whose workers are processes must stop it; another backend may say no,
  // and then the task runs to its end.
  const bool must_stop = backend_ == "processes" || backend_ == "zmq";
  char dir[] = "/tmp/wm_kill_XXXXXX";
  ASSERT_NE(mkdtemp(dir), nullptr);
  const std::string started = std::string(dir) + "/started";
  auto f = wm_->submit(wmtest::touch_then_sleep, started, must_stop ? 60000 : 300);
  const auto limit = std::chrono::steady_clock::now() + 30s;
  while (access(started.c_str(), F_OK) != 0 && std::chrono::steady_clock::now() < limit)
    std::this_thread::sleep_for(2ms);
  ASSERT_EQ(access(started.c_str(), F_OK), 0) << "the task did not start within 30 s";
  const auto t0 = std::chrono::steady_clock::now();
  const bool stopping = f.cancel(wm::kill_running);
  if (must_stop) {
    EXPECT_TRUE(stopping);
  }
  if (wm_->runs_in_process()) {
    EXPECT_FALSE(stopping) << "a thread cannot be stopped";
  }
  expect_done(f);
  if (stopping) {
    EXPECT_LT(std::chrono::steady_clock::now() - t0, 20s);
    EXPECT_TRUE(f.cancelled());
    try {
      f.get_result(false);
      ADD_FAILURE() << "no CancelledError";
    } catch (const wm::CancelledError& e) {
      EXPECT_NE(std::string(e.what()).find("stopped while it ran (cancel(wm::kill_running))"), std::string::npos) << e.what();
    }
    EXPECT_EQ(wm_->submit(wmtest::square, 7).get_result(), 49) << "its worker was replaced";
  } else {
    EXPECT_EQ(f.get_result(), 1);
  }
  std::remove(started.c_str());
  rmdir(dir);
}

TEST_P(Conformance, ATaskThatNeedsWhatNoWorkerHasFailsAtSubmitWithResourceError) {
  if (backend_ == "zmq") GTEST_SKIP() << "zmq nodes come and go: such a task waits for one (test zmq.placement)";
  auto f = wm_->submit(wm::task(wmtest::square, 3).needs({{"conformance-license", 1}}));
  ASSERT_TRUE(f.done()) << "it failed inside submit()";
  try {
    f.get_result();
    ADD_FAILURE() << "no ResourceError";
  } catch (const wm::ResourceError& e) {
    EXPECT_NE(std::string(e.what()).find("it needs conformance-license=1"), std::string::npos) << e.what();
  }
  EXPECT_EQ(wm_->submit(wmtest::square, 4).get_result(), 16) << "the others are not affected";
  // Every worker has at least one core it may run on ("cpu"), bound or not.
  auto one_core = wm_->submit(wm::task(wmtest::square, 5).needs({{"cpu", 1}}));
  expect_done(one_core);
  EXPECT_EQ(one_core.get_result(), 25);
  // Bad needs are refused where they are written.
  EXPECT_THROW(wm::task(wmtest::square, 1).needs({{"GPU", 1}}), wm::Error);
  EXPECT_THROW(wm::task(wmtest::square, 1).needs({{"gpu", 0}}), wm::Error);
  EXPECT_THROW(wm::task(wmtest::square, 1).needs({{"gpu", 1}, {"gpu", 2}}), wm::Error);
}

// ---------------------------------------------------------------- statistics (WorkManager::stats)

namespace {
const wm::WorkerStats* worker_running(const wm::Stats& s, const std::string& task) {
  for (const wm::WorkerStats& w : s.workers)
    if (w.running() && w.task_name == task) return &w;
  return nullptr;
}
// This project's backends give every worker's view; another may give none (the core's counts are
// still there): the per-worker checks are then left out.
bool has_worker_view(const std::string& backend) {
  for (const char* b : {"serial", "threads", "processes", "mpi", "zmq"})
    if (backend == b) return true;
  return false;
}
}  // namespace

// The snapshot against a run whose outcome is known: successes, failures by kind, the last
// failures with their messages, and each worker's counts adding up to the totals.
TEST_P(Conformance, StatisticsCountAKnownRun) {
  const wm::Stats before = wm_->stats();
  EXPECT_EQ(before.backend, backend_);
  EXPECT_EQ(before.pid, static_cast<std::int64_t>(getpid()));
  EXPECT_EQ(before.submitted, 0u);
  EXPECT_EQ(before.finished(), 0u);
  std::vector<wm::Future<int>> good, bad;
  for (int i = 0; i < 40; ++i) good.push_back(wm_->submit(wmtest::square, i));
  for (int i = 0; i < 3; ++i) bad.push_back(wm_->submit(wmtest::throw_runtime, "stats failure " + std::to_string(i)));
  within(60s, "the tasks", [&] {
    wm_->wait_all(good);
    wm_->wait_all(bad);
  });
  const wm::Stats s = wm_->stats();
  EXPECT_EQ(s.submitted, 43u);
  EXPECT_EQ(s.completed, 40u);
  EXPECT_EQ(s.failed, 3u);
  EXPECT_EQ(s.cancelled, 0u);
  EXPECT_EQ(s.finished(), 43u);
  EXPECT_EQ(s.failures(wm::FailureKind::task_exception), 3u);
  EXPECT_EQ(s.queued, 0u);
  EXPECT_EQ(s.in_flight, 0u);
  EXPECT_EQ(s.running, 0u);
  EXPECT_GT(s.tasks_per_second, 0.0);
  EXPECT_GT(s.uptime_seconds, 0.0);
  ASSERT_EQ(s.recent_failures.size(), 3u);
  std::set<std::string> failed_ids, expected_ids;
  for (int i = 0; i < 3; ++i) {
    EXPECT_EQ(s.recent_failures[i].task_name, "wmtest::throw_runtime");
    EXPECT_EQ(s.recent_failures[i].kind, wm::FailureKind::task_exception);
    EXPECT_NE(s.recent_failures[i].message.find("stats failure "), std::string::npos) << s.recent_failures[i].message;
    failed_ids.insert(s.recent_failures[i].task_id);
    expected_ids.insert(bad[i].task_id());
  }
  EXPECT_EQ(failed_ids, expected_ids);
  const std::string text = wm::format_stats(s);
  EXPECT_NE(text.find("43 submitted, 40 completed, 3 failed (3 task_exception)"), std::string::npos) << text;
  if (!has_worker_view(backend_) && s.workers.empty()) return;
  ASSERT_EQ(s.workers.size(), wm_->n_workers()) << wm::format_stats(s);
  std::uint64_t done = 0, failed = 0;
  for (const wm::WorkerStats& w : s.workers) {
    done += w.tasks_done;
    failed += w.tasks_failed;
    // zmq with nodes joining while the tests run: a worker of a node that has just joined may still
    // be starting (it has no pid yet, and no task).
    if (backend_ == "zmq" && w.state == wm::WorkerState::starting) continue;
    EXPECT_EQ(w.state, wm::WorkerState::idle) << wm::format_stats(s);
    EXPECT_NE(w.pid, 0) << wm::format_stats(s);
    EXPECT_FALSE(w.running());
    EXPECT_GE(w.busy_fraction, 0.0);
    EXPECT_LE(w.busy_fraction, 1.0);
  }
  EXPECT_EQ(done, 43u) << wm::format_stats(s);
  EXPECT_EQ(failed, 3u) << wm::format_stats(s);
  if (!wm_->runs_in_process()) {
    EXPECT_GT(s.bytes_sent, 0u);
    EXPECT_GT(s.bytes_received, 0u);
  }
}

// A worker's running task, with its id and age, seen from another thread while it runs (serial
// runs it inside submit, on the submitting thread).
TEST_P(Conformance, StatisticsNameTheRunningTaskAndItsAge) {
  char dir[] = "/tmp/wm_stats_XXXXXX";
  ASSERT_NE(mkdtemp(dir), nullptr);
  const std::string started = std::string(dir) + "/started";
  std::promise<wm::Future<int>> submitted;
  std::thread submitter([&] { submitted.set_value(wm_->submit(wmtest::touch_then_sleep, started, 1500)); });
  const auto limit = std::chrono::steady_clock::now() + 30s;
  while (access(started.c_str(), F_OK) != 0 && std::chrono::steady_clock::now() < limit)
    std::this_thread::sleep_for(2ms);
  std::this_thread::sleep_for(300ms);
  const wm::Stats s = wm_->stats();
  wm::Future<int> f = submitted.get_future().get();
  submitter.join();
  ASSERT_EQ(access(started.c_str(), F_OK), 0) << "the task did not start within 30 s";
  EXPECT_EQ(s.submitted, 1u);
  EXPECT_EQ(s.finished(), 0u);
  if (!has_worker_view(backend_) && s.workers.empty()) return;
  const wm::WorkerStats* w = worker_running(s, "wmtest::touch_then_sleep");
  ASSERT_NE(w, nullptr) << wm::format_stats(s);
  EXPECT_EQ(w->state, wm::WorkerState::busy);
  EXPECT_EQ(w->task_id, f.task_id());
  EXPECT_GE(w->task_seconds, 0.25) << wm::format_stats(s);
  EXPECT_LT(w->task_seconds, 30.0) << wm::format_stats(s);
  EXPECT_EQ(s.running, 1u) << wm::format_stats(s);
  EXPECT_EQ(s.in_flight, 1u) << wm::format_stats(s);
  EXPECT_EQ(s.queued, 0u) << wm::format_stats(s);
  const std::string text = wm::format_stats(s);
  EXPECT_NE(text.find("running 'wmtest::touch_then_sleep' (task " + f.task_id() + ") for "), std::string::npos) << text;
  EXPECT_EQ(f.get_result(), 1);
  std::remove(started.c_str());
  rmdir(dir);
}

// A worker killed while it runs a task: the task fails as lost, the worker is counted as started
// again, and its failure is its own.
TEST_P(Conformance, StatisticsCountAKilledWorker) {
  if (wm_->runs_in_process()) GTEST_SKIP() << "its workers are threads of this process";
  if (backend_ == "mpi") GTEST_SKIP() << "mpirun ends the job at a death: test mpi.stats.killed_worker has its own";
  if (!has_worker_view(backend_)) GTEST_SKIP() << "no per-worker view: no worker's pid to kill";
  char dir[] = "/tmp/wm_stats_XXXXXX";
  ASSERT_NE(mkdtemp(dir), nullptr);
  const std::string started = std::string(dir) + "/started";
  auto f = wm_->submit(wmtest::touch_then_sleep, started, 60000);
  const auto limit = std::chrono::steady_clock::now() + 30s;
  while (access(started.c_str(), F_OK) != 0 && std::chrono::steady_clock::now() < limit)
    std::this_thread::sleep_for(2ms);
  ASSERT_EQ(access(started.c_str(), F_OK), 0) << "the task did not start within 30 s";
  wm::Stats s = wm_->stats();
  const wm::WorkerStats* w = worker_running(s, "wmtest::touch_then_sleep");
  ASSERT_NE(w, nullptr) << wm::format_stats(s);
  const std::int32_t index = w->index;
  const std::int64_t pid = w->pid;
  ASSERT_GT(pid, 0);
  ASSERT_EQ(kill(static_cast<pid_t>(pid), SIGKILL), 0);
  expect_done(f);
  EXPECT_TRUE(wmtest::fails_with<wm::WorkerLostError>(f)) << wmtest::failure_of(f);
  const auto until = std::chrono::steady_clock::now() + 30s;
  const wm::WorkerStats* again = nullptr;
  for (;;) {
    s = wm_->stats();
    again = nullptr;
    for (const wm::WorkerStats& x : s.workers)
      if (x.index == index) again = &x;
    if ((again != nullptr && again->state == wm::WorkerState::idle && again->pid != pid) ||
        std::chrono::steady_clock::now() > until)
      break;
    std::this_thread::sleep_for(20ms);
  }
  ASSERT_NE(again, nullptr) << wm::format_stats(s);
  EXPECT_EQ(again->state, wm::WorkerState::idle) << wm::format_stats(s);
  EXPECT_NE(again->pid, pid) << "a new process" << wm::format_stats(s);
  EXPECT_EQ(again->restarts, 1u) << wm::format_stats(s);
  EXPECT_EQ(again->tasks_failed, 1u) << wm::format_stats(s);
  EXPECT_EQ(s.failures(wm::FailureKind::worker_lost), 1u);
  EXPECT_EQ(s.failed, 1u);
  EXPECT_EQ(wm_->submit(wmtest::square, 5).get_result(), 25);
  std::remove(started.c_str());
  rmdir(dir);
}
