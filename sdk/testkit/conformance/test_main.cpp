// SPDX-License-Identifier: MIT
// test_main.cpp: main() of every test program. Worker processes of the processes backend are the
// test program started again in a worker role: they must serve before GoogleTest runs anything.
#include <wm/work_manager.hpp>

#include <gtest/gtest.h>

int main(int argc, char** argv) {
  wm::serve_if_worker();
  testing::InitGoogleTest(&argc, argv);
  return RUN_ALL_TESTS();
}
