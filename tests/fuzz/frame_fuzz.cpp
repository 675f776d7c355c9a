// SPDX-License-Identifier: MIT
// frame_fuzz.cpp: libFuzzer target for the remote engine's readers of untrusted bytes: a link's
// demultiplexer fed in pieces of every size, both ways a transport delivers them (read into the
// engine's buffer, or a message read in place), with the master's and the worker's link protocol on
// top (lent storage, payloads, grants, hello, setup), and the hello, setup and task listing
// records. No crash, no hang, no sanitizer report; every frame handed on lies within the bytes.
#include "frame.hpp"
#include "link.hpp"
#include "registry.hpp"

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

// Touch every byte a link hands on: ASan reports any lie.
void touch(const char* p, std::size_t n) {
  volatile char sink = 0;
  for (std::size_t i = 0; i < n; ++i) sink = static_cast<char>(sink ^ p[i]);
}

char g_region[4096];  // the "shared storage" of both stubs

struct StubTransport final : remote::Transport, remote::MasterLinkEvents {
  remote::Buffer out;
  bool caps_storage = false, caps_payloads = false;
  bool failed = false, payload_due = false;
  remote::Buffer payload;
  remote::Capabilities capabilities() const override {
    remote::Capabilities c;
    c.shared_storage = caps_storage;
    c.payloads = caps_payloads;
    c.batch_limit = caps_payloads ? 65536 : 0;
    return c;
  }
  void start(remote::TransportHost&) override {}
  bool launch(remote::WorkerId, const remote::WorkerSetup&) override { return true; }
  remote::Buffer& outbox(remote::WorkerId) override { return out; }
  void flush(remote::WorkerId) override { out.size = 0; }
  void stop_worker(remote::WorkerId) override {}
  int progress(int) override { return 0; }
  void wake() override {}
  const char* lent_reply(remote::WorkerId, std::size_t size) override { return size <= sizeof g_region ? g_region : nullptr; }
  bool receive_payload(remote::WorkerId, remote::Buffer&& into) override {
    if (into.size > (std::size_t(1) << 20)) return false;  // no 64 GiB allocations in a fuzzer
    payload = std::move(into);
    payload_due = true;
    return true;
  }
  void hello(remote::WorkerId, const char* data, std::size_t size) override {
    remote::Hello h;
    std::string why;
    if (remote::parse_hello(data, size, h, why)) check(remote::encode_hello(h) == std::string(data, size));
  }
  void reply(remote::WorkerId, std::uint64_t, const char* data, std::size_t size, const wm_shared_block*) override {
    touch(data, size);
  }
  void bye(remote::WorkerId) override {}
  void broken(remote::WorkerId, const std::string& why) override {
    check(!why.empty());
    failed = true;
  }
};

struct StubPort final : remote::Port, remote::WorkerLinkEvents {
  remote::Buffer out;
  bool failed = false, paused = false;
  std::size_t due = 0;
  remote::WorkerLink* link = nullptr;
  remote::Capabilities capabilities() const override {
    remote::Capabilities c;
    c.shared_storage = true;
    return c;
  }
  void start(remote::PortHost&) override {}
  int progress(int) override { return 0; }
  remote::Buffer& outbox() override { return out; }
  bool flush() override {
    out.size = 0;
    return true;
  }
  const char* lent_request(std::size_t size) override { return size <= sizeof g_region ? g_region : nullptr; }
  void setup(const remote::WorkerSetup& s, const char* raw, std::size_t size) override {
    check(remote::encode_setup(s) == std::string(raw, size));
  }
  void task_ref(const remote::Incoming& t, const wm_shared_ref& ref) override {
    check(ref.size != 0 && t.size == ref.size);
    wm_shared_ref again{};
    std::string why;
    check(remote::parse_ref(remote::encode_ref(ref).data(), remote::encode_ref(ref).size(), again, why));
  }
  void task(const remote::Incoming& t) override { touch(t.data, t.size); }
  void task_payload(const remote::Incoming& t) override {
    due = t.size;
    paused = true;
    link->pause();
  }
  void stop() override {}
  void broken(const std::string& why) override {
    check(!why.empty());
    failed = true;
  }
};

