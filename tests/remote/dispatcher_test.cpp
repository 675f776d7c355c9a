// SPDX-License-Identifier: MIT
// dispatcher_test.cpp: the remote engine's dispatcher alone, over a fake transport (no core, no
// processes): completion, windows, blame rules, retries, timeouts, the shutdown state machine,
// slots given up, elastic workers, and done-callbacks that call back in.
#include <wm/sdk/testkit/fake.hpp>

#include <gtest/gtest.h>

#include <atomic>
#include <set>
#include <thread>

using namespace std::chrono_literals;
using wm::testkit::Outcome;
namespace fake = wm::testkit;
namespace remote = wm::sdk::remote;

namespace {

struct Rig {
  fake::FakeCore core;
  fake::FakeTransport* transport;  // owned by the dispatcher
  std::unique_ptr<remote::Dispatcher> dispatcher;

  explicit Rig(unsigned workers, remote::EngineOptions options = {}, bool hello = true) {
    options.spin_us = 0;  // nothing to gain from spinning here, and the tests run side by side
    auto t = std::make_unique<fake::FakeTransport>(workers, hello);
    transport = t.get();
    dispatcher = std::make_unique<remote::Dispatcher>(core.services(), "fake", std::move(t), options);
  }
  std::vector<wm_task*> submit(std::size_t n) {
    auto tasks = core.make(n);
    dispatcher->submit(tasks.data(), tasks.size());
    return tasks;
  }
  std::size_t first_id(const std::vector<wm_task*>& tasks) { return core.task(tasks.front()).id; }
};

TEST(Dispatcher, EveryTaskCompletesOnceWithItsOwnReply) {
  Rig r(2);
  r.dispatcher->start();
  EXPECT_EQ(r.dispatcher->n_workers(), 2u);
  r.submit(1000);
  ASSERT_TRUE(r.core.wait_finished(1000));
  for (std::uint64_t id = 0; id < 1000; ++id) {
    const Outcome o = r.core.outcome(id);
    ASSERT_EQ(o.kind, Outcome::completed) << id;
    EXPECT_EQ(o.reply, fake::FakeCore::request_of(id));
    EXPECT_EQ(o.host, "fakehost");
  }
  r.dispatcher->stop(false);
  r.dispatcher->join();
  EXPECT_EQ(r.core.finished_twice(), 0);
  const auto st = r.transport->stats();
  EXPECT_EQ(st.sends, 1000u) << "each task sent once";
  EXPECT_GT(st.flushes, 0u);
  EXPECT_LT(st.flushes, st.sends) << "frames are batched: fewer flushes than tasks";
  EXPECT_EQ(st.graceful_stops, 2u);
  EXPECT_EQ(st.forced_stops, 0u);
  EXPECT_EQ(r.dispatcher->stats().completed, 1000u);
}

TEST(Dispatcher, TinyTasksGetSeveralInFlightPerWorker) {
  Rig r(1);
  r.dispatcher->start();
  r.submit(5000);
  ASSERT_TRUE(r.core.wait_finished(5000));
  EXPECT_GT(r.transport->max_in_flight(), 1u);
  EXPECT_LE(r.transport->max_in_flight(), 129u) << "never more than max-window (128) + 1 prefetched";
}

TEST(Dispatcher, ADeadWorkerFailsItsRunningTaskAndTheOthersRunElsewhere) {
  Rig r(1);
  r.transport->act(5, fake::FakeTransport::Act::die);
  r.dispatcher->start();
  r.submit(20);
  ASSERT_TRUE(r.core.wait_finished(20));
  const Outcome lost = r.core.outcome(5);
  ASSERT_EQ(lost.kind, Outcome::failed);
  EXPECT_EQ(lost.failure, WM_FAIL_WORKER_LOST);
  EXPECT_NE(lost.message.find("worker 0 (pid 1000 on fakehost) was killed by signal 6"), std::string::npos) << lost.message;
  EXPECT_NE(lost.message.find("while running task 'fake_task'; attempts made: 1"), std::string::npos) << lost.message;
  EXPECT_EQ(lost.worker_index, 0);
  EXPECT_EQ(lost.pid, 1000);
  for (std::uint64_t id = 0; id < 20; ++id)
    if (id != 5) {
      EXPECT_EQ(r.core.outcome(id).kind, Outcome::completed) << id;
    }
  EXPECT_EQ(r.transport->stats().restarts, 1u);
  EXPECT_EQ(r.core.finished_twice(), 0);
}

TEST(Dispatcher, RetriesRunALostTaskAgainThenGiveUpSayingSo) {
  remote::EngineOptions o;
  o.retries = 2;
  Rig r(2, o);
  r.transport->act(3, fake::FakeTransport::Act::die);         // dies once, then succeeds
  r.transport->act(4, fake::FakeTransport::Act::die_always);  // dies every time
  r.dispatcher->start();
  r.submit(10);
  ASSERT_TRUE(r.core.wait_finished(10));
  EXPECT_EQ(r.core.outcome(3).kind, Outcome::completed);
  const Outcome always = r.core.outcome(4);
  ASSERT_EQ(always.kind, Outcome::failed);
  EXPECT_EQ(always.failure, WM_FAIL_WORKER_LOST);
  EXPECT_EQ(always.attempts, 3u);
  EXPECT_NE(always.message.find("attempts made: 3 of 3"), std::string::npos) << always.message;
}

TEST(Dispatcher, ATaskPastItsTimeoutStopsItsWorkerAndFailsAlone) {
  remote::EngineOptions o;
  o.task_timeout = 0.2;
  Rig r(1, o);
  r.transport->act(2, fake::FakeTransport::Act::hold);
  r.dispatcher->start();
  const auto t0 = std::chrono::steady_clock::now();
  r.submit(8);
  ASSERT_TRUE(r.core.wait_finished(8));
  EXPECT_GE(std::chrono::steady_clock::now() - t0, 200ms);
  const Outcome slow = r.core.outcome(2);
  ASSERT_EQ(slow.kind, Outcome::failed);
  EXPECT_EQ(slow.failure, WM_FAIL_TIMEOUT);
  EXPECT_NE(slow.message.find("per-task timeout of 0.2 s"), std::string::npos) << slow.message;
  for (std::uint64_t id = 0; id < 8; ++id)
    if (id != 2) {
      EXPECT_EQ(r.core.outcome(id).kind, Outcome::completed) << id;
    }
  EXPECT_EQ(r.transport->stats().forced_stops, 1u);
}

TEST(Dispatcher, GarbageFromAWorkerFailsOnlyTheTaskItWasRunning) {
  Rig r(1);
  r.transport->act(3, fake::FakeTransport::Act::garbage);
  r.dispatcher->start();
  r.submit(10);
  ASSERT_TRUE(r.core.wait_finished(10));
  const Outcome bad = r.core.outcome(3);
  ASSERT_EQ(bad.kind, Outcome::failed);
  EXPECT_EQ(bad.failure, WM_FAIL_PROTOCOL);
  // The fake worker wrote bytes that are no frame: the engine's reader says what is wrong with them.
  EXPECT_NE(bad.message.find("sent bytes that are not a valid reply (a frame does not start with the frame marker"),
            std::string::npos)
      << bad.message;
  for (std::uint64_t id = 0; id < 10; ++id)
    if (id != 3) {
      EXPECT_EQ(r.core.outcome(id).kind, Outcome::completed) << id;
    }
}

TEST(Dispatcher, DuplicateAndMisaddressedRepliesNeverFinishATaskTwice) {
  Rig r(2);
  r.transport->act(1, fake::FakeTransport::Act::duplicate);
  r.transport->act(6, fake::FakeTransport::Act::corrupt_seq);
  r.dispatcher->start();
  r.submit(30);
  ASSERT_TRUE(r.core.wait_finished(30));
  EXPECT_EQ(r.core.finished_twice(), 0);
  EXPECT_EQ(r.core.outcome(1).kind, Outcome::completed) << "the first reply counts";
  int protocol = 0;
  for (std::uint64_t id = 0; id < 30; ++id) {
    const Outcome o = r.core.outcome(id);
    if (o.kind == Outcome::failed) {
      EXPECT_EQ(o.failure, WM_FAIL_PROTOCOL) << id << ": " << o.message;
      ++protocol;
    }
  }
  EXPECT_LE(protocol, 2) << "at most the task running on each misbehaving worker";
  EXPECT_GE(r.transport->stats().forced_stops, 2u);
}

TEST(Dispatcher, AShutdownFailsWhatWasNotSentAndGivesRunningTasksTheirTimeout) {
  remote::EngineOptions o;
  o.shutdown_timeout = 0.3;
  o.max_window = 1;
  Rig r(2, o);
  r.dispatcher->start();
  for (std::uint64_t id = 0; id < 40; ++id) r.transport->act(id, fake::FakeTransport::Act::hold);
  r.submit(40);
  std::this_thread::sleep_for(50ms);  // the first tasks are sent
  const auto t0 = std::chrono::steady_clock::now();
  r.dispatcher->stop(false);
  EXPECT_THROW(r.submit(1), std::runtime_error);
  r.dispatcher->join();
  EXPECT_GE(std::chrono::steady_clock::now() - t0, 300ms) << "running tasks had their shutdown timeout";
  ASSERT_TRUE(r.core.wait_finished(40));
  int unsent = 0, timed_out = 0;
  for (std::uint64_t id = 0; id < 40; ++id) {
    const Outcome o = r.core.outcome(id);
    ASSERT_EQ(o.kind, Outcome::failed) << id;
    EXPECT_EQ(o.failure, WM_FAIL_SHUTDOWN);
    if (o.message.find("before this task was sent") != std::string::npos) ++unsent;
    if (o.message.find("did not finish within the shutdown timeout of 0.3 s") != std::string::npos) ++timed_out;
  }
  EXPECT_EQ(unsent + timed_out, 40);
  EXPECT_GE(timed_out, 2);
  const auto st = r.transport->stats();
  EXPECT_EQ(st.graceful_stops, 2u);
  EXPECT_EQ(st.forced_stops, 2u);
}

TEST(Dispatcher, AShutdownLetsShortRunningTasksFinish) {
  remote::EngineOptions o;
  o.shutdown_timeout = 30;
  Rig r(2, o);
  r.transport->reply_after(20);
  r.dispatcher->start();
  r.submit(4);
  std::this_thread::sleep_for(20ms);
  r.dispatcher->stop(false);
  r.dispatcher->join();
  ASSERT_TRUE(r.core.wait_finished(4));
  int done = 0;
  for (std::uint64_t id = 0; id < 4; ++id) done += r.core.outcome(id).kind == Outcome::completed;
  EXPECT_GE(done, 2) << "the tasks that were sent ran to their end";
  EXPECT_EQ(r.transport->stats().forced_stops, 0u);
}

TEST(Dispatcher, AShutdownNowStopsWorkersAtOnce) {
  remote::EngineOptions o;
  o.shutdown_timeout = 60;
  Rig r(2, o);
  r.transport->act(0, fake::FakeTransport::Act::hold);
  r.transport->act(1, fake::FakeTransport::Act::hold);
  r.dispatcher->start();
  r.submit(2);
  std::this_thread::sleep_for(20ms);
  const auto t0 = std::chrono::steady_clock::now();
  r.dispatcher->stop(true);
  r.dispatcher->join();
  EXPECT_LT(std::chrono::steady_clock::now() - t0, 10s);
  ASSERT_TRUE(r.core.wait_finished(2));
  for (std::uint64_t id = 0; id < 2; ++id) {
    EXPECT_EQ(r.core.outcome(id).failure, WM_FAIL_SHUTDOWN);
    EXPECT_NE(r.core.outcome(id).message.find("shut down at once"), std::string::npos) << r.core.outcome(id).message;
  }
  EXPECT_EQ(r.transport->stats().forced_stops, 2u);
}

TEST(Dispatcher, WorkersThatDieBeforeTheirHelloAreGivenUpAndStartupSaysWhy) {
  Rig r(2);
  r.transport->die_before_hello(100);
  try {
    r.dispatcher->start();
    FAIL() << "startup should fail";
  } catch (const std::runtime_error& e) {
    const std::string what = e.what();
    EXPECT_NE(what.find("no worker of the fake work manager is left"), std::string::npos) << what;
    EXPECT_NE(what.find("exited with code 7"), std::string::npos) << what;
  }
  EXPECT_EQ(r.dispatcher->n_workers(), 0u);
  EXPECT_EQ(r.transport->stats().restarts, 4u) << "each slot: 3 deaths before giving up, so 2 restarts";
}

TEST(Dispatcher, WorkersThatKnowOtherTasksFailStartupWithTheRegistryReport) {
  Rig r(2);
  r.transport->extra_task("only_in_the_workers");
  try {
    r.dispatcher->start();
    FAIL() << "startup should fail";
  } catch (const std::runtime_error& e) {
    const std::string what = e.what();
    EXPECT_NE(what.find("does not have the tasks the master has: known only there: only_in_the_workers"),
              std::string::npos) << what;
  }
  EXPECT_EQ(r.transport->stats().forced_stops, 2u);
  EXPECT_EQ(r.transport->stats().restarts, 0u) << "a replacement would know the same tasks";
}

TEST(Dispatcher, AWorkerThatCannotBeReplacedIsGivenUpAndTheOthersCarryOn) {
  Rig r(2);
  r.transport->refuse_restarts();
  r.transport->act(0, fake::FakeTransport::Act::die);
  r.dispatcher->start();
  r.submit(50);
  ASSERT_TRUE(r.core.wait_finished(50));
  EXPECT_EQ(r.core.outcome(0).failure, WM_FAIL_WORKER_LOST);
  for (std::uint64_t id = 1; id < 50; ++id) EXPECT_EQ(r.core.outcome(id).kind, Outcome::completed) << id;
  EXPECT_EQ(r.dispatcher->n_workers(), 1u);
  // The last one goes too: nothing is left, and new tasks are refused with the reason.
  r.transport->act(50, fake::FakeTransport::Act::die);
  r.submit(1);
  ASSERT_TRUE(r.core.wait_finished(51));
  EXPECT_EQ(r.dispatcher->n_workers(), 0u);
  try {
    r.submit(1);
    FAIL() << "a work manager without workers accepted a task";
  } catch (const std::runtime_error& e) {
    EXPECT_NE(std::string(e.what()).find("no worker of the fake work manager is left"), std::string::npos) << e.what();
  }
}

TEST(Dispatcher, ElasticWithoutWorkersFailsPendingTasksAfterItsTimeoutAndUsesLateOnes) {
  remote::EngineOptions o;
  o.elastic = true;
  o.no_worker_timeout = 0.3;
  Rig r(0, o);
  r.dispatcher->start();  // does not wait for workers
  EXPECT_EQ(r.dispatcher->n_workers(), 0u);
  r.submit(5);
  ASSERT_TRUE(r.core.wait_finished(5));
  for (std::uint64_t id = 0; id < 5; ++id) {
    EXPECT_EQ(r.core.outcome(id).failure, WM_FAIL_BACKEND);
    EXPECT_NE(r.core.outcome(id).message.find("no worker joined the fake work manager within 0.3 s"), std::string::npos);
  }
  r.transport->add_worker();
  r.dispatcher->submit(nullptr, 0);  // (nothing) just to show an empty submit is harmless
  r.submit(5);
  ASSERT_TRUE(r.core.wait_finished(10));
  for (std::uint64_t id = 5; id < 10; ++id) EXPECT_EQ(r.core.outcome(id).kind, Outcome::completed) << id;
  EXPECT_EQ(r.dispatcher->n_workers(), 1u);
}

TEST(Dispatcher, DoneCallbacksMaySubmitAndStopFromTheDispatchersThread) {
  Rig r(2);
  remote::Dispatcher* d = r.dispatcher.get();
  std::atomic<int> chained{0};
  r.core.on_done = [&](std::uint64_t id, const Outcome&) {
    EXPECT_TRUE(d->on_own_thread());
    if (id < 10) {
      auto more = r.core.make(1);
      d->submit(more.data(), 1);
      chained++;
    } else if (id == 15) {
      d->stop(false);
    }
  };
  r.dispatcher->start();
  r.submit(10);
  r.dispatcher->join();  // the callback of task 15 stopped it
  EXPECT_EQ(chained.load(), 10);
  EXPECT_GE(r.core.finished(), 16u);
  EXPECT_EQ(r.core.finished_twice(), 0);
}

TEST(Dispatcher, ATaskThatNoLongerEncodesFailsAloneWhenSent) {
  Rig r(1);
  r.dispatcher->start();
  auto tasks = r.core.make(5);
  r.core.task(tasks[2]).encode_throws = true;
  r.dispatcher->submit(tasks.data(), tasks.size());
  ASSERT_TRUE(r.core.wait_finished(5));
  EXPECT_EQ(r.core.outcome(2).failure, WM_FAIL_BACKEND);
  EXPECT_NE(r.core.outcome(2).message.find("could not be encoded when it was sent: fake encoding failure"),
            std::string::npos);
  for (std::uint64_t id : {0, 1, 3, 4}) EXPECT_EQ(r.core.outcome(id).kind, Outcome::completed) << id;
}

}  // namespace

