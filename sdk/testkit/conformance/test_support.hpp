// SPDX-License-Identifier: MIT
// test_support.hpp: small helpers of the tests, header only (no task is registered here): how a
// future failed, and a bound on code that could hang.
#pragma once

#include <wm/wm.hpp>

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <functional>
#include <future>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

namespace wmtest {

/** The backends this test program runs the suites on, each "name" or "name:workers", as the
 *  comma-separated lists it was built with (backend_lists.cpp, compiled with the program's
 *  WM_CONFORMANCE_BACKENDS and WM_CRASH_MATRIX_BACKENDS: the suites themselves compile once for
 *  every program). */
const char* conformance_backends();
const char* crash_matrix_backends();

/** "a,b:2,,c" -> {"a", "b:2", "c"}. */
inline std::vector<std::string> split_backends(const char* list) {
  std::vector<std::string> out;
  std::stringstream ss(list);
  for (std::string item; std::getline(ss, item, ',');)
    if (!item.empty()) out.push_back(item);
  return out;
}

/** True if the finished future failed with an exception of type E. */
template <class E>
bool fails_with(const wm::WMFuture& f) {
  try {
    f.get_result_any(false);
  } catch (const E&) {
    return true;
  } catch (...) {
  }
  return false;
}

/** How a finished future failed, "Type: what()", for checks and diagnostics; "(no failure)". */
inline std::string failure_of(const wm::WMFuture& f) {
  try {
    f.get_result_any(false);
    return "(no failure)";
  } catch (const wm::WorkerLostError& e) {
    return std::string("WorkerLostError: ") + e.what();
  } catch (const wm::ProtocolError& e) {
    return std::string("ProtocolError: ") + e.what();
  } catch (const wm::TaskTimeoutError& e) {
    return std::string("TaskTimeoutError: ") + e.what();
  } catch (const wm::ShutdownError& e) {
    return std::string("ShutdownError: ") + e.what();
  } catch (const wm::CancelledError& e) {
    return std::string("CancelledError: ") + e.what();
  } catch (const wm::ResourceError& e) {
    return std::string("ResourceError: ") + e.what();
  } catch (const wm::TaskError& e) {
    return std::string("TaskError: ") + e.what();
  } catch (const std::exception& e) {
    return std::string("other: ") + e.what();
  } catch (...) {
    return "other: an exception that is not a std::exception";
  }
}

/** Runs fn on a thread: a hang ends the program with a message (nothing after a hang can be
 *  trusted) instead of a test that never ends. */
inline void within(std::chrono::seconds limit, const char* what, const std::function<void()>& fn) {
  std::promise<void> done;
  std::thread t([&] {
    fn();
    done.set_value();
  });
  if (done.get_future().wait_for(limit) != std::future_status::ready) {
    std::fprintf(stderr, "HANG: %s did not return within %lld s\n", what, static_cast<long long>(limit.count()));
    std::fflush(stderr);
    std::_Exit(3);
  }
  t.join();
}

}  // namespace wmtest