// Hands the stream to an inbox in pieces whose sizes follow from `seed`: read into the engine's
// buffer (space/produced, then arrived), or handed over as messages (received), alternately.
template <class Arrived, class Received, class Stop>
void feed(remote::Inbox& inbox, const std::uint8_t* data, std::size_t size, std::uint8_t seed, Arrived arrived,
          Received received, Stop stop) {
  std::uint32_t x = seed * 2654435761u + 1;
  std::size_t at = 0;
  for (int round = 0; at < size && round < 20000 && !stop(); ++round) {
    x = x * 1103515245u + 12345u;
    std::size_t n = 1 + (x >> 16) % 97;
    if ((x >> 8) % 16 == 0) n = 4096 + (x >> 4) % 300000;  // sometimes a large piece
    n = std::min(n, size - at);
    if ((x >> 12) & 1) {
      received(reinterpret_cast<const char*>(data + at), n);
      at += n;
    } else {
      for (std::size_t left = n; left > 0;) {
        auto [p, cap] = inbox.space();
        check(cap > 0);
        const std::size_t k = std::min(cap, left);
        std::memcpy(p, data + at, k);
        inbox.produced(k);
        at += k;
        left -= k;
      }
      arrived();
    }
  }
}

void master_side(const std::uint8_t* data, std::size_t size, std::uint8_t mode, std::uint8_t seed) {
  StubTransport t;
  t.caps_storage = (mode & 4) != 0;
  t.caps_payloads = (mode & 8) != 0;
  remote::MasterLink link(t, 0, t, std::size_t(1) << 16);
  // Requests out, so that replies (lent ones too) have tasks to answer and grants to use.
  for (std::uint64_t seq = 1; seq <= 4; ++seq) link.send_request(seq, 5, remote::CopyEncoder("hello", 5));
  feed(
      link.inbox(), data, size, seed,
      [&] {
        link.arrived();
        if (t.payload_due) {
          t.payload_due = false;
          touch(t.payload.data, t.payload.size);
          link.payload_received(std::move(t.payload));
        }
      },
      [&](const char* p, std::size_t n) { link.received(p, n); }, [&] { return t.failed; });
}

void worker_side(const std::uint8_t* data, std::size_t size, std::uint8_t seed) {
  StubPort port;
  remote::WorkerLink link(port, port, std::size_t(1) << 16);
  port.link = &link;
  auto resume = [&] {
    while (port.paused && !port.failed) {
      port.paused = false;
      link.resume();
    }
  };
  feed(
      link.inbox(), data, size, seed,
      [&] {
        link.arrived();
        resume();
      },
      [&](const char* p, std::size_t n) {
        link.received(p, n);
        resume();
      },
      [&] { return port.failed; });
}

void records(const std::uint8_t* data, std::size_t size) {
  const char* p = reinterpret_cast<const char*>(data);
  remote::Hello hello;
  std::string why;
  if (remote::parse_hello(p, size, hello, why)) check(remote::encode_hello(hello) == std::string(p, size));
  remote::WorkerSetup setup;
  if (remote::parse_setup(p, size, setup, why)) check(remote::encode_setup(setup) == std::string(p, size));
  remote::TaskListing listing;
  if (remote::TaskListing::parse(p, size, listing, why)) {
    check(listing.encode() == std::string(p, size));
    (void)remote::compare_listings(remote::TaskListing{}, listing, "worker 0");
  }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  if (size < 2) return 0;
  const std::uint8_t mode = data[0], seed = data[1];
  data += 2;
  size -= 2;
  if (mode & 2) return records(data, size), 0;
  if (mode & 1)
    worker_side(data, size, seed);
  else
    master_side(data, size, mode, seed);
  return 0;
}
