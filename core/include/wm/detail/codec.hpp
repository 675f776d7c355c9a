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

#include <wm/abi.h>

#include <algorithm>
#include <cstddef>
#include <cstdlib>
#include <cstring>
#include <istream>
#include <new>
#include <ostream>
#include <streambuf>
#include <string>
#include <type_traits>

namespace wm::detail {

/// Copies of at least this many bytes into an object's storage are prepared by prepare_bulk_write.
inline constexpr std::size_t kBulkBytes = std::size_t(4) << 20;

/**
 * Called before n bytes are copied into [p, p+n) that are likely to be freshly allocated (a large
 * string or vector being decoded, an encoding buffer that just grew). If the memory is not yet
 * backed by pages, advises the kernel to back it with transparent huge pages: on virtual machines a
 * first touch of each 4 KiB page can cost 10-30 us, which makes a 64 MiB copy take 0.2-0.4 s
 * instead of 10 ms. Memory already in use is left alone. Never throws; a no-op where unsupported.
 */
void prepare_bulk_write(void* p, std::size_t n) noexcept;

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
    const auto k = static_cast<std::size_t>(n);
    if (k >= kBulkBytes && out_.capacity() - out_.size() < k) {
      out_.reserve(out_.size() + k);
      prepare_bulk_write(out_.data() + out_.size(), out_.capacity() - out_.size());
    }
    out_.append(s, k);
    return n;
  }

 private:
  std::string& out_;
};

// An output streambuf without a put area: single characters go through xsputn like blocks.
class BlockSink : public std::streambuf {
 protected:
  int_type overflow(int_type c) override {
    if (traits_type::eq_int_type(c, traits_type::eof())) return traits_type::not_eof(c);
    const char ch = traits_type::to_char_type(c);
    xsputn(&ch, 1);
    return c;
  }
};

// Appends to storage lent as a wm_byte_buffer (a backend's, or a ByteBuffer), growing it through
// its callback; throws std::bad_alloc when it cannot grow.
class BufferSink final : public BlockSink {
 public:
  explicit BufferSink(wm_byte_buffer& out) : out_(out) {}

 protected:
  std::streamsize xsputn(const char* s, std::streamsize n) override {
    const auto k = static_cast<std::size_t>(n);
    if (out_.capacity - out_.size < k && out_.grow(&out_, out_.size + k) != 0) throw std::bad_alloc();
    std::memcpy(out_.data + out_.size, s, k);
    out_.size += k;
    return n;
  }

 private:
  wm_byte_buffer& out_;
};

int grow_byte_buffer(wm_byte_buffer* self, std::size_t need) noexcept;

/** Bytes owned by the core (malloc'd), lent to encoders as a wm_byte_buffer. */
class ByteBuffer final : public wm_byte_buffer {
 public:
  ByteBuffer() noexcept : wm_byte_buffer{nullptr, 0, 0, nullptr, &grow_byte_buffer} {}
  ByteBuffer(const ByteBuffer&) = delete;
  ByteBuffer& operator=(const ByteBuffer&) = delete;
  ~ByteBuffer() { std::free(data); }
};

// Reads from a byte range in place, without copying it first.
class MemorySource final : public std::streambuf {
 public:
  MemorySource(const char* data, std::size_t size) {
    char* p = const_cast<char*>(data);  // the get area is only read
    setg(p, p, p + size);
  }
  std::size_t remaining() const { return static_cast<std::size_t>(egptr() - gptr()); }
  const char* position() const { return gptr(); }
  void skip(std::size_t n) { setg(eback(), gptr() + n, egptr()); }  // gbump() takes an int

 protected:
  // cereal reads vectors of numbers and other binary blocks with one sgetn each.
  std::streamsize xsgetn(char* s, std::streamsize n) override {
    const auto k = std::min(static_cast<std::size_t>(n), remaining());
    if (k >= kBulkBytes) prepare_bulk_write(s, k);
    std::memcpy(s, gptr(), k);
    skip(k);
    return static_cast<std::streamsize>(k);
  }
};

/**
 * The archive decode_value is running in this thread, and the bytes under it. A load that finds
 * its own archive here may take bytes straight from the source (a string is then built by one
 * copy, not a zero-fill and a copy); any other archive (a user's own, nested one) is left alone.
 */
struct DirectSource {
  const void* archive = nullptr;
  MemorySource* source = nullptr;
};
inline thread_local DirectSource t_direct_source;

