// SPDX-License-Identifier: MIT
// wm/sdk/metadata.hpp: compile-time builders for the plugin metadata record (wm_plugin_metadata).
#pragma once

#include <wm/abi.h>

#include <cstddef>
#include <cstdint>
#include <initializer_list>

namespace wm::sdk {
namespace detail {

// Copies a string into a fixed field at compile time. A string that does not fit makes the
// constant expression invalid, so the plugin fails to compile instead of shipping a cut name.
template <std::size_t N>
constexpr void copy_field(char (&dst)[N], const char* src) {
  std::size_t i = 0;
  for (; src[i] != '\0'; ++i) {
    if (i + 1 >= N) throw "wm: text too long for its metadata field";
    dst[i] = src[i];
  }
  for (; i < N; ++i) dst[i] = '\0';
}

constexpr void check_backend_name(const char* name) {
  if (name[0] == '\0') throw "wm: backend name is empty";
  for (std::size_t i = 0; name[i] != '\0'; ++i) {
    const char c = name[i];
    if (!((c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '_'))
      throw "wm: backend names use only a-z, 0-9 and '_'";
  }
}

constexpr void check_option_name(const char* name) {
  if (name[0] == '\0') throw "wm: option name is empty";
  for (std::size_t i = 0; name[i] != '\0'; ++i) {
    const char c = name[i];
    if (!((c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '-'))
      throw "wm: option names use only a-z, 0-9 and '-'";
  }
}

// ---- option defaults, checked at compile time with the grammar the core parses values with ----
// A declaration the core would refuse (a default that does not parse or lies outside its range, a
// range with min > max) makes WM_DECLARE_BACKEND's constant expression invalid: the plugin does not
// compile, and the compiler points at the throw below that says why. Discovery checks the same
// rules again, exactly, for records not made by this header.

constexpr bool is_blank(char c) { return c == ' ' || c == '\t' || c == '\n'; }

// [begin, end) of text without the blanks around it.
constexpr void trimmed(const char* text, std::size_t& begin, std::size_t& end) {
  end = 0;
  while (text[end] != '\0') ++end;
  begin = 0;
  while (begin < end && is_blank(text[begin])) ++begin;
  while (end > begin && is_blank(text[end - 1])) --end;
}

constexpr bool is_digit(char c) { return c >= '0' && c <= '9'; }

constexpr std::int64_t parse_int_default(const char* text) {
  std::size_t i = 0, end = 0;
  trimmed(text, i, end);
  const bool negative = i < end && text[i] == '-';
  if (i < end && (text[i] == '-' || text[i] == '+')) ++i;
  if (i == end) throw "wm: the default of an integer option is not a whole number";
  std::uint64_t magnitude = 0;
  for (; i < end; ++i) {
    if (!is_digit(text[i])) throw "wm: the default of an integer option is not a whole number";
    const auto digit = static_cast<std::uint64_t>(text[i] - '0');
    if (magnitude > (std::uint64_t(1) << 63) / 10 || magnitude * 10 > (std::uint64_t(1) << 63) - digit)
      throw "wm: the default of an integer option is out of its range";
    magnitude = magnitude * 10 + digit;
  }
  if (!negative && magnitude > static_cast<std::uint64_t>(INT64_MAX))
    throw "wm: the default of an integer option is out of its range";
  return negative ? static_cast<std::int64_t>(0 - magnitude) : static_cast<std::int64_t>(magnitude);
}

// Decimal numbers only ([sign] digits [. digits] [e [sign] digits]), a subset of what the core takes.
constexpr double parse_number_default(const char* text) {
  std::size_t i = 0, end = 0;
  trimmed(text, i, end);
  const bool negative = i < end && text[i] == '-';
  if (i < end && (text[i] == '-' || text[i] == '+')) ++i;
  long double mantissa = 0;
  int exponent = 0;
  bool digits = false;
  for (; i < end && is_digit(text[i]); ++i, digits = true) mantissa = mantissa * 10 + (text[i] - '0');
  if (i < end && text[i] == '.')
    for (++i; i < end && is_digit(text[i]); ++i, digits = true, --exponent) mantissa = mantissa * 10 + (text[i] - '0');
  if (!digits) throw "wm: the default of a number option is not a decimal number";
  if (i < end && (text[i] == 'e' || text[i] == 'E')) {
    ++i;
    const bool negative_exponent = i < end && text[i] == '-';
    if (i < end && (text[i] == '-' || text[i] == '+')) ++i;
    if (i == end || !is_digit(text[i])) throw "wm: the default of a number option is not a decimal number";
    int e = 0;
    for (; i < end && is_digit(text[i]); ++i)
      if ((e = e * 10 + (text[i] - '0')) > 400) throw "wm: the default of a number option is out of its range";
    exponent += negative_exponent ? -e : e;
  }
  if (i != end) throw "wm: the default of a number option is not a decimal number";
  long double scale = 1;
  for (int k = exponent < 0 ? -exponent : exponent; k > 0; --k) scale *= 10;
  const long double value = exponent < 0 ? mantissa / scale : mantissa * scale;
  if (value > 1.7976931348623157e308L) throw "wm: the default of a number option is out of its range";
  return static_cast<double>(negative ? -value : value);
}

constexpr bool equals_lower(const char* text, std::size_t begin, std::size_t end, const char* word) {
  std::size_t k = 0;
  for (; begin + k < end; ++k) {
    char c = text[begin + k];
    if (c >= 'A' && c <= 'Z') c = static_cast<char>(c - 'A' + 'a');
    if (word[k] == '\0' || c != word[k]) return false;
  }
  return word[k] == '\0';
}

constexpr void check_bool_default(const char* text) {
  std::size_t b = 0, e = 0;
  trimmed(text, b, e);
  for (const char* word : {"1", "0", "true", "false", "yes", "no", "on", "off"})
    if (equals_lower(text, b, e, word)) return;
  throw "wm: the default of a bool option must be 1/0, true/false, yes/no or on/off";
}

constexpr wm_option_meta make_option(const char* name, wm_option_type type, const char* default_value,
                                     const char* help) {
  check_option_name(name);
  wm_option_meta m{};
  copy_field(m.name, name);
  m.type = type;
  copy_field(m.default_value, default_value);
  copy_field(m.help, help);
  return m;
}

}  // namespace detail

/** An integer option in [min, max]; default given as text, parsed by the core like any value. A
 *  default that is not a whole number in [min, max], or min > max, fails to compile. */
constexpr wm_option_meta option_int(const char* name, const char* default_value, std::int64_t min,
                                    std::int64_t max, const char* help) {
  if (min > max) throw "wm: the range of an integer option is empty (min > max)";
  const std::int64_t value = detail::parse_int_default(default_value);
  if (value < min || value > max) throw "wm: the default of an integer option is out of its range";
  wm_option_meta m = detail::make_option(name, WM_OPTION_INT, default_value, help);
  m.int_min = min;
  m.int_max = max;
  return m;
}

/** A floating-point option in [min, max]; the default is a decimal number in range, or the plugin
 *  fails to compile. */
constexpr wm_option_meta option_double(const char* name, const char* default_value, double min,
                                       double max, const char* help) {
  if (!(min <= max)) throw "wm: the range of a number option is empty (min > max, or a NaN bound)";
  const double value = detail::parse_number_default(default_value);
  // The decimal conversion here may differ from the core's in the last bit; a default within a
  // hair of a bound is left to discovery, which checks it exactly.
  const double slack = 1e-12 * ((min < 0 ? -min : min) + (max < 0 ? -max : max) + 1);
  if (value < min - slack || value > max + slack) throw "wm: the default of a number option is out of its range";
  wm_option_meta m = detail::make_option(name, WM_OPTION_DOUBLE, default_value, help);
  m.double_min = min;
  m.double_max = max;
  return m;
}

/** A boolean option (1/0, true/false, yes/no, on/off; any case), default included. */
constexpr wm_option_meta option_bool(const char* name, const char* default_value, const char* help) {
  detail::check_bool_default(default_value);
  return detail::make_option(name, WM_OPTION_BOOL, default_value, help);
}

/** A free-text option. */
constexpr wm_option_meta option_string(const char* name, const char* default_value, const char* help) {
  return detail::make_option(name, WM_OPTION_STRING, default_value, help);
}

/** Builds the whole record; used by WM_DECLARE_BACKEND (capabilities, then any options). */
template <class... Options>
constexpr wm_plugin_metadata make_metadata(const char* name, const char* version,
                                           const char* description, const char* entry_symbol,
                                           std::uint64_t capabilities, const Options&... option_list) {
  const std::initializer_list<wm_option_meta> options{option_list...};
  detail::check_backend_name(name);
  if (options.size() > WM_META_MAX_OPTIONS) throw "wm: too many backend options";
  wm_plugin_metadata m{};
  const char magic[] = WM_PLUGIN_MAGIC;
  for (std::size_t i = 0; i < sizeof m.magic; ++i) m.magic[i] = magic[i];
  m.abi_version = WM_ABI_VERSION;
  m.record_size = sizeof(wm_plugin_metadata);
  detail::copy_field(m.name, name);
  detail::copy_field(m.version, version);
  detail::copy_field(m.description, description);
  detail::copy_field(m.entry_symbol, entry_symbol);
  m.capabilities = capabilities;
  m.n_options = static_cast<std::uint32_t>(options.size());
  std::size_t i = 0;
  for (const wm_option_meta& o : options) m.options[i++] = o;
  m.min_core_abi_version = WM_ABI_VERSION;  // runs on cores of the minor it is built against, or later
  return m;
}

/** The record m, for a plugin that runs on every core of its major from minor min_core_minor on
 *  (at most the minor it is built against: a newer one fails to compile). Discovery refuses the
 *  plugin on an older core, without loading it; WM_DECLARE_BACKEND passes WM_SDK_MIN_CORE_MINOR. */
constexpr wm_plugin_metadata accepting_cores_from(std::uint32_t min_core_minor, wm_plugin_metadata m) {
  if (min_core_minor > WM_ABI_MINOR_OF(m.abi_version))
    throw "wm: WM_SDK_MIN_CORE_MINOR is newer than the ABI minor the plugin is built against";
  m.min_core_abi_version = (WM_ABI_MAJOR_OF(m.abi_version) << 16) | min_core_minor;
  return m;
}

}  // namespace wm::sdk
