// SPDX-License-Identifier: MIT
// wm/sdk/remote/registry.hpp: the registry handshake. Every worker sends, with its hello, the tasks
// it knows (name, signature fingerprint, and the build of the task library that registered each);
// the master compares them with its own before it sends the worker anything. A worker that differs
// is never used, and the report names the tasks and the libraries that differ, instead of odd
// failures later (an UnknownTaskError, a SignatureMismatchError, a task of another build).
#pragma once

#include <wm/abi.h>

#include <cstdint>
#include <string>
#include <vector>

namespace wm::sdk::remote {

struct TaskListing {
  struct Task {
    std::string name;
    std::uint64_t fingerprint = 0;
    std::string signature;  // readable, for reports
    std::string library;    // "" for the host program
  };
  struct Library {
    std::string path;
    std::string build_id;  // hex of the ELF GNU build-id note, "" if it has none
  };
  std::vector<Task> tasks;         // in name order
  std::vector<Library> libraries;  // the task libraries the tasks come from, in path order
  std::uint64_t digest = 0;        // of all of the above but signatures (equal digests: equal listings)

  /** This process's registry, through the core's list_tasks; build ids read from the loaded
   *  libraries (dl_iterate_phdr). */
  static TaskListing of_this_process(const wm_core_services& services);
  /** Bytes for the hello's extension. */
  std::string encode() const;
  /** Parses encode()'s bytes; false (with why) if they are malformed. Never reads out of bounds. */
  static bool parse(const char* data, std::size_t size, TaskListing& out, std::string& why);
};

/** What differs between the master's listing and a worker's, as one readable paragraph ("" if
 *  nothing does). worker: the worker's label, e.g. "worker 1 (pid 42 on node3)". */
std::string compare_listings(const TaskListing& master, const TaskListing& worker, const std::string& worker_label);

}  // namespace wm::sdk::remote
