// SPDX-License-Identifier: MIT
// environment_test.cpp: precedence (command line > WM_* environment > default), typed values,
// backend options and the errors for bad input.
#include "test_tasks.hpp"

#include <wm/task.hpp>

#include <boost/program_options.hpp>
#include <gtest/gtest.h>

#include <cstring>
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
  EXPECT_EQ(e.value, "50");
  EXPECT_EQ(e.source, wm::ValueSource::default_value);
  EXPECT_EQ(e.variable, "WM_THREADS_SPIN_US");
  EXPECT_EQ(e.flag, "--wm-threads-spin-us");
  EXPECT_NE(env.format_config_report().find("threads-spin-us = 50"), std::string::npos);
}

TEST(Environment, SerialAndParallelFlags) {
  ScopedEnv a("WM_WORK_MANAGER", "threads");
  EXPECT_EQ(env_with_args({"--serial"}).work_manager_name(), "serial");
  auto valid = wm::WMEnvironment().valid_work_managers();
  const bool has_processes = std::find(valid.begin(), valid.end(), "processes") != valid.end();
  EXPECT_EQ(env_with_args({"--parallel"}).work_manager_name(), has_processes ? "processes" : "threads");
  const std::string conflict =
      config_error([] { env_with_args({"--serial", "--work-manager", "threads"}).work_manager_name(); });
  EXPECT_NE(conflict.find("give only one of --serial, --parallel and --work-manager (given: --serial, "
                          "--work-manager threads)"),
            std::string::npos)
      << conflict;
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

TEST(BadInput, UnknownWmFlagIsAnErrorNamingItAndTheClosestOption) {
  const std::string msg = config_error([] { env_with_args({"--wm-threads-spin-uss", "5"}); });
  EXPECT_NE(msg.find("unknown option --wm-threads-spin-uss; did you mean --wm-threads-spin-us?"), std::string::npos)
      << msg;
  const std::string eq = config_error([] { env_with_args({"--wm-thread-spin-us=5"}); });
  EXPECT_NE(eq.find("unknown option --wm-thread-spin-us; did you mean --wm-threads-spin-us?"), std::string::npos) << eq;
  const std::string far = config_error([] { env_with_args({"--wm-frobnicate"}); });
  EXPECT_NE(far.find("unknown option --wm-frobnicate"), std::string::npos) << far;
  EXPECT_EQ(far.find("did you mean"), std::string::npos) << far;
}

TEST(Environment, AbbreviatedFlagsAreNotGuessed) {
  ScopedEnv a("WM_N_WORKERS", nullptr);
  std::vector<const char*> argv{"prog", "--n-worker", "3", "--work", "threads"};
  wm::WMEnvironment env;
  const auto rest = env.parse_args(static_cast<int>(argv.size()), argv.data());
  EXPECT_EQ(env.n_workers(), 0u);
  EXPECT_EQ(env.work_manager_name(), "serial");
  EXPECT_EQ(rest, (std::vector<std::string>{"prog", "--n-worker", "3", "--work", "threads"}));
}

TEST(Environment, ParseArgsReturnsWhatItDidNotConsume) {
  std::vector<const char*> argv{"prog", "--input", "x.h5", "--work-manager", "threads", "-v", "--wm-threads-spin-us=4",
                                "--n-workers=2", "pos", "--", "--serial", "--n-workers", "9"};
  wm::WMEnvironment env;
  const auto rest = env.parse_args(static_cast<int>(argv.size()), argv.data());
  EXPECT_EQ(rest, (std::vector<std::string>{"prog", "--input", "x.h5", "-v", "pos", "--", "--serial", "--n-workers", "9"}));
  EXPECT_EQ(env.work_manager_name(), "threads");  // the --serial after "--" is the program's
  EXPECT_EQ(env.n_workers(), 2u);
  EXPECT_EQ(entry(env.config_report(), "threads-spin-us").value, "4");
}

TEST(Environment, MakeWorkManagerTakesItsArgumentsOutOfArgv) {
  ScopedEnv a("WM_WORK_MANAGER", nullptr);
  char prog[] = "prog", in[] = "--input", file[] = "x.h5", flag[] = "--work-manager", name[] = "threads",
       nw[] = "--n-workers", two[] = "2", verbose[] = "-v";
  char* argv[] = {prog, in, flag, name, file, nw, two, verbose, nullptr};
  int argc = 8;
  auto wm = wm::make_work_manager(&argc, argv);
  EXPECT_EQ(wm->name(), "threads");
  EXPECT_EQ(wm->n_workers(), 2u);
  ASSERT_EQ(argc, 4);
  EXPECT_STREQ(argv[0], "prog");
  EXPECT_STREQ(argv[1], "--input");
  EXPECT_STREQ(argv[2], "x.h5");
  EXPECT_STREQ(argv[3], "-v");
  EXPECT_EQ(argv[4], nullptr);
}

TEST(Environment, HelpTextInOneCall) {
  // The text as one line: where it wraps does not matter here.
  auto flat = [](const std::string& text) {
    std::istringstream words(text);
    std::string out, w;
    while (words >> w) out += (out.empty() ? "" : " ") + w;
    return out;
  };
  const std::string help = wm::wm_args_help();
  for (const char* s : {"parallelization options", "--serial", "--parallel", "--work-manager NAME", "--n-workers N",
                        "--help-wm [BACKEND]", "threads 1.0.0: ", "--wm-threads-spin-us N",
                        "keeps looking before it sleeps (0: sleep at once) (default 50)"})
    EXPECT_NE(flat(help).find(s), std::string::npos) << s << " in:\n" << help;
  EXPECT_EQ(help.find("default ]"), std::string::npos) << help;
  EXPECT_EQ(wm::WMEnvironment().help_text(), help);
  // One backend in full: type, default, range, variable.
  const std::string threads = wm::wm_args_help("threads");
  EXPECT_NE(flat(threads).find("before it sleeps (0: sleep at once) int, default 50, range 0..100000; variable "
                               "WM_THREADS_SPIN_US"),
            std::string::npos)
      << threads;
  EXPECT_EQ(wm::WMEnvironment().help_text("Threads"), threads);
  EXPECT_THROW(wm::wm_args_help("thread"), wm::ConfigError);
  // A program's own prefixes are the ones shown.
  wm::WMEnvironment prefixed(true);
  EXPECT_NE(prefixed.help_text().find("--wm-work-manager NAME"), std::string::npos) << prefixed.help_text();
}

TEST(Environment, HelpWmIsTakenOutOfTheArguments) {
  // Answered by make_work_manager (which then ends the program: tests/host); parse_args only notes it
  // and leaves the program's arguments alone, a backend's name after it included.
  for (const std::vector<const char*>& argv :
       {std::vector<const char*>{"prog", "--help-wm", "threads", "--input", "x"},
        std::vector<const char*>{"prog", "--help-wm=threads", "--input", "x"},
        std::vector<const char*>{"prog", "--input", "x", "--help-wm"}}) {
    wm::WMEnvironment env;
    const auto rest = env.parse_args(static_cast<int>(argv.size()), argv.data());
    EXPECT_EQ(rest, (std::vector<std::string>{"prog", "--input", "x"})) << argv[1];
  }
}

TEST(Environment, WestpaFreeFunctionsOnTheDefaultEnvironment) {
  ScopedEnv a("WM_WORK_MANAGER", nullptr);
  po::options_description desc("host");
  desc.add_options()("input", po::value<std::string>(), "input file");
  wm::add_wm_args(desc);
  std::vector<const char*> argv{"prog", "--input", "x", "--work-manager", "threads", "--n-workers", "3"};
  po::variables_map vm;
  po::store(po::parse_command_line(static_cast<int>(argv.size()), argv.data(), desc), vm);
  wm::process_wm_args(vm);
  EXPECT_EQ(&wm::default_env(), &wm::default_env());
  auto wm = wm::make_work_manager();  // the default environment, with the flags it processed
  EXPECT_EQ(wm->name(), "threads");
  EXPECT_EQ(wm->n_workers(), 3u);
  // On an environment of one's own.
  wm::WMEnvironment mine;
  po::options_description desc2;
  wm::add_wm_args(desc2, mine);
  std::vector<const char*> argv2{"prog", "--serial"};
  po::variables_map vm2;
  po::store(po::parse_command_line(static_cast<int>(argv2.size()), argv2.data(), desc2), vm2);
  wm::process_wm_args(vm2, mine);
  EXPECT_EQ(wm::make_work_manager(mine)->name(), "serial");
  // The default environment keeps what it processed until it is replaced.
  wm::default_env() = wm::WMEnvironment();
  EXPECT_EQ(wm::make_work_manager()->name(), "serial");
}

TEST(Environment, FromEnvironMakesTheNamedBackendConfiguredFromTheEnvironment) {
  ScopedEnv a("WM_WORK_MANAGER", "serial");
  ScopedEnv b("WM_N_WORKERS", "3");
  auto wm = wm::from_environ("threads");
  EXPECT_EQ(wm->name(), "threads");
  EXPECT_EQ(wm->n_workers(), 3u);
  EXPECT_EQ(wm->submit(wmtest::square, 6).get_result(), 36);
  wm::WMEnvironment env;
  EXPECT_EQ(wm::from_environ("Serial", env)->name(), "serial");
  const std::string msg = config_error([&] { wm::from_environ("thread", env); });
  EXPECT_NE(msg.find("unknown work manager 'thread'"), std::string::npos) << msg;
  EXPECT_NE(msg.find("Did you mean 'threads'?"), std::string::npos) << msg;
}

TEST(Environment, BackendNamesAreCaseInsensitive) {
  ScopedEnv a("WM_WORK_MANAGER", " Threads ");
  EXPECT_EQ(wm::WMEnvironment().work_manager_name(), "threads");
  EXPECT_EQ(env_with_args({"--work-manager", "SERIAL"}).work_manager_name(), "serial");
}

TEST(Environment, ValidWorkManagersRestrictTheChoice) {
  wm::WMEnvironment env(false, {"serial", "Threads", "not_installed"});
  EXPECT_EQ(env.valid_work_managers(), (std::vector<std::string>{"serial", "threads"}));
  ScopedEnv a("WM_WORK_MANAGER", "loopback");
  const std::string msg = config_error([&] { env.work_manager_name(); });
  EXPECT_NE(msg.find("work manager 'loopback' (from environment variable WM_WORK_MANAGER='loopback') is installed, "
                     "but this program allows only serial, threads"),
            std::string::npos)
      << msg;
  std::ostringstream help;
  po::options_description desc;
  env.add_wm_args(desc);
  help << desc;
  EXPECT_EQ(help.str().find("--wm-loopback"), std::string::npos);
}

TEST(BadInput, MistypedBackendVariableWarnsWithTheClosestOne) {
  ScopedEnv a("WM_WORK_MANAGER", "threads");
  ScopedEnv b("WM_THREADS_SPIN_UZ", "5");
  ScopedEnv c("WM_THREADS_NONSENSE_SETTING", "1");
  wm::WMEnvironment env;
  const auto warnings = env.warnings();
  auto has = [&](const std::string& text) {
    return std::any_of(warnings.begin(), warnings.end(),
                       [&](const std::string& w) { return w.find(text) != std::string::npos; });
  };
  EXPECT_TRUE(has("environment variable WM_THREADS_SPIN_UZ is not an option of work manager 'threads' and is "
                  "ignored; did you mean WM_THREADS_SPIN_US?"))
      << ::testing::PrintToString(warnings);
  EXPECT_TRUE(has("WM_THREADS_NONSENSE_SETTING is not an option of work manager 'threads' and is ignored; its "
                  "options are WM_THREADS_SPIN_US"))
      << ::testing::PrintToString(warnings);
  // A warning, not an error: the work manager is made.
  EXPECT_EQ(env.make_work_manager()->name(), "threads");
}

TEST(BadInput, BadLogLevelIsAnError) {
  ScopedEnv a("WM_WORK_MANAGER", "serial");
  {
    ScopedEnv b("WM_LOG_LEVEL", "verbose");
    const std::string msg = config_error([] { wm::make_work_manager(); });
    EXPECT_NE(msg.find("environment variable WM_LOG_LEVEL='verbose' is not a log level; use debug, info, warning or "
                       "error"),
              std::string::npos)
        << msg;
  }
  for (const char* ok : {"DEBUG", "Info", " warning ", "warn", "ERROR"}) {
    ScopedEnv b("WM_LOG_LEVEL", ok);
    EXPECT_EQ(wm::WMEnvironment().make_work_manager()->name(), "serial") << ok;
  }
  ScopedEnv b("WM_LOG_LEVEL", "Info");
  EXPECT_EQ(entry(wm::WMEnvironment().config_report(), "log-level").value, "info");
}

}  // namespace
