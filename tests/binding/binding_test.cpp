// SPDX-License-Identifier: MIT
// binding_test.cpp: GPUs, cores and declared resources per worker, as a user checks them: which
// devices each worker sees (CUDA_VISIBLE_DEVICES and wm::this_worker()) on processes, threads,
// serial and zmq nodes (mpi: binding.mpi runs this program under mpirun); the devices found in the
// variables and by hwloc (a synthetic topology); each worker's cores and thread counts; every
// malformed value refused with its option; the core's worker_resources service. No GPU is needed:
// the devices are the variables' entries. Every process a test starts is bounded in time and ended
// (tests/zmq's support: spawn, wait, kill).
#include <wm/task.hpp>
#include <wm/wm.hpp>
#include <wm/worker.hpp>

#include <wm/abi.h>

#include <cereal/types/string.hpp>
#include <cereal/types/utility.hpp>
#include <cereal/types/vector.hpp>

#include <gtest/gtest.h>

#include "../zmq/zmq_test_support.hpp"  // starting and ending this program's child processes

#include <fcntl.h>
#include <sched.h>
#include <signal.h>
#include <spawn.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <map>
#include <mutex>
#include <optional>
#include <set>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

extern char** environ;

namespace wm::detail {
const wm_core_services* core_services();  // the core's service table (core/src/backend_link.hpp)
}

using namespace std::chrono_literals;

namespace {

// ---------------------------------------------------------------- what a worker reports

std::string env_or(const char* name, const char* none = "(unset)") {
  const char* v = std::getenv(name);
  return v != nullptr ? v : none;
}

std::vector<int> affinity() {
  cpu_set_t set;
  CPU_ZERO(&set);
  std::vector<int> out;
  if (sched_getaffinity(0, sizeof set, &set) != 0) return out;
  for (int c = 0; c < CPU_SETSIZE; ++c)
    if (CPU_ISSET(c, &set)) out.push_back(c);
  return out;
}

// The core's worker_resources service, as a backend calls it: (index, n) are ignored in a process
// that serves as one worker.
std::vector<std::pair<std::string, double>> service_resources(int index, unsigned n, std::size_t capacity = 16,
                                                              std::size_t* total = nullptr) {
  const wm_core_services* s = wm::detail::core_services();
  std::vector<wm_resource_amount> out(capacity);
  const std::size_t count = s->worker_resources(index, n, out.data(), capacity);
  if (total != nullptr) *total = count;
  std::vector<std::pair<std::string, double>> r;
  for (std::size_t i = 0; i < std::min(count, capacity); ++i) r.emplace_back(out[i].name, out[i].amount);
  return r;
}

struct Report {
  int index = -1, rank = -1;
  long pid = 0;
  std::string cuda, wm_gpus, omp, mkl, openblas, worker_cpus;
  std::vector<std::string> gpus;
  std::string gpu_variable;
  std::vector<int> cores, affinity;
  std::vector<std::pair<std::string, double>> resources, service;
  template <class A>
  void serialize(A& a) {
    a(index, rank, pid, cuda, wm_gpus, omp, mkl, openblas, worker_cpus, gpus, gpu_variable, cores, affinity, resources,
      service);
  }
};

Report report_here() {
  Report r;
  const wm::WorkerInfo& me = wm::this_worker();
  r.index = me.index;
  r.rank = me.rank;
  r.pid = static_cast<long>(me.pid);
  r.cuda = env_or("CUDA_VISIBLE_DEVICES");
  r.wm_gpus = env_or("WM_GPUS");
  r.omp = env_or("OMP_NUM_THREADS");
  r.mkl = env_or("MKL_NUM_THREADS");
  r.openblas = env_or("OPENBLAS_NUM_THREADS");
  r.worker_cpus = env_or("WM_WORKER_CPUS");
  r.gpus = me.gpus;
  r.gpu_variable = me.gpu_variable;
  r.cores = me.cores;
  r.affinity = affinity();
  for (const auto& x : me.resources) r.resources.emplace_back(x.name, x.amount);
  r.service = service_resources(99, 1);
  return r;
}

// Waits (up to 20 s) until n tasks of this meeting run at once, each in its own worker: so that
// every worker reports, whatever order the work manager hands them out in.
std::mutex g_meet_mutex;
std::condition_variable g_meet_cv;
std::map<std::string, std::set<std::string>> g_met;  // in-process meetings: dir -> who arrived

Report meet(std::string dir, int n) {
  const std::string me = std::to_string(getpid()) + "-" +
                         std::to_string(std::hash<std::thread::id>()(std::this_thread::get_id()));
  std::ofstream(dir + "/" + me).put('.');
  const auto until = std::chrono::steady_clock::now() + 20s;
  while (std::chrono::steady_clock::now() < until) {
    std::size_t count = 0;
    for ([[maybe_unused]] const auto& e : std::filesystem::directory_iterator(dir)) ++count;
    if (count >= static_cast<std::size_t>(n)) break;
    std::this_thread::sleep_for(5ms);
  }
  return report_here();
}
WM_TASK(meet);

// ---------------------------------------------------------------- child processes

std::string self_exe() {
  char buf[4096];
  const ssize_t n = readlink("/proc/self/exe", buf, sizeof buf - 1);
  return n > 0 ? std::string(buf, static_cast<std::size_t>(n)) : std::string("/proc/self/exe");
}

// A directory for a meeting of workers (meet), inside a test's directory.
std::string meeting_dir(const zmqtest::TempDir& dir) {
  const std::string p = dir.file("meet");
  mkdir(p.c_str(), 0700);
  return p;
}

struct ChildResult {
  int status = -1;
  std::string out;
  bool ok() const { return status != -1 && WIFEXITED(status) && WEXITSTATUS(status) == 0; }
};

// Runs this program in a role (WMTEST_BIND_ROLE; zmqtest::kUnset removes a variable) and waits for
// it, at most 60 s; what it said on stderr.
ChildResult run_role(const std::string& role, std::map<std::string, std::string> env,
                     const std::vector<std::string>& args = {}) {
  zmqtest::TempDir dir;
  const std::string out = dir.file("out");
  env["WMTEST_BIND_ROLE"] = role;
  const pid_t pid = zmqtest::spawn(self_exe(), env, out, args);
  ChildResult r;
  if (pid < 0) return r;
  r.status = zmqtest::wait_for_exit(pid, 60s);
  if (r.status == -1) zmqtest::kill_and_reap(pid);
  r.out = zmqtest::read_file(out);
  return r;
}

// ---------------------------------------------------------------- the environment of a test

// Every variable the binding reads, cleared for a test and put back after it.
const char* const kVariables[] = {"CUDA_VISIBLE_DEVICES", "ROCR_VISIBLE_DEVICES", "HIP_VISIBLE_DEVICES",
                                  "ZE_AFFINITY_MASK", "WM_GPUS", "WM_GPUS_PER_WORKER", "WM_CPUS_PER_WORKER",
                                  "WM_BIND", "WM_RESOURCES", "OMP_NUM_THREADS", "MKL_NUM_THREADS",
                                  "OPENBLAS_NUM_THREADS", "WM_WORK_MANAGER", "WM_N_WORKERS", "CUDA_DEVICE_ORDER"};

class Binding : public testing::Test {
 protected:
  void SetUp() override {
    for (const char* v : kVariables) {
      if (const char* old = std::getenv(v)) saved_[v] = old;
      unsetenv(v);
    }
  }
  void TearDown() override {
    for (const char* v : kVariables) unsetenv(v);
    for (const auto& [k, v] : saved_) setenv(k.c_str(), v.c_str(), 1);
    // Nothing of ours is left: every worker ended with its work manager.
    int status;
    while (waitpid(-1, &status, WNOHANG) > 0) {
    }
  }
  static void set(const char* name, const std::string& value) { setenv(name, value.c_str(), 1); }

