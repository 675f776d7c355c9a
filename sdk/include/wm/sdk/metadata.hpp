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

/** An integer option in [min, max]; default given as text, parsed by the core like any value. */
constexpr wm_option_meta option_int(const char* name, const char* default_value, std::int64_t min,
                                    std::int64_t max, const char* help) {
  wm_option_meta m = detail::make_option(name, WM_OPTION_INT, default_value, help);
  m.int_min = min;
  m.int_max = max;
  return m;
}

/** A floating-point option in [min, max]. */
constexpr wm_option_meta option_double(const char* name, const char* default_value, double min,
                                       double max, const char* help) {
  wm_option_meta m = detail::make_option(name, WM_OPTION_DOUBLE, default_value, help);
  m.double_min = min;
  m.double_max = max;
  return m;
}

/** A boolean option (1/0, true/false, yes/no, on/off). */
constexpr wm_option_meta option_bool(const char* name, const char* default_value, const char* help) {
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
  return m;
}

}  // namespace wm::sdk
