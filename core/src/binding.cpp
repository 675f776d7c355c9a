// SPDX-License-Identifier: MIT
// binding.cpp: GPUs, cores and declared resources per worker: the settings, the devices (the
// variables, or hwloc), the job's cores (hwloc), the plan over n workers, applying a worker's share
// (a spawned worker, a thread, this process), wm::this_worker(), and the core services of ABI 1.1.
#include "binding.hpp"

#include "backend_link.hpp"
#include "internal.hpp"
#include "option_value.hpp"

#include <wm/errors.hpp>

#include <hwloc.h>
#include <sched.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cctype>
#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <deque>
#include <limits>
#include <map>
#include <memory>
#include <mutex>
#include <set>

namespace wm::detail {

namespace {

constexpr long long kMaxGpusPerWorker = 4096;
constexpr long long kMaxCpusPerWorker = 1 << 20;

// The visible-device variables, in the order they are looked at.
const char* const kVisibleVariables[] = {"CUDA_VISIBLE_DEVICES", "ROCR_VISIBLE_DEVICES", "HIP_VISIBLE_DEVICES",
                                         "ZE_AFFINITY_MASK"};
// Thread counts of the usual runtimes, set to a worker's cores unless the user set them.
const char* const kThreadVariables[] = {"OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS"};

// What a master puts in a spawned worker's environment besides the public variables; the worker
// reads and removes them (bind_spawned_worker), so that programs its tasks start do not take them.
constexpr const char* kWorkerCpus = "WM_WORKER_CPUS";                  // "0,1": bind to these OS CPUs
constexpr const char* kWorkerGpuVariable = "WM_WORKER_GPU_VARIABLE";   // the variable holding its devices
constexpr const char* kWorkerResources = "WM_WORKER_RESOURCES";        // "cpu=1,gpu=1,mem=6.4e+10"

std::string trim(std::string_view s) {
  const std::size_t b = s.find_first_not_of(" \t\n");
  if (b == std::string_view::npos) return {};
  const std::size_t e = s.find_last_not_of(" \t\n");
  return std::string(s.substr(b, e - b + 1));
}

// "a,b,c" -> {"a", "b", "c"}, each without surrounding blanks; "" -> {}.
std::vector<std::string> split_list(std::string_view text) {
  std::vector<std::string> out;
  if (trim(text).empty()) return out;
  std::size_t start = 0;
  for (;;) {
    const std::size_t end = text.find(',', start);
    out.push_back(trim(text.substr(start, end == std::string_view::npos ? std::string_view::npos : end - start)));
    if (end == std::string_view::npos) break;
    start = end + 1;
  }
  return out;
}

std::string join(const std::vector<std::string>& items, const char* sep = ",") {
  std::string s;
  for (const auto& i : items) s += (s.empty() ? "" : sep) + i;
  return s;
}

std::string number_text(double v) {
  char buf[40];
  std::snprintf(buf, sizeof buf, "%.17g", v);
  // The shortest text that reads back the same.
  for (int digits = 1; digits <= 17; ++digits) {
    char shorter[40];
    std::snprintf(shorter, sizeof shorter, "%.*g", digits, v);
    if (std::strtod(shorter, nullptr) == v) return shorter;
  }
  return buf;
}

// "0-3,8,10-11" for a sorted list of CPU numbers.
std::string ranges_text(const std::vector<int>& cpus) {
  std::string s;
  for (std::size_t i = 0; i < cpus.size();) {
    std::size_t j = i;
    while (j + 1 < cpus.size() && cpus[j + 1] == cpus[j] + 1) ++j;
    s += (s.empty() ? "" : ",") + std::to_string(cpus[i]);
    if (j > i) s += "-" + std::to_string(cpus[j]);
    i = j + 1;
  }
  return s;
}

std::string cpu_list_text(const std::vector<int>& cpus) {
  std::string s;
  for (int c : cpus) s += (s.empty() ? "" : ",") + std::to_string(c);
  return s;
}

[[noreturn]] void bad(const SettingText& s, const std::string& problem) {
  throw ConfigError(s.what + "='" + s.text + "' " + problem);
}

bool valid_resource_name(const std::string& name) {
  return !name.empty() && std::all_of(name.begin(), name.end(), [](char c) {
    return (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '_' || c == '-';
  });
}

// ---------------------------------------------------------------- hwloc

// The machine's topology, loaded once (again, with I/O devices, when GPUs are first looked for).
// Never destroyed: threads may be binding themselves with it at any time; at most two are loaded.
struct Topology {
  hwloc_topology_t t = nullptr;
  bool io = false;
};
std::mutex g_topology_mutex;
Topology* g_topology = nullptr;
std::deque<Topology>* g_topologies = new std::deque<Topology>;  // every one loaded, kept (stable addresses)

hwloc_topology_t topology(bool io) {
  std::lock_guard<std::mutex> lock(g_topology_mutex);
  if (g_topology != nullptr && (g_topology->io || !io)) return g_topology->t;
  hwloc_topology_t t = nullptr;
  if (hwloc_topology_init(&t) != 0) return g_topology != nullptr ? g_topology->t : nullptr;
  if (io) hwloc_topology_set_io_types_filter(t, HWLOC_TYPE_FILTER_KEEP_IMPORTANT);
  if (hwloc_topology_load(t) != 0) {
    log(WM_LOG_WARNING, "core", std::string("hwloc could not read this machine's topology: ") + std::strerror(errno));
    hwloc_topology_destroy(t);
    return g_topology != nullptr ? g_topology->t : nullptr;
  }
  g_topologies->push_back(Topology{t, io});
  g_topology = &g_topologies->back();
  return t;
}

struct Bitmap {
  hwloc_bitmap_t b = hwloc_bitmap_alloc();
  ~Bitmap() { hwloc_bitmap_free(b); }
  Bitmap() = default;
  Bitmap(const Bitmap&) = delete;
  Bitmap& operator=(const Bitmap&) = delete;
};

std::vector<int> bitmap_cpus(hwloc_const_bitmap_t b) {
  std::vector<int> out;
  if (hwloc_bitmap_weight(b) < 0) return out;  // infinite
  unsigned i;
  hwloc_bitmap_foreach_begin(i, b) { out.push_back(static_cast<int>(i)); }
  hwloc_bitmap_foreach_end();
  return out;
}

// The CPUs this process may run on (sched_getaffinity), sorted.
std::vector<int> affinity_cpus() {
  std::vector<int> out;
  for (int size = CPU_SETSIZE; size <= (1 << 20); size *= 4) {
    cpu_set_t* set = CPU_ALLOC(size);
    if (set == nullptr) break;
    const std::size_t bytes = CPU_ALLOC_SIZE(size);
    CPU_ZERO_S(bytes, set);
    if (sched_getaffinity(0, bytes, set) == 0) {
      for (int c = 0; c < size; ++c)
        if (CPU_ISSET_S(c, bytes, set)) out.push_back(c);
      CPU_FREE(set);
      return out;
    }
    CPU_FREE(set);
    if (errno != EINVAL) break;
  }
  return out;
}

/** The CPUs a job may use, grouped as the machine has them. */
struct CpuLayout {
  std::vector<std::vector<int>> cores;  // the job's CPUs of each core, cores in topology order
  std::vector<int> cpus;                // all of them, in topology order
  std::vector<std::vector<int>> numa;   // the job's CPUs of each NUMA node
  std::string text;                     // for messages: "CPUs 0-1"
};

// The job's CPUs: the ones hwloc says this process is allowed (cgroups, Slurm's cpuset), and of
// those the ones the process may run on (sched_getaffinity: taskset, the launcher's binding) unless
// it is an MPI rank, whose launcher binding is what --wm-cpus-per-worker replaces. Taken once per
// kind: binding this process (serial, a rank) must not shrink what later plans start from.
CpuLayout job_layout(bool mpi_rank) {
  static std::mutex m;
  static std::map<bool, CpuLayout> cache;
  std::lock_guard<std::mutex> lock(m);
  if (auto it = cache.find(mpi_rank); it != cache.end()) return it->second;
  CpuLayout l;
  hwloc_topology_t t = topology(false);
  const std::vector<int> own = affinity_cpus();
  if (t != nullptr) {
    Bitmap job;
    hwloc_bitmap_copy(job.b, hwloc_topology_get_allowed_cpuset(t));
    if (!mpi_rank && !own.empty()) {
      Bitmap mine;
      for (int c : own) hwloc_bitmap_set(mine.b, static_cast<unsigned>(c));
      hwloc_bitmap_and(job.b, job.b, mine.b);
    }
    const bool has_cores = hwloc_get_nbobjs_by_type(t, HWLOC_OBJ_CORE) > 0;
    const hwloc_obj_type_t unit = has_cores ? HWLOC_OBJ_CORE : HWLOC_OBJ_PU;
    for (hwloc_obj_t o = hwloc_get_next_obj_by_type(t, unit, nullptr); o != nullptr;
         o = hwloc_get_next_obj_by_type(t, unit, o)) {
      Bitmap in;
      hwloc_bitmap_and(in.b, o->cpuset, job.b);
      std::vector<int> cpus = bitmap_cpus(in.b);
      if (cpus.empty()) continue;
      l.cpus.insert(l.cpus.end(), cpus.begin(), cpus.end());
      l.cores.push_back(std::move(cpus));
    }
    for (hwloc_obj_t o = hwloc_get_next_obj_by_type(t, HWLOC_OBJ_NUMANODE, nullptr); o != nullptr;
         o = hwloc_get_next_obj_by_type(t, HWLOC_OBJ_NUMANODE, o)) {
      Bitmap in;
      hwloc_bitmap_and(in.b, o->cpuset, job.b);
      if (!hwloc_bitmap_iszero(in.b)) l.numa.push_back(bitmap_cpus(in.b));
    }
  }
  if (l.cpus.empty()) {  // no topology: each CPU the process may use is a core of its own
    for (int c : own) l.cores.push_back({c});
    l.cpus = own;
  }
  if (l.numa.empty()) l.numa.push_back(l.cpus);
  std::vector<int> sorted = l.cpus;
  std::sort(sorted.begin(), sorted.end());
  l.text = (l.cores.size() == 1 ? "1 core" : std::to_string(l.cores.size()) + " cores") + " (" +
           (l.cpus.size() != l.cores.size() ? std::to_string(l.cpus.size()) + " hardware threads, " : "") + "CPUs " +
           ranges_text(sorted) + ")";
  cache[mpi_rank] = l;
  return l;
}

// Binds this process (every thread of it) or the calling thread to cpus; false with errno if not.
bool bind_to(const std::vector<int>& cpus, bool whole_process) {
  hwloc_topology_t t = topology(false);
  if (t == nullptr) {
    errno = ENOSYS;
    return false;
  }
  Bitmap set;
  for (int c : cpus) hwloc_bitmap_set(set.b, static_cast<unsigned>(c));
  return hwloc_set_cpubind(t, set.b, whole_process ? HWLOC_CPUBIND_PROCESS : HWLOC_CPUBIND_THREAD) == 0;
}

// ---------------------------------------------------------------- devices

/** The devices to share out, and the variable that carries them. */
struct Devices {
  std::vector<std::string> list;
  std::string variable;  // CUDA_VISIBLE_DEVICES, ...
  std::string from;      // for messages and the plan: "environment variable CUDA_VISIBLE_DEVICES"
  std::string text;      // as given, for messages
  bool from_option = false;  // --wm-gpus / WM_GPUS: workers get theirs in WM_GPUS too
  std::vector<std::pair<std::string, std::string>> extra;  // more variables for each worker
};

// The GPUs hwloc reports on this machine (OS devices of type GPU or co-processor): its CUDA or NVML
// devices (NVIDIA), else RSMI (AMD), else Level Zero (Intel), each by its ordinal; else the DRM
// cards of those vendors in PCI order. NVIDIA cards numbered in PCI order (NVML, DRM) also get
// CUDA_DEVICE_ORDER=PCI_BUS_ID, so that CUDA numbers them the same. OpenCL devices are the same
// cards again: ignored.
Devices hwloc_devices() {
  Devices d;
  hwloc_topology_t t = topology(true);
  if (t == nullptr) return d;
  struct Kind {
    const char* prefix;
    const char* variable;
    const char* vendor;
  };
  static const Kind kinds[] = {{"cuda", "CUDA_VISIBLE_DEVICES", "NVIDIA"},
                               {"nvml", "CUDA_VISIBLE_DEVICES", "NVIDIA"},
                               {"rsmi", "ROCR_VISIBLE_DEVICES", "AMD"},
                               {"ze", "ZE_AFFINITY_MASK", "Intel"}};
  std::map<std::string, std::set<std::string>> by_kind;         // variable -> ordinals
  std::map<unsigned, std::map<std::string, bool>> drm_by_vendor;  // PCI vendor -> bus ids
  bool cuda_seen = false;  // CUDA's own ordinals (hwloc's CUDA plugin), not only NVML's
  for (hwloc_obj_t o = hwloc_get_next_osdev(t, nullptr); o != nullptr; o = hwloc_get_next_osdev(t, o)) {
    if (o->attr->osdev.type != HWLOC_OBJ_OSDEV_GPU && o->attr->osdev.type != HWLOC_OBJ_OSDEV_COPROC) continue;
    const std::string name = o->name != nullptr ? o->name : "";
    bool known = false;
    for (const Kind& k : kinds) {
      const std::size_t n = std::strlen(k.prefix);
      if (name.compare(0, n, k.prefix) == 0 && name.size() > n && std::isdigit(static_cast<unsigned char>(name[n]))) {
        by_kind[k.variable].insert(name.substr(n));
        known = true;
        cuda_seen = cuda_seen || &k == &kinds[0];
      }
    }
    if (known || (name.compare(0, 4, "card") != 0 && name.compare(0, 7, "renderD") != 0)) continue;
    hwloc_obj_t pci = o->parent;
    while (pci != nullptr && pci->type != HWLOC_OBJ_PCI_DEVICE) pci = pci->parent;
    if (pci == nullptr) continue;
    char bus[32];
    std::snprintf(bus, sizeof bus, "%04x:%02x:%02x.%01x", pci->attr->pcidev.domain, pci->attr->pcidev.bus,
                  pci->attr->pcidev.dev, pci->attr->pcidev.func);
    drm_by_vendor[pci->attr->pcidev.vendor_id][bus] = true;
  }
  auto numeric_order = [](const std::set<std::string>& s) {
    std::vector<std::string> v(s.begin(), s.end());
    std::sort(v.begin(), v.end(), [](const std::string& a, const std::string& b) {
      return a.size() != b.size() ? a.size() < b.size() : a < b;
    });
    return v;
  };
  for (const Kind& k : kinds) {
    auto it = by_kind.find(k.variable);
    if (it == by_kind.end() || it->second.empty()) continue;
    d.list = numeric_order(it->second);
    d.variable = k.variable;
    d.from = std::string("hwloc (") + k.vendor + ")";
    // NVML numbers the cards in PCI order; CUDA does so only when asked.
    if (k.variable == kinds[0].variable && !cuda_seen && std::getenv("CUDA_DEVICE_ORDER") == nullptr)
      d.extra.emplace_back("CUDA_DEVICE_ORDER", "PCI_BUS_ID");
    return d;
  }
  static const std::pair<unsigned, const Kind*> vendors[] = {
      {0x10de, &kinds[0]}, {0x1002, &kinds[2]}, {0x8086, &kinds[3]}};
  for (const auto& [vendor, kind] : vendors) {
    auto it = drm_by_vendor.find(vendor);
    if (it == drm_by_vendor.end() || it->second.empty()) continue;
    for (std::size_t i = 0; i < it->second.size(); ++i) d.list.push_back(std::to_string(i));
    d.variable = kind->variable;
    d.from = std::string("hwloc (") + kind->vendor + ", DRM devices in PCI order)";
    if (vendor == 0x10de && std::getenv("CUDA_DEVICE_ORDER") == nullptr)
      d.extra.emplace_back("CUDA_DEVICE_ORDER", "PCI_BUS_ID");
    return d;
  }
  return d;
}

// Visible-device variables this process set on itself (bind_this_process): name -> {the value it
// set, the value before}. A later work manager of the process (an MPI job makes one after another)
// shares out the devices the process was given, not the share it took of them.
std::mutex g_own_mutex;
std::map<std::string, std::pair<std::string, std::optional<std::string>>> g_own_variables;

// A variable's value, as the process was given it.
const char* given_value(const char* name) {
  const char* now = std::getenv(name);
  std::lock_guard<std::mutex> lock(g_own_mutex);
  auto it = g_own_variables.find(name);
  if (it == g_own_variables.end() || now == nullptr || it->second.first != now) return now;
  return it->second.second ? it->second.second->c_str() : nullptr;
}

void set_own_variable(const std::string& name, const std::string& value) {
  {
    std::lock_guard<std::mutex> lock(g_own_mutex);
    if (g_own_variables.count(name) == 0 || std::getenv(name.c_str()) == nullptr ||
        g_own_variables[name].first != std::getenv(name.c_str())) {
      const char* before = std::getenv(name.c_str());
      g_own_variables[name].second = before != nullptr ? std::optional<std::string>(before) : std::nullopt;
    }
    g_own_variables[name].first = value;
  }
  setenv(name.c_str(), value.c_str(), 1);
}

std::string duplicate_of(const std::vector<std::string>& list) {
  std::set<std::string> seen;
  for (const auto& e : list)
    if (!seen.insert(e).second) return e;
  return {};
}

// The devices to share out: --wm-gpus / WM_GPUS; else the first visible-device variable set
// (entries verbatim; an empty value is no device); else hwloc's. Throws ConfigError if there are
// none or one is listed twice.
Devices find_devices(const BindingRequest& r) {
  Devices d;
  const std::string asked = r.gpus_per_worker_given.what + "='" + r.gpus_per_worker_given.text + "'";
  if (r.gpus) {
    d.list = *r.gpus;
    d.from = r.gpus_given.what;
    d.text = r.gpus_given.text;
    d.from_option = true;
    d.variable = "CUDA_VISIBLE_DEVICES";
    for (const char* v : kVisibleVariables)
      if (given_value(v) != nullptr) {
        d.variable = v;
        break;
      }
    if (d.list.empty()) bad(r.gpus_given, "lists no device, and " + asked + " asks for GPUs");
    return d;
  }
  for (const char* v : kVisibleVariables) {
    const char* value = given_value(v);
    if (value == nullptr) continue;
    d.variable = v;
    d.from = std::string("environment variable ") + v;
    d.text = value;
    d.list = split_list(value);
    if (d.list.empty())
      throw ConfigError(d.from + " is empty, which means no devices, and " + asked +
                        " asks for GPUs; unset it to use the devices hwloc finds, or list them with --wm-gpus");
    if (std::find(d.list.begin(), d.list.end(), "") != d.list.end())
      throw ConfigError(d.from + "='" + d.text + "' has an empty entry; list devices separated by single commas");
    if (const std::string dup = duplicate_of(d.list); !dup.empty())
      throw ConfigError(d.from + "='" + d.text + "' lists device '" + dup + "' twice");
    return d;
  }
  d = hwloc_devices();
  if (d.list.empty())
    throw ConfigError(asked + " asks for GPUs, and none were found: no --wm-gpus or WM_GPUS, none of "
                      "CUDA_VISIBLE_DEVICES, ROCR_VISIBLE_DEVICES, HIP_VISIBLE_DEVICES, ZE_AFFINITY_MASK is set, "
                      "and hwloc reports no GPU on " + host_name() +
                      " (list the devices with --wm-gpus, or set the variable your runtime reads)");
  d.text = join(d.list);
  return d;
}

// ---------------------------------------------------------------- the plan

/** What one worker gets. */
struct Share {
  std::vector<std::string> gpus;
  std::vector<int> cpus;  // bound to these (sorted); empty: not bound
  std::vector<ResourceAmount> resources;
  std::vector<std::pair<std::string, std::string>> env;  // for a worker process, in this order
};

struct Plan {
  unsigned n_workers = 0;
  std::string gpus_from, gpu_variable;
  BindMode bind = BindMode::none;
  std::vector<Share> workers;
};

const char* mode_name(BindMode m) {
  switch (m) {
    case BindMode::cores: return "cores";
    case BindMode::numa: return "numa";
    default: return "none";
  }
}

// The plan for n workers. mpi_rank: the workers are the ranks of this node (see job_layout).
Plan make_plan(const BindingRequest& r, unsigned n, bool mpi_rank) {
  Plan p;
  p.n_workers = n;
  p.workers.resize(n);
  if (n == 0) return p;
  if (r.gpus_per_worker > 0) {
    const Devices d = find_devices(r);
    const unsigned long long need = static_cast<unsigned long long>(n) * r.gpus_per_worker;
    if (need > d.list.size())
      throw ConfigError(r.gpus_per_worker_given.what + "='" + r.gpus_per_worker_given.text + "' for " +
                        std::to_string(n) + (n == 1 ? " worker" : " workers") + " needs " + std::to_string(need) +
                        " GPUs, and " + d.from + (d.text.empty() ? "" : "='" + d.text + "'") + " lists " +
                        std::to_string(d.list.size()) + ": fewer workers, fewer GPUs per worker, or more devices");
    p.gpus_from = d.from;
    p.gpu_variable = d.variable;
    for (unsigned i = 0; i < n; ++i) {
      Share& s = p.workers[i];
      s.gpus.assign(d.list.begin() + i * r.gpus_per_worker, d.list.begin() + (i + 1) * r.gpus_per_worker);
      const std::string value = join(s.gpus);
      s.env.emplace_back(d.variable, value);
      if (d.from_option) s.env.emplace_back("WM_GPUS", value);
      for (const auto& e : d.extra) s.env.push_back(e);
    }
  }
  unsigned share = 0;  // cores per worker, when planned
  if (r.plans_cpus()) {
    const CpuLayout l = job_layout(mpi_rank);
    p.bind = r.bind == BindMode::unset ? BindMode::cores : r.bind;
    share = r.cpus_per_worker;
    if (share == 0) {  // --wm-bind alone: an equal share of the cores each, else of the hardware threads
      share = static_cast<unsigned>(l.cores.size() / n);
      if (share == 0) share = static_cast<unsigned>(l.cpus.size() / n);
      if (share == 0)
        throw ConfigError(r.bind_given.what + "='" + r.bind_given.text + "' gives each of " + std::to_string(n) +
                          " workers cores of its own, and the job has " + l.text);
    }
    const unsigned long long need = static_cast<unsigned long long>(n) * share;
    if (need > l.cpus.size()) {
      const SettingText& s = r.cpus_per_worker > 0 ? r.cpus_per_worker_given : r.bind_given;
      throw ConfigError(s.what + "='" + s.text + "' for " + std::to_string(n) + (n == 1 ? " worker" : " workers") +
                        " needs " + std::to_string(need) + " cores, and the job has " + l.text +
                        ": fewer workers or fewer cores per worker");
    }
    const bool whole_cores = need <= l.cores.size();
    if (!whole_cores)
      log(WM_LOG_INFO, "core",
          std::to_string(n) + " workers of " + std::to_string(share) + " cores each are more than the job's " +
              std::to_string(l.cores.size()) + " cores: each gets hardware threads instead");
    for (unsigned i = 0; i < n; ++i) {
      Share& s = p.workers[i];
      if (p.bind != BindMode::none) {
        std::set<int> cpus;
        for (unsigned k = i * share; k < (i + 1) * share; ++k) {
          if (whole_cores)
            cpus.insert(l.cores[k].begin(), l.cores[k].end());
          else
            cpus.insert(l.cpus[k]);
        }
        if (p.bind == BindMode::numa) {
          std::set<int> nodes;
          for (const auto& node : l.numa)
            if (std::any_of(node.begin(), node.end(), [&](int c) { return cpus.count(c) != 0; }))
              nodes.insert(node.begin(), node.end());
          cpus.swap(nodes);
        }
        s.cpus.assign(cpus.begin(), cpus.end());
        s.env.emplace_back(kWorkerCpus, cpu_list_text(s.cpus));
      }
      for (const char* v : kThreadVariables)
        if (given_value(v) == nullptr) s.env.emplace_back(v, std::to_string(share));
    }
  }
  // Resources: the counted ones, the declared ones (which give "gpu" and "cpu" when wm counts none).
  const double cpus_may_use = static_cast<double>(std::max<std::size_t>(1, affinity_cpus().size()));
  for (unsigned i = 0; i < n; ++i) {
    Share& s = p.workers[i];
    std::map<std::string, double> res;
    for (const auto& d : r.resources) res[d.name] = d.amount;
    if (r.gpus_per_worker > 0) res["gpu"] = r.gpus_per_worker;
    if (res.count("gpu") == 0) res["gpu"] = 0;
    if (share > 0) res["cpu"] = share;
    if (res.count("cpu") == 0) res["cpu"] = cpus_may_use;
    std::string text;
    for (const auto& [name, amount] : res) {
      s.resources.push_back(ResourceAmount{name, amount});
      text += (text.empty() ? "" : ",") + name + "=" + number_text(amount);
    }
    if (r.gpus_per_worker > 0) s.env.emplace_back(kWorkerGpuVariable, p.gpu_variable);
    if (r.any()) s.env.emplace_back(kWorkerResources, text);
  }
  return p;
}

// ---------------------------------------------------------------- this process's state

// The request of the work manager made last, and the plans made from it (by worker count).
std::mutex g_mutex;
BindingRequest g_request;
bool g_request_mpi = false;
std::map<unsigned, std::shared_ptr<const Plan>> g_plans;

std::shared_ptr<const Plan> plan_for(unsigned n) {
  std::unique_lock<std::mutex> lock(g_mutex);
  if (auto it = g_plans.find(n); it != g_plans.end()) return it->second;
  const BindingRequest r = g_request;
  const bool mpi = g_request_mpi;
  lock.unlock();
  auto p = std::make_shared<const Plan>(make_plan(r, n, mpi));
  lock.lock();
  return g_plans.emplace(n, std::move(p)).first->second;
}

// What this process is, as a worker (never freed: this_worker() hands out references to copies,
// and a later work manager replaces it while tasks may be reading the old one).
std::atomic<const WorkerInfo*> g_process{nullptr};
std::mutex g_process_mutex;
std::vector<std::unique_ptr<const WorkerInfo>>* g_process_infos = new std::vector<std::unique_ptr<const WorkerInfo>>;
// A process that serves as one worker: worker_resources reports it, whatever index it is asked
// about. For good in a spawned worker; an MPI rank or a serial process, for its work manager.
std::atomic<bool> g_spawned_worker{false};
std::atomic<bool> g_self_worker{false};
// A threads worker: its own.
thread_local std::unique_ptr<WorkerInfo> t_thread;

std::vector<ResourceAmount> default_resources() {
  return {ResourceAmount{"cpu", static_cast<double>(std::max<std::size_t>(1, affinity_cpus().size()))},
          ResourceAmount{"gpu", 0}};
}

WorkerInfo info_of(const Plan& p, unsigned index) {
  WorkerInfo w;
  w.index = static_cast<int>(index);
  if (index < p.workers.size()) {
    const Share& s = p.workers[index];
    w.gpus = s.gpus;
    if (!s.gpus.empty()) w.gpu_variable = p.gpu_variable;
    w.cores = s.cpus;
    w.resources = s.resources;
  } else {
    w.resources = default_resources();
  }
  return w;
}

void set_process_info(WorkerInfo info) {
  std::lock_guard<std::mutex> lock(g_process_mutex);
  g_process_infos->push_back(std::make_unique<const WorkerInfo>(std::move(info)));
  g_process.store(g_process_infos->back().get());
}

// "cpu=1,gpu=2" as the master wrote it.
std::vector<ResourceAmount> parse_resources_text(const std::string& text) {
  std::vector<ResourceAmount> out;
  for (const std::string& e : split_list(text)) {
    const std::size_t eq = e.find('=');
    if (eq == std::string::npos) continue;
    std::string problem;
    if (auto v = parse_number_text(e.substr(eq + 1), 0, std::numeric_limits<double>::max(), problem))
      out.push_back(ResourceAmount{e.substr(0, eq), *v});
  }
  std::sort(out.begin(), out.end(), [](const auto& a, const auto& b) { return a.name < b.name; });
  return out;
}

void warn_unbound(const std::vector<int>& cpus, const char* who) {
  log(WM_LOG_WARNING, "core",
      std::string(who) + " could not be bound to CPUs " + ranges_text(cpus) + ": " + std::strerror(errno));
}

}  // namespace

// ---------------------------------------------------------------- settings

BindingRequest parse_binding_request(const std::function<std::optional<SettingText>(const std::string&)>& lookup) {
  BindingRequest r;
  std::string problem;
  // A count per worker: 0 (none, the default) up to max.
  auto count = [&](const char* name, long long max, SettingText& given, unsigned& out) {
    if (auto s = lookup(name)) {
      given = *s;
      auto v = parse_integer_text(s->text, 0, max, problem);
      if (!v) bad(*s, problem);
      out = static_cast<unsigned>(*v);
    }
  };
  count("gpus-per-worker", kMaxGpusPerWorker, r.gpus_per_worker_given, r.gpus_per_worker);
  if (auto s = lookup("gpus")) {
    r.gpus_given = *s;
    std::vector<std::string> list = split_list(s->text);
    if (std::find(list.begin(), list.end(), "") != list.end())
      bad(*s, "has an empty entry; list devices separated by single commas (ordinals, GPU-... or MIG-... UUIDs)");
    if (const std::string dup = duplicate_of(list); !dup.empty()) bad(*s, "lists device '" + dup + "' twice");
    if (list.empty() && r.gpus_per_worker > 0)
      bad(*s, "lists no device, and " + r.gpus_per_worker_given.what + "='" + r.gpus_per_worker_given.text +
                  "' asks for GPUs");
    r.gpus = std::move(list);
  }
  count("cpus-per-worker", kMaxCpusPerWorker, r.cpus_per_worker_given, r.cpus_per_worker);
  if (auto s = lookup("bind")) {
    r.bind_given = *s;
    std::string v = trim(s->text);
    std::transform(v.begin(), v.end(), v.begin(), [](unsigned char c) { return std::tolower(c); });
    if (v == "none") r.bind = BindMode::none;
    else if (v == "cores") r.bind = BindMode::cores;
    else if (v == "numa") r.bind = BindMode::numa;
    else bad(*s, "is not a binding; use none, cores (each worker on cores of its own) or numa (on the NUMA node of its cores)");
  }
  if (auto s = lookup("resources")) {
    r.resources_given = *s;
    std::map<std::string, double> seen;
    for (const std::string& e : split_list(s->text)) {
      const std::size_t eq = e.find('=');
      if (e.empty()) bad(*s, "has an empty entry; give NAME=AMOUNT pairs separated by commas (gpu=2,mem=64e9)");
      if (eq == std::string::npos) bad(*s, "has the entry '" + e + "', which is not NAME=AMOUNT (e.g. " + e + "=1)");
      const std::string name = trim(e.substr(0, eq)), amount = e.substr(eq + 1);
      if (name.empty()) bad(*s, "has the entry '" + e + "' without a name; give NAME=AMOUNT");
      if (!valid_resource_name(name))
        bad(*s, "has the resource name '" + name + "'; names are lower case letters, digits, '_' and '-'");
      auto v = parse_number_text(amount, 0, std::numeric_limits<double>::max(), problem);
      if (!v)
        bad(*s, "gives resource '" + name + "' the amount '" + trim(amount) +
                    "', which is not a finite number >= 0 (e.g. 2, 0.5 or 64e9)");
      if (!seen.emplace(name, *v).second) bad(*s, "names resource '" + name + "' twice");
    }
    for (const auto& [name, amount] : seen) r.resources.push_back(ResourceAmount{name, amount});
  }
  // "gpu" and "cpu" are counted by wm when it shares devices or cores out: declared too, they would
  // say the same thing twice.
  auto declared = [&](const char* name) {
    return std::any_of(r.resources.begin(), r.resources.end(), [&](const auto& a) { return a.name == name; });
  };
  if (r.gpus_per_worker > 0 && declared("gpu"))
    bad(r.resources_given, "declares 'gpu', and " + r.gpus_per_worker_given.what + "='" +
                               r.gpus_per_worker_given.text + "' counts each worker's GPUs already: give one of them");
  if (r.plans_cpus() && declared("cpu")) {
    const SettingText& c = r.cpus_per_worker > 0 ? r.cpus_per_worker_given : r.bind_given;
    bad(r.resources_given, "declares 'cpu', and " + c.what + "='" + c.text +
                               "' counts each worker's cores already: give one of them");
  }
  return r;
}

void configure_binding(const BindingRequest& request, unsigned n_workers, bool mpi_rank) {
  // Planned first: a request that cannot be met (ConfigError) leaves the one before in place.
  std::shared_ptr<const Plan> plan;
  if (request.any() && n_workers > 0) plan = std::make_shared<const Plan>(make_plan(request, n_workers, mpi_rank));
  std::lock_guard<std::mutex> lock(g_mutex);
  g_request = request;
  g_request_mpi = mpi_rank;
  g_plans.clear();
  if (plan) g_plans.emplace(n_workers, std::move(plan));
  g_self_worker.store(false);  // until bind_this_process says this process is the worker
}

void bind_this_process(int index, unsigned n_workers, int rank) {
  std::shared_ptr<const Plan> p;
  WorkerInfo info;
  const BindingRequest r = [] {
    std::lock_guard<std::mutex> lock(g_mutex);
    return g_request;
  }();
  bool mpi_rank;
  {
    std::lock_guard<std::mutex> lock(g_mutex);
    mpi_rank = g_request_mpi;
  }
  if (r.any()) {
    p = plan_for(n_workers);
    info = info_of(*p, static_cast<unsigned>(index));
    // Its device variable and thread counts; not WM_GPUS (its devices stay what it was given, for
    // the next work manager it makes), nor what a spawned worker's master tells it (WM_WORKER_*).
    for (const auto& [name, value] : p->workers.at(static_cast<unsigned>(index)).env)
      if (name != "WM_GPUS" && name.compare(0, 10, "WM_WORKER_") != 0) set_own_variable(name, value);
    if (!info.cores.empty() && !bind_to(info.cores, true)) {
      warn_unbound(info.cores, "this process");
      info.cores.clear();
    }
  } else {
    info.index = index;
    info.resources = default_resources();
  }
  // An MPI rank's worker index (WM_PROCESS_INDEX) is not its local rank: the worker loop says it
  // once the rank serves (and rank 0 is the master).
  if (mpi_rank) info.index = -1;
  info.rank = rank;
  set_process_info(std::move(info));
  g_self_worker.store(true);
}

BindingPlan public_plan(const BindingRequest& request, unsigned n_workers) {
  const Plan p = make_plan(request, n_workers, false);
  BindingPlan out;
  out.n_workers = n_workers;
  out.gpus_from = p.gpus_from;
  out.gpu_variable = p.gpu_variable;
  out.bind = mode_name(p.bind);
  for (unsigned i = 0; i < n_workers; ++i) {
    out.workers.push_back(info_of(p, i));
    out.environment.push_back(request.any() ? p.workers[i].env : std::vector<std::pair<std::string, std::string>>{});
  }
  return out;
}

void bind_spawned_worker() {
  WorkerInfo info;
  if (const char* i = std::getenv(WM_ENV_PROCESS_INDEX)) info.index = std::atoi(i);
  if (const char* v = std::getenv(kWorkerGpuVariable)) {
    info.gpu_variable = v;
    if (const char* devices = std::getenv(v)) info.gpus = split_list(devices);
  }
  if (const char* c = std::getenv(kWorkerCpus)) {
    for (const std::string& e : split_list(c)) {
      char* end = nullptr;
      const long cpu = std::strtol(e.c_str(), &end, 10);
      if (!e.empty() && *end == '\0' && cpu >= 0 && cpu < (1 << 20)) info.cores.push_back(static_cast<int>(cpu));
    }
    if (!info.cores.empty() && !bind_to(info.cores, true)) {
      warn_unbound(info.cores, "this worker");
      info.cores.clear();
    }
  }
  if (const char* res = std::getenv(kWorkerResources))
    info.resources = parse_resources_text(res);
  else
    info.resources = default_resources();
  for (const char* v : {kWorkerCpus, kWorkerGpuVariable, kWorkerResources}) unsetenv(v);
  set_process_info(std::move(info));
  g_spawned_worker.store(true);
}

namespace {
// The first variable of the list that holds a whole number >= 0.
std::optional<long> first_number(std::initializer_list<const char*> names, const char** which = nullptr) {
  for (const char* n : names) {
    const char* v = std::getenv(n);
    if (v == nullptr || *v == '\0') continue;
    char* end = nullptr;
    errno = 0;
    const long x = std::strtol(v, &end, 10);
    if (*end == '\0' && errno == 0 && x >= 0) {
      if (which != nullptr) *which = n;
      return x;
    }
  }
  return std::nullopt;
}

// Slurm's tasks on node `node` from "2(x3),1" (SLURM_STEP_TASKS_PER_NODE / SLURM_TASKS_PER_NODE).
std::optional<long> slurm_tasks_on_node(long node) {
  const char* v = std::getenv("SLURM_STEP_TASKS_PER_NODE");
  if (v == nullptr) v = std::getenv("SLURM_TASKS_PER_NODE");
  if (v == nullptr) return std::nullopt;
  long at = 0;
  for (const std::string& e : split_list(v)) {
    char* end = nullptr;
    const long tasks = std::strtol(e.c_str(), &end, 10);
    long times = 1;
    if (std::strncmp(end, "(x", 2) == 0) times = std::strtol(end + 2, nullptr, 10);
    if (node < at + times) return tasks;
    at += times;
  }
  return std::nullopt;
}
}  // namespace

std::pair<int, unsigned> node_local_rank() {
  struct Family {
    const char* rank;
    const char* size;
  };
  static const Family families[] = {{"OMPI_COMM_WORLD_LOCAL_RANK", "OMPI_COMM_WORLD_LOCAL_SIZE"},
                                    {"MV2_COMM_WORLD_LOCAL_RANK", "MV2_COMM_WORLD_LOCAL_SIZE"},
                                    {"MPI_LOCALRANKID", "MPI_LOCALNRANKS"},
                                    {"PMI_LOCAL_RANK", "PMI_LOCAL_SIZE"},
                                    {"SLURM_LOCALID", "SLURM_NTASKS_PER_NODE"}};
  for (const Family& f : families) {
    auto rank = first_number({f.rank});
    if (!rank) continue;
    auto size = first_number({f.size});
    if (!size && std::strcmp(f.rank, "SLURM_LOCALID") == 0)
      if (auto node = first_number({"SLURM_NODEID"})) size = slurm_tasks_on_node(*node);
    // Without the node's count, the count up to this rank: its own share is still checked.
    const long n = std::max(size.value_or(0), *rank + 1);
    return {static_cast<int>(*rank), static_cast<unsigned>(n)};
  }
  return {0, 1};
}

int launcher_rank() {
  auto r = first_number({"OMPI_COMM_WORLD_RANK", "PMIX_RANK", "PMI_RANK", "MV2_COMM_WORLD_RANK", "SLURM_PROCID"});
  return r ? static_cast<int>(*r) : -1;
}

// ---------------------------------------------------------------- services

void svc_worker_environment(std::int32_t index, std::uint32_t n_workers,
                            void (*visit)(void* context, const char* name, const char* value), void* context) {
  try {
    {
      std::lock_guard<std::mutex> lock(g_mutex);
      if (!g_request.any()) return;
    }
    if (index < 0 || static_cast<std::uint32_t>(index) >= n_workers || visit == nullptr) return;
    const auto p = plan_for(n_workers);
    for (const auto& [name, value] : p->workers[static_cast<unsigned>(index)].env)
      visit(context, name.c_str(), value.c_str());
  } catch (const std::exception& e) {
    log(WM_LOG_ERROR, "core",
        "worker " + std::to_string(index) + " of " + std::to_string(n_workers) + " starts without its GPUs and cores: " +
            e.what());
  }
}

void svc_bind_worker_thread(std::int32_t index, std::uint32_t n_workers) {
  try {
    bool any;
    {
      std::lock_guard<std::mutex> lock(g_mutex);
      any = g_request.any();
    }
    auto info = std::make_unique<WorkerInfo>();
    if (any && index >= 0 && static_cast<std::uint32_t>(index) < n_workers) {
      *info = info_of(*plan_for(n_workers), static_cast<unsigned>(index));
      if (!info->cores.empty() && !bind_to(info->cores, false)) {
        warn_unbound(info->cores, ("the thread of worker " + std::to_string(index)).c_str());
        info->cores.clear();
      }
    } else {
      info->index = index;
      info->resources = default_resources();
    }
    t_thread = std::move(info);
  } catch (const std::exception& e) {
    log(WM_LOG_ERROR, "core", "worker thread " + std::to_string(index) + " runs without its GPUs and cores: " + e.what());
  }
}

std::size_t svc_worker_resources(std::int32_t index, std::uint32_t n_workers, wm_resource_amount* out,
                                 std::size_t capacity) {
  try {
    std::vector<ResourceAmount> res;
    const WorkerInfo* self = g_process.load();
    bool any;
    {
      std::lock_guard<std::mutex> lock(g_mutex);
      any = g_request.any();
    }
    if ((g_spawned_worker.load() || g_self_worker.load()) && self != nullptr)
      res = self->resources;
    else if (any && index >= 0 && static_cast<std::uint32_t>(index) < n_workers)
      res = plan_for(n_workers)->workers[static_cast<unsigned>(index)].resources;
    else
      res = default_resources();
    for (std::size_t i = 0; i < res.size() && i < capacity && out != nullptr; ++i)
      out[i] = wm_resource_amount{intern_name(res[i].name)->c_str(), res[i].amount};
    return res.size();
  } catch (const std::exception& e) {
    log(WM_LOG_ERROR, "core", std::string("worker resources: ") + e.what());
    return 0;
  }
}

}  // namespace wm::detail

namespace wm {

const WorkerInfo& this_worker() {
  thread_local WorkerInfo view;
  const WorkerInfo* base = detail::t_thread ? detail::t_thread.get() : detail::g_process.load();
  if (base != nullptr) {
    view = *base;
  } else {
    view = WorkerInfo{};
    view.resources = detail::default_resources();
  }
  view.host = detail::host_name();
  view.pid = static_cast<std::int64_t>(getpid());
  if (detail::worker_index() >= 0) view.index = detail::worker_index();
  if (detail::worker_rank() >= 0) view.rank = detail::worker_rank();
  return view;
}

}  // namespace wm
