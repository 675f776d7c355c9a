// SPDX-License-Identifier: MIT
// codec_fuzz_tasks.cpp: the tasks the codec fuzz target's requests call, registered by name.
#include "codec_fuzz.hpp"

#include <stdexcept>

namespace wmfuzz {

std::string concat(std::vector<std::string> parts) {
  std::string out;
  for (const auto& p : parts) out += p;
  return out;
}

std::map<std::string, int> count_words(std::vector<std::string> words) {
  std::map<std::string, int> counts;
  for (const auto& w : words) ++counts[w];
  return counts;
}

void nothing() {}

std::unique_ptr<std::vector<int>> box(std::vector<int> values) {
  return std::make_unique<std::vector<int>>(std::move(values));
}

int check_positive(int x) {
  if (x < 0) throw std::invalid_argument("negative: " + std::to_string(x));
  return x;
}

int add(int a, int b) { return static_cast<int>(static_cast<unsigned>(a) + static_cast<unsigned>(b)); }

}  // namespace wmfuzz

WM_TASK(wmfuzz::concat);
WM_TASK(wmfuzz::count_words);
WM_TASK(wmfuzz::nothing);
WM_TASK(wmfuzz::box);
WM_TASK(wmfuzz::check_positive);
WM_TASK(wmfuzz::add);
