// SPDX-License-Identifier: MIT
// wm/detail/codec.hpp: cereal binary encoding into and out of plain byte buffers, through the
// codec's own archive types (cereal's binary wire format, wm's faster loads; nothing else changed).
#pragma once

#include <cereal/cereal.hpp>
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
#include <cstdint>
#include <cstring>
#include <memory>
#include <new>
#include <streambuf>
#include <string>
#include <type_traits>
#include <vector>

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
  explicit BufferSink(wm_byte_buffer& out) : out_(out), start_(out.size) {}

 protected:
  // The position is counted from where this sink began: the start of the message it writes (a
  // shared array aligns its bytes to it, so that a receiver may keep them where they landed).
  pos_type seekoff(off_type off, std::ios_base::seekdir dir, std::ios_base::openmode) override {
    if (off != 0 || dir != std::ios_base::cur) return pos_type(off_type(-1));
    return pos_type(static_cast<off_type>(out_.size - start_));
  }
  std::streamsize xsputn(const char* s, std::streamsize n) override {
    const auto k = static_cast<std::size_t>(n);
    if (out_.capacity - out_.size < k && out_.grow(&out_, out_.size + k) != 0) throw std::bad_alloc();
    std::memcpy(out_.data + out_.size, s, k);
    out_.size += k;
    return n;
  }

 private:
  wm_byte_buffer& out_;
  std::size_t start_;
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
[[noreturn]] void throw_bad_length(std::size_t announced, std::size_t available);
[[noreturn]] void throw_write_failure(std::size_t wanted, std::size_t written);
[[noreturn]] void throw_bad_bool(unsigned value);

/**
 * The codec's own cereal archives. They write and read exactly the bytes of cereal's
 * BinaryOutputArchive / BinaryInputArchive (same base classes, same handling of numbers, sizes,
 * names and blocks), so the wire format is cereal's binary format. Being types of their own, they
 * let the codec give strings and vectors of numbers a faster load (below) that applies to wm's
 * archive only: a user's own cereal archives, in the same program, are never affected. Any type
 * with a `serialize(Archive&)` (or save/load) template works with them, as with any cereal archive.
 */
class WireOutputArchive final
    : public cereal::OutputArchive<WireOutputArchive, cereal::AllowEmptyClassElision> {
 public:
  explicit WireOutputArchive(std::streambuf& out)
      : cereal::OutputArchive<WireOutputArchive, cereal::AllowEmptyClassElision>(this), out_(out) {}

  /** Bytes written since the message began, where the stream knows it (-1 where it does not). */
  std::int64_t position() const {
    return static_cast<std::int64_t>(out_.pubseekoff(0, std::ios_base::cur, std::ios_base::out));
  }

  /** Writes size bytes (cereal's binary archive interface). */
  void saveBinary(const void* data, std::streamsize size) {
    const std::streamsize written = out_.sputn(static_cast<const char*>(data), size);
    if (written != size) throw_write_failure(static_cast<std::size_t>(size), static_cast<std::size_t>(written));
  }

 private:
  std::streambuf& out_;
};

/** Reads from a byte range in place, without copying it first (see WireOutputArchive). */
class WireInputArchive final
    : public cereal::InputArchive<WireInputArchive, cereal::AllowEmptyClassElision> {
 public:
  WireInputArchive(const char* data, std::size_t size)
      : cereal::InputArchive<WireInputArchive, cereal::AllowEmptyClassElision>(this),
        pos_(data), end_(data + size) {}

  /** Reads size bytes (cereal's binary archive interface); fails if fewer are left. */
  void loadBinary(void* data, std::streamsize size) {
    const auto n = static_cast<std::size_t>(size);
    if (n > remaining()) throw_short_input(n, remaining());
    if (n == 0) return;
    if (n >= kBulkBytes) prepare_bulk_write(data, n);
    std::memcpy(data, pos_, n);
    pos_ += n;
  }

  std::size_t remaining() const noexcept { return static_cast<std::size_t>(end_ - pos_); }
  const char* position() const noexcept { return pos_; }
  void skip(std::size_t n) noexcept { pos_ += n; }

  /** Throws unless n elements of elem_size bytes can still follow (checked before allocating). */
  void check_length(std::uint64_t n, std::size_t elem_size) const {
    if (n > remaining() / elem_size) throw_bad_length(static_cast<std::size_t>(n) * elem_size, remaining());
  }

 private:
  const char* pos_;
  const char* end_;
};

// ---- what cereal's binary archives define for themselves (cereal/archives/binary.hpp), for wm's
// archives; found by argument-dependent lookup on the archive ----

template <class T>
std::enable_if_t<std::is_arithmetic_v<T>> CEREAL_SAVE_FUNCTION_NAME(WireOutputArchive& ar, const T& t) {
  ar.saveBinary(std::addressof(t), sizeof(t));
}
template <class T>
std::enable_if_t<std::is_arithmetic_v<T>> CEREAL_LOAD_FUNCTION_NAME(WireInputArchive& ar, T& t) {
  if constexpr (std::is_same_v<T, bool>) {
    // A bool is written as one byte, 0 or 1; any other byte would make a bool with no valid value
    // (undefined behaviour; the fuzz target found it through std::optional's flag).
    static_assert(sizeof(bool) == 1, "the wire format writes a bool as one byte");
    unsigned char byte = 0;
    ar.loadBinary(&byte, 1);
    if (byte > 1) throw_bad_bool(byte);
    t = byte != 0;
  } else {
    ar.loadBinary(std::addressof(t), sizeof(t));
  }
}
template <class Archive, class T>
CEREAL_ARCHIVE_RESTRICT(WireInputArchive, WireOutputArchive)
CEREAL_SERIALIZE_FUNCTION_NAME(Archive& ar, cereal::NameValuePair<T>& t) {
  ar(t.value);
}
template <class Archive, class T>
CEREAL_ARCHIVE_RESTRICT(WireInputArchive, WireOutputArchive)
CEREAL_SERIALIZE_FUNCTION_NAME(Archive& ar, cereal::SizeTag<T>& t) {
  ar(t.size);
}
template <class T>
void CEREAL_SAVE_FUNCTION_NAME(WireOutputArchive& ar, const cereal::BinaryData<T>& bd) {
  ar.saveBinary(bd.data, static_cast<std::streamsize>(bd.size));
}
template <class T>
void CEREAL_LOAD_FUNCTION_NAME(WireInputArchive& ar, cereal::BinaryData<T>& bd) {
  ar.loadBinary(bd.data, static_cast<std::streamsize>(bd.size));
}