  std::map<std::string, std::string> saved_;
};

std::unique_ptr<wm::WorkManager> make(std::vector<std::string> args) {
  args.insert(args.begin(), "binding_test");
  std::vector<const char*> argv;
  for (auto& a : args) argv.push_back(a.c_str());
  return wm::make_work_manager(static_cast<int>(argv.size()), argv.data());
}

wm::BindingPlan plan(std::vector<std::string> args, unsigned n) {
  wm::WMEnvironment env;
  args.insert(args.begin(), "binding_test");
  std::vector<const char*> argv;
  for (auto& a : args) argv.push_back(a.c_str());
  env.parse_args(static_cast<int>(argv.size()), argv.data());
  return wm::binding_plan(env, n);
}

// The message of the ConfigError fn throws ("" if it throws none).
template <class Fn>
std::string config_error(Fn&& fn) {
  try {
    fn();
  } catch (const wm::ConfigError& e) {
    return e.what();
  }
  return "";
}

std::map<std::string, std::string> env_of(const wm::BindingPlan& p, unsigned worker) {
  std::map<std::string, std::string> m;
  for (const auto& [k, v] : p.environment.at(worker)) m[k] = v;
  return m;
}

// Runs n meeting tasks (one per worker) and returns their reports by worker index.
std::map<int, Report> one_report_per_worker(wm::WorkManager& wm, int n, const std::string& dir) {
  std::vector<wm::Future<Report>> fs;
  for (int i = 0; i < n; ++i) fs.push_back(wm.submit(meet, dir, n));
  std::map<int, Report> out;
  for (auto& f : fs) {
    Report r = f.get_result();
    out[r.index] = r;
  }
  return out;
}

std::vector<std::string> list(std::initializer_list<const char*> items) { return {items.begin(), items.end()}; }

}  // namespace

// ---------------------------------------------------------------- which devices: the variables

TEST_F(Binding, OrdinalsAreSharedOutInOrder) {
  set("CUDA_VISIBLE_DEVICES", "0,1,2,3");
  const wm::BindingPlan p = plan({"--wm-gpus-per-worker", "2"}, 2);
  EXPECT_EQ(p.gpu_variable, "CUDA_VISIBLE_DEVICES");
  EXPECT_EQ(p.gpus_from, "environment variable CUDA_VISIBLE_DEVICES");
  ASSERT_EQ(p.workers.size(), 2u);
  EXPECT_EQ(p.workers[0].gpus, list({"0", "1"}));
  EXPECT_EQ(p.workers[1].gpus, list({"2", "3"}));
  EXPECT_EQ(env_of(p, 1)["CUDA_VISIBLE_DEVICES"], "2,3");
  EXPECT_EQ(p.workers[1].resource("gpu"), 2);
}

