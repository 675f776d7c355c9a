// SPDX-License-Identifier: MIT
// plugin_scan.hpp: plugin discovery that reads each file's metadata record without loading it.
#ifndef WM_CORE_PLUGIN_SCAN_HPP
#define WM_CORE_PLUGIN_SCAN_HPP

#include <wm/abi.h>

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

namespace wm::detail {

struct ScannedPlugin {
  std::string path;           // file path as scanned
  bool usable = false;        // true: metadata valid, ABI matches, dependencies found
  std::string reason;         // when !usable: one line saying what is wrong and what to do
  wm_plugin_metadata meta{};  // valid when usable; when the record was readable but rejected (e.g. ABI
                              // mismatch), still filled so the name can be shown
  bool has_meta = false;      // meta holds a readable record: at least meta.name is a valid backend
                              // name; the other fields are only trustworthy when usable
  std::string note;           // when usable: anything worth knowing (e.g. built for a newer ABI minor)
};

// What became of one entry of the plugin search path.
enum class DirectoryStatus {
  scanned,          // listed (it may hold no plugin)
  duplicate,        // the same directory as an earlier entry: scanned once, there
  missing,          // does not exist
  not_a_directory,  // a file (or FIFO, device...) where a directory was expected
  unreadable,       // exists but cannot be listed (permissions)
  empty_entry       // an empty entry of a colon-separated path
};

struct DirectoryReport {
  std::string path;
  DirectoryStatus status = DirectoryStatus::scanned;
  std::string detail;  // unless scanned: one line saying why (and, for duplicate, the earlier entry)
};

// Reads one file. Never loads it, never runs its code, never crashes or hangs on any input (FIFO,
// directory, device, truncated, fuzzed, huge, wrong architecture, text file named x.so...). Only
// regular files are opened, and at most kMaxPluginFileSize bytes of them are considered.
ScannedPlugin read_plugin_file(const std::string& path);

// Scans directories in the given order, non-recursively, files whose name ends in ".so" or contains
// ".so."; sorted by file name within a directory. A directory listed twice is scanned once. Returns
// all files found, usable or not; what became of each directory (one report per entry of dirs, in
// order: missing, a file, unreadable, empty...) goes to *report when given.
std::vector<ScannedPlugin> scan_plugin_directories(const std::vector<std::string>& dirs,
                                                   std::vector<DirectoryReport>* report = nullptr);

// The entries of a colon-separated search path such as WM_PLUGIN_PATH, empty ones included (so they
// can be reported); an empty value has no entries.
std::vector<std::string> split_search_path(std::string_view value);

// Larger files are refused unread: no real plugin comes near it, and it bounds what a hostile
// file can make discovery allocate.
inline constexpr std::uint64_t kMaxPluginFileSize = 512ull << 20;

// Directories named by /etc/ld.so.conf and its includes, read once per process.
const std::vector<std::string>& ld_so_conf_directories();

}  // namespace wm::detail

#endif  // WM_CORE_PLUGIN_SCAN_HPP