TEST(Dispatcher, SingleTasksOneAtATimeStayOnTheWorkerThatIsAwake) {
  // The worker that has just replied is awake; the other may sleep. A host that submits one task
  // and waits for it, again and again, must not wake each worker in turn.
  Rig r(2);
  r.dispatcher->start();
  std::set<int> workers;
  for (std::size_t i = 0; i < 20; ++i) {
    r.submit(1);
    ASSERT_TRUE(r.core.wait_finished(i + 1));
    const Outcome o = r.core.outcome(i);
    ASSERT_EQ(o.kind, Outcome::completed) << i;
    if (i > 0) workers.insert(o.worker_index);  // the first goes to whichever said hello first
  }
  EXPECT_EQ(workers.size(), 1u) << "single tasks alternated between the workers";
  r.dispatcher->stop(false);
  r.dispatcher->join();
}

// ---------------------------------------------------------------- placement and cancel

TEST(Dispatcher, TasksThatNeedAResourceRunOnlyOnWorkersThatHaveIt) {
  Rig r(3);
  r.transport->worker_resources(1, {{"cpu", 4}, {"gpu", 1}});
  r.transport->worker_resources(0, {{"cpu", 4}});
  r.transport->worker_resources(2, {{"cpu", 4}});
  r.dispatcher->start();
  // Interleaved: every other task needs the GPU; the others need nothing.
  auto tasks = r.core.make(600);
  for (std::size_t i = 0; i < tasks.size(); i += 2) r.core.needs(tasks[i], {{"gpu", 1}});
  r.dispatcher->submit(tasks.data(), tasks.size());
  ASSERT_TRUE(r.core.wait_finished(600));
  std::set<std::int32_t> plain_workers;
  for (std::uint64_t id = 0; id < 600; ++id) {
    const Outcome o = r.core.outcome(id);
    ASSERT_EQ(o.kind, Outcome::completed) << id;
    if (id % 2 == 0)
      EXPECT_EQ(o.worker_index, 1) << "task " << id << " needs a GPU and ran on worker " << o.worker_index;
    else
      plain_workers.insert(o.worker_index);
  }
  EXPECT_GE(plain_workers.size(), 2u) << "tasks that need nothing run on every worker";
  EXPECT_EQ(r.core.finished_twice(), 0);
}

