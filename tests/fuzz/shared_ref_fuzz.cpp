// SPDX-License-Identifier: MIT
// shared_ref_fuzz.cpp: the master's reading of the shared-array references a worker sends (issue
// 23): arbitrary bytes decoded as a wm::SharedArray with references allowed, as from a worker whose
// pid is this process's (so that the descriptors the input names are real ones of this process),
// and as from a master (trusted, mapped read-only). Every array that decodes is read to its end:
// a view past its region would fault. This process holds two real regions to aim at.
//
// Input: byte 0 chooses the reading (bit 0: as from the master) and whether bytes 9-12 and 13-20 of
// the reference (its descriptor and inode, and bytes 1-8, its pid) are replaced by those of region (bit 2) of this process
// (bit 1), so that the fuzzer explores offsets and sizes against a real region; the rest is the
// encoded array (a tag byte, then the bytes or the reference).
#include "shared_memory.hpp"

#include <wm/detail/codec.hpp>
#include <wm/shared_array.hpp>

#include <dirent.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cstdint>
#include <cstring>
#include <string>
#include <vector>

namespace {

struct Target {
  std::int32_t fd = -1;
  std::uint64_t ino = 0;
};

// The regions this process holds, found by their descriptors' names.
std::vector<Target> regions() {
  std::vector<Target> out;
  if (DIR* d = opendir("/proc/self/fd")) {
    while (dirent* e = readdir(d)) {
      char link[256] = {};
      const std::string path = std::string("/proc/self/fd/") + e->d_name;
      if (readlink(path.c_str(), link, sizeof link - 1) <= 0 || std::strstr(link, "wm-shared-array") == nullptr) continue;
      struct stat st;
      const int fd = std::atoi(e->d_name);
      if (fstat(fd, &st) == 0) out.push_back({fd, static_cast<std::uint64_t>(st.st_ino)});
    }
    closedir(d);
  }
  return out;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  static const auto held = [] {
    std::vector<wm::SharedArray<std::uint32_t>> a;
    a.push_back(wm::make_shared_array<std::uint32_t>(std::size_t(1) << 16, 1u));  // 256 KiB
    a.push_back(wm::make_shared_array<std::uint32_t>(std::size_t(1) << 19, 2u));  // 2 MiB
    return a;
  }();
  static const std::vector<Target> targets = regions();
  (void)held;
  if (size < 1) return 0;
  const std::uint8_t how = data[0];
  std::vector<char> bytes(reinterpret_cast<const char*>(data) + 1, reinterpret_cast<const char*>(data) + size);
  if ((how & 2) != 0 && !targets.empty() && bytes.size() >= 21 && bytes[0] == 1) {
    const Target& t = targets[(how >> 2) % targets.size()];
    const std::int64_t pid = getpid();
    std::memcpy(bytes.data() + 1, &pid, sizeof pid);
    std::memcpy(bytes.data() + 9, &t.fd, sizeof t.fd);
    std::memcpy(bytes.data() + 13, &t.ino, sizeof t.ino);
  }
  const bool from_master = (how & 1) != 0;
  wm::detail::ShareDecodeScope scope(true, from_master ? 0 : static_cast<std::int64_t>(getpid()));
  try {
    wm::detail::WireInputArchive ar(bytes.data(), bytes.size());
    wm::SharedArray<std::uint32_t> a;
    ar(a);
    std::uint64_t sum = 0;
    for (std::uint32_t x : std::as_const(a)) sum += x;
    volatile std::uint64_t keep = sum;
    (void)keep;
  } catch (const std::exception&) {
  }
  return 0;
}
