// SPDX-License-Identifier: MIT
// setup_errors.cpp: a configuration error the host does not catch ends the program with its message
// and exit code 2 (not std::terminate's abort); which process of a parallel job speaks.
#include "internal.hpp"

#include <errno.h>  // program_invocation_short_name
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <exception>
#include <iostream>
#include <mutex>
#include <string>
#include <thread>

namespace wm::detail {
namespace {

// The exception object wm's set-up let out last (compared by address, never dereferenced here).
std::atomic<const void*> g_armed{nullptr};
std::terminate_handler g_previous = nullptr;

[[noreturn]] void end_with(const char* what) noexcept {
  if (is_first_rank()) {
    const std::string line = std::string(program_invocation_short_name) + ": " + what + "\n";
    std::cout.flush();
    std::fflush(stdout);
    // One write: the line does not interleave with other processes' output.
    [[maybe_unused]] const ssize_t n = ::write(STDERR_FILENO, line.data(), line.size());
  } else {
    // mpirun (or srun) ends the whole job when the first rank exits with an error, and may kill rank
    // 0 before it has said why (seen in 1 of 20 runs of mpirun -np 3 here without this wait, in none
    // of 30 with it). The launcher ends this rank as soon as rank 0 has exited, so the wait costs a
    // failing job nothing where rank 0 is quick.
    std::this_thread::sleep_for(std::chrono::seconds(1));
  }
  std::fflush(nullptr);
  // _Exit: the stack was not unwound (no handler caught the exception), so the objects on it and
  // the static ones are left alone, as std::terminate would leave them.
  std::_Exit(2);
}

[[noreturn]] void on_terminate() noexcept {
  if (std::current_exception() != nullptr) {
    try {
      throw;  // the exception that reached std::terminate, to look at its type and identity
    } catch (const Error& e) {
      if (&e == g_armed.load()) end_with(e.what());
    } catch (...) {
    }
  }
  // Anything else is the host's business: whatever handled it before us (by default, libstdc++'s
  // "terminate called after throwing ..." and abort) handles it now.
  if (g_previous != nullptr) g_previous();
  std::abort();
}

}  // namespace

bool is_first_rank() noexcept {
  // The launchers' own variables, read without MPI (the error may come before MPI is initialised,
  // or in a host that never links it): Open MPI, PMIx, PMI (MPICH, Intel MPI), Slurm's srun.
  for (const char* var : {"OMPI_COMM_WORLD_RANK", "PMIX_RANK", "PMI_RANK", "SLURM_PROCID"})
    if (const char* v = std::getenv(var); v != nullptr && *v != '\0') return std::string(v) == "0";
  return true;
}

void exit_2_if_uncaught(const Error& e) noexcept {
  // A library leaves its host alone: no terminate handler is installed until a configuration error
  // is actually on its way out of wm, and then only one that handles that very exception object
  // and hands every other one to the handler that was there before. A host that catches the error
  // never sees a difference.
  g_armed.store(&e);
  static std::once_flag installed;
  std::call_once(installed, [] { g_previous = std::set_terminate(&on_terminate); });
}

}  // namespace wm::detail
