// plugin_dir_test.cpp: discovery and loading through the real WM_PLUGIN_PATH, with broken plugin
// files beside good ones: each broken file is listed with its reason, the good ones stay usable.
#include "../common/test_tasks.hpp"

#include <gtest/gtest.h>

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

TEST(PluginPath, EmptyAndMissingEntriesAreHarmless) {
  ScopedEnv p("WM_PLUGIN_PATH", "::/no/such/dir:");
  auto names = wm::WMEnvironment().valid_work_managers();
  EXPECT_NE(std::find(names.begin(), names.end(), "threads"), names.end());
}

}  // namespace
