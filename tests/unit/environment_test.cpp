// environment_test.cpp: precedence (command line > WM_* environment > default), typed values,
// backend options and the errors for bad input.
#include "../common/test_tasks.hpp"

#include <boost/program_options.hpp>
#include <gtest/gtest.h>

#include <sstream>

using wmtest::ScopedEnv;
namespace po = boost::program_options;

namespace {

wm::WMEnvironment env_with_args(std::vector<std::string> args) {
  std::vector<const char*> argv{"prog"};
  for (auto& a : args) argv.push_back(a.c_str());
  wm::WMEnvironment env;
  env.parse_args(static_cast<int>(argv.size()), argv.data());
  return env;
}

std::string config_error(const std::function<void()>& fn) {
  try {
    fn();
  } catch (const wm::ConfigError& e) {
    return e.what();
  }
  return "(no ConfigError)";
}

const wm::ConfigEntry& entry(const std::vector<wm::ConfigEntry>& report, const std::string& name) {
  for (const auto& e : report)
    if (e.name == name) return e;
  throw std::runtime_error("no entry " + name);
}

TEST(Environment, DefaultIsSerial) {
  ScopedEnv a("WM_WORK_MANAGER", nullptr);
  wm::WMEnvironment env;
  EXPECT_EQ(env.work_manager_name(), "serial");
  auto wm = env.make_work_manager();
  EXPECT_EQ(wm->name(), "serial");
}

TEST(Environment, PrecedenceCommandLineOverEnvironmentOverDefault) {
  ScopedEnv a("WM_WORK_MANAGER", "threads");
  ScopedEnv b("WM_N_WORKERS", "3");
  ScopedEnv c("WM_THREADS_SPIN_US", "7");
  wm::WMEnvironment from_env;
  EXPECT_EQ(from_env.work_manager_name(), "threads");
  EXPECT_EQ(from_env.n_workers(), 3u);
  auto report = from_env.config_report();
  EXPECT_EQ(entry(report, "work-manager").source, wm::ValueSource::environment);
  EXPECT_EQ(entry(report, "threads-spin-us").value, "7");
  EXPECT_EQ(entry(report, "threads-spin-us").source, wm::ValueSource::environment);

  auto cli = env_with_args({"--work-manager", "serial", "--n-workers", "2"});
  EXPECT_EQ(cli.work_manager_name(), "serial");
  EXPECT_EQ(cli.n_workers(), 2u);
  EXPECT_EQ(entry(cli.config_report(), "work-manager").source, wm::ValueSource::command_line);

  auto opt = env_with_args({"--wm-threads-spin-us", "9"});
  auto r2 = opt.config_report();
  EXPECT_EQ(entry(r2, "threads-spin-us").value, "9");
  EXPECT_EQ(entry(r2, "threads-spin-us").source, wm::ValueSource::command_line);
  auto wm = opt.make_work_manager();
  EXPECT_EQ(wm->name(), "threads");
  EXPECT_EQ(wm->n_workers(), 3u);
}

TEST(Environment, BackendOptionDefaultIsReported) {
  ScopedEnv a("WM_WORK_MANAGER", "threads");
  ScopedEnv c("WM_THREADS_SPIN_US", nullptr);
  wm::WMEnvironment env;
  const auto report = env.config_report();
  const auto& e = entry(report, "threads-spin-us");
  EXPECT_EQ(e.value, "0");
  EXPECT_EQ(e.source, wm::ValueSource::default_value);
  EXPECT_EQ(e.variable, "WM_THREADS_SPIN_US");
  EXPECT_EQ(e.flag, "--wm-threads-spin-us");
  EXPECT_NE(env.format_config_report().find("threads-spin-us = 0"), std::string::npos);
}

TEST(Environment, SerialAndParallelFlags) {
  ScopedEnv a("WM_WORK_MANAGER", "threads");
  EXPECT_EQ(env_with_args({"--serial"}).work_manager_name(), "serial");
  auto valid = wm::WMEnvironment().valid_work_managers();
  const bool has_processes = std::find(valid.begin(), valid.end(), "processes") != valid.end();
  EXPECT_EQ(env_with_args({"--parallel"}).work_manager_name(), has_processes ? "processes" : "threads");
  EXPECT_NE(config_error([] { env_with_args({"--serial", "--work-manager", "threads"}).work_manager_name(); })
                .find("only one of"),
            std::string::npos);
}

TEST(Environment, ArgPrefixes) {
  wm::WMEnvironment plain;
  EXPECT_EQ(plain.env_name("n-workers"), "WM_N_WORKERS");
  EXPECT_EQ(plain.arg_flag("n-workers"), "--n-workers");
  wm::WMEnvironment prefixed(true);
  EXPECT_EQ(prefixed.arg_flag("work-manager"), "--wm-work-manager");
  std::vector<const char*> argv{"prog", "--wm-work-manager", "threads"};
  prefixed.parse_args(3, argv.data());
  EXPECT_EQ(prefixed.work_manager_name(), "threads");
}

TEST(Environment, AddWmArgsToAProgramOptionsDescription) {
  wm::WMEnvironment env;
  po::options_description desc("host");
  desc.add_options()("input", po::value<std::string>(), "input file");
  env.add_wm_args(desc);
  std::ostringstream help;
  help << desc;
  for (const char* s : {"--serial", "--parallel", "--work-manager", "--n-workers", "--wm-threads-spin-us"})
    EXPECT_NE(help.str().find(s), std::string::npos) << s;
  std::vector<const char*> argv{"prog", "--input", "x.h5", "--work-manager", "threads", "--wm-threads-spin-us", "0"};
  po::variables_map vm;
  po::store(po::parse_command_line(static_cast<int>(argv.size()), argv.data(), desc), vm);
  env.process_wm_args(vm);
  EXPECT_EQ(vm["input"].as<std::string>(), "x.h5");
  EXPECT_EQ(env.work_manager_name(), "threads");
  const auto report = env.config_report();
  EXPECT_EQ(entry(report, "threads-spin-us").value, "0");
}

TEST(Environment, TypedGetVal) {
  ScopedEnv a("WM_ANSWER", "42");
  ScopedEnv b("WM_RATIO", "0.25");
  ScopedEnv c("WM_FLAG", "yes");
  ScopedEnv d("WM_BAD", "forty");
  wm::WMEnvironment env;
  EXPECT_EQ(env.get_val<int>("answer", 0), 42);
  EXPECT_DOUBLE_EQ(env.get_val<double>("ratio", 0.0), 0.25);
  EXPECT_TRUE(env.get_val<bool>("flag", false));
  EXPECT_EQ(env.get_val<int>("unset-thing", 5), 5);
  EXPECT_EQ(env.get_val<std::string>("bad", ""), "forty");
  const std::string msg = config_error([&] { env.get_val<int>("bad", 0); });
  EXPECT_NE(msg.find("WM_BAD"), std::string::npos) << msg;
  EXPECT_NE(msg.find("forty"), std::string::npos) << msg;
}

TEST(BadInput, UnknownWorkManagerNamesTheValidOnesAndTheDirectories) {
  ScopedEnv a("WM_WORK_MANAGER", "bogus");
  const std::string msg = config_error([] { wm::make_work_manager(); });
  for (const char* s : {"bogus", "WM_WORK_MANAGER", "serial", "threads", "lib/wm/plugins"})
    EXPECT_NE(msg.find(s), std::string::npos) << "missing '" << s << "' in: " << msg;
}

TEST(BadInput, BadWorkerCountsNameTheVariableAndValue) {
  ScopedEnv a("WM_WORK_MANAGER", "threads");
  for (const char* bad : {"abc", "-3", "1e9", "0", "99999999999999999999", ""}) {
    ScopedEnv b("WM_N_WORKERS", bad);
    const std::string msg = config_error([] { wm::make_work_manager(); });
    EXPECT_NE(msg.find("WM_N_WORKERS"), std::string::npos) << bad << ": " << msg;
    EXPECT_NE(msg.find(std::string("'") + bad + "'"), std::string::npos) << bad << ": " << msg;
  }
  const std::string cli = config_error([] {
    std::vector<const char*> argv{"prog", "--n-workers", "lots"};
    wm::make_work_manager(3, argv.data());
  });
  EXPECT_NE(cli.find("--n-workers"), std::string::npos) << cli;
  EXPECT_NE(cli.find("lots"), std::string::npos) << cli;
}

TEST(BadInput, BadBackendOptionNamesTheOption) {
  ScopedEnv a("WM_WORK_MANAGER", "threads");
  {
    ScopedEnv b("WM_THREADS_SPIN_US", "yes");
    const std::string msg = config_error([] { wm::make_work_manager(); });
    EXPECT_NE(msg.find("WM_THREADS_SPIN_US"), std::string::npos) << msg;
  }
  {
    ScopedEnv b("WM_THREADS_SPIN_US", "1000000");
    const std::string msg = config_error([] { wm::make_work_manager(); });
    EXPECT_NE(msg.find("out of range"), std::string::npos) << msg;
  }
  const std::string cli = config_error([] {
    std::vector<const char*> argv{"prog", "--wm-threads-spin-us", "-1"};
    wm::make_work_manager(3, argv.data());
  });
  EXPECT_NE(cli.find("--wm-threads-spin-us"), std::string::npos) << cli;
}

TEST(BadInput, MissingFlagValueIsAConfigError) {
  std::vector<const char*> argv{"prog", "--work-manager"};
  const std::string msg = config_error([&] { wm::make_work_manager(2, argv.data()); });
  EXPECT_NE(msg.find("work-manager"), std::string::npos) << msg;
}

}  // namespace