TEST_F(Binding, UuidsAndMigDevicesAreKeptVerbatim) {
  set("CUDA_VISIBLE_DEVICES", "GPU-8e6a0c7f-aaaa,MIG-4f1d2c3b-bbbb/1/0,GPU-8e6");
  const wm::BindingPlan p = plan({"--wm-gpus-per-worker", "1"}, 3);
  EXPECT_EQ(p.workers[0].gpus, list({"GPU-8e6a0c7f-aaaa"}));
  EXPECT_EQ(p.workers[1].gpus, list({"MIG-4f1d2c3b-bbbb/1/0"}));
  EXPECT_EQ(p.workers[2].gpus, list({"GPU-8e6"}));
  EXPECT_EQ(env_of(p, 1)["CUDA_VISIBLE_DEVICES"], "MIG-4f1d2c3b-bbbb/1/0");
}

TEST_F(Binding, TheVariableTheDevicesCameFromCarriesThem) {
  set("ROCR_VISIBLE_DEVICES", "0,1");
  wm::BindingPlan p = plan({"--wm-gpus-per-worker", "1"}, 2);
  EXPECT_EQ(p.gpu_variable, "ROCR_VISIBLE_DEVICES");
  EXPECT_EQ(env_of(p, 1)["ROCR_VISIBLE_DEVICES"], "1");
  EXPECT_EQ(env_of(p, 1).count("CUDA_VISIBLE_DEVICES"), 0u);
  unsetenv("ROCR_VISIBLE_DEVICES");
  set("ZE_AFFINITY_MASK", "0.0,0.1");
  p = plan({"--wm-gpus-per-worker", "1"}, 2);
  EXPECT_EQ(p.gpu_variable, "ZE_AFFINITY_MASK");
  EXPECT_EQ(p.workers[1].gpus, list({"0.1"}));
  // CUDA_VISIBLE_DEVICES comes first when several are set.
  set("CUDA_VISIBLE_DEVICES", "7,8");
  p = plan({"--wm-gpus-per-worker", "1"}, 2);
  EXPECT_EQ(p.gpu_variable, "CUDA_VISIBLE_DEVICES");
  EXPECT_EQ(p.workers[0].gpus, list({"7"}));
}

TEST_F(Binding, WmGpusComesFirstAndWorkersGetTheirOwnShareOfIt) {
  set("CUDA_VISIBLE_DEVICES", "0,1");
  set("WM_GPUS", "a,b,c,d");
  wm::BindingPlan p = plan({"--wm-gpus-per-worker", "2"}, 2);
  EXPECT_EQ(p.gpus_from, "environment variable WM_GPUS");
  EXPECT_EQ(p.workers[1].gpus, list({"c", "d"}));
  EXPECT_EQ(env_of(p, 1)["CUDA_VISIBLE_DEVICES"], "c,d");
  EXPECT_EQ(env_of(p, 1)["WM_GPUS"], "c,d");  // a wm its tasks make shares out its own devices
  p = plan({"--wm-gpus-per-worker", "1", "--wm-gpus", "x,y"}, 2);  // the flag wins
  EXPECT_EQ(p.gpus_from, "option --wm-gpus");
  EXPECT_EQ(p.workers[1].gpus, list({"y"}));
}

TEST_F(Binding, ZeroGpusPerWorkerTouchesNothing) {
  set("CUDA_VISIBLE_DEVICES", "");  // even an empty list is no error then
  const wm::BindingPlan p = plan({}, 2);
  EXPECT_TRUE(p.workers[0].gpus.empty());
  EXPECT_TRUE(p.environment[0].empty());
  EXPECT_TRUE(p.environment[1].empty());
}

TEST_F(Binding, AnEmptyVariableMeansNoDevices) {
  set("CUDA_VISIBLE_DEVICES", "");
  const std::string e = config_error([] { plan({"--wm-gpus-per-worker", "1"}, 1); });
  EXPECT_NE(e.find("CUDA_VISIBLE_DEVICES is empty"), std::string::npos) << e;
  EXPECT_NE(e.find("--wm-gpus-per-worker='1'"), std::string::npos) << e;
}

TEST_F(Binding, ADuplicateDeviceIsRefusedByName) {
  set("CUDA_VISIBLE_DEVICES", "GPU-aaa,GPU-bbb,GPU-aaa");
  const std::string e = config_error([] { plan({"--wm-gpus-per-worker", "1"}, 1); });
  EXPECT_NE(e.find("CUDA_VISIBLE_DEVICES='GPU-aaa,GPU-bbb,GPU-aaa'"), std::string::npos) << e;
  EXPECT_NE(e.find("'GPU-aaa' twice"), std::string::npos) << e;
}

TEST_F(Binding, FewerDevicesThanAskedForIsRefusedWithTheCountsAndTheList) {
  set("CUDA_VISIBLE_DEVICES", "GPU-aaa,MIG-bbb");
  const std::string e = config_error([] { plan({"--wm-gpus-per-worker", "1"}, 3); });
  EXPECT_NE(e.find("option --wm-gpus-per-worker='1' for 3 workers needs 3 GPUs"), std::string::npos) << e;
  EXPECT_NE(e.find("CUDA_VISIBLE_DEVICES='GPU-aaa,MIG-bbb' lists 2"), std::string::npos) << e;
  set("WM_GPUS_PER_WORKER", "2");
  const std::string v = config_error([] { plan({}, 2); });
  EXPECT_NE(v.find("environment variable WM_GPUS_PER_WORKER='2' for 2 workers needs 4 GPUs"), std::string::npos) << v;
  // make_work_manager refuses it too, with the backend's worker count.
  const std::string m = config_error([] { make({"--work-manager", "threads", "--n-workers", "3"}); });
  EXPECT_NE(m.find("for 3 workers needs 6 GPUs"), std::string::npos) << m;
}

