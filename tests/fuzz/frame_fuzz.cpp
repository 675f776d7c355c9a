// frame_fuzz.cpp: libFuzzer target for the remote engine's readers of untrusted bytes: the stream
// frame reader (fed in chunks of every size, as a socket delivers them), the message frame cursor,
// the hello and the task listing of the registry handshake. No crash, no hang, no sanitizer report;
// every frame a reader accepts is one a writer could have made.
#include <wm/sdk/remote/frame.hpp>
#include <wm/sdk/remote/registry.hpp>

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <string>

namespace remote = wm::sdk::remote;

namespace {

void check(bool ok) {
  if (!ok) std::abort();
}

// The stream reader, with reads of the sizes the first bytes choose.
void stream(const std::uint8_t* data, std::size_t size) {
  if (size < 1) return;
  const std::size_t step = 1 + data[0] % 97;
  data += 1;
  size -= 1;
  static remote::FrameReader reader;  // its 1 MiB buffer is made once
  reader.reset();
  std::size_t at = 0;
  int frames = 0;
  while (at < size && frames < 10000) {
    auto [p, cap] = reader.space();
    const std::size_t n = std::min({cap, step, size - at});
    std::memcpy(p, data + at, n);
    reader.produced(n);
    at += n;
    for (;;) {
      remote::FrameHeader h;
      const char* payload = nullptr;
      std::string why;
      const auto st = reader.next(h, payload, why);
      if (st == remote::FrameReader::Status::bad) {
        check(!why.empty());
        return;  // a stream cannot be trusted after a bad frame: the transport closes it
      }
      if (st == remote::FrameReader::Status::need_more) break;
      check(remote::check_header(h).empty());
      // Touch every byte the reader says is payload: ASan reports any lie.
      volatile char sink = 0;
      for (std::uint64_t i = 0; i < h.len; ++i) sink = static_cast<char>(sink ^ payload[i]);
      if (h.type == remote::kFrameHello) {
        remote::Hello hello;
        remote::parse_hello(payload, static_cast<std::size_t>(h.len), hello, why);
      }
      std::uint64_t len = 0;
      if (h.type == remote::kFrameReplyLent) (void)remote::lent_length(h, payload, len);
      reader.consume();
      ++frames;
    }
  }
}

// One message of frames back to back.
void message(const std::uint8_t* data, std::size_t size) {
  remote::FrameCursor cursor(reinterpret_cast<const char*>(data), size);
  for (int i = 0; i < 10000; ++i) {
    remote::FrameHeader h;
    const char* payload = nullptr;
    std::string why;
    const auto st = cursor.next(h, payload, why);
    if (st != remote::FrameCursor::Status::frame) {
      check(st == remote::FrameCursor::Status::end || !why.empty());
      return;
    }
    check(payload >= reinterpret_cast<const char*>(data) &&
          payload + h.len <= reinterpret_cast<const char*>(data) + size);
  }
}

void hello_and_listing(const std::uint8_t* data, std::size_t size) {
  const char* p = reinterpret_cast<const char*>(data);
  remote::Hello hello;
  std::string why;
  if (remote::parse_hello(p, size, hello, why)) {
    // What parses must survive a round trip unchanged.
    const std::string again = remote::encode_hello(hello);
    check(again.size() == size && std::memcmp(again.data(), p, size) == 0);
  }
  remote::TaskListing listing;
  if (remote::TaskListing::parse(p, size, listing, why)) {
    check(listing.encode() == std::string(p, size));
    const std::string report = remote::compare_listings(remote::TaskListing{}, listing, "worker 0");
    (void)report;
  }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  stream(data, size);
  message(data, size);
  hello_and_listing(data, size);
  return 0;
}