inline MemorySource* direct_source_of(const void* archive) noexcept {
  return t_direct_source.archive == archive ? t_direct_source.source : nullptr;
}

/** Resizes a string or vector about to receive n elements in one block, preparing fresh storage. */
template <class Container>
void resize_for_bulk(Container& c, std::size_t n) {
  const std::size_t bytes = n * sizeof(typename Container::value_type);
  if (bytes >= kBulkBytes && c.capacity() < n) {
    c.clear();  // nothing to keep: reserve() then copies nothing and leaves the block untouched
    c.reserve(n);
    prepare_bulk_write(c.data(), bytes);
  }
  c.resize(n);
}

[[noreturn]] void throw_short_input(std::size_t wanted, std::size_t available);

}  // namespace wm::detail

namespace cereal {

// Loads of strings and vectors of numbers from the binary archive. They read the same bytes into
// the same values as cereal's own (types/string.hpp, types/vector.hpp), which take any archive;
// these are more specialized and are chosen wherever this header is included. What differs is
// memory traffic, and a size check: a large block's fresh storage is prepared
// (wm::detail::prepare_bulk_write) before it is first touched, a string decoded by wm is appended
// from the bytes in place instead of being zero-filled and then overwritten, and a corrupt length
// fails before anything is allocated for it. On a virtual machine this makes decoding a 64 MiB
// result 10-15 times faster.
template <class CharT, class Traits, class Alloc>
std::enable_if_t<std::is_arithmetic_v<CharT>> CEREAL_LOAD_FUNCTION_NAME(BinaryInputArchive& ar,
                                                                      std::basic_string<CharT, Traits, Alloc>& str) {
  size_type size;
  ar(make_size_tag(size));
  wm::detail::MemorySource* src = wm::detail::direct_source_of(&ar);
  if (src != nullptr && size > src->remaining() / sizeof(CharT))
    wm::detail::throw_short_input(static_cast<std::size_t>(size) * sizeof(CharT), src->remaining());
  const auto n = static_cast<std::size_t>(size);
  if (src == nullptr || sizeof(CharT) != 1) {
    wm::detail::resize_for_bulk(str, n);
    ar(binary_data(str.data(), n * sizeof(CharT)));
    return;
  }
  str.clear();
  if (n >= wm::detail::kBulkBytes && str.capacity() < n) {
    str.reserve(n);
    wm::detail::prepare_bulk_write(str.data(), n);
  }
  str.append(reinterpret_cast<const CharT*>(src->position()), n);
  src->skip(n);
}

template <class T, class A>
std::enable_if_t<std::is_arithmetic_v<T> && !std::is_same_v<T, bool>> CEREAL_LOAD_FUNCTION_NAME(
    BinaryInputArchive& ar, std::vector<T, A>& vec) {
  size_type size;
  ar(make_size_tag(size));
  if (auto* src = wm::detail::direct_source_of(&ar); src != nullptr && size > src->remaining() / sizeof(T))
    wm::detail::throw_short_input(static_cast<std::size_t>(size) * sizeof(T), src->remaining());
  wm::detail::resize_for_bulk(vec, static_cast<std::size_t>(size));
  ar(binary_data(vec.data(), static_cast<std::size_t>(size) * sizeof(T)));
}

}  // namespace cereal

namespace wm::detail {

template <class T>
inline constexpr bool is_encodable_v =
    cereal::traits::is_output_serializable<T, cereal::BinaryOutputArchive>::value;
template <class T>
inline constexpr bool is_decodable_v =
    cereal::traits::is_input_serializable<T, cereal::BinaryInputArchive>::value &&
    std::is_default_constructible_v<T>;

/** Writes the encoding of value to out. */
template <class T>
void encode_value(std::streambuf& out, const T& value) {
  std::ostream os(&out);
  cereal::BinaryOutputArchive ar(os);
  ar(value);
}

/** Appends the encoding of value to out. */
template <class T>
void encode_value(std::string& out, const T& value) {
  StringSink sink(out);
  encode_value(static_cast<std::streambuf&>(sink), value);
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
    struct Scope {
      DirectSource saved = t_direct_source;
      ~Scope() { t_direct_source = saved; }
    } scope;
    t_direct_source = DirectSource{&ar, &source};
    ar(value);
  }
  if (source.remaining() != 0) throw_trailing_bytes(source.remaining(), size);
  return value;
}

}  // namespace wm::detail
