// SPDX-License-Identifier: MIT
// The codec: what travels between processes. Large strings and vectors take a faster path on
// decode; these tests check it reads exactly what cereal itself writes and reads, and that bad
// lengths fail cleanly.
#include <wm/task.hpp>

#include <cereal/archives/binary.hpp>
#include <gtest/gtest.h>

#include <array>
#include <complex>
#include <cstdint>
#include <cstring>
#include <map>
#include <memory>
#include <optional>
#include <set>
#include <sstream>
#include <string>
#include <tuple>
#include <utility>
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

// A user type of every shape cereal allows: serialize, save/load pairs, versions, shared pointers.
struct Point {
  double x = 0, y = 0;
  template <class Archive>
  void serialize(Archive& ar) {
    ar(x, y);
  }
  bool operator==(const Point& o) const { return x == o.x && y == o.y; }
};

struct Versioned {
  std::string name;
  std::uint32_t seen_version = 0;
  template <class Archive>
  void save(Archive& ar, std::uint32_t) const {
    ar(cereal::make_nvp("name", name));
  }
  template <class Archive>
  void load(Archive& ar, std::uint32_t version) {
    ar(cereal::make_nvp("name", name));
    seen_version = version;
  }
};

}  // namespace
CEREAL_CLASS_VERSION(Versioned, 3);
namespace {

using Many = std::tuple<std::map<std::string, std::vector<int>>, std::optional<std::string>, std::vector<bool>,
                        std::array<double, 3>, std::complex<float>, std::u16string, std::vector<Point>,
                        std::pair<std::int8_t, std::uint64_t>, std::set<std::string>>;

TEST(Codec, EveryKindOfValueIsEncodedByteForByteAsCerealsBinaryArchive) {
  const Many v{{{"a", {1, 2}}, {"b", {}}}, std::string("opt"), {true, false, true},
               {1.5, -2.5, 3.0}, {1.0f, -1.0f}, u"utf-16 text", {{1, 2}, {3, 4}},
               {-7, 1ull << 40}, {"x", "y"}};
  std::string ours;
  encode_value(ours, v);
  EXPECT_EQ(ours, cereal_encode(v));
  EXPECT_TRUE(decode_value<Many>(ours.data(), ours.size()) == v);

  wm::ErrorInfo info;
  info.kind = wm::FailureKind::worker_lost;
  info.type_name = "std::runtime_error";
  info.message = "boom";
  info.pid = 42;
  info.worker_index = 3;
  std::string ibytes;
  encode_value(ibytes, info);
  EXPECT_EQ(ibytes, cereal_encode(info));
  const auto info_back = decode_value<wm::ErrorInfo>(ibytes.data(), ibytes.size());
  EXPECT_EQ(info_back.describe(), info.describe());
  EXPECT_EQ(info_back.kind, info.kind);

  // Shared pointers keep cereal's identity numbering (the second occurrence is a reference).
  auto shared = std::make_shared<int>(5);
  const std::pair<std::shared_ptr<int>, std::shared_ptr<int>> twice{shared, shared};
  std::string ptrs;
  encode_value(ptrs, twice);
  EXPECT_EQ(ptrs, cereal_encode(twice));
  auto twice_back = decode_value<std::pair<std::shared_ptr<int>, std::shared_ptr<int>>>(ptrs.data(), ptrs.size());
  EXPECT_EQ(twice_back.first, twice_back.second);
  EXPECT_EQ(*twice_back.first, 5);

  // Class versions are written and read back as cereal does.
  const Versioned ver{"versioned", 0};
  std::string vbytes;
  encode_value(vbytes, ver);
  EXPECT_EQ(vbytes, cereal_encode(ver));
  EXPECT_EQ(decode_value<Versioned>(vbytes.data(), vbytes.size()).seen_version, 3u);
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

TEST(Codec, CorruptCountsAndFlagsFailCleanly) {
  // A vector of strings announcing 2^40 elements in a few bytes: fails when the bytes run out,
  // without sizing the vector to the count first.
  std::string strings;
  encode_value(strings, std::vector<std::string>{"a", "b"});
  const std::uint64_t many = std::uint64_t(1) << 40;
  std::memcpy(strings.data(), &many, sizeof many);
  EXPECT_THROW(decode_value<std::vector<std::string>>(strings.data(), strings.size()), wm::Error);
  std::string bools;
  encode_value(bools, std::vector<bool>{true, false});
  std::memcpy(bools.data(), &many, sizeof many);
  EXPECT_THROW(decode_value<std::vector<bool>>(bools.data(), bools.size()), wm::Error);
  // A bool is the byte 0 or 1; anything else is corruption, not a bool without a valid value.
  std::string flag;
  encode_value(flag, std::optional<int>(5));
  flag[0] = 7;
  try {
    decode_value<std::optional<int>>(flag.data(), flag.size());
    FAIL() << "a bool byte of 7 decoded";
  } catch (const wm::Error& e) {
    EXPECT_NE(std::string(e.what()).find("bool"), std::string::npos) << e.what();
  }
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