TEST(Dispatcher, ATaskNoWorkerCouldRunFailsAtSubmitSayingWhatItNeedsAndWhatThereIs) {
  Rig r(2);
  r.transport->worker_resources(0, {{"gpu", 1}});
  r.transport->worker_resources(1, {{"mem", 8e9}});
  r.dispatcher->start();
  auto tasks = r.core.make(3);
  r.core.needs(tasks[0], {{"gpu", 2}});
  r.core.needs(tasks[1], {{"gpu", 1}, {"mem", 1e9}});  // each has one, none has both
  r.core.needs(tasks[2], {{"mem", 4e9}});               // fits worker 1
  r.dispatcher->submit(tasks.data(), tasks.size());
  // Failed before submit returned: no waiting on the dispatcher's thread.
  const Outcome two = r.core.outcome(0);
  ASSERT_EQ(two.kind, Outcome::failed);
  EXPECT_EQ(two.failure, WM_FAIL_RESOURCES);
  EXPECT_NE(two.message.find("it needs gpu=2"), std::string::npos) << two.message;
  EXPECT_NE(two.message.find("gpu=1"), std::string::npos) << two.message;
  EXPECT_NE(two.message.find("mem=8000000000"), std::string::npos) << two.message;
  EXPECT_EQ(r.core.outcome(1).failure, WM_FAIL_RESOURCES);
  ASSERT_TRUE(r.core.wait_finished(3));
  EXPECT_EQ(r.core.outcome(2).kind, Outcome::completed);
  EXPECT_EQ(r.core.outcome(2).worker_index, 1);
}

