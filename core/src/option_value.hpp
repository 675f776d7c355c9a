// SPDX-License-Identifier: MIT
// option_value.hpp: the one grammar of option values (environment, command line, declared defaults).
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace wm::detail {

// Each parser takes the whole text as the value (surrounding blanks allowed) or refuses it. On
// refusal it returns nullopt and sets `problem` to what follows "NAME='TEXT' " in a message, e.g.
// "is not a whole number; give a whole number from 1 to 65536".
std::optional<long long> parse_integer_text(std::string_view text, long long min, long long max,
                                            std::string& problem);
std::optional<double> parse_number_text(std::string_view text, double min, double max, std::string& problem);
std::optional<bool> parse_bool_text(std::string_view text, std::string& problem);

// "" when a declared option (type, default, range) is consistent, else what is wrong with it.
std::string check_option_declaration(std::uint32_t type, std::string_view default_value, std::int64_t int_min,
                                     std::int64_t int_max, double double_min, double double_max);

// Levenshtein distance, for "did you mean ...?" suggestions.
std::size_t edit_distance(std::string_view a, std::string_view b);
// The candidate closest to word: at most a third of its length away (at least 2 edits allowed),
// or one the word is a prefix of; "" if none is that close.
std::string closest_name(std::string_view word, const std::vector<std::string>& candidates);

}  // namespace wm::detail
