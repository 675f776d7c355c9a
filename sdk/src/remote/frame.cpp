// SPDX-License-Identifier: MIT
// frame.cpp: the frame format's checks, the hello and the setup, and the demultiplexer.
#include "frame.hpp"

#include <wm/sdk/remote/record.hpp>

#include <algorithm>
#include <cmath>

namespace wm::sdk::remote {

std::string check_header(const FrameHeader& h) {
  if (h.magic != kFrameMagic) return "a frame does not start with the frame marker (corrupt bytes, or not a wm peer)";
  if (h.version != kWireVersion)
    return "the peer speaks wire version " + std::to_string(h.version) + " and this build speaks version " +
           std::to_string(kWireVersion) + ": master and workers must run the same build of wm";
  if (h.type == 0 || h.type > kFrameLast) return "unknown frame type " + std::to_string(h.type);
  if (h.len > kMaxFrameLen) return "a frame announces " + std::to_string(h.len) + " bytes";
  return {};
}

// ---------------------------------------------------------------- hello and setup

namespace {

constexpr std::uint16_t kHelloVersion = 2;
constexpr std::uint16_t kSetupVersion = 2;
constexpr std::uint16_t kRefVersion = 1;
constexpr std::uint32_t kMaxHost = 4096;
constexpr std::uint32_t kMaxExtension = 1u << 20;
constexpr std::uint32_t kMaxResources = 64;
constexpr std::uint32_t kMaxResourceName = 64;

// A record starts with its version and a reserved zero; false (with why) if it is not `version`.
bool record_version(RecordReader& in, std::uint16_t version, const char* what, std::string& why) {
  std::uint16_t v = 0, reserved = 0;
  if (!in.get(v) || !in.get(reserved)) {
    why = std::string("a ") + what + " too short for its version";
    return false;
  }
  if (v != version) {
    why = std::string("a ") + what + " of version " + std::to_string(v) + " (this build reads version " +
          std::to_string(version) + ")";
    return false;
  }
  if (reserved != 0) {
    why = std::string("a ") + what + " whose reserved field is not zero";
    return false;
  }
  return true;
}

bool record_done(const RecordReader& in, const char* what, std::string& why) {
  if (in.done()) return true;
  why = std::string("a ") + what + " with " + std::to_string(in.left()) + " bytes left over";
  return false;
}

}  // namespace

std::string encode_hello(const Hello& h) {
  RecordWriter w;
  w.put(kHelloVersion).put(std::uint16_t(0)).put(h.index).put(h.pid).put(h.rank).text(h.host, kMaxHost);
  w.put(h.registry_digest).put(h.n_tasks).text(h.extension);
  w.put(static_cast<std::uint32_t>(std::min<std::size_t>(h.resources.size(), kMaxResources)));
  for (std::size_t i = 0; i < h.resources.size() && i < kMaxResources; ++i)
    w.text(h.resources[i].first, kMaxResourceName).put(h.resources[i].second);
  return std::move(w.bytes);
}

bool parse_hello(const char* data, std::size_t size, Hello& out, std::string& why) {
  RecordReader in(data, size);
  if (!record_version(in, kHelloVersion, "hello", why)) return false;
  Hello h;
  if (!in.get(h.index) || !in.get(h.pid) || !in.get(h.rank) || !in.text(h.host, kMaxHost) ||
      !in.get(h.registry_digest) || !in.get(h.n_tasks) || !in.text(h.extension, kMaxExtension)) {
    why = "a truncated or malformed hello";
    return false;
  }
  std::uint32_t n_resources = 0;
  if (!in.get(n_resources) || n_resources > kMaxResources) {
    why = "a hello without a valid resource count";
    return false;
  }
  for (std::uint32_t i = 0; i < n_resources; ++i) {
    std::string name;
    double amount = 0;
    if (!in.text(name, kMaxResourceName) || !in.get(amount)) {
      why = "a hello with a truncated resource";
      return false;
    }
    // Sorted, distinct, finite and not negative: what the master compares tasks' needs with.
    if (name.empty() || !std::isfinite(amount) || amount < 0 ||
        (!h.resources.empty() && h.resources.back().first >= name)) {
      why = "a hello with a malformed resource list";
      return false;
    }
    h.resources.emplace_back(std::move(name), amount);
  }
  if (!record_done(in, "hello", why)) return false;
  out = std::move(h);
  return true;
}

std::string encode_setup(const WorkerSetup& s) {
  RecordWriter w;
  w.put(kSetupVersion).put(std::uint16_t(0)).put(s.index).put(s.seed).put(s.spin_us).put(s.keep_memory_mib);
  w.put(std::uint8_t(s.share_memory ? 1 : 0));
  return std::move(w.bytes);
}

std::string encode_ref(const wm_shared_ref& r) {
  RecordWriter w;
  w.put(kRefVersion).put(std::uint16_t(0)).put(r.pid).put(r.fd).put(r.ino).put(r.offset).put(r.size);
  return std::move(w.bytes);
}

bool parse_ref(const char* data, std::size_t size, wm_shared_ref& out, std::string& why) {
  RecordReader in(data, size);
  if (!record_version(in, kRefVersion, "request reference", why)) return false;
  wm_shared_ref r{};
  if (!in.get(r.pid) || !in.get(r.fd) || !in.get(r.ino) || !in.get(r.offset) || !in.get(r.size)) {
    why = "a truncated request reference";
    return false;
  }
  if (!record_done(in, "request reference", why)) return false;
  if (r.pid <= 0 || r.fd < 0 || r.size == 0) {
    why = "a request reference with a bad process, descriptor or size";
    return false;
  }
  out = r;
  return true;
}

bool parse_setup(const char* data, std::size_t size, WorkerSetup& out, std::string& why) {
  RecordReader in(data, size);
  if (!record_version(in, kSetupVersion, "setup", why)) return false;
  WorkerSetup s;
  std::uint8_t share = 0;
  if (!in.get(s.index) || !in.get(s.seed) || !in.get(s.spin_us) || !in.get(s.keep_memory_mib) || !in.get(share)) {
    why = "a truncated setup";
    return false;
  }
  if (!record_done(in, "setup", why)) return false;
  if (s.index < 0 || s.spin_us < 0 || s.keep_memory_mib < 0 || share > 1) {
    why = "a setup with a negative index, spin window or memory budget, or a bad flag";
    return false;
  }
  s.share_memory = share == 1;
  out = s;
  return true;
}

// ---------------------------------------------------------------- the demultiplexer

Demux::Demux() = default;

void Demux::reset() {
  beg_ = small_.size = 0;
  ext_ = nullptr;
  ext_pos_ = ext_len_ = 0;
  in_big_ = false;
  big_.size = 0;
  last_ = Last::none;
}

void Demux::drop_last() {
  switch (last_) {
    case Last::small:
      beg_ += last_len_;
      if (beg_ == small_.size) beg_ = small_.size = 0;
      break;
    case Last::ext: ext_pos_ += last_len_; break;
    case Last::big:
      in_big_ = false;
      big_.size = 0;
      break;
    case Last::none: break;
  }
  last_ = Last::none;
}

std::pair<char*, std::size_t> Demux::space() {
  drop_last();
  keep();
  if (in_big_ && big_.size < big_hdr_.len) return {big_.data + big_.size, big_hdr_.len - big_.size};
  if (beg_ != 0) {
    std::memmove(small_.data, small_.data + beg_, small_.size - beg_);
    small_.size -= beg_;
    beg_ = 0;
  }
  // Made at the first read (message transports read in place and may never need it); full only of
  // frames nobody read yet (the engine waits for a payload meanwhile): it grows.
  if (small_.capacity == 0) small_.reserve(kBufSize);
  if (small_.capacity - small_.size < sizeof(FrameHeader)) small_.reserve(small_.capacity * 2);
  return {small_.data + small_.size, small_.capacity - small_.size};
}

void Demux::take(std::size_t n) {
  if (in_big_ && big_.size < big_hdr_.len)
    big_.size += n;
  else
    small_.size += n;
}

void Demux::absorb(const char* p, std::size_t n) {
  while (n > 0) {
    auto [q, cap] = space();
    const std::size_t m = std::min(cap, n);
    std::memcpy(q, p, m);
    take(m);
    p += m;
    n -= m;
  }
}

void Demux::feed(const char* data, std::size_t size) {
  drop_last();
  keep();
  if (beg_ != small_.size || in_big_) {
    absorb(data, size);
    return;
  }
  ext_ = data;
  ext_pos_ = 0;
  ext_len_ = size;
}

void Demux::keep() {
  if (ext_ == nullptr) return;
  if (last_ == Last::ext) drop_last();
  const char* rest = ext_ + ext_pos_;
  const std::size_t n = ext_len_ - ext_pos_;
  ext_ = nullptr;
  ext_pos_ = ext_len_ = 0;
  absorb(rest, n);
}

Demux::Status Demux::next(Frame& f, std::string& why) {
  drop_last();
  FrameHeader h;
  if (in_big_) {
    if (big_.size < big_hdr_.len) return Status::need_more;
    h = big_hdr_;
    f = Frame{h.type, h.flags, h.seq, big_.data, static_cast<std::size_t>(h.len)};
    last_ = Last::big;
    return Status::frame;
  }
  if (beg_ == small_.size && ext_ != nullptr) {
    // A fed message: its complete frames are read where they are.
    const std::size_t avail = ext_len_ - ext_pos_;
    if (avail == 0) return Status::need_more;
    if (avail >= sizeof h) {
      std::memcpy(&h, ext_ + ext_pos_, sizeof h);
      why = check_header(h);
      if (!why.empty()) return Status::bad;
      if (avail - sizeof h >= h.len) {
        f = Frame{h.type, h.flags, h.seq, ext_ + ext_pos_ + sizeof h, static_cast<std::size_t>(h.len)};
        last_ = Last::ext;
        last_len_ = sizeof h + static_cast<std::size_t>(h.len);
        return Status::frame;
      }
    }
    keep();  // a frame continues in the next message: what is here waits in the buffer
  }
  const std::size_t avail = small_.size - beg_;
  if (avail < sizeof h) return Status::need_more;
  std::memcpy(&h, small_.data + beg_, sizeof h);
  why = check_header(h);
  if (!why.empty()) return Status::bad;
  if (h.len > kSmallLimit) {
    // A large frame: what arrived already moves to a buffer of its own; the rest is read there.
    if (!big_.clear_for(static_cast<std::size_t>(h.len))) {
      why = "no memory for a frame of " + std::to_string(h.len) + " bytes";
      return Status::bad;
    }
    const std::size_t have = std::min<std::size_t>(avail - sizeof h, static_cast<std::size_t>(h.len));
    big_.append(small_.data + beg_ + sizeof h, have);
    beg_ += sizeof h + have;
    if (beg_ == small_.size) beg_ = small_.size = 0;
    big_hdr_ = h;
    in_big_ = true;
    return next(f, why);
  }
  if (avail - sizeof h < h.len) return Status::need_more;
  f = Frame{h.type, h.flags, h.seq, small_.data + beg_ + sizeof h, static_cast<std::size_t>(h.len)};
  last_ = Last::small;
  last_len_ = sizeof h + static_cast<std::size_t>(h.len);
  return Status::frame;
}

}  // namespace wm::sdk::remote