TEST(Dispatcher, TasksWaitWhileTheWorkerTheyNeedIsBusyAndNoneIsLost) {
  Rig r(2);
  r.transport->worker_resources(0, {{"license", 1}});
  r.transport->act(0, fake::FakeTransport::Act::hold);  // the licensed worker is busy with task 0
  r.dispatcher->start();
  auto tasks = r.core.make(50);
  for (std::size_t i = 0; i < 10; ++i) r.core.needs(tasks[i], {{"license", 1}});
  r.dispatcher->submit(tasks.data(), tasks.size());
  ASSERT_TRUE(r.core.wait_finished(40)) << "the tasks that need nothing run on the other worker meanwhile";
  for (std::uint64_t id = 10; id < 50; ++id) EXPECT_EQ(r.core.outcome(id).kind, Outcome::completed) << id;
  r.transport->release_held();
  ASSERT_TRUE(r.core.wait_finished(50));
  for (std::uint64_t id = 0; id < 10; ++id) {
    EXPECT_EQ(r.core.outcome(id).kind, Outcome::completed) << id;
    EXPECT_EQ(r.core.outcome(id).worker_index, 0) << id;
  }
}

TEST(Dispatcher, ElasticTasksWithNeedsWaitForAWorkerThatHasThemToJoin) {
  remote::EngineOptions o;
  o.elastic = true;
  Rig r(1, o);
  r.dispatcher->start();
  ASSERT_TRUE(r.dispatcher->wait_for_workers(1, 10));
  auto tasks = r.core.make(5);
  for (wm_task* t : tasks) r.core.needs(t, {{"gpu", 1}});
  r.dispatcher->submit(tasks.data(), tasks.size());
  // Worker 0 has no GPU: with workers that come and go, a node that has one may still join.
  EXPECT_FALSE(r.core.wait_finished(1, 300ms)) << "a task failed although a GPU node may join";
  r.transport->worker_resources(1, {{"gpu", 1}});
  r.transport->add_worker();
  ASSERT_TRUE(r.core.wait_finished(5));
  for (std::uint64_t id = 0; id < 5; ++id) {
    EXPECT_EQ(r.core.outcome(id).kind, Outcome::completed) << id;
    EXPECT_EQ(r.core.outcome(id).worker_index, 1) << id;
  }
}