// ---------------------------------------------------------------- which devices: hwloc

// A synthetic machine (HWLOC_XMLFILE) in a process of its own: the plan's devices, or its error.
ChildResult devices_on(const std::string& topology, std::map<std::string, std::string> env = {}) {
  env["HWLOC_XMLFILE"] = std::string(WM_TEST_TOPOLOGY_DIR) + "/" + topology;
  for (const char* v : {"CUDA_VISIBLE_DEVICES", "ROCR_VISIBLE_DEVICES", "HIP_VISIBLE_DEVICES", "ZE_AFFINITY_MASK",
                        "WM_GPUS", "CUDA_DEVICE_ORDER"})
    if (env.count(v) == 0) env[v] = zmqtest::kUnset;
  return run_role("plan", env, {"--wm-gpus-per-worker", "1"});
}

TEST(BindingHwloc, NvidiaDevicesByTheirCudaOrdinals) {
  const ChildResult r = devices_on("nvidia.xml");
  ASSERT_TRUE(r.ok()) << r.out;
  EXPECT_NE(r.out.find("from hwloc (NVIDIA)\n"), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("worker 0: CUDA_VISIBLE_DEVICES=0\n"), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("worker 1: CUDA_VISIBLE_DEVICES=1\n"), std::string::npos) << r.out;
}

TEST(BindingHwloc, NvmlNumbersInPciOrderSoCudaIsToldTo) {
  ChildResult r = devices_on("nvml_only.xml");
  ASSERT_TRUE(r.ok()) << r.out;
  EXPECT_NE(r.out.find("worker 1: CUDA_VISIBLE_DEVICES=1\n"), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("env CUDA_DEVICE_ORDER=PCI_BUS_ID\n"), std::string::npos) << r.out;
  r = devices_on("nvidia.xml");  // CUDA's own ordinals: its order is left alone
  EXPECT_EQ(r.out.find("CUDA_DEVICE_ORDER"), std::string::npos) << r.out;
}

TEST(BindingHwloc, AmdCardsInPciOrderWithoutTheBmcDisplay) {
  const ChildResult r = devices_on("amd_drm.xml");
  ASSERT_TRUE(r.ok()) << r.out;
  EXPECT_NE(r.out.find("from hwloc (AMD, DRM devices in PCI order)\n"), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("worker 1: ROCR_VISIBLE_DEVICES=1\n"), std::string::npos) << r.out;
}

TEST(BindingHwloc, NoGpuAnywhereIsAClearError) {
  const ChildResult r = devices_on("no_gpu.xml");
  ASSERT_FALSE(r.ok()) << r.out;
  EXPECT_NE(r.out.find("ConfigError: option --wm-gpus-per-worker='1' asks for GPUs, and none were found"),
            std::string::npos)
      << r.out;
  EXPECT_NE(r.out.find("hwloc reports no GPU"), std::string::npos) << r.out;
}

TEST(BindingHwloc, AVariableThatIsSetWinsOverHwloc) {
  const ChildResult r = devices_on("nvidia.xml", {{"HIP_VISIBLE_DEVICES", "5,6"}});
  ASSERT_TRUE(r.ok()) << r.out;
  EXPECT_NE(r.out.find("worker 1: HIP_VISIBLE_DEVICES=6\n"), std::string::npos) << r.out;
}

// numa: a worker is bound to the NUMA node of its cores (the job's CPUs of it: this process's).
TEST(BindingHwloc, NumaBindsToTheNodeOfTheWorkersCores) {
  const std::vector<int> mine = affinity();
  if (mine != std::vector<int>{0, 1} && mine != std::vector<int>{0, 1, 2, 3})
    GTEST_SKIP() << "the synthetic machine's node 0 is CPUs 0-1; this process runs elsewhere";
  const std::map<std::string, std::string> env = {
      {"HWLOC_XMLFILE", std::string(WM_TEST_TOPOLOGY_DIR) + "/two_numa_nodes.xml"}, {"WMTEST_PLAN_WORKERS", "1"}};
  ChildResult r = run_role("plan", env, {"--wm-cpus-per-worker", "1", "--wm-bind", "numa"});
  ASSERT_TRUE(r.ok()) << r.out;
  EXPECT_NE(r.out.find("worker 0 cores: 0,1\n"), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("env OMP_NUM_THREADS=1\n"), std::string::npos) << r.out;  // its share, not the node's
  r = run_role("plan", env, {"--wm-cpus-per-worker", "1"});
  EXPECT_NE(r.out.find("worker 0 cores: 0\n"), std::string::npos) << r.out;
}

// ---------------------------------------------------------------- bad input

struct BadCase {
  std::vector<std::string> args;
  std::map<std::string, std::string> env;
  std::vector<std::string> expect;  // each in the message
};

