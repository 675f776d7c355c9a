// SPDX-License-Identifier: MIT
// test_discovery.cpp: plugin discovery reads metadata without running plugin code and survives any file.
#include "plugin_scan.hpp"

#include <wm/version.hpp>

#include <dlfcn.h>
#include <elf.h>
#include <fcntl.h>
#include <gtest/gtest.h>
#include <link.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <functional>
#include <iterator>
#include <optional>
#include <random>
#include <string>
#include <string_view>
#include <vector>

namespace fs = std::filesystem;
using wm::detail::read_plugin_file;
using wm::detail::scan_plugin_directories;
using wm::detail::ScannedPlugin;

namespace {

using Bytes = std::vector<unsigned char>;

// A fresh directory per test, removed afterwards even when the test fails.
class TempDir {
 public:
  TempDir() {
    std::string tmpl = (fs::temp_directory_path() / "wm_discovery_XXXXXX").string();
    if (::mkdtemp(tmpl.data()) == nullptr) throw std::runtime_error("mkdtemp failed");
    path_ = tmpl;
  }
  ~TempDir() {
    std::error_code ec;
    fs::remove_all(path_, ec);
  }
  TempDir(const TempDir&) = delete;
  TempDir& operator=(const TempDir&) = delete;
  std::string file(const std::string& name) const { return (path_ / name).string(); }
  std::string str() const { return path_.string(); }

