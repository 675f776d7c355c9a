// SPDX-License-Identifier: MIT
// setup_host.cpp: hosts that meet a configuration error in the ways a host program can: catching
// it, catching it and then failing otherwise, with a terminate handler of their own. The mode is
// the first argument; the rest goes to wm::make_work_manager.
//
//   setup_host catch ARGS...               catches wm::ConfigError, says so, exit code 0
//   setup_host catch-then-throw ARGS...    catches it, then lets a std::runtime_error escape
//   setup_host own-handler ARGS...         installs its own terminate handler first (exit code 7),
//                                          then lets wm's error escape
//   setup_host own-handler-other ARGS...   the same, catches wm's error, lets a std::runtime_error escape
//   setup_host print-help [BACKEND]        prints wm::wm_args_help() (or that backend's), exit code 0
#include <wm/wm.hpp>

#include <unistd.h>

#include <cstdio>
#include <cstring>
#include <exception>
#include <iostream>
#include <stdexcept>
#include <string>

namespace {

[[noreturn]] void hosts_own_handler() {
  const char text[] = "setup_host: the host's own terminate handler ran\n";
  [[maybe_unused]] ssize_t n = ::write(STDERR_FILENO, text, sizeof text - 1);
  std::_Exit(7);
}

int usage() {
  std::cerr << "usage: setup_host catch|catch-then-throw|own-handler|own-handler-other|print-help ARGS...\n";
  return 64;
}

}  // namespace

int main(int argc, char** argv) {
  if (argc < 2) return usage();
  const std::string mode = argv[1];
  // wm sees the program name and the arguments after the mode.
  argv[1] = argv[0];
  --argc;
  ++argv;
  if (mode == "print-help") {
    std::cout << (argc > 1 ? wm::wm_args_help(argv[1]) : wm::wm_args_help());
    return 0;
  }
  if (mode == "own-handler" || mode == "own-handler-other") std::set_terminate(&hosts_own_handler);
  if (mode == "own-handler") {
    auto wm = wm::make_work_manager(argc, argv);
    std::cout << "made " << wm->name() << "\n";
    return 0;
  }
  try {
    auto wm = wm::make_work_manager(argc, argv);
    std::cout << "made " << wm->name() << "\n";
  } catch (const wm::ConfigError& e) {
    std::cout << "caught wm::ConfigError: " << e.what() << std::endl;  // before an abort, if one comes
  }
  if (mode == "catch") return 0;
  if (mode == "catch-then-throw" || mode == "own-handler-other") throw std::runtime_error("the host's own error");
  return usage();
}
