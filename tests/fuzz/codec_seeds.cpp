// SPDX-License-Identifier: MIT
// codec_seeds.cpp: writes the seed corpus of the codec fuzz target into the directory given:
// real encodings of values, requests, and the worker's replies to them, each behind its selector.
#include "codec_fuzz.hpp"

#include "internal.hpp"

#include <cstdio>
#include <fstream>
#include <string>

namespace {

using namespace wmfuzz;

int written = 0;

void seed(const std::string& dir, Selector selector, const std::string& bytes) {
  const std::string path = dir + "/seed-" + std::to_string(written++);
  std::ofstream out(path, std::ios::binary);
  out.put(static_cast<char>(selector));
  out.write(bytes.data(), static_cast<std::streamsize>(bytes.size()));
  if (!out) throw std::runtime_error("cannot write " + path);
}

template <class T>
std::string encoded(const T& value) {
  std::string out;
  wm::detail::encode_value(out, value);
  return out;
}

// The request a master sends for this task, and the reply a worker gives to it.
template <class R>
std::pair<std::string, std::string> exchange(const wm::TaskSpec<R>& spec) {
  std::string request;
  wm::detail::StringSink sink(request);
  if (!spec.state()->encode_request(sink)) throw std::runtime_error("task not registered: " + spec.name());
  wm::detail::ByteBuffer reply;
  wm::detail::execute_encoded_into(request.data(), request.size(), &reply);
  return {request, std::string(reply.data, reply.size)};
}

template <class R>
void seed_exchange(const std::string& dir, Selector reply_selector, const wm::TaskSpec<R>& spec) {
  auto [request, reply] = exchange(spec);
  seed(dir, worker_request, request);
  seed(dir, reply_selector, reply);
}

}  // namespace

int main(int argc, char** argv) {
  if (argc != 2) {
    std::fprintf(stderr, "usage: %s <seed directory>\n", argv[0]);
    return 2;
  }
  const std::string dir = argv[1];
  try {
    seed(dir, decode_arguments, encoded(Arguments{42, "hello", {1.5, -2.25, 1e300}}));
    seed(dir, decode_table, encoded(Table{{"a", {1, 2, 3}}, {"bb", {}}, {"ccc", {-1}}}));
    wm::ErrorInfo info;
    info.kind = wm::FailureKind::worker_lost;
    info.type_name = "std::runtime_error";
    info.message = "boom";
    info.task_name = "wmfuzz::concat";
    info.host = "host";
    info.pid = 1234;
    info.worker_index = 2;
    info.backend = "processes";
    info.stacktrace = " 0# f() at f.cpp:1\n";
    seed(dir, decode_error, encoded(info));
    seed(dir, decode_mixed,
         encoded(Mixed{{"x", "yy", ""}, std::u16string(u"text"), {3, 1, 2}, {7, true}, {true, false, true}}));
    seed(dir, decode_mixed, encoded(Mixed{{}, std::nullopt, {}, {0, false}, {}}));

    seed_exchange(dir, reply_string, wm::task(concat, std::vector<std::string>{"a", "bc", "def"}));
    seed_exchange(dir, reply_map, wm::task(count_words, std::vector<std::string>{"a", "b", "a"}));
    seed_exchange(dir, reply_void, wm::task(nothing));
    seed_exchange(dir, reply_move_only, wm::task(box, std::vector<int>{1, 2, 3}));
    seed_exchange(dir, reply_string, wm::task(check_positive, -5));  // a failure report
    seed_exchange(dir, reply_string, wm::task(add, 2, 3));           // the wrong result type
    seed_exchange(dir, reply_void, wm::task_by_name<int>("wmfuzz::no_such_task", 1));
    seed_exchange(dir, reply_void, wm::task_by_name<int>("wmfuzz::add", std::string("signature")));
  } catch (const std::exception& e) {
    std::fprintf(stderr, "%s: %s\n", argv[0], e.what());
    return 1;
  }
  std::printf("%d seeds written to %s\n", written, dir.c_str());
  return 0;
}