TEST_F(Binding, EveryMalformedValueIsRefusedNamingItsOptionAndValue) {
  const std::vector<BadCase> cases = {
      {{"--wm-gpus-per-worker", "-1"}, {}, {"option --wm-gpus-per-worker='-1'", "out of range"}},
      {{"--wm-gpus-per-worker", "abc"}, {}, {"option --wm-gpus-per-worker='abc'", "not a whole number"}},
      {{}, {{"WM_GPUS_PER_WORKER", "1.5"}}, {"environment variable WM_GPUS_PER_WORKER='1.5'"}},
      {{"--wm-cpus-per-worker", "x"}, {}, {"option --wm-cpus-per-worker='x'", "not a whole number"}},
      {{}, {{"WM_CPUS_PER_WORKER", "-2"}}, {"environment variable WM_CPUS_PER_WORKER='-2'"}},
      {{"--wm-bind", "sockets"}, {}, {"option --wm-bind='sockets'", "none, cores", "numa"}},
      {{}, {{"WM_BIND", "yes"}}, {"environment variable WM_BIND='yes'"}},
      {{"--wm-resources", "gpu"}, {}, {"option --wm-resources='gpu'", "'gpu', which is not NAME=AMOUNT"}},
      {{"--wm-resources", "gpu=x"}, {}, {"option --wm-resources='gpu=x'", "amount 'x'"}},
      {{"--wm-resources", "=1"}, {}, {"option --wm-resources='=1'", "without a name"}},
      {{"--wm-resources", "Gpu=1"}, {}, {"option --wm-resources='Gpu=1'", "name 'Gpu'", "lower case"}},
      {{"--wm-resources", "mem=1,mem=2"}, {}, {"option --wm-resources='mem=1,mem=2'", "'mem' twice"}},
      {{"--wm-resources", "mem=-1"}, {}, {"option --wm-resources='mem=-1'", "amount '-1'"}},
      {{"--wm-resources", "mem=inf"}, {}, {"option --wm-resources='mem=inf'", "finite"}},
      {{"--wm-resources", "mem=nan"}, {}, {"option --wm-resources='mem=nan'"}},
      {{"--wm-resources", "a=1,,b=2"}, {}, {"option --wm-resources='a=1,,b=2'", "empty entry"}},
      {{}, {{"WM_RESOURCES", "lic ense=1"}}, {"environment variable WM_RESOURCES='lic ense=1'", "'lic ense'"}},
      {{"--wm-gpus-per-worker", "1", "--wm-gpus", ""}, {}, {"option --wm-gpus=''", "no device"}},
      {{"--wm-gpus-per-worker", "1", "--wm-gpus", "0,1,0"}, {}, {"option --wm-gpus='0,1,0'", "'0' twice"}},
      {{"--wm-gpus-per-worker", "1", "--wm-gpus", "0,,1"}, {}, {"option --wm-gpus='0,,1'", "empty entry"}},
      {{"--wm-gpus-per-worker", "1", "--wm-resources", "gpu=2"}, {}, {"option --wm-resources='gpu=2'", "declares 'gpu'"}},
      {{"--wm-cpus-per-worker", "1", "--wm-resources", "cpu=2"}, {}, {"option --wm-resources='cpu=2'", "declares 'cpu'"}},
  };
  for (const BadCase& c : cases) {
    for (const char* v : kVariables) unsetenv(v);
    for (const auto& [k, v] : c.env) set(k.c_str(), v);
    std::vector<std::string> args = {"--work-manager", "threads", "--n-workers", "2"};
    args.insert(args.end(), c.args.begin(), c.args.end());
    std::string given;
    for (const auto& a : args) given += " '" + a + "'";
    const std::string e = config_error([&] { make(args); });
    ASSERT_FALSE(e.empty()) << "accepted:" << given;
    for (const std::string& x : c.expect) EXPECT_NE(e.find(x), std::string::npos) << given << "\n  -> " << e;
    // wm config refuses it the same way (its report checks every setting).
    wm::WMEnvironment env;
    std::vector<const char*> argv{"binding_test"};
    for (auto& a : args) argv.push_back(a.c_str());
    EXPECT_FALSE(config_error([&] {
                   env.parse_args(static_cast<int>(argv.size()), argv.data());
                   env.config_report();
                 }).empty())
        << given;
  }
}

TEST_F(Binding, MoreCoresThanTheJobHasIsRefusedSayingHowManyItHas) {
  const std::size_t cpus = affinity().size();
  const std::string n = std::to_string(cpus + 1);
  const std::string e = config_error([&] { make({"--work-manager", "threads", "--n-workers", n, "--wm-cpus-per-worker", "1"}); });
  EXPECT_NE(e.find("option --wm-cpus-per-worker='1' for " + n + " workers needs " + n + " cores, and the job has " +
                   std::to_string(cpus) + (cpus == 1 ? " core" : " cores")),
            std::string::npos)
      << e;
  EXPECT_NE(config_error([&] { make({"--work-manager", "processes", "--n-workers", n, "--wm-bind", "cores"}); })
                .find("gives each of " + n + " workers cores of its own, and the job has " + std::to_string(cpus)),
            std::string::npos);
}

// ---------------------------------------------------------------- processes

