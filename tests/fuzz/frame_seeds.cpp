// frame_seeds.cpp: the seed corpus of frame_fuzz.cpp, written from real frames at build time into
// the directory given: streams of task, stop, reply and lent frames, a hello, a task listing. The
// first byte of a stream seed is the chunk size frame_fuzz.cpp feeds the stream reader with.
#include <wm/sdk/remote/frame.hpp>
#include <wm/sdk/remote/registry.hpp>

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

}  // namespace

int main(int argc, char** argv) {
  if (argc < 2) return 2;
  const std::string dir = argv[1];
  remote::TaskListing listing;
  listing.tasks.push_back({"square", 123, "int (int)", ""});
  listing.tasks.push_back({"lib::f", 9, "void ()", "/x/lib.so"});
  listing.libraries.push_back({"/x/lib.so", "0a1b2c"});
  remote::Hello hello;
  hello.index = 1;
  hello.pid = 4242;
  hello.rank = 2;
  hello.host = "node7";
  hello.extension = listing.encode();
  hello.n_tasks = 2;
  const std::string hello_bytes = remote::encode_hello(hello);
  const std::uint64_t len = 64;
  const std::string lent(reinterpret_cast<const char*>(&len), sizeof len);
  put(dir + "/hello_stream", std::string(1, '\x07') + frame(remote::kFrameHello, 0, hello_bytes));
  put(dir + "/tasks_stream", std::string(1, '\x01') + frame(remote::kFrameTask, 1, "WMQ1request") +
                                 frame(remote::kFrameTask, 2, "x") + frame(remote::kFrameStop, 0, ""));
  put(dir + "/replies", frame(remote::kFrameReply, 1, std::string("WMP1\0ok", 7)) +
                            frame(remote::kFrameReplyLent, 2, lent) +
                            frame(remote::kFrameTaskLent, 3, lent, remote::kFlagReplyMayLend | 3));
  put(dir + "/hello_payload", hello_bytes);
  put(dir + "/listing", listing.encode());
  put(dir + "/big_stream", std::string(1, '\x60') + frame(remote::kFrameTask, 9, std::string(300000, 'z')));
  return 0;
}
