// SPDX-License-Identifier: MIT
// test_tasks.cpp: the tasks the tests submit. Registered by name, so every backend can run them.
#include "test_tasks.hpp"

#include <wm/task.hpp>

#include <unistd.h>

#include <chrono>
#include <cstring>
#include <utility>
#include <fstream>
#include <numeric>
#include <sstream>
#include <stdexcept>
#include <thread>

namespace wmtest {

int square(int x) { return x * x; }
int add(int a, int b) { return a + b; }
void nothing() {}
std::string echo(std::string s) { return s; }
int sleep_then(int ms, int value) {
  std::this_thread::sleep_for(std::chrono::milliseconds(ms));
  return value;
}
int wait_for_file(std::string path, int limit_ms) {
  const auto until = std::chrono::steady_clock::now() + std::chrono::milliseconds(limit_ms);
  while (access(path.c_str(), F_OK) != 0) {
    if (std::chrono::steady_clock::now() >= until) return 0;
    std::this_thread::sleep_for(std::chrono::milliseconds(5));
  }
  return 1;
}
int touch_then_sleep(std::string path, int ms) {
  { std::ofstream(path) << "started\n"; }
  std::this_thread::sleep_for(std::chrono::milliseconds(ms));
  return 1;
}
int touch_then_wait(std::string started, std::string gate, int limit_ms) {
  { std::ofstream(started) << "started\n"; }
  return wait_for_file(std::move(gate), limit_ms);
}
int throw_runtime(std::string message) { throw std::runtime_error(message); }
int throw_int(int value) { throw value; }
std::int64_t where_pid() { return static_cast<std::int64_t>(getpid()); }
std::string process_index() {
  const char* v = std::getenv("WM_PROCESS_INDEX");
  return v ? v : "";
}
int token_value(Token t) { return t.value; }

Blob make_blob(int n) {
  std::vector<int> v(static_cast<std::size_t>(n));
  std::iota(v.begin(), v.end(), 1);
  return Blob(std::move(v));
}
std::unique_ptr<std::string> boxed(std::string s) { return std::make_unique<std::string>(std::move(s)); }
std::vector<std::unique_ptr<std::string>> split_words(std::string text) {
  std::vector<std::unique_ptr<std::string>> words;
  std::istringstream in(text);
  for (std::string w; in >> w;) words.push_back(std::make_unique<std::string>(w));
  return words;
}

ScopedEnv::ScopedEnv(const char* name, const char* value) : name_(name) {
  if (const char* old = std::getenv(name)) {
    had_ = true;
    old_ = old;
  }
  if (value)
    setenv(name, value, 1);
  else
    unsetenv(name);
}
Words sa_echo(Words in) {
  Words out = wm::make_shared_array<std::uint32_t>(in.size());
  if (!in.empty()) std::memcpy(out.data(), std::as_const(in).data(), in.size_bytes());
  return out;
}
Words sa_identity(Words in) { return in; }
Words sa_make(std::uint64_t n, std::uint32_t seed) {
  Words out = wm::make_shared_array<std::uint32_t>(static_cast<std::size_t>(n));
  for (std::size_t i = 0; i < out.size(); ++i) out[i] = pattern(i, seed);
  return out;
}
std::uint64_t sa_check(Words in, std::uint32_t seed) {
  std::uint64_t wrong = 0;
  const Words& c = in;
  for (std::size_t i = 0; i < c.size(); ++i) wrong += c[i] != pattern(i, seed) ? 1 : 0;
  return wrong;
}
int sa_write_argument(Words in) {
  try {
    if (!in.empty()) in[0] = 7;
    return 0;
  } catch (const std::logic_error&) {
    return 1;
  }
}
Frame sa_advance(Frame f) {
  Frame out;
  out.step = f.step + 1;
  out.coords = wm::make_shared_array<double>(f.coords.size());
  const auto& in = std::as_const(f.coords);
  for (std::size_t i = 0; i < in.size(); ++i) out.coords[i] = in[i] + 1.0;
  out.note = f.note;
  return out;
}

ScopedEnv::~ScopedEnv() {
  if (had_)
    setenv(name_.c_str(), old_.c_str(), 1);
  else
    unsetenv(name_.c_str());
}

}  // namespace wmtest

WM_TASK(wmtest::square);
WM_TASK(wmtest::add);
WM_TASK(wmtest::nothing);
WM_TASK(wmtest::echo);
WM_TASK(wmtest::sleep_then);
WM_TASK(wmtest::wait_for_file);
WM_TASK(wmtest::touch_then_sleep);
WM_TASK(wmtest::touch_then_wait);
WM_TASK(wmtest::throw_runtime);
WM_TASK(wmtest::throw_int);
WM_TASK(wmtest::where_pid);
WM_TASK(wmtest::process_index);
WM_TASK(wmtest::token_value);
WM_TASK(wmtest::make_blob);
WM_TASK(wmtest::boxed);
WM_TASK(wmtest::split_words);
WM_TASK(wmtest::sa_echo);
WM_TASK(wmtest::sa_identity);
WM_TASK(wmtest::sa_make);
WM_TASK(wmtest::sa_check);
WM_TASK(wmtest::sa_write_argument);
WM_TASK(wmtest::sa_advance);
