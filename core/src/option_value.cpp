// SPDX-License-Identifier: MIT
// option_value.cpp: the one grammar of option values, shared by configuration and discovery.
#include "option_value.hpp"

#include <wm/abi.h>

#include <algorithm>
#include <cctype>
#include <cerrno>
#include <cmath>
#include <cstdlib>
#include <sstream>
#include <vector>

namespace wm::detail {
namespace {

std::string_view trim(std::string_view s) {
  const std::size_t b = s.find_first_not_of(" \t\n");
  if (b == std::string_view::npos) return {};
  return s.substr(b, s.find_last_not_of(" \t\n") - b + 1);
}

std::string number_range(double min, double max) {
  std::ostringstream os;
  os << "give a number from " << min << " to " << max;
  return os.str();
}

}  // namespace

std::optional<long long> parse_integer_text(std::string_view text, long long min, long long max,
                                            std::string& problem) {
  const std::string t(trim(text));
  const std::string range = "give a whole number from " + std::to_string(min) + " to " + std::to_string(max);
  const std::size_t first = (!t.empty() && (t[0] == '-' || t[0] == '+')) ? 1 : 0;
  const bool digits = first < t.size() && std::all_of(t.begin() + static_cast<std::ptrdiff_t>(first), t.end(),
                                                      [](unsigned char c) { return std::isdigit(c) != 0; });
  if (!digits) {
    problem = "is not a whole number; " + range;
    return std::nullopt;
  }
  errno = 0;
  const long long v = std::strtoll(t.c_str(), nullptr, 10);
  if (errno == ERANGE || v < min || v > max) {
    problem = "is out of range; " + range;
    return std::nullopt;
  }
  return v;
}

std::optional<double> parse_number_text(std::string_view text, double min, double max, std::string& problem) {
  const std::string t(trim(text));
  char* end = nullptr;
  errno = 0;
  const double v = t.empty() ? 0 : std::strtod(t.c_str(), &end);
  if (t.empty() || end != t.c_str() + t.size() || errno == ERANGE || !std::isfinite(v)) {
    problem = "is not a number; " + number_range(min, max);
    return std::nullopt;
  }
  if (v < min || v > max) {
    problem = "is out of range; " + number_range(min, max);
    return std::nullopt;
  }
  return v;
}

std::optional<bool> parse_bool_text(std::string_view text, std::string& problem) {
  std::string t(trim(text));
  std::transform(t.begin(), t.end(), t.begin(), [](unsigned char c) { return std::tolower(c); });
  if (t == "1" || t == "true" || t == "yes" || t == "on") return true;
  if (t == "0" || t == "false" || t == "no" || t == "off") return false;
  problem = "is not a yes/no value; use 1/0, true/false, yes/no or on/off";
  return std::nullopt;
}

std::string check_option_declaration(std::uint32_t type, std::string_view default_value, std::int64_t int_min,
                                     std::int64_t int_max, double double_min, double double_max) {
  std::string problem;
  const std::string text = "default '" + std::string(default_value) + "' ";
  switch (type) {
    case WM_OPTION_INT:
      if (int_min > int_max)
        return "range is empty (min " + std::to_string(int_min) + " > max " + std::to_string(int_max) + ")";
      if (!parse_integer_text(default_value, int_min, int_max, problem)) return text + problem;
      return {};
    case WM_OPTION_DOUBLE:
      if (std::isnan(double_min) || std::isnan(double_max)) return "range has a NaN bound";
      if (double_min > double_max) {
        std::ostringstream os;
        os << "range is empty (min " << double_min << " > max " << double_max << ")";
        return os.str();
      }
      if (!parse_number_text(default_value, double_min, double_max, problem)) return text + problem;
      return {};
    case WM_OPTION_BOOL:
      if (!parse_bool_text(default_value, problem)) return text + problem;
      return {};
    default:
      return {};
  }
}

std::size_t edit_distance(std::string_view a, std::string_view b) {
  std::vector<std::size_t> row(b.size() + 1);
  for (std::size_t j = 0; j <= b.size(); ++j) row[j] = j;
  for (std::size_t i = 1; i <= a.size(); ++i) {
    std::size_t diagonal = row[0];
    row[0] = i;
    for (std::size_t j = 1; j <= b.size(); ++j) {
      const std::size_t above = row[j];
      row[j] = std::min({row[j] + 1, row[j - 1] + 1, diagonal + (a[i - 1] == b[j - 1] ? 0 : 1)});
      diagonal = above;
    }
  }
  return row[b.size()];
}

std::string closest_name(std::string_view word, const std::vector<std::string>& candidates) {
  const std::size_t allowed = std::max<std::size_t>(2, word.size() / 3);
  std::string best;
  std::size_t best_distance = allowed + 1;
  for (const std::string& c : candidates) {
    std::size_t d = edit_distance(word, c);
    // An abbreviation is never taken for the flag, but it is the obvious suggestion.
    if (!word.empty() && c.size() > word.size() && c.compare(0, word.size(), word) == 0) d = std::min(d, allowed);
    if (d < best_distance) {
      best_distance = d;
      best = c;
    }
  }
  return best;
}

}  // namespace wm::detail