 private:
  fs::path path_;
};

Bytes read_bytes(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  return Bytes(std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>());
}

void write_bytes(const std::string& path, const Bytes& bytes, std::size_t size) {
  std::ofstream out(path, std::ios::binary | std::ios::trunc);
  out.write(reinterpret_cast<const char*>(bytes.data()), static_cast<std::streamsize>(std::min(size, bytes.size())));
  ASSERT_TRUE(out.good()) << path;
}
void write_bytes(const std::string& path, const Bytes& bytes) { write_bytes(path, bytes, bytes.size()); }

bool contains(const std::string& text, std::string_view part) { return text.find(part) != std::string::npos; }

// Every read must return promptly: a hang is as bad as a crash for the host.
ScannedPlugin timed_read(const std::string& path) {
  const auto start = std::chrono::steady_clock::now();
  ScannedPlugin p = read_plugin_file(path);
  const auto took = std::chrono::steady_clock::now() - start;
  EXPECT_LT(took, std::chrono::seconds(5)) << path;
  return p;
}

std::size_t find_unique(const Bytes& bytes, std::string_view needle) {
  std::size_t found = std::string::npos;
  for (auto it = bytes.begin();; ++it) {
    it = std::search(it, bytes.end(), needle.begin(), needle.end());
    if (it == bytes.end()) break;
    EXPECT_EQ(found, std::string::npos) << "'" << needle << "' occurs twice";
    found = static_cast<std::size_t>(it - bytes.begin());
  }
  return found;
}

std::size_t record_offset(const Bytes& bytes) {
  const std::size_t at = find_unique(bytes, std::string_view(WM_PLUGIN_MAGIC, 8));
  EXPECT_NE(at, std::string::npos);
  EXPECT_LE(at + sizeof(wm_plugin_metadata), bytes.size());
  return at;
}

Elf64_Ehdr header_of(const Bytes& bytes) {
  Elf64_Ehdr eh{};
  std::memcpy(&eh, bytes.data(), sizeof eh);
  return eh;
}

// The invariant every outcome must satisfy, whatever the input was.
void expect_well_formed(const ScannedPlugin& p) {
  if (p.usable) {
    EXPECT_TRUE(p.reason.empty()) << p.path;
    EXPECT_TRUE(p.has_meta) << p.path;
  } else {
    EXPECT_FALSE(p.reason.empty()) << p.path;
  }
  // One printable line: bytes taken from a hostile file must not reach a terminal raw.
  EXPECT_TRUE(std::all_of(p.reason.begin(), p.reason.end(), [](char c) { return c >= 0x20 && c < 0x7f; }))
      << p.reason;
  if (p.has_meta) {
    ASSERT_NE(std::memchr(p.meta.name, '\0', sizeof p.meta.name), nullptr) << p.path;
    const std::string name = p.meta.name;
    EXPECT_FALSE(name.empty()) << p.path;
    EXPECT_TRUE(std::all_of(name.begin(), name.end(),
                            [](char c) { return (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '_'; }))
        << name;
  }
}

bool is_loaded(std::string_view basename) {
  struct Query {
    std::string_view name;
    bool found = false;
  } q{basename};
  ::dl_iterate_phdr(
      [](dl_phdr_info* info, std::size_t, void* data) {
        auto* query = static_cast<Query*>(data);
        const std::string_view n = info->dlpi_name != nullptr ? info->dlpi_name : "";
        if (n.size() >= query->name.size() && n.substr(n.size() - query->name.size()) == query->name)
          query->found = true;
        return 0;
      },
      &q);
  return q.found;
}

// Sets an environment variable for one scope and restores the old value.
class ScopedEnv {
 public:
  ScopedEnv(const char* name, const std::string& value) : name_(name) {
    if (const char* old = std::getenv(name)) old_ = old;
    ::setenv(name, value.c_str(), 1);
  }
  ~ScopedEnv() {
    if (old_) ::setenv(name_, old_->c_str(), 1);
    else ::unsetenv(name_);
  }
  ScopedEnv(const ScopedEnv&) = delete;
  ScopedEnv& operator=(const ScopedEnv&) = delete;

 private:
  const char* name_;
  std::optional<std::string> old_;
};

}  // namespace

TEST(Discovery, GoodPluginIsReadWithoutRunningItsConstructor) {
  // good.so's constructor aborts: this test process surviving is the proof it was never loaded.
  const ScannedPlugin p = timed_read(WM_FIXTURE_GOOD);
  EXPECT_TRUE(p.usable) << p.reason;
  EXPECT_TRUE(p.reason.empty());
  ASSERT_TRUE(p.has_meta);
  EXPECT_STREQ(p.meta.name, "fixture_good");
  EXPECT_STREQ(p.meta.version, "1.2.3");
  EXPECT_STREQ(p.meta.entry_symbol, "fixture_entry");
  EXPECT_EQ(p.meta.abi_version, WM_ABI_VERSION);
  EXPECT_EQ(p.meta.capabilities, static_cast<uint64_t>(WM_CAP_IN_PROCESS));
  ASSERT_EQ(p.meta.n_options, 2u);
  EXPECT_STREQ(p.meta.options[0].name, "workers");
  EXPECT_EQ(p.meta.options[0].type, static_cast<uint32_t>(WM_OPTION_INT));
  EXPECT_EQ(p.meta.options[0].int_max, 1024);
  EXPECT_STREQ(p.meta.options[1].name, "spin-us");
  EXPECT_EQ(p.path, WM_FIXTURE_GOOD);
  EXPECT_FALSE(is_loaded("/good.so"));
}

TEST(Discovery, StrippedPluginKeepsItsRecord) {
  const ScannedPlugin p = timed_read(WM_FIXTURE_GOOD_STRIPPED);
  EXPECT_TRUE(p.usable) << p.reason;
  EXPECT_STREQ(p.meta.name, "fixture_good");
}

TEST(Discovery, SymlinkToPluginIsFollowed) {
  TempDir dir;
  fs::create_symlink(WM_FIXTURE_GOOD, dir.file("link.so"));
  EXPECT_TRUE(timed_read(dir.file("link.so")).usable);
  fs::create_symlink(dir.file("nowhere.so"), dir.file("dangling.so"));
  const ScannedPlugin p = timed_read(dir.file("dangling.so"));
  EXPECT_FALSE(p.usable);
  EXPECT_TRUE(contains(p.reason, "cannot read")) << p.reason;
}

TEST(Discovery, WrongAbiIsRefusedButNamed) {
  const ScannedPlugin p = timed_read(WM_FIXTURE_WRONG_ABI);
  EXPECT_FALSE(p.usable);
  EXPECT_TRUE(contains(p.reason, "built for ABI version 0.999, this core speaks ABI version 1.2")) << p.reason;
  EXPECT_TRUE(contains(p.reason, "rebuild the plugin against this SDK")) << p.reason;
  ASSERT_TRUE(p.has_meta);
  EXPECT_STREQ(p.meta.name, "fixture_wrong_abi");
}

TEST(Discovery, MissingDependencyIsNamed) {
  const ScannedPlugin p = timed_read(WM_FIXTURE_MISSING_DEP);
  EXPECT_FALSE(p.usable);
  EXPECT_TRUE(contains(p.reason, "missing dependency libwm_fixture_dep.so")) << p.reason;
  EXPECT_TRUE(contains(p.reason, "searched:")) << p.reason;
  EXPECT_TRUE(p.has_meta);
  EXPECT_STREQ(p.meta.name, "fixture_missing_dep");
}

TEST(Discovery, DependencyFoundThroughLdLibraryPath) {
  ScopedEnv env("LD_LIBRARY_PATH", std::string("/nonexistent:") + WM_FIXTURE_DEP_DIR);
  const ScannedPlugin p = timed_read(WM_FIXTURE_MISSING_DEP);
  EXPECT_TRUE(p.usable) << p.reason;
}

TEST(Discovery, DependencyFoundThroughOriginRunpath) {
  const ScannedPlugin in_place = timed_read(WM_FIXTURE_ORIGIN_DEP);
  EXPECT_TRUE(in_place.usable) << in_place.reason;
  // $ORIGIN follows the file: a copy elsewhere no longer finds the library.
  TempDir dir;
  fs::copy_file(WM_FIXTURE_ORIGIN_DEP, dir.file("origin_dep.so"));
  const ScannedPlugin moved = timed_read(dir.file("origin_dep.so"));
  EXPECT_FALSE(moved.usable);
  EXPECT_TRUE(contains(moved.reason, "missing dependency libwm_fixture_dep.so")) << moved.reason;
}

TEST(Discovery, LdSoConfDirectoriesAreAbsolute) {
  for (const std::string& d : wm::detail::ld_so_conf_directories()) EXPECT_EQ(d.front(), '/') << d;
}

TEST(Discovery, NonPluginFilesGetSpecificReasons) {
  TempDir dir;
  const Bytes good = read_bytes(WM_FIXTURE_GOOD);
  ASSERT_GT(good.size(), 1000u);

  write_bytes(dir.file("x.so"), Bytes{'h', 'e', 'l', 'l', 'o', '\n'});
  EXPECT_TRUE(contains(timed_read(dir.file("x.so")).reason, "not an ELF file"));

  write_bytes(dir.file("empty.so"), Bytes{});
  EXPECT_TRUE(contains(timed_read(dir.file("empty.so")).reason, "empty file"));

  for (std::size_t len : {std::size_t{10}, std::size_t{64}, good.size() / 2, good.size() - 1}) {
    const std::string path = dir.file("trunc" + std::to_string(len) + ".so");
    write_bytes(path, good, len);
    const ScannedPlugin p = timed_read(path);
    EXPECT_FALSE(p.usable);
    EXPECT_TRUE(contains(p.reason, "truncated")) << len << ": " << p.reason;
  }

  ASSERT_EQ(::mkfifo(dir.file("fifo.so").c_str(), 0600), 0);
  const ScannedPlugin fifo = timed_read(dir.file("fifo.so"));
  EXPECT_FALSE(fifo.usable);
  EXPECT_TRUE(contains(fifo.reason, "not a regular file")) << fifo.reason;

  fs::create_directory(dir.file("dir.so"));
  EXPECT_TRUE(contains(timed_read(dir.file("dir.so")).reason, "not a regular file"));
  EXPECT_TRUE(contains(timed_read("/dev/null").reason, "not a regular file"));
  EXPECT_TRUE(contains(timed_read("/dev/zero").reason, "not a regular file"));

  EXPECT_TRUE(contains(timed_read(dir.file("absent.so")).reason, "cannot read"));

  // A sparse file: large on paper, cheap on disk; it must be refused without being read.
  {
    const std::string huge = dir.file("huge.so");
    write_bytes(huge, good);
    ASSERT_EQ(::truncate(huge.c_str(), static_cast<off_t>(wm::detail::kMaxPluginFileSize + 1)), 0);
    EXPECT_TRUE(contains(timed_read(huge).reason, "too large"));
  }
}

TEST(Discovery, ElfLevelDefectsGetSpecificReasons) {
  TempDir dir;
  const Bytes good = read_bytes(WM_FIXTURE_GOOD);
  ASSERT_GE(good.size(), sizeof(Elf64_Ehdr));
  struct Case {
    const char* what;
    std::function<void(Bytes&)> patch;
    const char* expected;
  };
  const std::vector<Case> cases = {
      {"aarch64",
       [](Bytes& b) {
         const std::uint16_t machine = EM_AARCH64;
         std::memcpy(b.data() + offsetof(Elf64_Ehdr, e_machine), &machine, sizeof machine);
       },
       "built for another architecture (EM_AARCH64)"},
      {"32-bit", [](Bytes& b) { b[EI_CLASS] = ELFCLASS32; }, "32-bit"},
      {"big-endian", [](Bytes& b) { b[EI_DATA] = ELFDATA2MSB; }, "byte order"},
      {"executable", [](Bytes& b) { b[offsetof(Elf64_Ehdr, e_type)] = ET_EXEC; }, "not a shared library"},
      {"section table past end",
       [](Bytes& b) {
         Elf64_Ehdr eh = header_of(b);
         eh.e_shoff = b.size() - 10;
         std::memcpy(b.data(), &eh, sizeof eh);
       },
       "truncated ELF file (section table past end of file)"},
      {"no section", [](Bytes& b) {
         const std::size_t at = find_unique(b, std::string_view(WM_PLUGIN_SECTION "", sizeof WM_PLUGIN_SECTION));
         ASSERT_NE(at, std::string::npos);
         b[at + 1] = 'x';
       },
       "not a work-manager plugin: no .wmplug section"},
  };
  for (const Case& c : cases) {
    Bytes b = good;
    c.patch(b);
    const std::string path = dir.file(std::string(c.what) + ".so");
    write_bytes(path, b);
    const ScannedPlugin p = timed_read(path);
    EXPECT_FALSE(p.usable) << c.what;
    EXPECT_TRUE(contains(p.reason, c.expected)) << c.what << ": " << p.reason;
    expect_well_formed(p);
  }
}

TEST(Discovery, MalformedRecordsGetSpecificReasons) {
  TempDir dir;
  const Bytes good = read_bytes(WM_FIXTURE_GOOD);
  const std::size_t at = record_offset(good);
  ASSERT_NE(at, std::string::npos);
  struct Case {
    const char* what;
    std::function<void(wm_plugin_metadata&)> patch;
    const char* expected;
    bool name_shown;
  };
  const std::vector<Case> cases = {
      {"magic", [](wm_plugin_metadata& m) { m.magic[7] = '2'; }, "wrong magic", false},
      {"abi7", [](wm_plugin_metadata& m) { m.abi_version = 7; },
       "built for ABI version 0.7, this core speaks ABI version 1.2 (wm " WM_VERSION_STRING
       "): the plugin is older than this wm; rebuild the plugin against this SDK", true},
      {"record_size", [](wm_plugin_metadata& m) { m.record_size = 12; }, "record_size is 12", true},
      {"name_unterminated", [](wm_plugin_metadata& m) { std::memset(m.name, 'a', sizeof m.name); },
       "metadata record malformed: name not NUL-terminated", false},
      {"name_empty", [](wm_plugin_metadata& m) { m.name[0] = '\0'; }, "name is empty", false},
      {"name_upper", [](wm_plugin_metadata& m) { m.name[0] = 'F'; }, "[a-z0-9_]", false},
      {"version", [](wm_plugin_metadata& m) { std::memset(m.version, 'v', sizeof m.version); },
       "version not NUL-terminated", true},
      {"description", [](wm_plugin_metadata& m) { std::memset(m.description, 'd', sizeof m.description); },
       "description not NUL-terminated", true},
      {"entry_empty", [](wm_plugin_metadata& m) { m.entry_symbol[0] = '\0'; }, "entry_symbol is empty", true},
      {"entry_unterminated", [](wm_plugin_metadata& m) { std::memset(m.entry_symbol, 'e', sizeof m.entry_symbol); },
       "entry_symbol not NUL-terminated", true},
      {"n_options", [](wm_plugin_metadata& m) { m.n_options = WM_META_MAX_OPTIONS + 1; }, "n_options is 17", true},
      {"option_type0", [](wm_plugin_metadata& m) { m.options[1].type = 0; }, "option 1 ('spin-us') has type 0", true},
      {"option_type5", [](wm_plugin_metadata& m) { m.options[0].type = 5; }, "has type 5", true},
      {"option_name_chars", [](wm_plugin_metadata& m) { std::strcpy(m.options[0].name, "bad_name"); },
       "option 0 name", true},
      {"option_name_empty", [](wm_plugin_metadata& m) { m.options[0].name[0] = '\0'; }, "option 0 name", true},
      {"option_duplicate", [](wm_plugin_metadata& m) { std::strcpy(m.options[1].name, "workers"); },
       "declared twice", true},
      {"option_help", [](wm_plugin_metadata& m) { std::memset(m.options[0].help, 'h', sizeof m.options[0].help); },
       "help not NUL-terminated", true},
      // Declarations the SDK refuses at compile time, met in a record made some other way.
      {"int_default_range", [](wm_plugin_metadata& m) { std::strcpy(m.options[0].default_value, "2000"); },
       "option 'workers' is declared wrong: its default '2000' is out of range; give a whole number from 0 to 1024",
       true},
      {"int_default_text", [](wm_plugin_metadata& m) { std::strcpy(m.options[0].default_value, "4x"); },
       "its default '4x' is not a whole number", true},
      {"double_default_text", [](wm_plugin_metadata& m) { std::strcpy(m.options[1].default_value, "fast"); },
       "option 'spin-us' is declared wrong: its default 'fast' is not a number", true},
      {"double_range_empty",
       [](wm_plugin_metadata& m) {
         m.options[1].double_min = 5;
         m.options[1].double_max = 1;
       },
       "option 'spin-us' is declared wrong: its range is empty (min 5 > max 1)", true},
      {"bool_default",
       [](wm_plugin_metadata& m) {
         m.options[0].type = WM_OPTION_BOOL;
         std::strcpy(m.options[0].default_value, "maybe");
       },
       "its default 'maybe' is not a yes/no value", true},
  };
  for (const Case& c : cases) {
    Bytes b = good;
    wm_plugin_metadata m{};
    std::memcpy(&m, b.data() + at, sizeof m);
    c.patch(m);
    std::memcpy(b.data() + at, &m, sizeof m);
    const std::string path = dir.file(std::string(c.what) + ".so");
    write_bytes(path, b);
    const ScannedPlugin p = timed_read(path);
    EXPECT_FALSE(p.usable) << c.what;
    EXPECT_TRUE(contains(p.reason, c.expected)) << c.what << ": " << p.reason;
    EXPECT_EQ(p.has_meta, c.name_shown) << c.what;
    if (c.name_shown && p.has_meta) {
      EXPECT_STREQ(p.meta.name, "fixture_good") << c.what;
    }
    expect_well_formed(p);
  }
}

TEST(Discovery, FuzzedCopiesNeverCrashOrHang) {
  TempDir dir;
  const Bytes good = read_bytes(WM_FIXTURE_GOOD);
  ASSERT_GT(good.size(), sizeof(Elf64_Ehdr));
  const Elf64_Ehdr eh = header_of(good);
  const std::size_t record = record_offset(good);
  ASSERT_NE(record, std::string::npos);
  const std::size_t sh_begin = std::min<std::size_t>(eh.e_shoff, good.size() - 1);
  const std::size_t sh_size = std::max<std::size_t>(1, good.size() - sh_begin);

  // mt19937_64's output sequence is fixed by the standard, so every run fuzzes the same files;
  // distributions are not, hence the plain modulo.
  std::mt19937_64 rng(20240607);
  auto below = [&rng](std::size_t n) { return static_cast<std::size_t>(rng() % n); };
  auto flip = [&](Bytes& b, std::size_t begin, std::size_t span, std::size_t count) {
    for (std::size_t i = 0; i < count; ++i) {
      const std::size_t at = begin + below(span);
      if (at < b.size()) b[at] ^= static_cast<unsigned char>(1 + below(255));
    }
  };

  int usable = 0;
  const auto start = std::chrono::steady_clock::now();
  for (int i = 0; i < 300; ++i) {
    Bytes b = good;
    switch (i % 8) {
      case 0: flip(b, 0, b.size(), 1 + below(8)); break;
      case 1: flip(b, 0, sizeof(Elf64_Ehdr), 1 + below(4)); break;
      case 2: flip(b, sh_begin, sh_size, 1 + below(8)); break;
      case 3: {  // a random range overwritten with noise
        const std::size_t at = below(b.size());
        const std::size_t len = std::min(b.size() - at, 1 + below(256));
        for (std::size_t k = 0; k < len; ++k) b[at + k] = static_cast<unsigned char>(rng());
        break;
      }
      case 4: {  // extreme values in a header or section-header field
        const bool in_header = below(2) == 0;
        const std::size_t base = in_header ? 0 : sh_begin;
        const std::size_t span = in_header ? sizeof(Elf64_Ehdr) : sh_size;
        const std::size_t at = base + (below(span) & ~std::size_t{7});
        const unsigned char fill = below(2) == 0 ? 0xff : 0x00;
        for (std::size_t k = 0; k < 8 && at + k < b.size(); ++k) b[at + k] = fill;
        if (below(2) == 0 && at + 7 < b.size()) b[at + 7] = 0x7f;
        break;
      }
      case 5: flip(b, record, sizeof(wm_plugin_metadata), 1 + below(6)); break;
      case 6: {
        b.resize(1 + below(b.size()));
        flip(b, 0, b.size(), below(3));
        break;
      }
      case 7: {  // a random section header's offset/size/link fields swapped for large or odd values
        const std::size_t nsec = eh.e_shnum == 0 ? 1 : eh.e_shnum;
        const std::size_t sec = sh_begin + below(nsec) * sizeof(Elf64_Shdr);
        const std::size_t fields[] = {offsetof(Elf64_Shdr, sh_offset), offsetof(Elf64_Shdr, sh_size),
                                      offsetof(Elf64_Shdr, sh_link), offsetof(Elf64_Shdr, sh_name),
                                      offsetof(Elf64_Shdr, sh_type), offsetof(Elf64_Shdr, sh_entsize)};
        const std::size_t at = sec + fields[below(std::size(fields))];
        const uint64_t values[] = {0, 1, b.size(), b.size() - 1, ~uint64_t{0}, uint64_t{1} << 31, rng()};
        const uint64_t v = values[below(std::size(values))];
        if (at + 8 <= b.size()) std::memcpy(b.data() + at, &v, at == sec + offsetof(Elf64_Shdr, sh_link) ? 4 : 8);
        break;
      }
    }
    const std::string path = dir.file("fuzz_" + std::to_string(i) + ".so");
    write_bytes(path, b);
    const ScannedPlugin p = timed_read(path);
    expect_well_formed(p);
    if (p.usable) ++usable;
  }
  // A scan must stay cheap enough for a host to do it at every start-up.
  EXPECT_LT(std::chrono::steady_clock::now() - start, std::chrono::seconds(30));
  RecordProperty("usable_fuzzed_copies", usable);
}

TEST(Discovery, ScanListsEveryCandidateWithItsReason) {
  TempDir dir;
  const Bytes good = read_bytes(WM_FIXTURE_GOOD);
  fs::copy_file(WM_FIXTURE_GOOD, dir.file("a_good.so"));
  fs::copy_file(WM_FIXTURE_GOOD_STRIPPED, dir.file("b_stripped.so"));
  fs::copy_file(WM_FIXTURE_WRONG_ABI, dir.file("wrong_abi.so"));
  fs::copy_file(WM_FIXTURE_MISSING_DEP, dir.file("missing_dep.so"));
  fs::copy_file(WM_FIXTURE_GOOD, dir.file("libversioned.so.1.2"));
  write_bytes(dir.file("x.so"), Bytes{'t', 'e', 'x', 't'});
  write_bytes(dir.file("empty.so"), Bytes{});
  write_bytes(dir.file("trunc.so"), good, good.size() / 2);
  ASSERT_EQ(::mkfifo(dir.file("fifo.so").c_str(), 0600), 0);
  fs::create_directory(dir.file("dir.so"));
  // Not candidates: wrong suffixes.
  write_bytes(dir.file("readme.txt"), Bytes{'x'});
  fs::copy_file(WM_FIXTURE_GOOD, dir.file("good.sox"));
  fs::copy_file(WM_FIXTURE_GOOD, dir.file("good.so~"));

  TempDir second;
  fs::copy_file(WM_FIXTURE_GOOD, second.file("z_second.so"));

  const auto start = std::chrono::steady_clock::now();
  const std::vector<ScannedPlugin> found =
      scan_plugin_directories({dir.str(), "/nonexistent/wm/plugins", second.str(), dir.str() + "/"});
  EXPECT_LT(std::chrono::steady_clock::now() - start, std::chrono::seconds(10));

  std::vector<std::string> names;
  for (const ScannedPlugin& p : found) {
    names.push_back(fs::path(p.path).filename().string());
    expect_well_formed(p);
  }
  // Sorted within a directory, directories in the given order, the repeated directory scanned once.
  const std::vector<std::string> expected = {"a_good.so",     "b_stripped.so", "dir.so",          "empty.so",
                                             "fifo.so",       "libversioned.so.1.2", "missing_dep.so", "trunc.so",
                                             "wrong_abi.so",  "x.so",          "z_second.so"};
  ASSERT_EQ(names, expected);

  auto by_name = [&](const std::string& n) -> const ScannedPlugin& {
    return found[static_cast<std::size_t>(std::find(names.begin(), names.end(), n) - names.begin())];
  };
  for (const char* n : {"a_good.so", "b_stripped.so", "libversioned.so.1.2", "z_second.so"}) {
    EXPECT_TRUE(by_name(n).usable) << n << ": " << by_name(n).reason;
    EXPECT_STREQ(by_name(n).meta.name, "fixture_good") << n;
  }
  EXPECT_EQ(by_name("a_good.so").path, dir.file("a_good.so"));
  const std::pair<const char*, const char*> broken[] = {
      {"wrong_abi.so", "ABI version 0.999"},
      {"missing_dep.so", "missing dependency libwm_fixture_dep"},
      {"x.so", "not an ELF"},
      {"empty.so", "empty file"},
      {"trunc.so", "truncated"},
      {"fifo.so", "regular file"},
      {"dir.so", "regular file"},
  };
  for (const auto& [n, why] : broken) {
    EXPECT_FALSE(by_name(n).usable) << n;
    EXPECT_TRUE(contains(by_name(n).reason, why)) << n << ": " << by_name(n).reason;
  }
  EXPECT_STREQ(by_name("wrong_abi.so").meta.name, "fixture_wrong_abi");

  EXPECT_TRUE(scan_plugin_directories({}).empty());
  EXPECT_TRUE(scan_plugin_directories({"", "/nonexistent"}).empty());
}

TEST(Discovery, NewerMinorThatNeedsANewerCoreIsRefusedWithTheReason) {
  // Its record (1.5, longer than this core's) leaves min_core_abi_version 0: it needs a core of 1.5.
  const ScannedPlugin p = timed_read(WM_FIXTURE_NEWER_MINOR);
  EXPECT_FALSE(p.usable);
  EXPECT_TRUE(p.has_meta);
  EXPECT_STREQ(p.meta.name, "fixture_newer_minor");
  EXPECT_EQ(p.meta.abi_version, (WM_ABI_MAJOR << 16) | 5u);
  EXPECT_TRUE(contains(p.reason, "built for ABI version 1.5 and needs a wm core of ABI version 1.5 or a later 1.x, "
                                 "this core speaks ABI version 1.2 (wm " WM_VERSION_STRING "): upgrade wm, or "
                                 "rebuild the plugin against the SDK installed with this wm"))
      << p.reason;
  EXPECT_TRUE(contains(p.reason, "WM_SDK_MIN_CORE_MINOR 2")) << p.reason;
}

TEST(Discovery, NewerMinorThatRunsHereIsTakenAndNoted) {
  // Its record is longer than this core's: the fields this core knows are read, the rest ignored.
  const ScannedPlugin p = timed_read(WM_FIXTURE_NEWER_MINOR_RUNS_HERE);
  EXPECT_TRUE(p.usable) << p.reason;
  EXPECT_STREQ(p.meta.name, "fixture_newer_minor_runs_here");
  EXPECT_EQ(p.meta.abi_version, (WM_ABI_MAJOR << 16) | 5u);
  EXPECT_EQ(p.meta.min_core_abi_version, WM_ABI_MAJOR << 16);
  ASSERT_EQ(p.meta.n_options, 2u);
  EXPECT_STREQ(p.meta.options[1].name, "spin-us");
  EXPECT_TRUE(contains(p.note, "built for ABI version 1.5, newer than this core's 1.2; it runs on cores of ABI 1.0 "
                               "and later: what the newer minor added is not used"))
      << p.note;
  EXPECT_TRUE(timed_read(WM_FIXTURE_GOOD).note.empty());
}

// The SDK's create() checks the same bound as discovery: for a plugin built with the SDK of ABI 1.3,
// discovery's verdict on this core is what create() decides when handed this core's services.
TEST(Discovery, DiscoveryDecidesWhatTheSdkCreateWouldDecide) {
  struct Case {
    const char* path;
    const char* name;
    bool runs_here;
  };
  for (const Case& c : {Case{WM_FIXTURE_ABI_1_3, "fixture_abi_1_3", false},
                        Case{WM_FIXTURE_ABI_1_3_RUNS_ON_1_0, "fixture_abi_1_3_runs_on_1_0", true}}) {
    SCOPED_TRACE(c.name);
    const ScannedPlugin p = timed_read(c.path);
    ASSERT_TRUE(p.has_meta) << p.reason;
    EXPECT_STREQ(p.meta.name, c.name);
    EXPECT_EQ(p.meta.abi_version, (WM_ABI_MAJOR << 16) | 3u);
    EXPECT_EQ(p.usable, c.runs_here) << p.reason;
    if (c.runs_here) {
      EXPECT_TRUE(contains(p.note, "built for ABI version 1.3, newer than this core's 1.2; it runs on cores of ABI "
                                   "1.0 and later"))
          << p.note;
    } else {
      EXPECT_TRUE(contains(p.reason, "built for ABI version 1.3 and needs a wm core of ABI version 1.3 or a later "
                                     "1.x, this core speaks ABI version 1.2"))
          << p.reason;
    }

    // What create() says, given the services of a core of this ABI and of a core of ABI 1.3.
    void* handle = dlopen(c.path, RTLD_NOW | RTLD_LOCAL);  // never closed: it stays for the process
    ASSERT_NE(handle, nullptr) << dlerror();
    auto entry = reinterpret_cast<wm_backend_entry_fn>(dlsym(handle, p.meta.entry_symbol));
    ASSERT_NE(entry, nullptr);
    const wm_backend_descriptor* d = entry();
    ASSERT_NE(d, nullptr);
    EXPECT_EQ(d->abi_version, (WM_ABI_MAJOR << 16) | 3u);
    for (const std::uint32_t core_abi : {WM_ABI_VERSION, (WM_ABI_MAJOR << 16) | 3u}) {
      wm_core_services services{};
      services.abi_version = core_abi;
      services.struct_size = sizeof services;
      wm_backend_config config{};
      config.abi_version = core_abi;
      config.struct_size = sizeof config;
      wm_error err{};
      wm_backend* b = d->create(&services, &config, &err);
      const bool created = b != nullptr;
      if (b != nullptr) d->destroy(b);
      const bool expected = c.runs_here || core_abi != WM_ABI_VERSION;
      EXPECT_EQ(created, expected) << "core ABI " << (core_abi >> 16) << "." << (core_abi & 0xffff) << ": "
                                   << err.message;
      if (!created) {
        EXPECT_TRUE(contains(err.message, "needs a wm core of ABI version 1.3 or a later 1.x")) << err.message;
      }
    }
  }
}

TEST(Discovery, MinCoreVersionIsOfThePluginsMajorAndNotNewerThanIt) {
  TempDir dir;
  const Bytes good = read_bytes(WM_FIXTURE_GOOD);
  const std::size_t at = record_offset(good);
  ASSERT_NE(at, std::string::npos);
  const std::uint32_t minor5 = (WM_ABI_MAJOR << 16) | 5u;
  struct Case {
    const char* what;
    std::uint32_t abi, min_core;
    const char* expected;  // nullptr: usable
  };
  const Case cases[] = {
      {"other_major", WM_ABI_VERSION, 2u << 16, "min_core_abi_version is 2.0, not a version of ABI 1.x up to"},
      {"newer_than_itself", minor5, (WM_ABI_MAJOR << 16) | 7u, "min_core_abi_version is 1.7, not a version"},
      {"needs_1_5", minor5, minor5, "needs a wm core of ABI version 1.5 or a later 1.x"},
      {"needs_1_3", minor5, (WM_ABI_MAJOR << 16) | 3u, "needs a wm core of ABI version 1.3 or a later 1.x"},
      {"runs_on_1_0", minor5, WM_ABI_MAJOR << 16, nullptr},
      {"unset_means_built_for", WM_ABI_VERSION, 0, nullptr},
  };
  for (const Case& c : cases) {
    Bytes b = good;
    std::memcpy(b.data() + at + offsetof(wm_plugin_metadata, abi_version), &c.abi, 4);
    std::memcpy(b.data() + at + offsetof(wm_plugin_metadata, min_core_abi_version), &c.min_core, 4);
    const std::string path = dir.file(std::string(c.what) + ".so");
    write_bytes(path, b);
    const ScannedPlugin p = timed_read(path);
    expect_well_formed(p);
    EXPECT_TRUE(p.has_meta) << c.what;  // the name is shown in every case
    if (c.expected == nullptr) {
      EXPECT_TRUE(p.usable) << c.what << ": " << p.reason;
    } else {
      EXPECT_FALSE(p.usable) << c.what;
      EXPECT_TRUE(contains(p.reason, c.expected)) << c.what << ": " << p.reason;
    }
  }
}

TEST(Discovery, OtherMajorNamesBothVersionsAndWhatToRebuild) {
  const ScannedPlugin newer = timed_read(WM_FIXTURE_ABI_MAJOR2);
  EXPECT_FALSE(newer.usable);
  EXPECT_TRUE(contains(newer.reason, "built for ABI version 2.0, this core speaks ABI version 1.2 (wm " WM_VERSION_STRING ")"))
      << newer.reason;
  EXPECT_TRUE(contains(newer.reason, "the plugin is newer than this wm; rebuild it against the SDK installed with this wm"))
      << newer.reason;
  EXPECT_STREQ(newer.meta.name, "fixture_abi_major2");
  const ScannedPlugin older = timed_read(WM_FIXTURE_WRONG_ABI);
  EXPECT_TRUE(contains(older.reason, "the plugin is older than this wm; rebuild the plugin against this SDK"))
      << older.reason;
}

TEST(Discovery, RecordSizeFollowsTheGrowthRule) {
  TempDir dir;
  const Bytes good = read_bytes(WM_FIXTURE_GOOD);
  const std::size_t at = record_offset(good);
  ASSERT_NE(at, std::string::npos);
  const std::uint32_t size = sizeof(wm_plugin_metadata);
  const std::uint32_t minor5 = (WM_ABI_MAJOR << 16) | 5u;
  // A newer minor's records here say they run on this core (min_core_abi_version 1.0).
  const std::uint32_t runs_here = WM_ABI_MAJOR << 16;
  struct Case {
    const char* what;
    std::uint32_t abi, record_size;
    const char* expected;  // nullptr: usable
  };
  const Case cases[] = {
      {"shorter_than_1_0", WM_ABI_VERSION, size - 8, "shorter than the ABI 1.0 record"},
      {"same_minor_longer", WM_ABI_VERSION, size + 64, "ABI version 1.2 records are"},
      {"newer_minor_shorter", minor5, size - 8, "shorter than the ABI 1.0 record"},
      {"newer_minor_past_section", minor5, size + 64, "shorter than its"},
      {"newer_minor_same_size", minor5, size, nullptr},
  };
  for (const Case& c : cases) {
    Bytes b = good;
    std::memcpy(b.data() + at + offsetof(wm_plugin_metadata, abi_version), &c.abi, 4);
    std::memcpy(b.data() + at + offsetof(wm_plugin_metadata, record_size), &c.record_size, 4);
    std::memcpy(b.data() + at + offsetof(wm_plugin_metadata, min_core_abi_version), &runs_here, 4);
    const std::string path = dir.file(std::string(c.what) + ".so");
    write_bytes(path, b);
    const ScannedPlugin p = timed_read(path);
    expect_well_formed(p);
    if (c.expected == nullptr) {
      EXPECT_TRUE(p.usable) << c.what << ": " << p.reason;
      EXPECT_FALSE(p.note.empty()) << c.what;
    } else {
      EXPECT_FALSE(p.usable) << c.what;
      EXPECT_TRUE(contains(p.reason, c.expected)) << c.what << ": " << p.reason;
      EXPECT_TRUE(p.has_meta) << c.what;  // the name is still shown
    }
  }
}

TEST(Discovery, BadOptionDeclarationsAreRefusedWithTheOptionNamed) {
  const std::pair<const char*, const char*> cases[] = {
      {WM_FIXTURE_BAD_OPTION_RANGE, "option 'workers' is declared wrong: its default '5000' is out of range"},
      {WM_FIXTURE_BAD_OPTION_PARSE, "option 'workers' is declared wrong: its default 'lots' is not a whole number"},
      {WM_FIXTURE_BAD_OPTION_EMPTY_RANGE, "option 'workers' is declared wrong: its range is empty (min 10 > max 1)"},
  };
  for (const auto& [path, expected] : cases) {
    const ScannedPlugin p = timed_read(path);
    EXPECT_FALSE(p.usable) << path;
    EXPECT_TRUE(contains(p.reason, expected)) << p.reason;
    EXPECT_TRUE(contains(p.reason, "fix the declaration in WM_DECLARE_BACKEND and rebuild the plugin")) << p.reason;
    EXPECT_TRUE(p.has_meta) << path;
  }
}

TEST(Discovery, NoRecordAndEmptyNameAreRefused) {
  const ScannedPlugin none = timed_read(WM_FIXTURE_NO_RECORD);
  EXPECT_FALSE(none.usable);
  EXPECT_TRUE(contains(none.reason, "not a work-manager plugin: no .wmplug section")) << none.reason;
  const ScannedPlugin empty = timed_read(WM_FIXTURE_EMPTY_NAME);
  EXPECT_FALSE(empty.usable);
  EXPECT_TRUE(contains(empty.reason, "metadata record malformed: name is empty")) << empty.reason;
  EXPECT_FALSE(empty.has_meta);
}

TEST(Discovery, EveryDirectoryEntryIsReported) {
  TempDir dir;
  fs::copy_file(WM_FIXTURE_GOOD, dir.file("good.so"));
  write_bytes(dir.file("plain_file"), Bytes{'x'});
  fs::create_symlink(dir.file("nowhere"), dir.file("dangling"));
  std::vector<wm::detail::DirectoryReport> report;
  const std::vector<std::string> dirs = {"",
                                         dir.str(),
                                         "/nonexistent/wm/plugins",
                                         dir.file("plain_file"),
                                         dir.str() + "/",
                                         dir.file("dangling"),
                                         dir.file("plain_file") + "/sub",
                                         "/dev/null"};
  const auto found = scan_plugin_directories(dirs, &report);
  ASSERT_EQ(found.size(), 1u);
  EXPECT_TRUE(found[0].usable);
  ASSERT_EQ(report.size(), dirs.size());
  using wm::detail::DirectoryStatus;
  const std::pair<DirectoryStatus, const char*> expected[] = {
      {DirectoryStatus::empty_entry, "empty entry"},
      {DirectoryStatus::scanned, ""},
      {DirectoryStatus::missing, "does not exist"},
      {DirectoryStatus::not_a_directory, "is a file, not a directory"},
      {DirectoryStatus::duplicate, "the same directory as"},
      {DirectoryStatus::missing, "symbolic link to something that does not exist"},
      {DirectoryStatus::not_a_directory, "a part of the path is a file"},
      {DirectoryStatus::not_a_directory, "a character device"},
  };
  for (std::size_t i = 0; i < report.size(); ++i) {
    EXPECT_EQ(report[i].path, dirs[i]);
    EXPECT_EQ(report[i].status, expected[i].first) << i << " " << dirs[i] << ": " << report[i].detail;
    EXPECT_TRUE(contains(report[i].detail, expected[i].second)) << i << ": " << report[i].detail;
  }
}

TEST(Discovery, SearchPathSplitKeepsEmptyEntries) {
  using wm::detail::split_search_path;
  EXPECT_TRUE(split_search_path("").empty());
  EXPECT_EQ(split_search_path("/a"), (std::vector<std::string>{"/a"}));
  EXPECT_EQ(split_search_path(":/a::/b:"), (std::vector<std::string>{"", "/a", "", "/b", ""}));
}
