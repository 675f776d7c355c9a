// SPDX-License-Identifier: MIT
// crash_matrix_test.cpp: what happens when a task, or the encoding of its argument or result,
// crashes, exits or throws on a worker of a remote backend (after CPython's test_deadlock.py): the
// task ends with its own error within a deadline, the tasks around it are not touched, and the
// work manager keeps working. Run on every backend of WM_CRASH_MATRIX_BACKENDS ("name" or
// "name:workers"); a backend whose tasks run in the host process is skipped (a crash would end the
// test program).
#include "test_support.hpp"
#include "test_tasks.hpp"

#include <wm/task.hpp>

#include <gtest/gtest.h>

#include <signal.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdlib>
#include <stdexcept>
#include <string>
#include <tuple>
#include <vector>

using namespace std::chrono_literals;

namespace crash {

// How a task (or a type's serialization) misbehaves.
enum Mode : int { kAbort = 0, kSegv = 1, kExit = 2, kThrow = 3, kNone = 9 };

void misbehave(int mode, const char* where) {
  switch (mode) {
    case kAbort: std::abort();
    case kSegv: raise(SIGSEGV); break;
    case kExit: _exit(3);
    case kThrow: throw std::runtime_error(std::string("deliberate failure at ") + where);
    default: return;
  }
  _exit(99);
}

int misbehaving_task(int mode) {
  misbehave(mode, "execution");
  return 42;
}

// An argument whose decoding (in the worker) misbehaves.
struct ArgBomb {
  int mode = kNone;
  template <class A>
  void save(A& a) const {
    a(mode);
  }
  template <class A>
  void load(A& a) {
    a(mode);
    misbehave(mode, "argument decoding");
  }
};
int take_arg_bomb(ArgBomb b) { return b.mode; }

// A result whose encoding (in the worker) misbehaves.
struct ResultBomb {
  int mode = kNone;
  template <class A>
  void save(A& a) const {
    misbehave(mode, "result encoding");
    a(mode);
  }
  template <class A>
  void load(A& a) {
    a(mode);
  }
};
ResultBomb make_result_bomb(int mode) { return ResultBomb{mode}; }

// A result whose decoding (in the master) throws.
struct ResultLoadBomb {
  int mode = kNone;
  template <class A>
  void save(A& a) const {
    a(mode);
  }
  template <class A>
  void load(A& a) {
    a(mode);
    if (mode == kThrow) throw std::runtime_error("ResultLoadBomb refuses to decode");
  }
};
ResultLoadBomb make_result_load_bomb(int mode) { return ResultLoadBomb{mode}; }

}  // namespace crash

WM_TASK_NAMED(crash::misbehaving_task, "wm_crash_misbehaving_task");
WM_TASK_NAMED(crash::take_arg_bomb, "wm_crash_take_arg_bomb");
WM_TASK_NAMED(crash::make_result_bomb, "wm_crash_make_result_bomb");
WM_TASK_NAMED(crash::make_result_load_bomb, "wm_crash_make_result_load_bomb");

