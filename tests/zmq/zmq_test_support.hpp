// SPDX-License-Identifier: MIT
// zmq_test_support.hpp: starting, watching and ending the processes of zmq tests (nodes, a helper
// master): every one is bounded in time and ended, and what is left over is found.
#pragma once

#include "../common/proc_table.hpp"

#include <sys/types.h>
#include <time.h>

#include <chrono>
#include <map>
#include <string>
#include <vector>

namespace zmqtest {

/** A value for spawn()'s environment that removes the variable. */
inline const std::string kUnset = "\x01unset";

/** Starts `program` (argv: program, args...) with this process's environment changed by `env`
 *  (kUnset removes a variable), its standard error appended to `stderr_path` ("": inherited), in a
 *  process group of its own. -1 on failure. */
pid_t spawn(const std::string& program, const std::map<std::string, std::string>& env,
            const std::string& stderr_path = "", const std::vector<std::string>& args = {});

/** Waits up to `limit` for pid (a child) to end; its wait status, or -1 if it is still running. */
int wait_for_exit(pid_t pid, std::chrono::milliseconds limit);

/** Ends a child for good: SIGKILL and reap. */
void kill_and_reap(pid_t pid);

using wmtest::children_of;  // tests/common/proc_table.hpp
using wmtest::running;

/** Polls pred every 10 ms for up to limit. */
template <class Pred>
bool eventually(Pred pred, std::chrono::milliseconds limit) {
  const auto until = std::chrono::steady_clock::now() + limit;
  while (std::chrono::steady_clock::now() < until) {
    if (pred()) return true;
    struct timespec ts{0, 10 * 1000 * 1000};
    nanosleep(&ts, nullptr);
  }
  return pred();
}

/** A private directory, removed with its files by the destructor. */
class TempDir {
 public:
  TempDir();
  ~TempDir();
  TempDir(const TempDir&) = delete;
  TempDir& operator=(const TempDir&) = delete;
  const std::string& path() const { return path_; }
  std::string file(const std::string& name) const { return path_ + "/" + name; }

 private:
  std::string path_;
};

/** The whole content of a file ("" if it cannot be read). */
std::string read_file(const std::string& path);

/** "killed by signal 9", "exited with code 0", "still running". */
std::string status_text(int status);

}  // namespace zmqtest
