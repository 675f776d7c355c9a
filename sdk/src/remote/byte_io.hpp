// byte_io.hpp (private to the SDK's remote engine): writing and reading the fixed-layout records
// the engine exchanges besides task bytes (the hello, the task listing): numbers in host byte order
// (both ends are the same program) and texts as a 32-bit length and the bytes. Reading checks every
// length against what is left, so a short or corrupt record fails instead of reading past its end.
#pragma once

#include <cstddef>
#include <cstdint>
#include <cstring>
#include <limits>
#include <string>

namespace wm::sdk::remote::byte_io {

template <class T>
void put(std::string& out, T v) {
  out.append(reinterpret_cast<const char*>(&v), sizeof v);
}

inline void put_text(std::string& out, const std::string& s) {
  put(out, static_cast<std::uint32_t>(s.size()));
  out += s;
}

/** Reads a record in place; every call is false once the record is shorter than asked. */
struct In {
  const char* p;
  const char* end;
  template <class T>
  bool get(T& v) {
    if (static_cast<std::size_t>(end - p) < sizeof v) return false;
    std::memcpy(&v, p, sizeof v);
    p += sizeof v;
    return true;
  }
  /** A text written by put_text, at most max bytes long. */
  bool text(std::string& s, std::uint32_t max = std::numeric_limits<std::uint32_t>::max()) {
    std::uint32_t n = 0;
    if (!get(n) || n > max || static_cast<std::size_t>(end - p) < n) return false;
    s.assign(p, n);
    p += n;
    return true;
  }
};

}  // namespace wm::sdk::remote::byte_io
