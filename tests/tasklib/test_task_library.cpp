// SPDX-License-Identifier: MIT
// test_task_library.cpp: a task library: tasks that exist only once the host loads this file.
#include <wm/task.hpp>

#include <string>

namespace tasklib {
int triple(int x) { return 3 * x; }
std::string shout(std::string s) {
  for (char& c : s) c = static_cast<char>(c >= 'a' && c <= 'z' ? c - 'a' + 'A' : c);
  return s + "!";
}
}  // namespace tasklib

WM_TASK(tasklib::triple);
WM_TASK(tasklib::shout);