TEST_F(Binding, ProcessesEachWorkerSeesItsOwnDevice) {
  set("CUDA_VISIBLE_DEVICES", "GPU-aaa,MIG-bbb");
  zmqtest::TempDir dir;
  {
    auto wm = make({"--work-manager", "processes", "--n-workers", "2", "--wm-gpus-per-worker", "1",
                    "--wm-processes-max-window", "1"});
    const auto reports = one_report_per_worker(*wm, 2, meeting_dir(dir));
    ASSERT_EQ(reports.size(), 2u);
    const Report& w0 = reports.at(0);
    const Report& w1 = reports.at(1);
    EXPECT_EQ(w0.cuda, "GPU-aaa");
    EXPECT_EQ(w1.cuda, "MIG-bbb");
    EXPECT_EQ(w0.gpus, list({"GPU-aaa"}));
    EXPECT_EQ(w1.gpus, list({"MIG-bbb"}));
    EXPECT_EQ(w1.gpu_variable, "CUDA_VISIBLE_DEVICES");
    EXPECT_EQ(w1.worker_cpus, "(unset)");  // wm's own variables do not reach the tasks
    EXPECT_TRUE(w1.cores.empty());         // not bound
    EXPECT_EQ(w1.omp, "(unset)");          // no cores counted: no thread counts
    // What the worker has, as this_worker() and the core's worker_resources service say it.
    EXPECT_EQ(w1.resources, w1.service);
    ASSERT_EQ(w1.resources.size(), 2u);
    EXPECT_EQ(w1.resources[0].first, "cpu");
    EXPECT_EQ(w1.resources[1], (std::pair<std::string, double>{"gpu", 1}));
  }
  EXPECT_EQ(env_or("CUDA_VISIBLE_DEVICES"), "GPU-aaa,MIG-bbb");  // the master's own is as it was
}

TEST_F(Binding, ProcessesEachWorkerOnItsOwnCoreWithItsThreadCounts) {
  if (affinity().size() < 2) GTEST_SKIP() << "needs 2 CPUs";
  set("MKL_NUM_THREADS", "3");  // the user's own is kept
  zmqtest::TempDir dir;
  auto wm = make({"--work-manager", "processes", "--n-workers", "2", "--wm-cpus-per-worker", "1",
                  "--wm-resources", "mem=64e9,license=1", "--wm-processes-max-window", "1"});
  const auto reports = one_report_per_worker(*wm, 2, meeting_dir(dir));
  ASSERT_EQ(reports.size(), 2u);
  const Report& w0 = reports.at(0);
  const Report& w1 = reports.at(1);
  ASSERT_EQ(w0.affinity.size(), 1u);
  ASSERT_EQ(w1.affinity.size(), 1u);
  EXPECT_NE(w0.affinity, w1.affinity);
  EXPECT_EQ(w0.cores, w0.affinity);
  EXPECT_EQ(w1.cores, w1.affinity);
  EXPECT_EQ(w0.omp, "1");
  EXPECT_EQ(w1.openblas, "1");
  EXPECT_EQ(w1.mkl, "3");
  const std::vector<std::pair<std::string, double>> has = {{"cpu", 1}, {"gpu", 0}, {"license", 1}, {"mem", 64e9}};
  EXPECT_EQ(w0.resources, has);
  EXPECT_EQ(w1.service, has);
  EXPECT_EQ(affinity().size(), std::max<std::size_t>(2, affinity().size()));  // the master is not bound
}

TEST_F(Binding, ProcessesWithNothingAskedGetTheHostsEnvironmentAsItIs) {
  set("CUDA_VISIBLE_DEVICES", "GPU-aaa,MIG-bbb");
  zmqtest::TempDir dir;
  auto wm = make({"--work-manager", "processes", "--n-workers", "2", "--wm-processes-max-window", "1"});
  const auto reports = one_report_per_worker(*wm, 2, meeting_dir(dir));
  for (const auto& [index, r] : reports) {
    EXPECT_EQ(r.cuda, "GPU-aaa,MIG-bbb");
    EXPECT_EQ(r.omp, "(unset)");
    EXPECT_TRUE(r.gpus.empty());
    EXPECT_EQ(r.affinity, affinity());
    EXPECT_EQ(r.service, (std::vector<std::pair<std::string, double>>{
                             {"cpu", static_cast<double>(affinity().size())}, {"gpu", 0}}));
  }
}

// ---------------------------------------------------------------- threads

TEST_F(Binding, ThreadsEachWorkerThreadHasItsOwnDeviceAndCore) {
  set("CUDA_VISIBLE_DEVICES", "GPU-aaa,MIG-bbb");
  const bool two_cpus = affinity().size() >= 2;
  std::vector<std::string> args = {"--work-manager", "threads", "--n-workers", "2", "--wm-gpus-per-worker", "1"};
  if (two_cpus) args.insert(args.end(), {"--wm-cpus-per-worker", "1"});
  zmqtest::TempDir dir;
  const std::string meeting = meeting_dir(dir);
  std::map<int, Report> reports;
  {
    auto wm = make(args);
    std::vector<wm::Future<Report>> fs;
    for (int i = 0; i < 2; ++i) fs.push_back(wm->submit([meeting] { return meet(meeting, 2); }));
    for (auto& f : fs) {
      Report r = f.get_result();
      reports[r.index] = r;
    }
  }
  ASSERT_EQ(reports.size(), 2u);
  EXPECT_EQ(reports[0].gpus, list({"GPU-aaa"}));
  EXPECT_EQ(reports[1].gpus, list({"MIG-bbb"}));
  EXPECT_EQ(reports[1].gpu_variable, "CUDA_VISIBLE_DEVICES");
  // One process: its environment is everyone's, so it is left as it was (tasks pass gpus on).
  EXPECT_EQ(reports[0].cuda, "GPU-aaa,MIG-bbb");
  EXPECT_EQ(reports[0].omp, "(unset)");
  EXPECT_EQ(reports[1].resources[1], (std::pair<std::string, double>{"gpu", 1}));
  if (two_cpus) {
    ASSERT_EQ(reports[0].affinity.size(), 1u);
    ASSERT_EQ(reports[1].affinity.size(), 1u);
    EXPECT_NE(reports[0].affinity, reports[1].affinity);
    EXPECT_EQ(reports[0].cores, reports[0].affinity);
    EXPECT_EQ(reports[1].cores, reports[1].affinity);
    EXPECT_GE(affinity().size(), 2u);  // the caller's thread is not bound
  }
  EXPECT_EQ(wm::this_worker().index, -1);  // the master's thread is no worker
  EXPECT_TRUE(wm::this_worker().gpus.empty());
}

