// wm/detail/codec.hpp: cereal binary encoding into and out of plain byte buffers.
#pragma once

#include <cereal/archives/binary.hpp>
#include <cereal/types/array.hpp>
#include <cereal/types/complex.hpp>
#include <cereal/types/map.hpp>
#include <cereal/types/memory.hpp>
#include <cereal/types/optional.hpp>
#include <cereal/types/set.hpp>
#include <cereal/types/string.hpp>
#include <cereal/types/tuple.hpp>
#include <cereal/types/unordered_map.hpp>
#include <cereal/types/utility.hpp>
#include <cereal/types/vector.hpp>

#include <cstddef>
#include <istream>
#include <ostream>
#include <streambuf>
#include <string>
#include <type_traits>

namespace wm::detail {

// Appends to a std::string; std::stringstream would copy the whole buffer once more at the end.
class StringSink final : public std::streambuf {
 public:
  explicit StringSink(std::string& out) : out_(out) {}

 protected:
  int_type overflow(int_type c) override {
    if (!traits_type::eq_int_type(c, traits_type::eof())) out_.push_back(traits_type::to_char_type(c));
    return traits_type::not_eof(c);
  }
  std::streamsize xsputn(const char* s, std::streamsize n) override {
    out_.append(s, static_cast<std::size_t>(n));
    return n;
  }

 private:
  std::string& out_;
};

// Reads from a byte range in place, without copying it first.
class MemorySource final : public std::streambuf {
 public:
  MemorySource(const char* data, std::size_t size) {
    char* p = const_cast<char*>(data);  // the get area is only read
    setg(p, p, p + size);
  }
  std::size_t remaining() const { return static_cast<std::size_t>(egptr() - gptr()); }
};

template <class T>
inline constexpr bool is_encodable_v =
    cereal::traits::is_output_serializable<T, cereal::BinaryOutputArchive>::value;
template <class T>
inline constexpr bool is_decodable_v =
    cereal::traits::is_input_serializable<T, cereal::BinaryInputArchive>::value &&
    std::is_default_constructible_v<T>;

/** Appends the encoding of value to out. */
template <class T>
void encode_value(std::string& out, const T& value) {
  StringSink sink(out);
  std::ostream os(&sink);
  cereal::BinaryOutputArchive ar(os);
  ar(value);
}

[[noreturn]] void throw_trailing_bytes(std::size_t remaining, std::size_t size);

/** Decodes a T that must use exactly [data, data+size). Throws cereal::Exception or wm::Error. */
template <class T>
T decode_value(const char* data, std::size_t size) {
  MemorySource source(data, size);
  std::istream is(&source);
  T value{};
  {
    cereal::BinaryInputArchive ar(is);
    ar(value);
  }
  if (source.remaining() != 0) throw_trailing_bytes(source.remaining(), size);
  return value;
}

}  // namespace wm::detail
