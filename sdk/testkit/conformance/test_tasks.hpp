// SPDX-License-Identifier: MIT
// test_tasks.hpp: tasks registered with WM_TASK, shared by the tests, and small test helpers.
#pragma once

#include <wm/shared_array.hpp>
#include <wm/wm.hpp>

#include <cstdint>
#include <cstdlib>
#include <memory>
#include <string>
#include <vector>

namespace wmtest {

int square(int x);
int add(int a, int b);
void nothing();
std::string echo(std::string s);
int sleep_then(int ms, int value);          // sleeps ms milliseconds, returns value
int wait_for_file(std::string path, int limit_ms);  // 1 once path exists, 0 if it did not within limit_ms
int touch_then_sleep(std::string path, int ms);  // creates path (it started), sleeps ms, returns 1
int touch_then_wait(std::string started, std::string gate, int limit_ms);  // creates started, then wait_for_file(gate)
int throw_runtime(std::string message);     // throws std::runtime_error(message)
int throw_int(int value);                   // throws value (not a std::exception)
std::int64_t where_pid();                   // getpid() of the process running it
std::string process_index();                // WM_PROCESS_INDEX seen by the task ("" if unset)

/** An argument that travels as its value; `alive` (not sent) shows how long the master holds it. */
struct Token {
  std::shared_ptr<int> alive;
  int value = 0;
  template <class Archive>
  void serialize(Archive& ar) {
    ar(value);
  }
};
int token_value(Token t);                    // t.value

/** A result that can be moved and serialized but not copied. */
struct Blob {
  Blob() = default;
  explicit Blob(std::vector<int> v) : values(std::move(v)) {}
  Blob(Blob&&) = default;
  Blob& operator=(Blob&&) = default;
  Blob(const Blob&) = delete;
  Blob& operator=(const Blob&) = delete;
  std::vector<int> values;
  template <class Archive>
  void serialize(Archive& ar) {
    ar(values);
  }
};
// Tasks with move-only results (registered, so remote backends run them too).
Blob make_blob(int n);                                         // values 1..n
std::unique_ptr<std::string> boxed(std::string s);             // s in a unique_ptr
// A standard container of move-only elements: its copy constructor exists but cannot compile.
std::vector<std::unique_ptr<std::string>> split_words(std::string text);

// Shared arrays (wm::SharedArray): values pattern(i, seed) = i * 2654435761 + seed.
using Words = wm::SharedArray<std::uint32_t>;
inline std::uint32_t pattern(std::size_t i, std::uint32_t seed) { return static_cast<std::uint32_t>(i * 2654435761u + seed); }
Words sa_echo(Words in);                          // a new array holding a copy of in
Words sa_identity(Words in);                      // in itself
Words sa_make(std::uint64_t n, std::uint32_t seed);  // n words of pattern(i, seed), made in the task
std::uint64_t sa_check(Words in, std::uint32_t seed);  // how many words differ from pattern(i, seed)
int sa_write_argument(Words in);                  // 1: writing it threw std::logic_error (read-only); 0: it wrote
/** A user's struct holding shared arrays, serialized with cereal. */
struct Frame {
  int step = 0;
  wm::SharedArray<double> coords;
  wm::SharedBytes note;
  template <class Archive>
  void serialize(Archive& ar) {
    ar(step, coords, note);
  }
};
Frame sa_advance(Frame f);                        // step + 1, coords + 1.0 (a new array), note as it came

/** Sets an environment variable for the life of the object, restoring it afterwards. */
class ScopedEnv {
 public:
  ScopedEnv(const char* name, const char* value);
  ~ScopedEnv();
  ScopedEnv(const ScopedEnv&) = delete;
  ScopedEnv& operator=(const ScopedEnv&) = delete;

 private:
  std::string name_;
  bool had_ = false;
  std::string old_;
};

}  // namespace wmtest