TEST_F(Binding, WorkerResourcesServiceInTheMasterReportsThePlan) {
  set("CUDA_VISIBLE_DEVICES", "GPU-aaa,MIG-bbb");
  auto wm = make({"--work-manager", "threads", "--n-workers", "2", "--wm-gpus-per-worker", "1", "--wm-resources",
                  "mem=64e9,license=1,scratch_gb=0.5"});
  std::size_t total = 0;
  const auto all = service_resources(1, 2, 16, &total);
  EXPECT_EQ(total, 5u);
  EXPECT_EQ(all, (std::vector<std::pair<std::string, double>>{
                     {"cpu", static_cast<double>(affinity().size())}, {"gpu", 1}, {"license", 1}, {"mem", 64e9},
                     {"scratch_gb", 0.5}}));
  // Room for two: two are written, and the count says how many there are.
  const auto two = service_resources(1, 2, 2, &total);
  EXPECT_EQ(total, 5u);
  EXPECT_EQ(two.size(), 2u);
  EXPECT_EQ(two[1], (std::pair<std::string, double>{"gpu", 1}));
  EXPECT_EQ(service_resources(0, 2, 0, &total).size(), 0u);
  EXPECT_EQ(total, 5u);
}

// ---------------------------------------------------------------- serial: this process is worker 0

TEST(BindingSerial, TheProcessIsWorkerZeroOfOne) {
  std::map<std::string, std::string> env = {{"CUDA_VISIBLE_DEVICES", "GPU-aaa,MIG-bbb"},
                                            {"OMP_NUM_THREADS", zmqtest::kUnset}};
  std::vector<std::string> args = {"--serial", "--wm-gpus-per-worker", "1"};
  if (affinity().size() >= 2) args.insert(args.end(), {"--wm-cpus-per-worker", "1"});
  const ChildResult r = run_role("serial", env, args);
  ASSERT_TRUE(r.ok()) << r.out;
  EXPECT_NE(r.out.find("index=0 cuda=GPU-aaa gpus=GPU-aaa\n"), std::string::npos) << r.out;
  if (affinity().size() >= 2) {
    EXPECT_NE(r.out.find("affinity=1 omp=1\n"), std::string::npos) << r.out;
  }
}

// ---------------------------------------------------------------- zmq: a node shares out its own

#ifdef WM_TEST_HAVE_ZMQ
TEST_F(Binding, ZmqNodeSharesItsOwnDevicesAmongItsWorkers) {
  zmqtest::TempDir dir;
  const std::string host_info = dir.file("host-info"), log = dir.file("node.log");
  // The node's own devices (WM_GPUS) and settings; the master has none.
  const pid_t node = zmqtest::spawn(self_exe(),
                                    {{"WMTEST_BIND_ROLE", "node"},
                                     {"WM_WORK_MANAGER", "zmq"},
                                     {"WM_ZMQ_MODE", "node"},
                                     {"WM_ZMQ_READ_HOST_INFO", host_info},
                                     {"WM_ZMQ_STARTUP_TIMEOUT", "30"},
                                     {"WM_N_WORKERS", "2"},
                                     {"WM_GPUS", "node-gpu-0,node-gpu-1"},
                                     {"WM_GPUS_PER_WORKER", "1"},
                                     {"CUDA_VISIBLE_DEVICES", zmqtest::kUnset},
                                     {"TMPDIR", dir.path()}},
                                    log);
  ASSERT_GT(node, 0);
  std::map<int, Report> reports;
  {
    set("TMPDIR", dir.path());  // where the master makes its Unix socket's directory
    auto wm = make({"--work-manager", "zmq", "--wm-zmq-write-host-info", host_info, "--wm-zmq-endpoint",
                    "tcp://127.0.0.1:*", "--n-workers", "2", "--wm-zmq-max-window", "1"});
    reports = one_report_per_worker(*wm, 2, meeting_dir(dir));
  }
  unsetenv("TMPDIR");
  int status = zmqtest::wait_for_exit(node, 20s);  // it ends with its master
  if (status == -1) zmqtest::kill_and_reap(node);
  EXPECT_TRUE(status != -1 && WIFEXITED(status) && WEXITSTATUS(status) == 0)
      << zmqtest::status_text(status) << "\n" << zmqtest::read_file(log);
  ASSERT_EQ(reports.size(), 2u) << zmqtest::read_file(log);
  std::set<std::string> seen;
  for (const auto& [index, r] : reports) {
    ASSERT_EQ(r.gpus.size(), 1u);
    EXPECT_EQ(r.cuda, r.gpus[0]);
    EXPECT_EQ(r.wm_gpus, r.gpus[0]);
    seen.insert(r.cuda);
  }
  EXPECT_EQ(seen, (std::set<std::string>{"node-gpu-0", "node-gpu-1"}));
}
#endif

