// SPDX-License-Identifier: MIT
// log_level.hpp: WM_LOG_LEVEL's grammar, shared by the log (where.cpp) and the configuration check.
#pragma once

#include <wm/abi.h>

#include <cctype>
#include <string>
#include <string_view>

namespace wm::detail {

/** The level named by text (debug, info, warning or warn, error; any case, blanks around allowed),
 *  or -1 if it names none. */
inline int parse_log_level(std::string_view text) noexcept {
  while (!text.empty() && std::isspace(static_cast<unsigned char>(text.front()))) text.remove_prefix(1);
  while (!text.empty() && std::isspace(static_cast<unsigned char>(text.back()))) text.remove_suffix(1);
  auto is = [text](std::string_view word) {
    if (text.size() != word.size()) return false;
    for (std::size_t i = 0; i < word.size(); ++i)
      if (std::tolower(static_cast<unsigned char>(text[i])) != word[i]) return false;
    return true;
  };
  if (is("debug")) return WM_LOG_DEBUG;
  if (is("info")) return WM_LOG_INFO;
  if (is("warning") || is("warn")) return WM_LOG_WARNING;
  if (is("error")) return WM_LOG_ERROR;
  return -1;
}

inline constexpr const char* kLogLevelChoices = "debug, info, warning or error (any case)";

}  // namespace wm::detail
