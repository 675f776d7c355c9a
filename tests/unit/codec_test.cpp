// The codec: what travels between processes. Large strings and vectors take a faster path on
// decode; these tests check it reads exactly what cereal itself writes and reads, and that bad
// lengths fail cleanly.
#include <wm/task.hpp>

#include <gtest/gtest.h>

#include <cstdint>
#include <sstream>
#include <string>
#include <tuple>
#include <vector>

namespace {

using wm::detail::decode_value;
using wm::detail::encode_value;

template <class T>
std::string cereal_encode(const T& v) {
  std::ostringstream os;
  {
    cereal::BinaryOutputArchive ar(os);
    ar(v);
  }
  return os.str();
}

template <class T>
T cereal_decode(const std::string& bytes) {
  std::istringstream is(bytes);
  T v{};
  cereal::BinaryInputArchive ar(is);
  ar(v);
  return v;
}

std::string pattern(std::size_t n) {
  std::string s(n, '\0');
  for (std::size_t i = 0; i < n; ++i) s[i] = static_cast<char>((i * 7919) >> 3);
  return s;
}

using Mixed = std::tuple<int, std::string, std::vector<double>, std::string, std::vector<std::uint16_t>>;

Mixed make_mixed(std::size_t big) {
  std::vector<double> d(big / sizeof(double) + 3);
  for (std::size_t i = 0; i < d.size(); ++i) d[i] = 0.5 * static_cast<double>(i);
  return Mixed{42, pattern(big + 1), std::move(d), "small", std::vector<std::uint16_t>{1, 2, 65535}};
}

TEST(Codec, LargeAndSmallBlocksRoundTripExactlyAsCerealWritesThem) {
  for (std::size_t big : {std::size_t(0), std::size_t(1000), std::size_t(5) << 20}) {
    const Mixed v = make_mixed(big);
    std::string ours;
    encode_value(ours, v);
    EXPECT_EQ(ours, cereal_encode(v)) << big;                      // same bytes on the wire
    EXPECT_EQ(decode_value<Mixed>(ours.data(), ours.size()), v) << big;  // our decode reads them
    EXPECT_EQ(cereal_decode<Mixed>(ours), v) << big;               // cereal's decode too
  }
}

TEST(Codec, ACorruptLengthFailsWithoutAllocatingIt) {
  std::string bytes;
  encode_value(bytes, std::string("hello"));
  const std::uint64_t huge = std::uint64_t(1) << 60;  // the size tag comes first
  std::memcpy(bytes.data(), &huge, sizeof huge);
  try {
    decode_value<std::string>(bytes.data(), bytes.size());
    FAIL() << "a 2^60-byte string decoded from 13 bytes";
  } catch (const wm::Error& e) {
    EXPECT_NE(std::string(e.what()).find("announced"), std::string::npos) << e.what();
  }
  std::string vec;
  encode_value(vec, std::vector<double>{1.0, 2.0});
  std::memcpy(vec.data(), &huge, sizeof huge);
  EXPECT_THROW(decode_value<std::vector<double>>(vec.data(), vec.size()), wm::Error);
}

TEST(Codec, TruncatedBytesFailAndTrailingBytesAreReported) {
  std::string bytes;
  encode_value(bytes, pattern(6 << 20));
  EXPECT_THROW(decode_value<std::string>(bytes.data(), bytes.size() - 1), std::exception);
  bytes.push_back('x');
  EXPECT_THROW(decode_value<std::string>(bytes.data(), bytes.size()), wm::Error);
}

// A type that decodes part of itself through an archive of its own: the fast path must not read
// from wm's bytes while that archive is the one loading.
struct Wrapped {
  std::string inner;
  template <class Archive>
  void save(Archive& ar) const {
    ar(cereal_encode(inner));
  }
  template <class Archive>
  void load(Archive& ar) {
    std::string blob;
    ar(blob);
    inner = cereal_decode<std::string>(blob);
  }
  bool operator==(const Wrapped& o) const { return inner == o.inner; }
};

TEST(Codec, ANestedArchiveOfTheUsersOwnIsLeftAlone) {
  const std::tuple<Wrapped, std::string> v{Wrapped{pattern(5 << 20)}, "after"};
  std::string bytes;
  encode_value(bytes, v);
  EXPECT_EQ((decode_value<std::tuple<Wrapped, std::string>>(bytes.data(), bytes.size())), v);
}

TEST(Codec, ByteBufferGrowsAndKeepsWhatWasWritten) {
  wm::detail::ByteBuffer buf;
  wm::detail::BufferSink sink(buf);
  std::string expected;
  for (std::size_t n : {std::size_t(1), std::size_t(300), std::size_t(5) << 20, std::size_t(17)}) {
    const std::string piece = pattern(n);
    encode_value(sink, piece);
    encode_value(expected, piece);
  }
  ASSERT_EQ(buf.size, expected.size());
  EXPECT_EQ(std::string(buf.data, buf.size), expected);
  EXPECT_GE(buf.capacity, buf.size);
}

}  // namespace