// Loads of strings and vectors of numbers from wm's archive. They read the same bytes into the
// same values as cereal's own (types/string.hpp, types/vector.hpp), which take any archive; these
// are more specialized, so overload resolution picks them for WireInputArchive, and for nothing
// else. What differs is memory traffic, and a size check: a corrupt length fails before anything
// is allocated for it, a large block's fresh storage is prepared (prepare_bulk_write) before it is
// first touched, and a string is appended from the bytes in place instead of being zero-filled and
// then overwritten. On a virtual machine this makes decoding a 64 MiB result 10-15 times faster.
template <class CharT, class Traits, class Alloc>
std::enable_if_t<std::is_arithmetic_v<CharT>> CEREAL_LOAD_FUNCTION_NAME(
    WireInputArchive& ar, std::basic_string<CharT, Traits, Alloc>& str) {
  cereal::size_type size;
  ar(cereal::make_size_tag(size));
  ar.check_length(size, sizeof(CharT));
  const auto n = static_cast<std::size_t>(size);
  if constexpr (sizeof(CharT) != 1) {
    resize_for_bulk(str, n);
    ar.loadBinary(str.data(), static_cast<std::streamsize>(n * sizeof(CharT)));
  } else {
    str.clear();
    if (n >= kBulkBytes && str.capacity() < n) {
      str.reserve(n);
      prepare_bulk_write(str.data(), n);
    }
    str.append(reinterpret_cast<const CharT*>(ar.position()), n);
    ar.skip(n);
  }
}

template <class T, class A>
std::enable_if_t<std::is_arithmetic_v<T> && !std::is_same_v<T, bool>> CEREAL_LOAD_FUNCTION_NAME(
    WireInputArchive& ar, std::vector<T, A>& vec) {
  cereal::size_type size;
  ar(cereal::make_size_tag(size));
  ar.check_length(size, sizeof(T));
  resize_for_bulk(vec, static_cast<std::size_t>(size));
  ar.loadBinary(vec.data(), static_cast<std::streamsize>(static_cast<std::size_t>(size) * sizeof(T)));
}

// Vectors of anything else: cereal sizes the vector to the announced count before reading an
// element, so a corrupt count allocates whatever it says (the fuzz target found inputs of a few
// bytes that asked for gigabytes). Here the vector grows as elements arrive, reserving no more elements than there
// are bytes left; a corrupt count then fails when the bytes run out. Same bytes, same values.
template <class T, class A>
std::enable_if_t<!std::is_arithmetic_v<T>> CEREAL_LOAD_FUNCTION_NAME(WireInputArchive& ar, std::vector<T, A>& vec) {
  cereal::size_type size;
  ar(cereal::make_size_tag(size));
  vec.clear();
  vec.reserve(static_cast<std::size_t>(std::min<std::uint64_t>(size, ar.remaining())));
  for (std::uint64_t i = 0; i < size; ++i) {
    vec.emplace_back();
    ar(vec.back());
  }
}

template <class A>
void CEREAL_LOAD_FUNCTION_NAME(WireInputArchive& ar, std::vector<bool, A>& vec) {
  cereal::size_type size;
  ar(cereal::make_size_tag(size));
  ar.check_length(size, sizeof(bool));  // one byte per element
  vec.resize(static_cast<std::size_t>(size));
  for (auto&& v : vec) {
    bool b;
    ar(b);
    v = b;
  }
}

}  // namespace wm::detail

// Registered like cereal's own archives: polymorphic types and the input/output pairing work.
CEREAL_REGISTER_ARCHIVE(wm::detail::WireOutputArchive)
CEREAL_REGISTER_ARCHIVE(wm::detail::WireInputArchive)
CEREAL_SETUP_ARCHIVE_TRAITS(wm::detail::WireInputArchive, wm::detail::WireOutputArchive)

namespace wm::detail {

template <class T>
inline constexpr bool is_encodable_v = cereal::traits::is_output_serializable<T, WireOutputArchive>::value;
template <class T>
inline constexpr bool is_decodable_v =
    cereal::traits::is_input_serializable<T, WireInputArchive>::value && std::is_default_constructible_v<T>;

/** Writes the encoding of value to out. */
template <class T>
void encode_value(std::streambuf& out, const T& value) {
  WireOutputArchive ar(out);
  ar(value);
}

/** Appends the encoding of value to out. */
template <class T>
void encode_value(std::string& out, const T& value) {
  StringSink sink(out);
  encode_value(static_cast<std::streambuf&>(sink), value);
}

[[noreturn]] void throw_trailing_bytes(std::size_t remaining, std::size_t size);

/** Decodes a T that must use exactly [data, data+size). Throws wm::Error or cereal::Exception. */
template <class T>
T decode_value(const char* data, std::size_t size) {
  WireInputArchive ar(data, size);
  T value{};
  ar(value);
  if (ar.remaining() != 0) throw_trailing_bytes(ar.remaining(), size);
  return value;
}

}  // namespace wm::detail
