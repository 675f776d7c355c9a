// SPDX-License-Identifier: MIT
// codec_fuzz.hpp: what the codec fuzz target decodes, shared by the fuzzer and its seed writer.
// An input is one selector byte (which decoder runs) followed by the bytes it decodes.
#pragma once

#include <wm/task.hpp>

#include <cstdint>
#include <map>
#include <memory>
#include <optional>
#include <set>
#include <string>
#include <tuple>
#include <utility>
#include <vector>

namespace wmfuzz {

// Argument and result types representative of what hosts send.
using Arguments = std::tuple<int, std::string, std::vector<double>>;
using Table = std::map<std::string, std::vector<std::int64_t>>;
using Mixed = std::tuple<std::vector<std::string>, std::optional<std::u16string>, std::set<int>,
                         std::pair<std::uint8_t, bool>, std::vector<bool>>;

enum Selector : std::uint8_t {
  decode_arguments = 0,  // decode_value<Arguments>
  decode_table,          // decode_value<Table>
  decode_error,          // decode_value<wm::ErrorInfo>
  decode_mixed,          // decode_value<Mixed>
  reply_string,          // complete_from_reply on a task returning std::string
  reply_map,             // ... returning std::map<std::string, int>
  reply_void,            // ... returning nothing
  reply_move_only,       // ... returning std::unique_ptr<std::vector<int>>
  worker_request,        // execute_encoded_into (the worker side) on a request
  selector_count
};

// Registered tasks (codec_fuzz_tasks.cpp). Every one runs in time linear in its input.
std::string concat(std::vector<std::string> parts);
std::map<std::string, int> count_words(std::vector<std::string> words);
void nothing();
std::unique_ptr<std::vector<int>> box(std::vector<int> values);
int check_positive(int x);  // throws std::invalid_argument for x < 0
int add(int a, int b);

}  // namespace wmfuzz