// ---------------------------------------------------------------- roles of this program

namespace {

// serial: make the work manager (this process becomes worker 0) and say what it has.
int serial_role(int argc, char** argv) {
  auto wm = wm::make_work_manager(argc, argv);
  auto f = wm->submit([] { return report_here(); });
  const Report r = f.get_result();
  std::string gpus;
  for (const auto& g : r.gpus) gpus += g;
  std::fprintf(stderr, "index=%d cuda=%s gpus=%s\n", r.index, r.cuda.c_str(), gpus.c_str());
  std::fprintf(stderr, "affinity=%zu omp=%s\n", r.affinity.size(), r.omp.c_str());
  return 0;
}

// plan: the plan for WMTEST_PLAN_WORKERS workers (2 if unset) on this (synthetic) machine, or its
// error.
int plan_role(int argc, char** argv) {
  try {
    wm::WMEnvironment env;
    env.parse_args(argc, argv);
    const char* n = std::getenv("WMTEST_PLAN_WORKERS");
    const wm::BindingPlan p = wm::binding_plan(env, n != nullptr ? static_cast<unsigned>(std::atoi(n)) : 2u);
    std::fprintf(stderr, "from %s\n", p.gpus_from.c_str());
    for (unsigned i = 0; i < p.workers.size(); ++i)
      std::fprintf(stderr, "worker %u: %s=%s\n", i, p.gpu_variable.c_str(), env_of(p, i)[p.gpu_variable].c_str());
    for (const auto& [name, value] : p.environment.at(0)) std::fprintf(stderr, "env %s=%s\n", name.c_str(), value.c_str());
    for (const wm::WorkerInfo& w : p.workers) {
      std::string cores;
      for (int c : w.cores) cores += (cores.empty() ? "" : ",") + std::to_string(c);
      std::fprintf(stderr, "worker %d cores: %s\n", w.index, cores.c_str());
    }
    return 0;
  } catch (const wm::ConfigError& e) {
    std::fprintf(stderr, "ConfigError: %s\n", e.what());
    return 3;
  }
}

// mpi (under mpirun, one host): every rank makes the work manager (ranks > 0 serve in there); rank 0
// checks each rank's devices (WMTEST_ALL_GPUS, entry by node-local rank), its own included; then
// again with a second work manager (the ranks serve one after another), which shares out the same
// devices though rank 0 has taken its own share of them since.
bool mpi_check(int argc, char** argv) {
  auto wm = wm::make_work_manager(argc, argv);
  const char* all = std::getenv("WMTEST_ALL_GPUS");
  std::vector<std::string> devices;
  std::stringstream in(all != nullptr ? all : "");
  for (std::string d; std::getline(in, d, ',');) devices.push_back(d);
  const int n = static_cast<int>(wm->n_workers());
  zmqtest::TempDir dir;
  std::map<int, Report> reports = one_report_per_worker(*wm, n, meeting_dir(dir));
  reports[-1] = report_here();  // rank 0 itself
  bool ok = reports.size() == static_cast<std::size_t>(n) + 1;
  for (const auto& [index, r] : reports) {
    // Worker index i is rank i+1 (rank 0 is the master); on one host a rank's local rank is its rank.
    const int rank = index + 1;
    const std::string want = rank < static_cast<int>(devices.size()) ? devices[static_cast<std::size_t>(rank)] : "?";
    std::printf("rank %d (worker %d, this_worker().rank %d): CUDA_VISIBLE_DEVICES=%s gpus=%s\n", rank, index, r.rank,
                r.cuda.c_str(), r.gpus.empty() ? "" : r.gpus[0].c_str());
    ok = ok && r.cuda == want && r.gpus == std::vector<std::string>{want} && r.rank == rank &&
         r.gpu_variable == "CUDA_VISIBLE_DEVICES";
  }
  return ok;
}

int mpi_role(int argc, char** argv) {
  const bool first = mpi_check(argc, argv);
  const bool second = mpi_check(argc, argv);
  std::printf("RESULT %s\n", first && second ? "ok" : "bad");
  std::fflush(stdout);
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  wm::serve_if_worker();
  if (const char* role = std::getenv("WMTEST_BIND_ROLE")) {
    const std::string r = role;
    if (r != "mpi") unsetenv("WMTEST_BIND_ROLE");
    if (r == "serial") return serial_role(argc, argv);
    if (r == "plan") return plan_role(argc, argv);
    if (r == "mpi") return mpi_role(argc, argv);
    if (r == "node") {
      try {
        auto wm = wm::make_work_manager(&argc, argv);  // a node serves in here, then exits
      } catch (const std::exception& e) {
        std::fprintf(stderr, "binding_test node: %s\n", e.what());
        return 1;
      }
      std::fprintf(stderr, "binding_test: the node role made a master\n");
      return 2;
    }
    return 2;
  }
  testing::InitGoogleTest(&argc, argv);
  return RUN_ALL_TESTS();
}
