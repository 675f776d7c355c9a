// SPDX-License-Identifier: MIT
// frame_seeds.cpp: the seed corpus of frame_fuzz.cpp, written from real frames at build time into
// the directory given: what a master sends a worker (setup, tasks, lent and payload tasks, stop)
// and what a worker sends back (hello, replies of every kind, bye), a hello, a setup, a task
// listing. The first two bytes of a seed choose how frame_fuzz.cpp cuts it into pieces.
#include "frame.hpp"
#include "registry.hpp"

#include <cstdint>
#include <fstream>
#include <string>

namespace remote = wm::sdk::remote;

namespace {

void put(const std::string& path, const std::string& bytes) { std::ofstream(path, std::ios::binary) << bytes; }

std::string frame(std::uint8_t type, std::uint64_t seq, const std::string& payload, std::uint16_t flags = 0) {
  const remote::FrameHeader h = remote::make_header(type, seq, payload.size(), flags);
  return std::string(reinterpret_cast<const char*>(&h), sizeof h) + payload;
}

std::string length(std::uint64_t n) { return std::string(reinterpret_cast<const char*>(&n), sizeof n); }

}  // namespace

int main(int argc, char** argv) {
  if (argc < 2) return 2;
  const std::string dir = argv[1];
  remote::TaskListing listing;
  listing.tasks.push_back({"square", 123, "int (int)", ""});
  listing.tasks.push_back({"lib::f", 9, "void ()", "/x/lib.so"});
  listing.libraries.push_back({"/x/lib.so", "0a1b2c"});
  remote::Hello hello;
  hello.index = 0;
  hello.pid = 4242;
  hello.rank = 2;
  hello.host = "node7";
  hello.extension = listing.encode();
  hello.n_tasks = 2;
  const std::string hello_bytes = remote::encode_hello(hello);
  remote::WorkerSetup setup;
  setup.index = 0;
  setup.seed = 99;
  const std::string setup_bytes = remote::encode_setup(setup);
  // Bytes a worker receives (the first byte's low bit sends them to a worker's link).
  put(dir + "/to_worker", std::string("\x01\x07", 2) + frame(remote::kFrameSetup, 0, setup_bytes) +
                              frame(remote::kFrameTask, 1, "WMQ1request", remote::kFlagReplyMayLend) +
                              frame(remote::kFrameTaskLent, 2, length(64)) +
                              frame(remote::kFrameTaskPayload, 3, length(100)) + frame(remote::kFrameStop, 0, ""));
  // Bytes a master receives.
  put(dir + "/to_master", std::string("\x00\x03", 2) + frame(remote::kFrameHello, 0, hello_bytes) +
                              frame(remote::kFrameReply, 1, std::string("WMP1\0ok", 7)) +
                              frame(remote::kFrameReplyLent, 2, length(64)) +
                              frame(remote::kFrameReplyPayload, 3, length(100)) + frame(remote::kFrameBye, 0, ""));
  put(dir + "/big", std::string("\x00\x60", 2) + frame(remote::kFrameReply, 9, std::string(300000, 'z')));
  put(dir + "/hello_payload", std::string("\x02\x01", 2) + hello_bytes);
  put(dir + "/setup_payload", std::string("\x02\x01", 2) + setup_bytes);
  put(dir + "/listing", std::string("\x02\x01", 2) + listing.encode());
  return 0;
}
