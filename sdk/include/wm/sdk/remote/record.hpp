// SPDX-License-Identifier: MIT
// wm/sdk/remote/record.hpp: the small fixed-layout records a remote backend exchanges besides task
// bytes (the engine's hello and task listing, a transport's own handshakes): numbers in host byte
// order (both ends run the same program), texts as a 32-bit length and the bytes. The reader checks
// every length against what is left, so a short or corrupt record fails instead of reading past
// its end.
#pragma once

#include <cstddef>
#include <cstdint>
#include <cstring>
#include <limits>
#include <string>

namespace wm::sdk::remote {

/** Appends numbers, texts and raw bytes to `bytes`. */
class RecordWriter {
 public:
  template <class T>
  RecordWriter& put(T v) {
    bytes.append(reinterpret_cast<const char*>(&v), sizeof v);
    return *this;
  }
  /** At most max bytes of s, behind their length. */
  RecordWriter& text(const std::string& s, std::size_t max = std::numeric_limits<std::uint32_t>::max()) {
    const std::size_t n = s.size() < max ? s.size() : max;
    put(static_cast<std::uint32_t>(n));
    bytes.append(s.data(), n);
    return *this;
  }
  RecordWriter& raw(const void* p, std::size_t n) {
    bytes.append(static_cast<const char*>(p), n);
    return *this;
  }
  std::string bytes;
};

/** Reads a record in place; each call is false once the record is shorter than asked. */
class RecordReader {
 public:
  RecordReader(const char* p, std::size_t n) : p_(p), end_(p + n) {}
  template <class T>
  bool get(T& v) {
    if (left() < sizeof v) return false;
    std::memcpy(&v, p_, sizeof v);
    p_ += sizeof v;
    return true;
  }
  /** A text written by RecordWriter::text, at most max bytes long. */
  bool text(std::string& s, std::uint32_t max = std::numeric_limits<std::uint32_t>::max()) {
    std::uint32_t n = 0;
    if (!get(n) || n > max || left() < n) return false;
    s.assign(p_, n);
    p_ += n;
    return true;
  }
  bool raw(void* out, std::size_t n) {
    if (left() < n) return false;
    std::memcpy(out, p_, n);
    p_ += n;
    return true;
  }
  std::size_t left() const { return static_cast<std::size_t>(end_ - p_); }
  bool done() const { return p_ == end_; }

 private:
  const char* p_;
  const char* end_;
};

}  // namespace wm::sdk::remote