TEST(Dispatcher, StopRunningStopsTheWorkerFailsTheTaskAsCancelledAndRunsTheOthersElsewhere) {
  Rig r(1);
  r.transport->act(3, fake::FakeTransport::Act::hold);
  r.dispatcher->start();
  auto tasks = r.submit(10);
  ASSERT_TRUE(r.core.wait_finished(3));  // tasks 0-2 done; 3 is running (held), 4.. behind it
  EXPECT_FALSE(r.dispatcher->stop_running(12345)) << "no worker holds that task";
  EXPECT_TRUE(r.dispatcher->stop_running(4));  // sequence = id + 1
  ASSERT_TRUE(r.core.wait_finished(10));
  const Outcome c = r.core.outcome(3);
  ASSERT_EQ(c.kind, Outcome::failed);
  EXPECT_EQ(c.failure, WM_FAIL_CANCELLED);
  EXPECT_NE(c.message.find("stopped while it ran (cancel(wm::kill_running))"), std::string::npos) << c.message;
  for (std::uint64_t id = 4; id < 10; ++id) EXPECT_EQ(r.core.outcome(id).kind, Outcome::completed) << id;
  EXPECT_EQ(r.transport->stats().forced_stops, 1u);
  EXPECT_EQ(r.transport->stats().restarts, 1u);
  EXPECT_EQ(r.core.finished_twice(), 0);
  (void)tasks;
}

TEST(Dispatcher, StopRunningFromADoneCallbackOnTheDispatchersThreadDoesNotWaitForItself) {
  Rig r(1);
  r.transport->act(1, fake::FakeTransport::Act::hold);
  std::atomic<int> answer{-1};
  r.core.on_done = [&](std::uint64_t id, const Outcome&) {
    if (id == 0) answer = r.dispatcher->stop_running(2) ? 1 : 0;  // task 1, held on the worker
  };
  r.dispatcher->start();
  r.submit(2);
  ASSERT_TRUE(r.core.wait_finished(2));
  EXPECT_EQ(answer.load(), 1);
  EXPECT_EQ(r.core.outcome(1).failure, WM_FAIL_CANCELLED);
}
