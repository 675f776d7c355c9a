// SPDX-License-Identifier: MIT
// plugin_dir_test.cpp: discovery and loading through the real WM_PLUGIN_PATH, with broken plugin
// files beside good ones: each broken file is listed with its reason, the good ones stay usable.
#include "test_tasks.hpp"

#include <wm/task.hpp>

#include <gtest/gtest.h>

#include <algorithm>
#include <filesystem>
#include <fstream>
#include <iterator>

namespace fs = std::filesystem;
using wmtest::ScopedEnv;

namespace {

std::string read_file(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  return std::string(std::istreambuf_iterator<char>(in), {});
}
void write_file(const fs::path& path, const std::string& data) {
  std::ofstream out(path, std::ios::binary);
  out << data;
}

class PluginDir : public testing::Test {
 protected:
  void SetUp() override {
    char tmpl[] = "/tmp/wm-plugin-dir-XXXXXX";
    ASSERT_NE(mkdtemp(tmpl), nullptr);
    dir_ = tmpl;
    write_file(dir_ / "x.so", "this is a text file, not a plugin\n");
    const std::string threads = read_file(WM_THREADS_PLUGIN);
    write_file(dir_ / "truncated.so", threads.substr(0, threads.size() / 2));
    // A copy of a real plugin whose metadata says it was built against ABI version 99.
    std::string other_abi = read_file(WM_LOOPBACK_PLUGIN);
    const auto magic = other_abi.find(WM_PLUGIN_MAGIC);
    ASSERT_NE(magic, std::string::npos);
    const std::uint32_t v99 = 99;
    other_abi.replace(magic + 8, 4, reinterpret_cast<const char*>(&v99), 4);
    write_file(dir_ / "other_abi.so", other_abi);
    fs::copy_file(WM_MISSING_DEP_PLUGIN, dir_ / "missing_dep.so");
    fs::copy_file(WM_UNRESOLVED_PLUGIN, dir_ / "unresolved.so");
    fs::copy_file(WM_ABORTING_PLUGIN, dir_ / "aborts_if_loaded.so");
    path_ = std::make_unique<ScopedEnv>("WM_PLUGIN_PATH", (dir_.string() + ":" + WM_TEST_PLUGIN_DIR).c_str());
  }
  void TearDown() override {
    path_.reset();
    fs::remove_all(dir_);
  }
  const wm::PluginInfo& find(const wm::PluginScan& scan, const std::string& file) {
    for (const auto& p : scan.plugins)
      if (fs::path(p.path).filename() == file) return p;
    throw std::runtime_error("not scanned: " + file);
  }

