// SPDX-License-Identifier: MIT
// plugin_scan.cpp: reads backend metadata records from plugin files with libelf, never loading them.
#include "plugin_scan.hpp"

#include "option_value.hpp"

#include <wm/sdk/abi_version.hpp>
#include <wm/version.hpp>

#include <dirent.h>
#include <elf.h>
#include <fcntl.h>
#include <gelf.h>
#include <glob.h>
#include <libelf.h>
#include <link.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cctype>
#include <cerrno>
#include <cstddef>
#include <cstdlib>
#include <cstring>
#include <exception>
#include <fstream>
#include <set>
#include <sstream>
#include <string_view>
#include <utility>

namespace wm::detail {
namespace {
using wm::sdk::abi_version_text;

// The host's own ELF identity: a plugin must match it to be loadable into this process.
#if defined(__x86_64__)
constexpr unsigned kHostMachine = EM_X86_64;
constexpr const char* kMultiarch = "x86_64-linux-gnu";
#elif defined(__aarch64__)
constexpr unsigned kHostMachine = EM_AARCH64;
constexpr const char* kMultiarch = "aarch64-linux-gnu";
#elif defined(__i386__)
constexpr unsigned kHostMachine = EM_386;
constexpr const char* kMultiarch = "i386-linux-gnu";
#elif defined(__arm__)
constexpr unsigned kHostMachine = EM_ARM;
#if defined(__ARM_PCS_VFP)
constexpr const char* kMultiarch = "arm-linux-gnueabihf";
#else
constexpr const char* kMultiarch = "arm-linux-gnueabi";
#endif
#elif defined(__powerpc64__) && __BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__
constexpr unsigned kHostMachine = EM_PPC64;
constexpr const char* kMultiarch = "powerpc64le-linux-gnu";
#elif defined(__riscv) && __riscv_xlen == 64
constexpr unsigned kHostMachine = EM_RISCV;
constexpr const char* kMultiarch = "riscv64-linux-gnu";
#elif defined(__s390x__)
constexpr unsigned kHostMachine = EM_S390;
constexpr const char* kMultiarch = "s390x-linux-gnu";
#else
#error "plugin_scan.cpp: add this architecture's ELF machine and multiarch triplet"
#endif
constexpr int kHostClass = sizeof(void*) == 8 ? ELFCLASS64 : ELFCLASS32;
constexpr int kHostData = __BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__ ? ELFDATA2LSB : ELFDATA2MSB;
using HostEhdr = ElfW(Ehdr);
using HostShdr = ElfW(Shdr);

// Beyond any real plugin; keeps libelf's per-section allocations bounded on hostile headers.
constexpr std::uint64_t kMaxSections = 1u << 18;
// Real plugins need a handful of libraries.
constexpr std::size_t kMaxNeeded = 256;

std::string errno_text(int err) { return std::strerror(err); }

std::string machine_name(unsigned machine) {
  switch (machine) {
    case EM_386: return "EM_386";
    case EM_X86_64: return "EM_X86_64";
    case EM_AARCH64: return "EM_AARCH64";
    case EM_ARM: return "EM_ARM";
    case EM_PPC: return "EM_PPC";
    case EM_PPC64: return "EM_PPC64";
    case EM_RISCV: return "EM_RISCV";
    case EM_S390: return "EM_S390";
    case EM_MIPS: return "EM_MIPS";
    case EM_SPARCV9: return "EM_SPARCV9";
    case EM_IA_64: return "EM_IA_64";
#ifdef EM_LOONGARCH
    case EM_LOONGARCH: return "EM_LOONGARCH";
#endif
    default: return "machine " + std::to_string(machine);
  }
}

std::string file_kind(mode_t mode) {
  if (S_ISDIR(mode)) return "a directory";
  if (S_ISFIFO(mode)) return "a FIFO";
  if (S_ISSOCK(mode)) return "a socket";
  if (S_ISCHR(mode)) return "a character device";
  if (S_ISBLK(mode)) return "a block device";
  return "not a plain file";
}

class Fd {
 public:
  explicit Fd(int fd) : fd_(fd) {}
  ~Fd() {
    if (fd_ >= 0) ::close(fd_);
  }
  Fd(const Fd&) = delete;
  Fd& operator=(const Fd&) = delete;
  int get() const { return fd_; }

 private:
  int fd_;
};

class ElfHandle {
 public:
  explicit ElfHandle(Elf* e) : e_(e) {}
  ~ElfHandle() {
    if (e_ != nullptr) elf_end(e_);
  }
  ElfHandle(const ElfHandle&) = delete;
  ElfHandle& operator=(const ElfHandle&) = delete;
  Elf* get() const { return e_; }

