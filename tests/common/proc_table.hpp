// SPDX-License-Identifier: MIT
// proc_table.hpp: what the tests ask the process table (/proc): which processes a test left
// behind, and whether one still runs. Header-only, for every test program.
#pragma once

#include <dirent.h>
#include <sys/types.h>

#include <cstdlib>
#include <fstream>
#include <sstream>
#include <string>
#include <vector>

namespace wmtest {

/** One process as /proc/PID/stat shows it. */
struct ProcEntry {
  pid_t pid = 0;
  char state = '?';  // 'Z': a zombie (ended, not reaped yet)
  pid_t ppid = 0;
  pid_t pgrp = 0;
};

/** Reads /proc/PID/stat; false if the process is gone. */
inline bool read_proc(pid_t pid, ProcEntry& out) {
  std::ifstream f("/proc/" + std::to_string(pid) + "/stat");
  std::string line;
  if (!std::getline(f, line)) return false;
  const auto close = line.rfind(')');  // the command name may hold spaces and parentheses
  if (close == std::string::npos || close + 2 >= line.size()) return false;
  std::istringstream rest(line.substr(close + 2));
  long ppid = 0, pgrp = 0;
  out.pid = pid;
  rest >> out.state >> ppid >> pgrp;
  out.ppid = static_cast<pid_t>(ppid);
  out.pgrp = static_cast<pid_t>(pgrp);
  return static_cast<bool>(rest);
}

/** Every process there is now. */
inline std::vector<ProcEntry> process_table() {
  std::vector<ProcEntry> out;
  DIR* d = opendir("/proc");
  if (d == nullptr) return out;
  while (dirent* e = readdir(d)) {
    char* end = nullptr;
    const long pid = std::strtol(e->d_name, &end, 10);
    ProcEntry p;
    if (*end == '\0' && pid > 0 && read_proc(static_cast<pid_t>(pid), p)) out.push_back(p);
  }
  closedir(d);
  return out;
}

/** Processes whose parent is `parent` (zombies included: an unreaped child is a leak too). */
inline std::vector<pid_t> children_of(pid_t parent) {
  std::vector<pid_t> out;
  for (const ProcEntry& p : process_table())
    if (p.ppid == parent) out.push_back(p.pid);
  return out;
}

/** Processes in process group pgid that still run (zombies excluded). */
inline int group_members(pid_t pgid) {
  int n = 0;
  for (const ProcEntry& p : process_table()) n += p.pgrp == pgid && p.state != 'Z';
  return n;
}

/** True while the process exists and is not a zombie. */
inline bool running(pid_t pid) {
  ProcEntry p;
  return read_proc(pid, p) && p.state != 'Z';
}

}  // namespace wmtest