  fs::path dir_;
  std::unique_ptr<ScopedEnv> path_;
};

TEST_F(PluginDir, BrokenFilesAreListedWithTheirReason) {
  const wm::PluginScan scan = wm::scan_plugins();
  ASSERT_EQ(scan.directories.size(), 3u);
  EXPECT_EQ(scan.directories[0].origin, "bundled");
  EXPECT_EQ(scan.directories[1].path, dir_.string());
  EXPECT_EQ(scan.directories[1].origin, "WM_PLUGIN_PATH");
  EXPECT_EQ(scan.directories[1].status, wm::DirectoryStatus::scanned);
  auto names = scan.names();
  for (const char* n : {"serial", "threads", "loopback", "unresolved"})
    EXPECT_NE(std::find(names.begin(), names.end(), n), names.end()) << n;
  struct Case {
    const char* file;
    const char* reason;
  };
  for (const Case& c : {Case{"x.so", "not an ELF"}, Case{"truncated.so", "truncated"},
                        Case{"other_abi.so", "ABI version 0.99"},
                        Case{"missing_dep.so", "missing dependency libwm_fixture_dep"}}) {
    const wm::PluginInfo& p = find(scan, c.file);
    EXPECT_FALSE(p.usable) << c.file;
    EXPECT_NE(p.reason.find(c.reason), std::string::npos) << c.file << ": " << p.reason;
  }
  // Its constructor would abort: reading its metadata must not have run it.
  EXPECT_TRUE(find(scan, "aborts_if_loaded.so").usable);
}

TEST_F(PluginDir, GoodPluginsStayUsable) {
  ScopedEnv wmname("WM_WORK_MANAGER", "loopback");
  auto wm = wm::make_work_manager();
  EXPECT_EQ(wm->name(), "loopback");
  EXPECT_EQ(wm->submit(wmtest::square, 12).get_result(), 144);
}

TEST_F(PluginDir, UnresolvedSymbolIsALoadErrorNotACrash) {
  ScopedEnv wmname("WM_WORK_MANAGER", "unresolved");
  try {
    wm::make_work_manager();
    FAIL() << "loading a plugin with an undefined symbol succeeded";
  } catch (const wm::PluginError& e) {
    const std::string msg = e.what();
    EXPECT_NE(msg.find("wm_test_symbol_that_nobody_defines"), std::string::npos) << msg;
    EXPECT_NE(msg.find("unresolved.so"), std::string::npos) << msg;
  }
  // The host goes on with another backend.
  ScopedEnv other("WM_WORK_MANAGER", "threads");
  EXPECT_EQ(wm::make_work_manager()->submit(wmtest::square, 5).get_result(), 25);
}

TEST_F(PluginDir, UnknownNameListsRejectedFiles) {
  ScopedEnv wmname("WM_WORK_MANAGER", "other_abi_backend");
  try {
    wm::make_work_manager();
    FAIL();
  } catch (const wm::ConfigError& e) {
    const std::string msg = e.what();
    EXPECT_NE(msg.find(dir_.string()), std::string::npos) << msg;
    EXPECT_NE(msg.find("x.so"), std::string::npos) << msg;
    EXPECT_NE(msg.find("ABI version 0.99"), std::string::npos) << msg;
  }
}

TEST_F(PluginDir, ARefusedBackendIsReportedAsRefusedNotUnknown) {
  ScopedEnv wmname("WM_WORK_MANAGER", "fixture_missing_dep");
  try {
    wm::make_work_manager();
    FAIL() << "a refused backend was made";
  } catch (const wm::PluginError& e) {
    const std::string msg = e.what();
    EXPECT_NE(msg.find("work manager 'fixture_missing_dep' (from environment variable WM_WORK_MANAGER="
                       "'fixture_missing_dep') was found but refused"),
              std::string::npos)
        << msg;
    EXPECT_NE(msg.find((dir_ / "missing_dep.so").string() + ": missing dependency libwm_fixture_dep.so"),
              std::string::npos)
        << msg;
    EXPECT_EQ(msg.find("unknown work manager"), std::string::npos) << msg;
  }
}

TEST_F(PluginDir, OfTwoFilesWithOneNameThePathOrderPicksTheFirst) {
  // The bundled directory comes first: a copy of threads in WM_PLUGIN_PATH is shadowed by it.
  fs::copy_file(WM_THREADS_PLUGIN, dir_ / "my_threads.so");
  // Within a directory, files are taken in name order.
  fs::copy_file(WM_LOOPBACK_PLUGIN, dir_ / "b_loopback.so");
  fs::copy_file(WM_LOOPBACK_PLUGIN, dir_ / "a_loopback.so");
  ScopedEnv wmname("WM_WORK_MANAGER", "threads");
  wm::WMEnvironment env;
  const wm::PluginScan& scan = env.plugin_scan();
  const wm::PluginInfo& copy = find(scan, "my_threads.so");
  EXPECT_EQ(copy.status, wm::PluginStatus::shadowed);
  EXPECT_EQ(copy.shadowed_by, WM_THREADS_PLUGIN);
  EXPECT_NE(copy.reason.find(std::string("shadowed by ") + WM_THREADS_PLUGIN), std::string::npos) << copy.reason;
  EXPECT_EQ(find(scan, "a_loopback.so").status, wm::PluginStatus::taken);
  EXPECT_EQ(find(scan, "b_loopback.so").status, wm::PluginStatus::shadowed);
  EXPECT_EQ(find(scan, "b_loopback.so").shadowed_by, (dir_ / "a_loopback.so").string());
  // The test directory's loopback comes later in WM_PLUGIN_PATH: shadowed too.
  EXPECT_EQ(scan.find("loopback")->path, (dir_ / "a_loopback.so").string());
  // The host is told, when it picks a backend that has a shadowed copy.
  const auto warnings = env.warnings();
  const bool told = std::any_of(warnings.begin(), warnings.end(), [&](const std::string& w) {
    return w.find("work manager 'threads': using " + std::string(WM_THREADS_PLUGIN)) != std::string::npos &&
           w.find((dir_ / "my_threads.so").string() + " (version 1.0.0) is shadowed") != std::string::npos;
  });
  EXPECT_TRUE(told) << ::testing::PrintToString(warnings);
  // The same picture every time.
  EXPECT_EQ(wm::scan_plugins().find("loopback")->path, (dir_ / "a_loopback.so").string());
}

TEST_F(PluginDir, PluginInfoCarriesTheMetadata) {
  const wm::PluginScan scan = wm::scan_plugins();
  const wm::PluginInfo* threads = scan.find("threads");
  ASSERT_NE(threads, nullptr);
  EXPECT_EQ(threads->abi_version, WM_ABI_VERSION);
  EXPECT_EQ(threads->min_core_abi_version, WM_ABI_VERSION);  // WM_DECLARE_BACKEND's default: its own minor
  EXPECT_EQ(threads->capabilities, std::uint64_t{WM_CAP_IN_PROCESS});
  EXPECT_EQ(threads->entry_symbol, "wm_backend_entry_threads");
  ASSERT_FALSE(threads->options.empty());
  const wm::OptionInfo& spin = threads->options[0];
  EXPECT_EQ(spin.name, "spin-us");
  EXPECT_EQ(spin.type, wm::OptionType::integer);
  EXPECT_EQ(spin.variable, "WM_THREADS_SPIN_US");
  EXPECT_EQ(spin.flag, "--wm-threads-spin-us");
  EXPECT_LT(spin.int_min, spin.int_max);
  // Names are lower case; a lookup with other case finds the same backend.
  EXPECT_EQ(scan.find("Threads"), threads);
  const wm::PluginInfo& refused = find(scan, "other_abi.so");
  EXPECT_EQ(refused.status, wm::PluginStatus::refused);
  EXPECT_EQ(refused.name, "loopback");
  EXPECT_EQ(refused.abi_version, 99u);
}

TEST(PluginPath, BadEntriesAreReportedAndTheRestStillWorks) {
  char tmpl[] = "/tmp/wm-plugin-path-XXXXXX";
  ASSERT_NE(mkdtemp(tmpl), nullptr);
  const fs::path dir = tmpl;
  write_file(dir / "a_file", "not a directory\n");
  const std::string path = ":/no/such/dir::" + (dir / "a_file").string() + ":" + WM_TEST_PLUGIN_DIR + ":";
  ScopedEnv p("WM_PLUGIN_PATH", path.c_str());
  wm::WMEnvironment env;
  auto names = env.valid_work_managers();
  EXPECT_NE(std::find(names.begin(), names.end(), "threads"), names.end());
  EXPECT_NE(std::find(names.begin(), names.end(), "loopback"), names.end());
  const auto& dirs = env.plugin_scan().directories;
  ASSERT_EQ(dirs.size(), 7u);
  const wm::DirectoryStatus expected[] = {wm::DirectoryStatus::scanned,         wm::DirectoryStatus::empty_entry,
                                          wm::DirectoryStatus::missing,         wm::DirectoryStatus::empty_entry,
                                          wm::DirectoryStatus::not_a_directory, wm::DirectoryStatus::scanned,
                                          wm::DirectoryStatus::empty_entry};
  for (std::size_t i = 0; i < dirs.size(); ++i) EXPECT_EQ(dirs[i].status, expected[i]) << i << " " << dirs[i].path;
  // Each problem is a warning a host prints, naming the entry.
  const auto warnings = env.warnings();
  auto has = [&](const std::string& text) {
    return std::any_of(warnings.begin(), warnings.end(),
                       [&](const std::string& w) { return w.find(text) != std::string::npos; });
  };
  EXPECT_TRUE(has("entry 1 of WM_PLUGIN_PATH is empty: ignored")) << ::testing::PrintToString(warnings);
  EXPECT_TRUE(has("plugin directory '/no/such/dir' (entry 2 of WM_PLUGIN_PATH) does not exist: not scanned"));
  EXPECT_TRUE(has("(entry 4 of WM_PLUGIN_PATH) is a file, not a directory"));
  EXPECT_TRUE(has("entry 6 of WM_PLUGIN_PATH is empty"));
  // An unknown name's error names them too.
  ScopedEnv wmname("WM_WORK_MANAGER", "nonesuch");
  try {
    env.work_manager_name();
    FAIL();
  } catch (const wm::ConfigError& e) {
    EXPECT_NE(std::string(e.what()).find("'/no/such/dir' (entry 2 of WM_PLUGIN_PATH) does not exist"),
              std::string::npos)
        << e.what();
  }
  fs::remove_all(dir);
}

TEST(PluginPath, ARescanFollowsTheSearchPath) {
  wm::WMEnvironment env;
  {
    ScopedEnv p("WM_PLUGIN_PATH", nullptr);
    auto names = env.valid_work_managers();
    EXPECT_EQ(std::find(names.begin(), names.end(), "loopback"), names.end());
  }
  ScopedEnv p("WM_PLUGIN_PATH", WM_TEST_PLUGIN_DIR);
  auto names = env.valid_work_managers();
  EXPECT_NE(std::find(names.begin(), names.end(), "loopback"), names.end());
}

}  // namespace
