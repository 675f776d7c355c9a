// SPDX-License-Identifier: MIT
// shared_ref_seeds.cpp: the seed corpus of shared_ref_fuzz.cpp: arrays as bytes (empty, small) and
// references (aimed at this process's regions by the fuzz target: byte 0 bit 1) with good and bad
// offsets and sizes, read as from a worker and as from the master.
#include <cstdint>
#include <fstream>
#include <string>

namespace {

template <class T>
std::string raw(T v) {
  return std::string(reinterpret_cast<const char*>(&v), sizeof v);
}

std::string reference(std::int64_t pid, std::int32_t fd, std::uint64_t ino, std::uint64_t offset, std::uint64_t bytes) {
  return std::string(1, '\1') + raw(pid) + raw(fd) + raw(ino) + raw(offset) + raw(bytes);
}

}  // namespace

int main(int argc, char** argv) {
  if (argc < 2) return 2;
  const std::string dir = argv[1];
  int n = 0;
  auto put = [&](std::uint8_t how, const std::string& body) {
    std::ofstream(dir + "/seed-" + std::to_string(n++), std::ios::binary) << std::string(1, static_cast<char>(how)) + body;
  };
  put(0, std::string(1, '\0') + raw<std::uint64_t>(0));
  put(0, std::string(1, '\0') + raw<std::uint64_t>(8) + std::string(8, 'x'));
  for (std::uint8_t how : {2, 3, 6, 7}) {
    // The pid is filled in as 0 here: the fuzzer finds this process's own (the seeds cannot know it).
    put(how, reference(0, 0, 0, 4096, 4096));
    put(how, reference(0, 0, 0, 4096, std::uint64_t(1) << 18));
    put(how, reference(0, 0, 0, 4096 + 64, 64));
    put(how, reference(0, 0, 0, 0, 4096));
    put(how, reference(0, 0, 0, 4096, std::uint64_t(1) << 40));
  }
  return 0;
}
