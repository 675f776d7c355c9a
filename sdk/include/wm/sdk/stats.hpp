// SPDX-License-Identifier: MIT
// wm/sdk/stats.hpp: what a backend tells wm::WorkManager::stats() (wm_backend_descriptor.stats,
// ABI 1.1): its totals and each worker, filled by wm::sdk::Backend::do_stats().
//
// The core counts submitted, finished and failed tasks itself (failures per worker too, by the
// worker index of their record), and keeps the task each thread of an in-process backend runs as
// a worker (services->set_worker): a backend fills only what it alone knows. Remote backends get
// all of it from the engine's dispatcher.
#pragma once

#include <wm/abi.h>

#include <cstdint>
#include <string>
#include <vector>

namespace wm::sdk {

/** One worker (wm_worker_stats, with strings of its own). */
struct WorkerStats {
  wm_worker_state state = WM_WORKER_STARTING;
  std::int32_t index = -1;  // the index failures name it by (wm_worker_identity.index)
  std::int64_t pid = 0;
  std::int32_t rank = -1;
  std::string host;                // empty: this host
  std::uint64_t task_sequence = 0; // the task it runs now (wm_task_info.sequence); 0: none
  std::string task_name;
  double task_seconds = 0;
  std::uint64_t tasks_done = 0;
  std::uint32_t restarts = 0;
  std::uint32_t in_flight = 0;
  double busy_seconds = 0;
  double up_seconds = 0;
  std::uint64_t bytes_sent = 0;
  std::uint64_t bytes_received = 0;

  /** The C record, pointing into this object (valid while it lives unchanged). */
  wm_worker_stats c() const {
    wm_worker_stats w{};
    w.struct_size = sizeof w;
    w.state = state;
    w.where = wm_worker_identity{sizeof(wm_worker_identity), index, pid, rank, 0, host.empty() ? nullptr : host.c_str()};
    w.task_name = task_sequence != 0 ? task_name.c_str() : nullptr;
    w.task_sequence = task_sequence;
    w.task_seconds = task_seconds;
    w.tasks_done = tasks_done;
    w.restarts = restarts;
    w.in_flight = in_flight;
    w.busy_seconds = busy_seconds;
    w.up_seconds = up_seconds;
    w.bytes_sent = bytes_sent;
    w.bytes_received = bytes_received;
    return w;
  }
};

/** A backend's totals and workers (wm_backend_stats and the workers visited). */
struct BackendStats {
  std::uint64_t queued = 0;
  std::uint64_t in_flight = 0;
  std::uint64_t retried = 0;
  std::uint64_t bytes_sent = 0;
  std::uint64_t bytes_received = 0;
  std::vector<WorkerStats> workers;
};

}  // namespace wm::sdk