 private:
  Elf* e_;
};

// Reads up to size bytes at offset; returns how many were read (short only at end of file or error).
std::size_t pread_full(int fd, void* buf, std::size_t size, std::uint64_t offset) {
  std::size_t done = 0;
  while (done < size) {
    const ssize_t n = ::pread(fd, static_cast<char*>(buf) + done, size - done,
                              static_cast<off_t>(offset + done));
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) break;
    done += static_cast<std::size_t>(n);
  }
  return done;
}

bool range_in_file(std::uint64_t offset, std::uint64_t size, std::uint64_t file_size) {
  return offset <= file_size && size <= file_size - offset;
}

bool elf_library_init() {
  // elf_version must precede every other libelf call; once per process is enough.
  static const bool ok = elf_version(EV_CURRENT) != EV_NONE;
  return ok;
}

std::string libelf_error() {
  const char* msg = elf_errmsg(-1);
  return msg != nullptr ? msg : "unknown libelf error";
}

// A NUL-terminated string at offset within a string table's bytes, or nullptr.
const char* string_at(const Elf_Data* table, std::uint64_t offset) {
  if (table == nullptr || table->d_buf == nullptr || offset >= table->d_size) return nullptr;
  const char* base = static_cast<const char*>(table->d_buf);
  if (std::memchr(base + offset, '\0', table->d_size - offset) == nullptr) return nullptr;
  return base + offset;
}

// Text taken from the file goes into a one-line reason: bytes a terminal would misread are escaped
// and hostile lengths cut.
std::string printable(std::string_view text, std::size_t max_len = 80) {
  static const char* const kHex = "0123456789abcdef";
  std::string out;
  for (std::size_t i = 0; i < text.size(); ++i) {
    if (out.size() >= max_len) {
      out += "...";
      break;
    }
    const auto c = static_cast<unsigned char>(text[i]);
    if (c >= 0x20 && c < 0x7f && c != '\\') {
      out += static_cast<char>(c);
    } else {
      out += "\\x";
      out += kHex[c >> 4];
      out += kHex[c & 15];
    }
  }
  return out;
}

bool is_nul_terminated(const char* chars, std::size_t n) { return std::memchr(chars, '\0', n) != nullptr; }

bool is_backend_name(const char* name) {
  if (*name == '\0') return false;
  for (const char* p = name; *p != '\0'; ++p) {
    const char c = *p;
    if (!((c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '_')) return false;
  }
  return true;
}

bool is_option_name(const char* name) {
  if (*name == '\0') return false;
  for (const char* p = name; *p != '\0'; ++p) {
    const char c = *p;
    if (!((c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '-')) return false;
  }
  return true;
}

bool is_c_identifier(const char* s) {
  auto alpha = [](char c) { return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c == '_'; };
  if (!alpha(*s)) return false;
  for (const char* p = s + 1; *p != '\0'; ++p)
    if (!alpha(*p) && !(*p >= '0' && *p <= '9')) return false;
  return true;
}

// Checks the whole record of this ABI; returns "" when valid, else what is wrong.
std::string validate_record(const wm_plugin_metadata& m) {
  if (!is_nul_terminated(m.name, sizeof m.name)) return "name not NUL-terminated";
  if (m.name[0] == '\0') return "name is empty";
  if (!is_backend_name(m.name)) return "name '" + printable(m.name) + "' has characters other than [a-z0-9_]";
  if (!is_nul_terminated(m.version, sizeof m.version)) return "version not NUL-terminated";
  if (!is_nul_terminated(m.description, sizeof m.description)) return "description not NUL-terminated";
  if (!is_nul_terminated(m.entry_symbol, sizeof m.entry_symbol)) return "entry_symbol not NUL-terminated";
  if (m.entry_symbol[0] == '\0') return "entry_symbol is empty";
  if (!is_c_identifier(m.entry_symbol)) return "entry_symbol is not a C identifier";
  if (m.n_options > WM_META_MAX_OPTIONS)
    return "n_options is " + std::to_string(m.n_options) + ", at most " + std::to_string(WM_META_MAX_OPTIONS) +
           " are allowed";
  for (std::uint32_t i = 0; i < m.n_options; ++i) {
    const wm_option_meta& o = m.options[i];
    const std::string which = "option " + std::to_string(i);
    if (!is_nul_terminated(o.name, sizeof o.name)) return which + " name not NUL-terminated";
    if (!is_option_name(o.name)) return which + " name is empty or has characters other than [a-z0-9-]";
    if (o.type < WM_OPTION_BOOL || o.type > WM_OPTION_STRING)
      return which + " ('" + o.name + "') has type " + std::to_string(o.type) + ", expected 1..4";
    if (!is_nul_terminated(o.default_value, sizeof o.default_value))
      return which + " ('" + o.name + "') default value not NUL-terminated";
    if (!is_nul_terminated(o.help, sizeof o.help)) return which + " ('" + o.name + "') help not NUL-terminated";
    for (std::uint32_t j = 0; j < i; ++j)
      if (std::strcmp(m.options[j].name, o.name) == 0) return "option '" + std::string(o.name) + "' declared twice";
    // The SDK refuses these at compile time; a record written by hand (or an older SDK) meets them here.
    if (const std::string bad = check_option_declaration(o.type, o.default_value, o.int_min, o.int_max,
                                                         o.double_min, o.double_max);
        !bad.empty())
      return "option '" + std::string(o.name) + "' is declared wrong: its " + printable(bad, 200) +
             ": fix the declaration in WM_DECLARE_BACKEND and rebuild the plugin";
  }
  if (const std::uint32_t min = m.min_core_abi_version; min != 0) {
    if (WM_ABI_MAJOR_OF(min) != WM_ABI_MAJOR_OF(m.abi_version) || min > m.abi_version)
      return "min_core_abi_version is " + abi_version_text(min) + ", not a version of ABI " +
             std::to_string(WM_ABI_MAJOR_OF(m.abi_version)) + ".x up to the plugin's own " +
             abi_version_text(m.abi_version) + ": rebuild the plugin with WM_DECLARE_BACKEND";
  }
  return {};
}

// The oldest core a valid record runs on: its min_core_abi_version, or (0) the version it was built for.
std::uint32_t min_core_abi_version(const wm_plugin_metadata& m) {
  return m.min_core_abi_version != 0 ? m.min_core_abi_version : m.abi_version;
}

// The size of the first record of ABI major 1 (1.0): whatever a later minor appends comes after
// `reserved`, so a record shorter than this is malformed whatever its minor.
constexpr std::size_t kMinRecordSize = offsetof(wm_plugin_metadata, reserved) + sizeof(wm_plugin_metadata::reserved);
static_assert(kMinRecordSize == sizeof(wm_plugin_metadata));
// min_core_abi_version took the first 4 bytes of what 1.0 reserved: the layout is that of 1.0.
static_assert(offsetof(wm_plugin_metadata, min_core_abi_version) + sizeof(std::uint32_t) ==
              offsetof(wm_plugin_metadata, reserved));

std::string core_abi_text() {
  return "this core speaks ABI version " + abi_version_text(WM_ABI_VERSION) + " (wm " WM_VERSION_STRING ")";
}

// Why a record of another ABI major is refused, naming both versions and what to rebuild.
std::string other_major_reason(std::uint32_t plugin_abi) {
  std::string why = "built for ABI version " + abi_version_text(plugin_abi) + ", " + core_abi_text() + ": ";
  if (WM_ABI_MAJOR_OF(plugin_abi) > WM_ABI_MAJOR)
    return why + "the plugin is newer than this wm; rebuild it against the SDK installed with this wm (ABI " +
           std::to_string(WM_ABI_MAJOR) + ".x), or use a wm that speaks ABI " +
           std::to_string(WM_ABI_MAJOR_OF(plugin_abi)) + ".x";
  return why + "the plugin is older than this wm; rebuild the plugin against this SDK (the headers installed "
               "with this wm)";
}

// Why a plugin of this major that needs a newer core than this one is refused. The same words reach
// `wm list --why`, `wm check` and a host selecting it, all from discovery.
std::string needs_newer_core_reason(const wm_plugin_metadata& m) {
  const std::uint32_t need = min_core_abi_version(m);
  return "built for ABI version " + abi_version_text(m.abi_version) + " and needs a wm core of ABI version " +
         abi_version_text(need) + " or a later " + std::to_string(WM_ABI_MAJOR) + ".x, " + core_abi_text() +
         ": upgrade wm, or rebuild the plugin against the SDK installed with this wm (a plugin that uses nothing "
         "newer than ABI " + abi_version_text(WM_ABI_VERSION) + " can say so with WM_SDK_MIN_CORE_MINOR " +
         std::to_string(WM_ABI_MINOR) + " and run on both)";
}

// Checks record_size against the record's ABI minor and the section's size; "" when consistent.
std::string check_record_size(std::uint32_t abi, std::uint32_t record_size, std::size_t section_size) {
  const std::string size = "record_size is " + std::to_string(record_size) + " bytes";
  if (record_size < kMinRecordSize)
    return size + ", shorter than the ABI " + std::to_string(WM_ABI_MAJOR) + ".0 record (" +
           std::to_string(kMinRecordSize) + " bytes): rebuild the plugin against this SDK";
  if (WM_ABI_MINOR_OF(abi) == WM_ABI_MINOR && record_size != sizeof(wm_plugin_metadata))
    return size + ", ABI version " + abi_version_text(WM_ABI_VERSION) + " records are " +
           std::to_string(sizeof(wm_plugin_metadata)) + " bytes: rebuild the plugin against this SDK";
  if (WM_ABI_MINOR_OF(abi) > WM_ABI_MINOR && record_size < sizeof(wm_plugin_metadata))
    return size + " for ABI version " + abi_version_text(abi) + ", shorter than the " +
           std::to_string(sizeof(wm_plugin_metadata)) + "-byte record of the older ABI version " +
           abi_version_text(WM_ABI_VERSION) + " (a newer minor only appends fields): rebuild the plugin";
  if (section_size < record_size)
    return WM_PLUGIN_SECTION " section is " + std::to_string(section_size) + " bytes, shorter than its " +
           std::to_string(record_size) + "-byte record";
  if (section_size > record_size)
    return WM_PLUGIN_SECTION " section is " + std::to_string(section_size) + " bytes but one record is " +
           std::to_string(record_size) + " (more than one backend declared in this file?)";
  return {};
}

std::vector<std::string> split(std::string_view text, std::string_view delims) {
  std::vector<std::string> out;
  std::size_t start = 0;
  while (start <= text.size()) {
    const std::size_t end = text.find_first_of(delims, start);
    const std::size_t stop = end == std::string_view::npos ? text.size() : end;
    out.emplace_back(text.substr(start, stop - start));
    if (end == std::string_view::npos) break;
    start = end + 1;
  }
  return out;
}

std::string trim(std::string_view s) {
  const std::size_t b = s.find_first_not_of(" \t\r\n");
  if (b == std::string_view::npos) return {};
  const std::size_t e = s.find_last_not_of(" \t\r\n");
  return std::string(s.substr(b, e - b + 1));
}

std::string dir_name(const std::string& path) {
  const std::size_t slash = path.find_last_of('/');
  if (slash == std::string::npos) return ".";
  if (slash == 0) return "/";
  return path.substr(0, slash);
}

std::string base_name(std::string_view path) {
  const std::size_t slash = path.find_last_of('/');
  return std::string(slash == std::string_view::npos ? path : path.substr(slash + 1));
}

bool is_regular_file(const std::string& path) {
  struct stat st {};
  return ::stat(path.c_str(), &st) == 0 && S_ISREG(st.st_mode);
}

void parse_ld_conf(const std::string& file, int depth, std::vector<std::string>& dirs) {
  // Include loops in a broken configuration must not recurse forever; ldconfig nests far less.
  if (depth > 8 || !is_regular_file(file)) return;
  std::ifstream in(file);
  std::string line;
  while (std::getline(in, line)) {
    if (const std::size_t hash = line.find('#'); hash != std::string::npos) line.resize(hash);
    const std::string text = trim(line);
    if (text.empty()) continue;
    if (text.rfind("include", 0) == 0 && text.size() > 7 && (text[7] == ' ' || text[7] == '\t')) {
      for (const std::string& word : split(std::string_view(text).substr(8), " \t")) {
        if (word.empty()) continue;
        const std::string pattern = word[0] == '/' ? word : dir_name(file) + "/" + word;
        glob_t g{};
        if (::glob(pattern.c_str(), 0, nullptr, &g) == 0) {
          // glob sorts its results, which is also the order ldconfig reads them in.
          for (std::size_t i = 0; i < g.gl_pathc; ++i) parse_ld_conf(g.gl_pathv[i], depth + 1, dirs);
        }
        ::globfree(&g);
      }
      continue;
    }
    if (text.rfind("hwcap", 0) == 0) continue;
    for (const std::string& dir : split(text, ":, \t"))
      if (!dir.empty() && dir[0] == '/') dirs.push_back(dir);
  }
}

std::vector<std::string> default_library_dirs() {
  return {"/lib", "/usr/lib", "/lib64", "/usr/lib64", std::string("/lib/") + kMultiarch,
          std::string("/usr/lib/") + kMultiarch};
}

std::vector<std::string> loaded_library_basenames() {
  std::vector<std::string> names;
  ::dl_iterate_phdr(
      [](dl_phdr_info* info, std::size_t, void* data) {
        if (info->dlpi_name != nullptr && info->dlpi_name[0] != '\0')
          static_cast<std::vector<std::string>*>(data)->push_back(base_name(info->dlpi_name));
        return 0;
      },
      &names);
  return names;
}

enum class Candidate { kNone, kUsable, kOtherArch };

// A library file the loader would accept for this process: a regular ELF file of our class and machine.
Candidate check_library_candidate(const std::string& path) {
  if (!is_regular_file(path)) return Candidate::kNone;
  Fd fd(::open(path.c_str(), O_RDONLY | O_NONBLOCK | O_CLOEXEC));
  if (fd.get() < 0) return Candidate::kNone;
  struct stat st {};
  if (::fstat(fd.get(), &st) != 0 || !S_ISREG(st.st_mode)) return Candidate::kNone;
  HostEhdr eh{};
  if (pread_full(fd.get(), &eh, sizeof eh, 0) != sizeof eh) return Candidate::kNone;
  if (std::memcmp(eh.e_ident, ELFMAG, SELFMAG) != 0) return Candidate::kNone;  // e.g. a linker script
  if (eh.e_ident[EI_CLASS] != kHostClass || eh.e_ident[EI_DATA] != kHostData || eh.e_machine != kHostMachine)
    return Candidate::kOtherArch;
  return Candidate::kUsable;
}

std::string expand_origin(const std::string& dir, const std::string& origin) {
  std::string out;
  for (std::size_t i = 0; i < dir.size();) {
    if (dir.compare(i, 9, "${ORIGIN}") == 0) {
      out += origin;
      i += 9;
    } else if (dir.compare(i, 7, "$ORIGIN") == 0 &&
               (i + 7 == dir.size() || !(std::isalnum(static_cast<unsigned char>(dir[i + 7])) || dir[i + 7] == '_'))) {
      out += origin;
      i += 7;
    } else {
      out += dir[i++];
    }
  }
  return out;
}

std::string join(const std::vector<std::string>& items, std::string_view sep) {
  std::string out;
  for (const std::string& s : items) {
    if (!out.empty()) out += sep;
    out += s;
  }
  return out;
}

struct DynamicInfo {
  std::vector<std::string> needed;
  std::vector<std::string> runpath;  // DT_RUNPATH if present, else DT_RPATH, as the loader does
};

// Returns "" when every needed library is found, else the reason naming the missing ones.
std::string check_dependencies(const DynamicInfo& dyn, const std::string& plugin_path) {
  if (dyn.needed.empty()) return {};
  std::string abs_path = plugin_path;
  if (abs_path.empty() || abs_path[0] != '/') {
    char cwd[4096];
    if (::getcwd(cwd, sizeof cwd) != nullptr) abs_path = std::string(cwd) + "/" + plugin_path;
  }
  const std::string origin = dir_name(abs_path);

  std::vector<std::string> dirs;
  for (const std::string& d : dyn.runpath)
    if (!d.empty()) dirs.push_back(expand_origin(d, origin));
  if (const char* llp = std::getenv("LD_LIBRARY_PATH"); llp != nullptr && *llp != '\0') {
    // An empty element means the current directory to the loader.
    for (const std::string& d : split(llp, ":;")) dirs.push_back(d.empty() ? "." : d);
  }
  for (const std::string& d : ld_so_conf_directories()) dirs.push_back(d);
  for (const std::string& d : default_library_dirs()) dirs.push_back(d);
  std::vector<std::string> unique_dirs;
  std::set<std::string> seen;
  for (const std::string& d : dirs)
    if (seen.insert(d).second) unique_dirs.push_back(d);

  const std::vector<std::string> loaded = loaded_library_basenames();
  std::vector<std::string> missing;
  std::vector<std::string> other_arch;
  for (const std::string& name : dyn.needed) {
    if (name.find('/') != std::string::npos) {
      // The loader opens such a name as a path, relative to the current directory.
      if (check_library_candidate(name) != Candidate::kUsable) missing.push_back(name);
      continue;
    }
    if (std::find(loaded.begin(), loaded.end(), name) != loaded.end()) continue;
    bool found = false;
    std::string wrong_arch_path;
    for (const std::string& d : unique_dirs) {
      const std::string candidate = d + "/" + name;
      const Candidate c = check_library_candidate(candidate);
      if (c == Candidate::kUsable) {
        found = true;
        break;
      }
      if (c == Candidate::kOtherArch && wrong_arch_path.empty()) wrong_arch_path = candidate;
    }
    if (found) continue;
    missing.push_back(name);
    if (!wrong_arch_path.empty()) other_arch.push_back(wrong_arch_path);
  }
  if (missing.empty()) return {};
  for (std::string& m : missing) m = printable(m);
  for (std::string& p : other_arch) p = printable(p, 4096);
  for (std::string& d : unique_dirs) d = printable(d, 4096);
  std::string reason = (missing.size() == 1 ? "missing dependency " : "missing dependencies ") + join(missing, ", ");
  if (!other_arch.empty()) reason += " (found only for another architecture: " + join(other_arch, ", ") + ")";
  reason += " (searched: " + join(unique_dirs, ":") +
            "): install it or add its directory to LD_LIBRARY_PATH or the plugin's RUNPATH";
  return reason;
}

// Reads DT_NEEDED and DT_RUNPATH/DT_RPATH; returns "" or what is malformed.
std::string read_dynamic(Elf* e, std::size_t shnum, std::size_t dyn_index, std::uint64_t file_size,
                         DynamicInfo& out) {
  Elf_Scn* scn = elf_getscn(e, dyn_index);
  GElf_Shdr sh{};
  if (scn == nullptr || gelf_getshdr(scn, &sh) == nullptr) return "malformed ELF file (dynamic section unreadable)";
  if (!range_in_file(sh.sh_offset, sh.sh_size, file_size))
    return "truncated ELF file (dynamic section past end of file)";
  if (sh.sh_link == 0 || sh.sh_link >= shnum) return "malformed ELF file (dynamic section has no string table)";
  Elf_Scn* str_scn = elf_getscn(e, sh.sh_link);
  GElf_Shdr str_sh{};
  if (str_scn == nullptr || gelf_getshdr(str_scn, &str_sh) == nullptr || str_sh.sh_type != SHT_STRTAB)
    return "malformed ELF file (dynamic string table unreadable)";
  if (!range_in_file(str_sh.sh_offset, str_sh.sh_size, file_size))
    return "truncated ELF file (dynamic string table past end of file)";
  Elf_Data* strings = elf_rawdata(str_scn, nullptr);
  Elf_Data* data = elf_getdata(scn, nullptr);
  if (strings == nullptr || data == nullptr)
    return "malformed ELF file (dynamic section unreadable: " + libelf_error() + ")";
  const std::size_t entry_size = gelf_fsize(e, ELF_T_DYN, 1, EV_CURRENT);
  if (entry_size == 0) return "malformed ELF file (dynamic entry size)";
  const std::size_t count = data->d_size / entry_size;
  std::string rpath;
  std::string runpath;
  bool has_runpath = false;
  for (std::size_t i = 0; i < count; ++i) {
    GElf_Dyn d{};
    if (gelf_getdyn(data, static_cast<int>(i), &d) == nullptr) return "malformed ELF file (dynamic entry unreadable)";
    if (d.d_tag == DT_NULL) break;
    if (d.d_tag != DT_NEEDED && d.d_tag != DT_RPATH && d.d_tag != DT_RUNPATH) continue;
    const char* s = string_at(strings, d.d_un.d_val);
    if (s == nullptr) return "malformed ELF file (dynamic entry names a string outside its string table)";
    if (d.d_tag == DT_NEEDED) {
      if (*s == '\0') return "malformed ELF file (empty DT_NEEDED name)";
      // Each name costs a directory search; a hostile list of millions must not stall discovery.
      if (std::find(out.needed.begin(), out.needed.end(), s) != out.needed.end()) continue;
      if (out.needed.size() >= kMaxNeeded)
        return "malformed ELF file (more than " + std::to_string(kMaxNeeded) + " DT_NEEDED entries)";
      out.needed.emplace_back(s);
    } else if (d.d_tag == DT_RUNPATH) {
      runpath = s;
      has_runpath = true;
    } else {
      rpath = s;
    }
  }
  out.runpath = split(has_runpath ? runpath : rpath, ":");
  return {};
}

ScannedPlugin read_plugin_file_unguarded(const std::string& path) {
  ScannedPlugin out;
  out.path = path;
  auto reject = [&out](std::string why) {
    out.usable = false;
    out.reason = std::move(why);
    return out;
  };

  // stat first so FIFOs and devices are never even opened (opening some devices has side effects);
  // the fstat after open closes the race with a file swapped in between.
  struct stat st {};
  if (::stat(path.c_str(), &st) != 0) return reject("cannot read the file: " + errno_text(errno));
  if (!S_ISREG(st.st_mode)) return reject("not a regular file (" + file_kind(st.st_mode) + ")");
  Fd fd(::open(path.c_str(), O_RDONLY | O_NONBLOCK | O_CLOEXEC));
  if (fd.get() < 0) return reject("cannot open the file: " + errno_text(errno));
  if (::fstat(fd.get(), &st) != 0) return reject("cannot read the file: " + errno_text(errno));
  if (!S_ISREG(st.st_mode)) return reject("not a regular file (" + file_kind(st.st_mode) + ")");
  const auto file_size = static_cast<std::uint64_t>(st.st_size);
  if (file_size == 0) return reject("empty file, not an ELF file");
  if (file_size > kMaxPluginFileSize)
    return reject("file too large (" + std::to_string(file_size) + " bytes, limit " +
                  std::to_string(kMaxPluginFileSize >> 20) + " MiB): not a plugin");

  // Our own look at the header first: clear reasons for the common cases, and hostile section
  // counts are refused before libelf sizes allocations from them.
  HostEhdr eh{};
  const std::size_t got = pread_full(fd.get(), &eh, sizeof eh, 0);
  if (got < SELFMAG || std::memcmp(eh.e_ident, ELFMAG, SELFMAG) != 0) return reject("not an ELF file");
  if (got < EI_NIDENT) return reject("truncated ELF file (header incomplete)");
  if (eh.e_ident[EI_CLASS] != kHostClass) {
    if (eh.e_ident[EI_CLASS] != ELFCLASS32 && eh.e_ident[EI_CLASS] != ELFCLASS64)
      return reject("malformed ELF file (unknown ELF class " + std::to_string(eh.e_ident[EI_CLASS]) + ")");
    const char* theirs = eh.e_ident[EI_CLASS] == ELFCLASS32 ? "a 32-bit" : "a 64-bit";
    return reject(std::string("built as ") + theirs + " ELF file, this process is " +
                  (kHostClass == ELFCLASS64 ? "64-bit" : "32-bit") + ": rebuild the plugin for this platform");
  }
  if (eh.e_ident[EI_DATA] != kHostData)
    return reject("built for another byte order: rebuild the plugin for this platform");
  if (got < sizeof eh) return reject("truncated ELF file (header incomplete)");
  if (eh.e_ident[EI_VERSION] != EV_CURRENT || eh.e_version != EV_CURRENT)
    return reject("malformed ELF file (unknown ELF version)");
  if (eh.e_machine != kHostMachine)
    return reject("built for another architecture (" + machine_name(eh.e_machine) + "), this process is " +
                  machine_name(kHostMachine) + ": rebuild the plugin for this platform");
  if (eh.e_type != ET_DYN)
    return reject(std::string("not a shared library (ELF type ") +
                  (eh.e_type == ET_EXEC ? "ET_EXEC" : eh.e_type == ET_REL ? "ET_REL" : std::to_string(eh.e_type)) +
                  "): build the plugin as a MODULE/shared library");
  if (eh.e_shoff == 0) return reject("not a work-manager plugin: no section table, so no .wmplug section");
  if (eh.e_shentsize != sizeof(HostShdr)) return reject("malformed ELF file (section header size)");
  std::uint64_t shnum = eh.e_shnum;
  if (!range_in_file(eh.e_shoff, sizeof(HostShdr), file_size))
    return reject("truncated ELF file (section table past end of file)");
  if (shnum == 0) {
    // Extended numbering: the real count lives in section 0's sh_size.
    HostShdr first{};
    if (pread_full(fd.get(), &first, sizeof first, eh.e_shoff) != sizeof first)
      return reject("truncated ELF file (section table past end of file)");
    shnum = first.sh_size;
  }
  if (shnum == 0) return reject("not a work-manager plugin: no sections, so no .wmplug section");
  if (shnum > kMaxSections) return reject("malformed ELF file (" + std::to_string(shnum) + " sections)");
  if (!range_in_file(eh.e_shoff, shnum * sizeof(HostShdr), file_size))
    return reject("truncated ELF file (section table past end of file)");

  if (!elf_library_init()) return reject("cannot read ELF files: libelf initialisation failed");
  ElfHandle elf(elf_begin(fd.get(), ELF_C_READ, nullptr));
  if (elf.get() == nullptr) return reject("malformed ELF file (" + libelf_error() + ")");
  Elf* e = elf.get();
  if (elf_kind(e) != ELF_K_ELF) return reject("not an ELF file");
  std::size_t lib_shnum = 0;
  std::size_t shstrndx = 0;
  if (elf_getshdrnum(e, &lib_shnum) != 0 || lib_shnum != shnum)
    return reject("malformed ELF file (section count: " + libelf_error() + ")");
  if (elf_getshdrstrndx(e, &shstrndx) != 0 || shstrndx == 0 || shstrndx >= shnum)
    return reject("malformed ELF file (no section name table)");
  Elf_Scn* names_scn = elf_getscn(e, shstrndx);
  GElf_Shdr names_sh{};
  if (names_scn == nullptr || gelf_getshdr(names_scn, &names_sh) == nullptr || names_sh.sh_type != SHT_STRTAB)
    return reject("malformed ELF file (section name table unreadable)");
  if (!range_in_file(names_sh.sh_offset, names_sh.sh_size, file_size))
    return reject("truncated ELF file (section name table past end of file)");
  Elf_Data* names = elf_rawdata(names_scn, nullptr);
  if (names == nullptr) return reject("malformed ELF file (section name table: " + libelf_error() + ")");

  std::size_t meta_index = 0;
  std::size_t meta_count = 0;
  std::size_t dyn_index = 0;
  for (std::size_t i = 1; i < shnum; ++i) {
    Elf_Scn* scn = elf_getscn(e, i);
    GElf_Shdr sh{};
    if (scn == nullptr || gelf_getshdr(scn, &sh) == nullptr)
      return reject("malformed ELF file (section header " + std::to_string(i) + " unreadable)");
    if (sh.sh_type == SHT_DYNAMIC && dyn_index == 0) dyn_index = i;
    const char* name = string_at(names, sh.sh_name);
    if (name != nullptr && std::strcmp(name, WM_PLUGIN_SECTION) == 0) {
      if (meta_count++ == 0) meta_index = i;
    }
  }
  if (meta_count == 0)
    return reject("not a work-manager plugin: no " WM_PLUGIN_SECTION " section");
  if (meta_count > 1) return reject("malformed plugin: more than one " WM_PLUGIN_SECTION " section");

  Elf_Scn* meta_scn = elf_getscn(e, meta_index);
  GElf_Shdr meta_sh{};
  if (meta_scn == nullptr || gelf_getshdr(meta_scn, &meta_sh) == nullptr)
    return reject("malformed ELF file (" WM_PLUGIN_SECTION " section header unreadable)");
  if (meta_sh.sh_type != SHT_PROGBITS)
    return reject("metadata record malformed: " WM_PLUGIN_SECTION " section has type " +
                  std::to_string(meta_sh.sh_type) + ", expected SHT_PROGBITS");
  if (!range_in_file(meta_sh.sh_offset, meta_sh.sh_size, file_size))
    return reject("truncated ELF file (" WM_PLUGIN_SECTION " section past end of file)");
  constexpr std::size_t kHeaderSize = offsetof(wm_plugin_metadata, name);
  if (meta_sh.sh_size < kHeaderSize)
    return reject("metadata record malformed: " WM_PLUGIN_SECTION " section is only " +
                  std::to_string(meta_sh.sh_size) + " bytes");
  Elf_Data* raw = elf_rawdata(meta_scn, nullptr);
  if (raw == nullptr || raw->d_buf == nullptr || raw->d_size != meta_sh.sh_size)
    return reject("malformed ELF file (" WM_PLUGIN_SECTION " section unreadable: " + libelf_error() + ")");
  const auto* bytes = static_cast<const unsigned char*>(raw->d_buf);
  const std::size_t section_size = raw->d_size;

  // Copy, never cast: the section may be misaligned in the file, and meta must outlive libelf's buffer.
  wm_plugin_metadata record{};
  std::memcpy(&record, bytes, std::min(section_size, sizeof record));
  if (std::memcmp(record.magic, WM_PLUGIN_MAGIC, sizeof record.magic) != 0)
    return reject("metadata record malformed: wrong magic (expected " WM_PLUGIN_MAGIC
                  "): not a work-manager plugin record");

  // The name is shown even for rejected plugins, so it is read under the same rules as a valid one.
  const bool name_readable = section_size >= offsetof(wm_plugin_metadata, name) + sizeof record.name &&
                             is_nul_terminated(record.name, sizeof record.name) && is_backend_name(record.name);
  auto keep_name_only = [&] {
    if (!name_readable) return;
    std::memcpy(out.meta.magic, record.magic, sizeof record.magic);
    out.meta.abi_version = record.abi_version;
    out.meta.record_size = record.record_size;
    std::memcpy(out.meta.name, record.name, sizeof record.name);
    out.has_meta = true;
  };
  if (WM_ABI_MAJOR_OF(record.abi_version) != WM_ABI_MAJOR) {
    keep_name_only();
    return reject(other_major_reason(record.abi_version));
  }
  if (const std::string bad = check_record_size(record.abi_version, record.record_size, section_size); !bad.empty()) {
    keep_name_only();
    return reject("metadata record malformed: " + bad);
  }
  // Same major: read the fields this core knows. A newer minor's record is longer (its additions are
  // ignored); an older minor's is shorter, and the fields it lacks read as zero.
  if (record.record_size < sizeof record)
    std::memset(reinterpret_cast<char*>(&record) + record.record_size, 0, sizeof record - record.record_size);
  if (const std::string bad = validate_record(record); !bad.empty()) {
    keep_name_only();
    return reject("metadata record malformed: " + bad);
  }
  out.meta = record;
  out.has_meta = true;
  // The rule of wm/abi.h, decided here once: the SDK's create() would refuse this core just the same.
  if (min_core_abi_version(record) > WM_ABI_VERSION) return reject(needs_newer_core_reason(record));
  if (WM_ABI_MINOR_OF(record.abi_version) > WM_ABI_MINOR)
    out.note = "built for ABI version " + abi_version_text(record.abi_version) + ", newer than this core's " +
               abi_version_text(WM_ABI_VERSION) + "; it runs on cores of ABI " +
               abi_version_text(min_core_abi_version(record)) + " and later: what the newer minor added is not used";

  if (dyn_index != 0) {
    DynamicInfo dyn;
    if (std::string bad = read_dynamic(e, shnum, dyn_index, file_size, dyn); !bad.empty()) return reject(bad);
    if (std::string missing = check_dependencies(dyn, path); !missing.empty()) return reject(missing);
  }
  out.usable = true;
  out.reason.clear();
  return out;
}

}  // namespace

const std::vector<std::string>& ld_so_conf_directories() {
  static const std::vector<std::string> dirs = [] {
    std::vector<std::string> d;
    parse_ld_conf("/etc/ld.so.conf", 0, d);
    return d;
  }();
  return dirs;
}

ScannedPlugin read_plugin_file(const std::string& path) {
  try {
    return read_plugin_file_unguarded(path);
  } catch (const std::exception& ex) {
    // Discovery must list a bad file, not take the host down (e.g. bad_alloc on a hostile size).
    ScannedPlugin out;
    out.path = path;
    out.reason = std::string("cannot read the file: ") + ex.what();
    return out;
  }
}

namespace {

// Checks one search-path entry before it is listed; kScanned when it is a directory we may read.
DirectoryReport look_at_directory(const std::string& dir) {
  DirectoryReport r;
  r.path = dir;
  if (dir.empty()) {
    r.status = DirectoryStatus::empty_entry;
    r.detail = "empty entry: ignored (it does not mean the current directory); remove the extra ':'";
    return r;
  }
  struct stat st {};
  if (::stat(dir.c_str(), &st) != 0) {
    const int err = errno;
    struct stat link {};
    if (err == ENOENT && ::lstat(dir.c_str(), &link) == 0 && S_ISLNK(link.st_mode)) {
      r.status = DirectoryStatus::missing;
      r.detail = "is a symbolic link to something that does not exist";
    } else if (err == ENOENT) {
      r.status = DirectoryStatus::missing;
      r.detail = "does not exist";
    } else if (err == ENOTDIR) {
      r.status = DirectoryStatus::not_a_directory;
      r.detail = "is not a directory (a part of the path is a file)";
    } else {
      r.status = DirectoryStatus::unreadable;
      r.detail = "cannot be read: " + errno_text(err);
    }
    return r;
  }
  if (!S_ISDIR(st.st_mode)) {
    r.status = DirectoryStatus::not_a_directory;
    r.detail = S_ISREG(st.st_mode) ? std::string("is a file, not a directory: name the directory that holds the plugin")
                                   : "is " + file_kind(st.st_mode) + ", not a directory";
    return r;
  }
  return r;
}

}  // namespace

std::vector<ScannedPlugin> scan_plugin_directories(const std::vector<std::string>& dirs,
                                                   std::vector<DirectoryReport>* report) {
  std::vector<ScannedPlugin> found;
  std::vector<std::pair<std::pair<dev_t, ino_t>, std::string>> scanned;  // identity, first path
  for (const std::string& dir : dirs) {
    DirectoryReport r = look_at_directory(dir);
    if (r.status == DirectoryStatus::scanned) {
      DIR* d = ::opendir(dir.c_str());
      if (d == nullptr) {
        r.status = DirectoryStatus::unreadable;
        r.detail = "cannot be read: " + errno_text(errno);
      } else {
        struct stat st {};
        const bool known = ::fstat(::dirfd(d), &st) == 0;
        const auto same = std::find_if(scanned.begin(), scanned.end(), [&](const auto& s) {
          return known && s.first == std::make_pair(st.st_dev, st.st_ino);
        });
        if (same != scanned.end()) {
          r.status = DirectoryStatus::duplicate;
          r.detail = "the same directory as " + same->second + ": scanned once, there";
        } else {
          if (known) scanned.push_back({{st.st_dev, st.st_ino}, dir});
          std::vector<std::string> names;
          while (const dirent* entry = ::readdir(d)) {
            const std::string_view name = entry->d_name;
            const bool ends_so = name.size() >= 3 && name.substr(name.size() - 3) == ".so";
            if (ends_so || name.find(".so.") != std::string_view::npos) names.emplace_back(name);
          }
          std::sort(names.begin(), names.end());
          const std::string prefix = dir.back() == '/' ? dir : dir + "/";
          for (const std::string& name : names) found.push_back(read_plugin_file(prefix + name));
        }
        ::closedir(d);
      }
    }
    if (report != nullptr) report->push_back(std::move(r));
  }
  return found;
}

std::vector<std::string> split_search_path(std::string_view value) {
  if (value.empty()) return {};
  return split(value, ":");
}

}  // namespace wm::detail
