// SPDX-License-Identifier: MIT
// task_test.cpp: the task registry, task libraries, argument checks and error records.
#include "test_tasks.hpp"

#include <wm/task.hpp>

#include <gtest/gtest.h>

#include <any>
#include <array>
#include <cstdlib>
#include <deque>
#include <list>
#include <map>
#include <optional>
#include <stdexcept>
#include <tuple>
#include <unordered_map>
#include <utility>

using wmtest::ScopedEnv;

namespace {

int not_registered(int x) { return x; }

std::unique_ptr<wm::WorkManager> make(const char* name) {
  ScopedEnv a("WM_WORK_MANAGER", name);
  ScopedEnv p("WM_PLUGIN_PATH", WM_TEST_PLUGIN_DIR);
  return wm::make_work_manager();
}

TEST(Tasks, RegistryKnowsTheRegisteredNames) {
  auto names = wm::registered_tasks();
  for (const char* n : {"wmtest::square", "wmtest::echo", "wmtest::throw_runtime"})
    EXPECT_NE(std::find(names.begin(), names.end(), n), names.end()) << n;
}

TEST(Tasks, TaskLibraryTasksRunByNameOnEveryBackend) {
  wm::load_task_library(WM_TASK_LIBRARY);
  wm::load_task_library(WM_TASK_LIBRARY);  // twice is fine
  for (const char* backend : {"serial", "threads", "loopback"}) {
    auto wm = make(backend);
    EXPECT_EQ(wm->submit<int>("tasklib::triple", 5).get_result(), 15) << backend;
    EXPECT_EQ(wm->submit<std::string>("tasklib::shout", std::string("hi")).get_result(), "HI!") << backend;
  }
}

TEST(Tasks, MissingTaskLibraryIsAClearError) {
  try {
    wm::load_task_library("/no/such/libtasks.so");
    FAIL();
  } catch (const wm::PluginError& e) {
    // The loader's own words, after the path.
    EXPECT_NE(std::string(e.what()).find("cannot load task library '/no/such/libtasks.so': /no/such/libtasks.so: "
                                         "cannot open shared object file: No such file or directory"),
              std::string::npos)
        << e.what();
  }
}

TEST(Tasks, ATaskLibraryNamedWithoutADirectoryIsLookedUpWhereTheLoaderLooks) {
  // As dlopen does for a bare name (LD_LIBRARY_PATH, the system's directories), not in the current
  // directory. In a child process: the library stays on the list workers are told to load.
  EXPECT_EXIT(
      {
        wm::load_task_library("libm.so.6");
        std::exit(0);
      },
      ::testing::ExitedWithCode(0), "");
  try {
    wm::load_task_library("libwm_no_such_tasks.so");
    FAIL();
  } catch (const wm::PluginError& e) {
    EXPECT_NE(std::string(e.what()).find("libwm_no_such_tasks.so: cannot open shared object file"), std::string::npos)
        << e.what();
  }
}

TEST(Tasks, UnregisteredFunctionIsRefusedAtSubmitByRemoteBackends) {
  auto wm = make("loopback");
  try {
    wm->submit(not_registered, 1);
    FAIL() << "accepted";
  } catch (const wm::TaskNotRegisteredError& e) {
    const std::string msg = e.what();
    EXPECT_NE(msg.find("WM_TASK"), std::string::npos) << msg;
    EXPECT_NE(msg.find("loopback"), std::string::npos) << msg;
  }
  // In process it simply runs.
  EXPECT_EQ(make("threads")->submit(not_registered, 4).get_result(), 4);
}

TEST(Tasks, ATaskSpecRunsOnce) {
  auto wm = make("threads");
  auto spec = wm::task(wmtest::square, 3);
  EXPECT_EQ(wm->submit(spec).get_result(), 9);
  EXPECT_THROW(wm->submit(spec), wm::Error);
}

// A batch with a task that ran already is refused as a whole, and its other tasks stay the
// caller's: they can be submitted again.
TEST(Tasks, ABatchWithASpentTaskLeavesTheOthersUnsubmitted) {
  auto wm = make("threads");
  auto spent = wm::task(wmtest::square, 2);
  EXPECT_EQ(wm->submit(spent).get_result(), 4);
  auto fresh = wm::task(wmtest::square, 5);
  EXPECT_THROW(wm->submit_many(std::vector<wm::TaskSpec<int>>{fresh, spent}), wm::Error);
  EXPECT_EQ(wm->submit(fresh).get_result(), 25);
}

TEST(Tasks, InProcessErrorsKeepTheOriginalException) {
  auto wm = make("threads");
  auto f = wm->submit(wmtest::throw_runtime, std::string("original"));
  try {
    f.get_result();
    FAIL();
  } catch (const wm::TaskError& e) {
    ASSERT_TRUE(e.original());
    EXPECT_THROW(std::rethrow_exception(e.original()), std::runtime_error);
    EXPECT_NE(e.stacktrace().find("throw_runtime"), std::string::npos) << e.stacktrace();
    EXPECT_EQ(e.info().worker_index >= 0, true);
  }
}

TEST(Tasks, RemoteErrorsCarryTheirRecord) {
  auto wm = make("loopback");
  auto f = wm->submit(wmtest::throw_runtime, std::string("remote"));
  try {
    f.get_result();
    FAIL();
  } catch (const wm::TaskError& e) {
    EXPECT_FALSE(e.original());  // it crossed the wire as a record
    EXPECT_EQ(e.type_name(), "std::runtime_error");
    EXPECT_NE(e.stacktrace().find("throw_runtime"), std::string::npos) << e.stacktrace();
  }
}

TEST(Tasks, CorruptBytesFailOneFutureAndThePoolGoesOn) {
  for (const char* mode : {"request", "reply", "truncate"}) {
    ScopedEnv c("WM_LOOPBACK_CORRUPT", mode);
    auto wm = make("loopback");
    auto f = wm->submit(wmtest::echo, std::string("some bytes to damage"));
    ASSERT_TRUE(f.wait_for(std::chrono::seconds(30))) << mode;
    EXPECT_THROW(f.get_result(), wm::ProtocolError) << mode;
  }
  EXPECT_EQ(make("loopback")->submit(wmtest::square, 6).get_result(), 36);
}

TEST(Tasks, LambdasAndFunctorsRunInProcess) {
  auto wm = make("threads");
  struct Functor {
    int k;
    int operator()(int x) const { return k * x; }
  };
  EXPECT_EQ(wm->submit(Functor{3}, 4).get_result(), 12);
  std::vector<int> data{1, 2, 3};
  EXPECT_EQ(wm->submit([&data] { return int(data.size()); }).get_result(), 3);
}

TEST(Futures, ADefaultConstructedFutureIsNotDoneAndRefusesToWait) {
  wm::WMFuture none;
  EXPECT_FALSE(none.valid());
  EXPECT_FALSE(none.done());
  EXPECT_FALSE(none.is_done());
  EXPECT_FALSE(none.failed());
  EXPECT_THROW(none.wait(), std::logic_error);
  EXPECT_THROW(none.wait_for(std::chrono::milliseconds(1)), std::logic_error);
  EXPECT_THROW(none.get_exception(), std::logic_error);
  EXPECT_THROW(none.get_result_any(), std::logic_error);
  EXPECT_THROW(none.task_id(), std::logic_error);
  EXPECT_THROW(none.add_done_callback([](const wm::WMFuture&) {}), std::logic_error);
  wm::Future<int> typed;
  EXPECT_THROW(typed.get_result(), std::logic_error);
  auto wm = make("threads");
  EXPECT_THROW(wm->as_completed(std::vector<wm::Future<int>>{typed}), std::logic_error);
  EXPECT_THROW(wm::FutureWatcher(std::vector<wm::WMFuture>{none}), std::logic_error);
}

TEST(Futures, UntypedResultsAreCopiesOfCopyableResults) {
  auto wm = make("threads");
  wm::WMFuture f = wm->submit(wmtest::echo, std::string("untyped"));
  EXPECT_EQ(std::any_cast<std::string>(f.get_result_any(false)), "untyped");
  EXPECT_EQ(std::any_cast<std::string>(f.get_result_any(true)), "untyped");
  EXPECT_THROW(f.get_result_any(), std::logic_error);  // taken
  EXPECT_FALSE(wm::WMFuture(wm->submit(wmtest::nothing)).get_result_any().has_value());
  auto failing = wm->submit(wmtest::throw_runtime, std::string("untyped failure"));
  EXPECT_THROW(wm::WMFuture(failing).get_result_any(), wm::TaskError);
}

// Looks like nlohmann::json: its value_type is itself.
struct SelfNested {
  using value_type = SelfNested;
  std::vector<SelfNested> children;
};

// Whether get_result(false) copies a result or refuses it: a standard container's copy constructor
// exists even when its elements cannot be copied (then it does not compile), so the elements decide,
// wherever they are nested. Checked at compile time for every standard container, and at run time
// below for a few.
using P = std::unique_ptr<int>;
static_assert(!wm::detail::is_copyable_v<std::vector<P>>);
static_assert(!wm::detail::is_copyable_v<std::deque<P>>);
static_assert(!wm::detail::is_copyable_v<std::list<P>>);
static_assert(!wm::detail::is_copyable_v<std::map<int, P>>);
static_assert(!wm::detail::is_copyable_v<std::multimap<P, int>>);
static_assert(!wm::detail::is_copyable_v<std::unordered_map<std::string, P>>);
static_assert(!wm::detail::is_copyable_v<std::optional<std::vector<P>>>);
static_assert(!wm::detail::is_copyable_v<std::array<std::vector<P>, 2>>);
static_assert(!wm::detail::is_copyable_v<std::pair<int, std::vector<P>>>);
static_assert(!wm::detail::is_copyable_v<std::tuple<int, std::string, std::map<int, std::vector<P>>>>);
static_assert(!wm::detail::is_copyable_v<std::vector<std::vector<wmtest::Blob>>>);
static_assert(wm::detail::is_copyable_v<std::map<int, std::vector<std::string>>>);
static_assert(wm::detail::is_copyable_v<std::optional<std::list<int>>>);
static_assert(wm::detail::is_copyable_v<std::tuple<int, std::deque<std::string>>>);
static_assert(wm::detail::is_copyable_v<std::shared_ptr<std::vector<P>>>);  // copies share
static_assert(wm::detail::is_copyable_v<std::vector<P>::iterator>);         // refers, copies none
static_assert(wm::detail::is_copyable_v<SelfNested>);

TEST(Futures, MoveOnlyElementsInsideContainersAreMovedOutNotCopied) {
  auto wm = make("threads");
  auto f = wm->submit([] {
    std::list<std::pair<int, P>> l;
    l.emplace_back(1, std::make_unique<int>(7));
    return l;
  });
  f.wait();
  EXPECT_THROW(f.get_result(false), std::logic_error);
  EXPECT_THROW(wm::WMFuture(f).get_result_any(false), std::logic_error);
  auto l = f.get_result();
  ASSERT_EQ(l.size(), 1u);
  EXPECT_EQ(*l.front().second, 7);

  auto g = wm->submit([] { return SelfNested{{SelfNested{}, SelfNested{}}}; });
  EXPECT_EQ(g.get_result(false).children.size(), 2u);
  EXPECT_EQ(std::any_cast<SelfNested>(wm::WMFuture(g).get_result_any(false)).children.size(), 2u);
  EXPECT_EQ(g.get_result().children.size(), 2u);
}

TEST(Futures, AFutureOfTheWrongTypeIsRefused) {
  auto wm = make("threads");
  auto f = wm->submit(wmtest::square, 3);
  EXPECT_THROW(wm::Future<std::string>(f.state()).get_result(), std::logic_error);
  EXPECT_EQ(f.get_result(), 9);  // untouched
}

}  // namespace
