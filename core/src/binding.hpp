// SPDX-License-Identifier: MIT
// binding.hpp: GPUs, cores and declared resources per worker (WM_GPUS_PER_WORKER, WM_BIND, ...):
// the settings, the plan over n workers, and applying a worker's share (not installed).
//
// make_work_manager checks the settings and plans over the backend's workers (configure_binding);
// then each worker takes its share where it starts: a spawned worker process from the variables its
// master's LocalProcesses put in its environment (worker_environment, then bind_spawned_worker in
// serve_if_worker), a threads worker on its thread (bind_worker_thread), an MPI rank or a serial
// process in make_work_manager itself (bind_this_process). Worker i of n gets devices [i*N, (i+1)*N)
// of the list, in the variable the list came from: --wm-gpus / WM_GPUS go into the visible-device
// variable already set, else CUDA_VISIBLE_DEVICES; hwloc's devices into the variable of their kind.
#pragma once

#include <wm/abi.h>
#include <wm/worker.hpp>

#include <cstdint>
#include <functional>
#include <optional>
#include <string>
#include <utility>
#include <vector>

namespace wm::detail {

/** How a worker's cores are bound (WM_BIND). */
enum class BindMode { unset, none, cores, numa };

/** One binding setting as given: its text, and how to name it in a message ("option --wm-gpus",
 *  "environment variable WM_GPUS"). */
struct SettingText {
  std::string text;
  std::string what;
};

/** The binding settings of a work manager, checked (parse_binding_request). */
struct BindingRequest {
  unsigned gpus_per_worker = 0;
  std::optional<std::vector<std::string>> gpus;  // --wm-gpus / WM_GPUS, when given
  unsigned cpus_per_worker = 0;
  BindMode bind = BindMode::unset;
  std::vector<ResourceAmount> resources;  // declared, in name order
  // How each was given, for messages (empty what: not given).
  SettingText gpus_per_worker_given, gpus_given, cpus_per_worker_given, bind_given, resources_given;

  /** Anything asked for at all: otherwise nothing is touched. */
  bool any() const { return gpus_per_worker > 0 || plans_cpus() || !resources.empty(); }
  /** Cores are counted out per worker (a count, a binding, or both). */
  bool plans_cpus() const { return cpus_per_worker > 0 || bind == BindMode::cores || bind == BindMode::numa; }
};

/** Checks the settings' syntax (numbers, names, lists); throws ConfigError naming the option or
 *  variable and the value. lookup(name) returns a setting's text and how to name it, or nullopt;
 *  the names are "gpus-per-worker", "gpus", "cpus-per-worker", "bind" and "resources". */
BindingRequest parse_binding_request(const std::function<std::optional<SettingText>(const std::string&)>& lookup);

/** Makes `request` the one this process's services plan with (the work manager made last), and
 *  checks that a plan over n_workers can be made (devices and cores enough, no duplicate device):
 *  throws ConfigError otherwise. n_workers 0: checks nothing yet (a zmq master: its nodes plan).
 *  mpi_rank: the workers are the MPI ranks of this node, whose cores are the ones the node allows
 *  (hwloc), not the ones the launcher bound this rank to. */
void configure_binding(const BindingRequest& request, unsigned n_workers, bool mpi_rank = false);

/** This process is worker `index` of the `n_workers` configure_binding planned for (serial: 0 of
 *  1; an MPI rank: its node-local rank of the node's ranks): sets its device variable and thread
 *  counts (setenv) and binds it, as a spawned worker's master would have. rank: its rank in the
 *  job (-1: none). Throws ConfigError if no plan fits. */
void bind_this_process(int index, unsigned n_workers, int rank);

/** The plan `request` makes for n_workers workers started from this process, as the public API
 *  shows it (wm::binding_plan). Throws ConfigError. */
BindingPlan public_plan(const BindingRequest& request, unsigned n_workers);

/** A spawned worker process: applies what its master put in its environment (WM_WORKER_CPUS, ...),
 *  first thing in wm::serve_if_worker(). */
void bind_spawned_worker();

/** The node-local rank and the number of ranks on this node, from the launcher's variables
 *  (OMPI_COMM_WORLD_LOCAL_RANK, MV2_..., PMI_LOCAL_RANK, SLURM_LOCALID); {0, 1} without one. */
std::pair<int, unsigned> node_local_rank();
/** The rank in the job from the launcher's variables; -1 without one. */
int launcher_rank();

// The core services of ABI 1.1 (svc_worker_environment, ...) are declared in internal.hpp, where
// the service table (backend_link.cpp) finds them.

}  // namespace wm::detail
