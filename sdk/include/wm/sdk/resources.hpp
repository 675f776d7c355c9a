// SPDX-License-Identifier: MIT
// wm/sdk/resources.hpp: what a worker has ("gpu", "cpu" and the resources the user declared) and
// whether it covers what a task needs (wm_task_info.needs), for backends that place tasks. The
// remote engine places tasks with it; an in-process backend checks at submit that its workers can
// run a task at all (unfit_message names what was asked and what exists).
#pragma once

#include <wm/abi.h>

#include <algorithm>
#include <cmath>
#include <cstddef>
#include <cstdio>
#include <cstring>
#include <string>
#include <utility>
#include <vector>

namespace wm::sdk {

/** Amounts of named resources, sorted by name. */
class Resources {
 public:
  Resources() = default;

  /** What worker `index` of `n_workers` has, as the core's binding plan says (in a process that is
   *  one worker: itself). Empty with a core that has no plan (ABI 1.0). */
  static Resources of_worker(const wm_core_services& s, std::int32_t index, std::uint32_t n_workers) {
    Resources r;
    if (s.worker_resources == nullptr || WM_ABI_MINOR_OF(s.abi_version) < 1) return r;
    wm_resource_amount buf[32];
    const std::size_t n = s.worker_resources(index, n_workers, buf, 32);
    for (std::size_t i = 0; i < n && i < 32; ++i)
      if (buf[i].name != nullptr) r.set(buf[i].name, buf[i].amount);
    return r;
  }

  /** Sets (or, for amount 0, keeps at 0) the amount of a resource. */
  void set(const std::string& name, double amount) {
    auto it = std::lower_bound(amounts_.begin(), amounts_.end(), name,
                               [](const auto& a, const std::string& n) { return a.first < n; });
    if (it != amounts_.end() && it->first == name)
      it->second = amount;
    else
      amounts_.insert(it, {name, amount});
  }
  double amount(const char* name) const {
    for (const auto& a : amounts_)
      if (a.first == name) return a.second;
    return 0;
  }
  const std::vector<std::pair<std::string, double>>& amounts() const { return amounts_; }
  bool empty() const { return amounts_.empty(); }

  /** True if it has at least each amount of needs (sorted by name, as wm_task_info gives them). */
  bool covers(const wm_resource_amount* needs, std::size_t n) const {
    std::size_t j = 0;
    for (std::size_t i = 0; i < n; ++i) {
      while (j < amounts_.size() && amounts_[j].first.compare(needs[i].name) < 0) ++j;
      if (j == amounts_.size() || amounts_[j].first != needs[i].name || amounts_[j].second < needs[i].amount)
        return false;
    }
    return true;
  }

  /** "cpu=2, gpu=1", or "no resources". */
  std::string text() const {
    std::string out;
    for (const auto& a : amounts_) out += (out.empty() ? "" : ", ") + a.first + "=" + number(a.second);
    return out.empty() ? "no resources" : out;
  }

  friend bool operator==(const Resources& a, const Resources& b) { return a.amounts_ == b.amounts_; }
  friend bool operator!=(const Resources& a, const Resources& b) { return !(a == b); }

  static std::string number(double v) {
    char buf[40];
    std::snprintf(buf, sizeof buf, "%.15g", v);
    return buf;
  }

 private:
  std::vector<std::pair<std::string, double>> amounts_;
};

/** "gpu=2, mem=6.4e+10" */
inline std::string needs_text(const wm_resource_amount* needs, std::size_t n) {
  std::string out;
  for (std::size_t i = 0; i < n; ++i)
    out += (out.empty() ? "" : ", ") + std::string(needs[i].name) + "=" + Resources::number(needs[i].amount);
  return out;
}

/** What each distinct kind of worker has: "gpu=1; cpu=2, mem=8e+09", or "no workers yet". */
inline std::string kinds_text(const std::vector<Resources>& kinds) {
  std::string out;
  for (const Resources& r : kinds) out += (out.empty() ? "" : "; ") + r.text();
  return out.empty() ? "no workers yet" : out;
}

/** The message of a task that no worker can run: what it needs and what the workers have
 *  (`have`: each distinct kind of worker once). */
inline std::string unfit_message(const wm_resource_amount* needs, std::size_t n, const std::vector<Resources>& have,
                                 const std::string& backend) {
  return "it needs " + needs_text(needs, n) + ", and no worker of the " + backend +
         " work manager has that much (its workers have: " + kinds_text(have) +
         "); give workers more with --wm-gpus-per-worker, --wm-cpus-per-worker or --wm-resources";
}

}  // namespace wm::sdk
