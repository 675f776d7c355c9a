// SPDX-License-Identifier: MIT
// wm/worker.hpp: wm::this_worker(): which worker runs this code, and the GPUs, cores and resources
// it was given (--wm-gpus-per-worker, --wm-cpus-per-worker, --wm-bind, --wm-resources).
//
// @code
//   double md_segment(int segment) {
//     const wm::WorkerInfo& me = wm::this_worker();
//     // processes, mpi, zmq: CUDA_VISIBLE_DEVICES (me.gpu_variable) already holds me.gpus, so the
//     // MD engine sees its own device as device 0. threads: pass me.gpus to what you start.
//     return run_engine(segment, me.gpus, me.resource("cpu"));
//   }
//   WM_TASK(md_segment);
// @endcode
#pragma once

#include <cstdint>
#include <string>
#include <utility>
#include <vector>

namespace wm {

class WMEnvironment;

/** An amount of a named resource: "gpu" (devices), "cpu" (cores), or one declared with
 *  --wm-resources / WM_RESOURCES (lower case letters, digits, '_' and '-'). */
struct ResourceAmount {
  std::string name;
  double amount = 0;
};

/**
 * @brief A worker: who it is and what it has.
 *
 * Filled in by wm from what the work manager planned for it; see this_worker().
 */
struct WorkerInfo {
  /** WM_PROCESS_INDEX of the worker, 0..n-1; -1 in a process that is no worker (a master, outside
   *  tasks). serial: 0. */
  int index = -1;
  /** Its MPI rank; -1 if it is not an MPI rank. */
  int rank = -1;
  std::string host;
  std::int64_t pid = 0;
  /** Its devices as the visible-device variable lists them, verbatim (ordinals, GPU-/MIG- UUIDs);
   *  empty without --wm-gpus-per-worker. */
  std::vector<std::string> gpus;
  /** The variable that carries them in its environment (CUDA_VISIBLE_DEVICES,
   *  ROCR_VISIBLE_DEVICES, HIP_VISIBLE_DEVICES, ZE_AFFINITY_MASK); "" without devices. */
  std::string gpu_variable;
  /** The OS CPU numbers it is bound to; empty if it is not bound. */
  std::vector<int> cores;
  /** What it has, in name order: "gpu" (its devices), "cpu" (its cores: its share with
   *  --wm-cpus-per-worker or --wm-bind, else the CPUs it may run on) and the declared resources. */
  std::vector<ResourceAmount> resources;

  /** The amount of a resource it has; 0 if none. */
  double resource(const std::string& name) const {
    for (const ResourceAmount& r : resources)
      if (r.name == name) return r.amount;
    return 0;
  }
};

/**
 * The worker running the calling code, on every backend: on a threads worker its own thread's;
 * in a worker process (processes, zmq nodes' workers), an MPI rank or the master, the process's.
 * The reference stays valid on this thread until its next call.
 */
const WorkerInfo& this_worker();

/** What wm plans for the workers of a work manager: the devices, cores and resources each gets. */
struct BindingPlan {
  unsigned n_workers = 0;
  /** Where the devices came from: "option --wm-gpus", "environment variable CUDA_VISIBLE_DEVICES",
   *  "hwloc (NVIDIA)"...; "" without --wm-gpus-per-worker. */
  std::string gpus_from;
  std::string gpu_variable;
  /** "none", "cores" or "numa": how the workers' cores are bound ("none" also when none are planned). */
  std::string bind;
  /** One per worker, index 0..n_workers-1 (host and pid are not known before they start). */
  std::vector<WorkerInfo> workers;
  /** What each worker process gets in its environment, NAME and value. */
  std::vector<std::vector<std::pair<std::string, std::string>>> environment;
};

/** The plan the settings of env make for n_workers workers started from this process (as `wm
 *  config` shows it). Throws ConfigError, naming the option and value, if they cannot be met. */
BindingPlan binding_plan(const WMEnvironment& env, unsigned n_workers);

}  // namespace wm
