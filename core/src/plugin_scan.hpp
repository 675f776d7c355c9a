// plugin_scan.hpp: plugin discovery that reads each file's metadata record without loading it.
#ifndef WM_CORE_PLUGIN_SCAN_HPP
#define WM_CORE_PLUGIN_SCAN_HPP

#include <wm/abi.h>

#include <cstdint>
#include <string>
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
};

// Reads one file. Never loads it, never runs its code, never crashes or hangs on any input (FIFO,
// directory, device, truncated, fuzzed, huge, wrong architecture, text file named x.so...). Only
// regular files are opened, and at most kMaxPluginFileSize bytes of them are considered.
ScannedPlugin read_plugin_file(const std::string& path);

// Scans directories in the given order, non-recursively, files whose name ends in ".so" or contains
// ".so."; sorted by file name within a directory. A missing/unreadable directory is skipped silently
// (the caller reports the list of directories); a directory listed twice is scanned once. Returns
// all files found, usable or not.
std::vector<ScannedPlugin> scan_plugin_directories(const std::vector<std::string>& dirs);

// Larger files are refused unread: no real plugin comes near it, and it bounds what a hostile
// file can make discovery allocate.
inline constexpr std::uint64_t kMaxPluginFileSize = 512ull << 20;

// Directories named by /etc/ld.so.conf and its includes, read once per process.
const std::vector<std::string>& ld_so_conf_directories();

}  // namespace wm::detail

#endif  // WM_CORE_PLUGIN_SCAN_HPP
