// SPDX-License-Identifier: MIT
// codec_fuzz.cpp: libFuzzer target for everything the core decodes from another process: task
// arguments and results (decode_value), replies (complete_from_reply, master side) and requests
// (execute_encoded_into, worker side). Untrusted bytes may fail to decode, never crash, hang,
// leak or trip a sanitizer; and what the worker answers to any request must decode on the master.
#include "codec_fuzz.hpp"

#include "internal.hpp"

#include <wm/future.hpp>

#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string_view>

namespace {

using namespace wmfuzz;
using wm::detail::ByteBuffer;

[[noreturn]] void broken(const std::string& what) {
  std::fprintf(stderr, "wm fuzz: invariant broken: %s\n", what.c_str());
  std::abort();
}

// Whatever decodes must encode again, and that encoding must decode to the same encoding.
template <class T>
void decode(const char* data, std::size_t size) {
  std::string again;
  try {
    wm::detail::encode_value(again, wm::detail::decode_value<T>(data, size));
  } catch (const std::exception&) {
    return;  // bad bytes fail cleanly: wm::Error or cereal::Exception
  }
  std::string third;
  wm::detail::encode_value(third, wm::detail::decode_value<T>(again.data(), again.size()));
  if (third != again) broken("a decoded value does not encode to a stable encoding");
}

// Messages the master writes when a reply's bytes are bad (the worker never writes them).
bool master_rejected(const wm::ErrorInfo& info) {
  for (std::string_view m : {"reply of ", "result did not decode", "error report did not decode"})
    if (info.message.rfind(m, 0) == 0) return true;
  return false;
}

// Completes a task returning R with a reply and reads the future as a host would. Returns the
// failure record, or nullopt if the task succeeded.
template <class R, class Fn, class... A>
std::optional<wm::ErrorInfo> complete(Fn fn, const char* data, std::size_t size, A... args) {
  wm::TaskSpec<R> spec = wm::task(fn, args...);
  wm::detail::complete_from_reply(spec.state().get(), data, size, nullptr);
  wm::Future<R> future(spec.state());
  if (!future.done()) broken("complete_from_reply left the task unfinished");
  try {
    future.get_result();
  } catch (const wm::TaskFailure& f) {
    if (!future.failed()) broken("a succeeded future threw");
    if (future.get_traceback() != f.stacktrace()) broken("traceback and failure disagree");
    return future.error_info();
  }
  if (future.failed()) broken("a failed future returned a result");
  return std::nullopt;
}

// Finishes a task from the worker's reply to `request`, on a task of the type the request names.
void check_worker_reply(const char* request, std::size_t size, const ByteBuffer& reply) {
  constexpr std::uint32_t kReplyMagic = 0x31504d57;  // "WMP1" (registry.cpp)
  std::uint32_t magic = 0;
  if (reply.size < 5) broken("the worker wrote no reply");
  std::memcpy(&magic, reply.data, sizeof magic);
  if (magic != kReplyMagic || static_cast<unsigned char>(reply.data[4]) > 1) broken("the worker's reply has no reply header");
  // The task name sits after the request's magic (4 bytes) and its length (2 bytes).
  std::string name;
  if (size >= 6) {
    std::uint16_t len = 0;
    std::memcpy(&len, request + 4, sizeof len);
    if (size >= 6u + len) name.assign(request + 6, len);
  }
  std::optional<wm::ErrorInfo> failure;
  if (name == "wmfuzz::concat")
    failure = complete<std::string>(concat, reply.data, reply.size, std::vector<std::string>{});
  else if (name == "wmfuzz::count_words")
    failure = complete<std::map<std::string, int>>(count_words, reply.data, reply.size, std::vector<std::string>{});
  else if (name == "wmfuzz::nothing")
    failure = complete<void>(nothing, reply.data, reply.size);
  else if (name == "wmfuzz::box")
    failure = complete<std::unique_ptr<std::vector<int>>>(box, reply.data, reply.size, std::vector<int>{});
  else if (name == "wmfuzz::check_positive")
    failure = complete<int>(check_positive, reply.data, reply.size, 0);
  else if (name == "wmfuzz::add")
    failure = complete<int>(add, reply.data, reply.size, 0, 0);
  else
    failure = complete<int>(add, reply.data, reply.size, 0, 0);  // unknown task: a failure report
  // A task whose signature matched answers with bytes its master decodes.
  if (failure && master_rejected(*failure)) broken("the master rejected the worker's reply: " + failure->message);
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* bytes, std::size_t n) {
  if (n == 0) return 0;
  const auto selector = static_cast<Selector>(bytes[0] % selector_count);
  const char* data = reinterpret_cast<const char*>(bytes + 1);
  const std::size_t size = n - 1;
  switch (selector) {
    case decode_arguments: decode<Arguments>(data, size); break;
    case decode_table: decode<Table>(data, size); break;
    case decode_error: decode<wm::ErrorInfo>(data, size); break;
    case decode_mixed: decode<Mixed>(data, size); break;
    case reply_string: complete<std::string>(concat, data, size, std::vector<std::string>{}); break;
    case reply_map: complete<std::map<std::string, int>>(count_words, data, size, std::vector<std::string>{}); break;
    case reply_void: complete<void>(nothing, data, size); break;
    case reply_move_only: complete<std::unique_ptr<std::vector<int>>>(box, data, size, std::vector<int>{}); break;
    case worker_request: {
      ByteBuffer reply;
      wm::detail::execute_encoded_into(data, size, &reply);
      check_worker_reply(data, size, reply);
      break;
    }
    case selector_count: break;
  }
  return 0;
}