namespace {

using namespace crash;

struct Case {
  const char* name;
  enum Stage { arg_decode, execution, result_encode, result_decode } stage;
  int mode;
  enum Expect { worker_lost, protocol, task_error } expect;
};

const Case kCases[] = {
    {"arg_decode_abort", Case::arg_decode, kAbort, Case::worker_lost},
    {"arg_decode_segv", Case::arg_decode, kSegv, Case::worker_lost},
    {"arg_decode_exit", Case::arg_decode, kExit, Case::worker_lost},
    {"arg_decode_throw", Case::arg_decode, kThrow, Case::protocol},
    {"exec_abort", Case::execution, kAbort, Case::worker_lost},
    {"exec_segv", Case::execution, kSegv, Case::worker_lost},
    {"exec_exit", Case::execution, kExit, Case::worker_lost},
    {"exec_throw", Case::execution, kThrow, Case::task_error},
    {"result_encode_abort", Case::result_encode, kAbort, Case::worker_lost},
    {"result_encode_segv", Case::result_encode, kSegv, Case::worker_lost},
    {"result_encode_exit", Case::result_encode, kExit, Case::worker_lost},
    {"result_encode_throw", Case::result_encode, kThrow, Case::protocol},
    {"result_decode_throw", Case::result_decode, kThrow, Case::protocol},
};

using wmtest::fails_with;
using wmtest::failure_of;

class CrashMatrix : public testing::TestWithParam<std::tuple<std::string, Case>> {
 protected:
  void SetUp() override {
    const std::string p = std::get<0>(GetParam());
    const auto colon = p.find(':');
    const std::string workers = colon == std::string::npos ? "2" : p.substr(colon + 1);
    env_wm_ = std::make_unique<wmtest::ScopedEnv>("WM_WORK_MANAGER", p.substr(0, colon).c_str());
    env_n_ = std::make_unique<wmtest::ScopedEnv>("WM_N_WORKERS", workers.c_str());
    wm_ = wm::make_work_manager();
  }
  std::unique_ptr<wmtest::ScopedEnv> env_wm_, env_n_;
  std::unique_ptr<wm::WorkManager> wm_;
};

TEST_P(CrashMatrix, EndsWithItsErrorAndTheWorkManagerKeepsWorking) {
  if (wm_->runs_in_process()) GTEST_SKIP() << "its tasks run in this process: a crash would end the test";
  const Case c = std::get<1>(GetParam());
  wm::WMFuture f;
  switch (c.stage) {
    case Case::arg_decode: f = wm_->submit(take_arg_bomb, ArgBomb{c.mode}); break;
    case Case::execution: f = wm_->submit(misbehaving_task, c.mode); break;
    case Case::result_encode: f = wm_->submit(make_result_bomb, c.mode); break;
    case Case::result_decode: f = wm_->submit(make_result_load_bomb, c.mode); break;
  }
  // Other work at the same time is unaffected.
  std::vector<wm::Future<int>> others;
  for (int i = 0; i < 50; ++i) others.push_back(wm_->submit(wmtest::square, i));
  ASSERT_TRUE(f.wait_for(30s)) << c.name << ": the future did not finish";
  const std::string what = failure_of(f);
  switch (c.expect) {
    case Case::worker_lost: {
      EXPECT_TRUE(fails_with<wm::WorkerLostError>(f)) << what;
      auto info = f.error_info();
      ASSERT_TRUE(info.has_value());
      EXPECT_EQ(info->kind, wm::FailureKind::worker_lost);
      EXPECT_NE(what.find("worker "), std::string::npos) << what;
      EXPECT_NE(what.find("wm_crash_"), std::string::npos) << "names the task: " << what;
      // The worker that died, as the record and the message name it: its pid, and its rank where
      // it has one (MPI).
      EXPECT_GT(info->pid, 0) << what;
      EXPECT_NE(what.find("pid " + std::to_string(info->pid)), std::string::npos) << "names the pid: " << what;
      if (info->rank >= 0) {
        EXPECT_NE(what.find("rank " + std::to_string(info->rank)), std::string::npos) << "names the rank: " << what;
      }
      break;
    }
    case Case::protocol: EXPECT_TRUE(fails_with<wm::ProtocolError>(f)) << what; break;
    case Case::task_error:
      EXPECT_TRUE(fails_with<wm::TaskError>(f)) << what;
      EXPECT_NE(what.find("deliberate failure at execution"), std::string::npos) << what;
      break;
  }
  for (int i = 0; i < 50; ++i) {
    ASSERT_TRUE(others[i].wait_for(30s));
    EXPECT_EQ(others[i].get_result(), i * i) << failure_of(others[i]);
  }
  auto follow = wm_->submit(wmtest::square, 11);
  ASSERT_TRUE(follow.wait_for(30s));
  EXPECT_EQ(follow.get_result(), 121);
}

GTEST_ALLOW_UNINSTANTIATED_PARAMETERIZED_TEST(CrashMatrix);  // WM_CRASH_MATRIX_BACKENDS may be empty
INSTANTIATE_TEST_SUITE_P(Backends, CrashMatrix, testing::Combine(testing::ValuesIn(wmtest::split_backends(wmtest::crash_matrix_backends())), testing::ValuesIn(kCases)),
                         [](const testing::TestParamInfo<std::tuple<std::string, Case>>& i) {
                           std::string b = std::get<0>(i.param);
                           std::replace(b.begin(), b.end(), ':', '_');
                           return b + "_" + std::get<1>(i.param).name;
                         });

}  // namespace
