// SPDX-License-Identifier: MIT
// registry.cpp: the registry handshake (see registry.hpp).
#include "registry.hpp"
#include <wm/sdk/remote/record.hpp>

#include <elf.h>
#include <link.h>

#include <algorithm>
#include <cstring>
#include <map>
#include <set>

namespace wm::sdk::remote {
namespace {

struct Fnv {
  std::uint64_t h = 1469598103934665603ull;
  void mix(const void* p, std::size_t n) {
    for (std::size_t i = 0; i < n; ++i) {
      h ^= static_cast<const unsigned char*>(p)[i];
      h *= 1099511628211ull;
    }
  }
  void text(const std::string& s) { mix(s.c_str(), s.size() + 1); }
};

// The GNU build-id note of a loaded object, as hex ("" if it has none).
std::string build_id_from_notes(const dl_phdr_info* info) {
  for (int i = 0; i < info->dlpi_phnum; ++i) {
    const ElfW(Phdr)& ph = info->dlpi_phdr[i];
    if (ph.p_type != PT_NOTE) continue;
    const char* p = reinterpret_cast<const char*>(info->dlpi_addr + ph.p_vaddr);
    const char* end = p + ph.p_memsz;
    while (p + sizeof(ElfW(Nhdr)) <= end) {
      const auto* n = reinterpret_cast<const ElfW(Nhdr)*>(p);
      const char* name = p + sizeof *n;
      const char* desc = name + ((n->n_namesz + 3) & ~3u);
      const char* next = desc + ((n->n_descsz + 3) & ~3u);
      if (next > end) break;
      if (n->n_type == NT_GNU_BUILD_ID && n->n_namesz == 4 && std::memcmp(name, "GNU", 4) == 0) {
        static const char* hex = "0123456789abcdef";
        std::string out;
        for (std::size_t k = 0; k < n->n_descsz; ++k) {
          const auto b = static_cast<unsigned char>(desc[k]);
          out += hex[b >> 4];
          out += hex[b & 15];
        }
        return out;
      }
      p = next;
    }
  }
  return {};
}

std::string build_id_of(const std::string& path) {
  struct Search {
    const std::string* path;
    std::string id;
    bool found = false;
  } s{&path, {}};
  dl_iterate_phdr(
      [](dl_phdr_info* info, std::size_t, void* data) -> int {
        auto* s = static_cast<Search*>(data);
        if (info->dlpi_name == nullptr || *s->path != info->dlpi_name) return 0;
        s->id = build_id_from_notes(info);
        s->found = true;
        return 1;
      },
      &s);
  return s.id;
}

constexpr std::uint16_t kListingVersion = 1;

std::uint64_t digest_of(const TaskListing& l) {
  Fnv f;
  for (const auto& t : l.tasks) {
    f.text(t.name);
    f.mix(&t.fingerprint, sizeof t.fingerprint);
    f.text(t.library);
  }
  for (const auto& lib : l.libraries) {
    f.text(lib.path);
    f.text(lib.build_id);
  }
  return f.h;
}

std::string join(const std::vector<std::string>& items, std::size_t most = 8) {
  std::string s;
  for (std::size_t i = 0; i < items.size() && i < most; ++i) s += (i ? ", " : "") + items[i];
  if (items.size() > most) s += " and " + std::to_string(items.size() - most) + " more";
  return s;
}

}  // namespace

TaskListing TaskListing::of_this_process(const wm_core_services& services) {
  TaskListing l;
  services.list_tasks(
      [](void* context, const wm_task_entry* e) {
        auto* l = static_cast<TaskListing*>(context);
        l->tasks.push_back(Task{e->name, e->fingerprint, e->signature != nullptr ? e->signature : "",
                                e->library != nullptr ? e->library : ""});
      },
      &l);
  std::set<std::string> paths;
  for (const auto& t : l.tasks)
    if (!t.library.empty()) paths.insert(t.library);
  for (const auto& p : paths) l.libraries.push_back(Library{p, build_id_of(p)});
  l.digest = digest_of(l);
  return l;
}

std::string TaskListing::encode() const {
  RecordWriter w;
  w.put(kListingVersion).put(static_cast<std::uint32_t>(tasks.size()));
  for (const auto& t : tasks) w.text(t.name).put(t.fingerprint).text(t.signature).text(t.library);
  w.put(static_cast<std::uint32_t>(libraries.size()));
  for (const auto& lib : libraries) w.text(lib.path).text(lib.build_id);
  return std::move(w.bytes);
}

bool TaskListing::parse(const char* data, std::size_t size, TaskListing& out, std::string& why) {
  RecordReader in(data, size);
  std::uint16_t version = 0;
  std::uint32_t n = 0;
  if (!in.get(version) || version != kListingVersion) {
    why = "a task listing of another version";
    return false;
  }
  TaskListing l;
  if (!in.get(n) || n > size) {
    why = "a truncated task listing";
    return false;
  }
  for (std::uint32_t i = 0; i < n; ++i) {
    Task t;
    if (!in.text(t.name) || !in.get(t.fingerprint) || !in.text(t.signature) || !in.text(t.library)) {
      why = "a truncated task listing";
      return false;
    }
    l.tasks.push_back(std::move(t));
  }
  if (!in.get(n) || n > size) {
    why = "a truncated task listing";
    return false;
  }
  for (std::uint32_t i = 0; i < n; ++i) {
    Library lib;
    if (!in.text(lib.path) || !in.text(lib.build_id)) {
      why = "a truncated task listing";
      return false;
    }
    l.libraries.push_back(std::move(lib));
  }
  if (!in.done()) {
    why = "a task listing with bytes left over";
    return false;
  }
  l.digest = digest_of(l);
  out = std::move(l);
  return true;
}

std::string compare_listings(const TaskListing& master, const TaskListing& worker, const std::string& label) {
  if (master.digest == worker.digest) return {};
  std::map<std::string, const TaskListing::Task*> m, w;
  for (const auto& t : master.tasks) m[t.name] = &t;
  for (const auto& t : worker.tasks) w[t.name] = &t;
  std::vector<std::string> only_master, only_worker, other_signature;
  for (const auto& [name, t] : m) {
    auto it = w.find(name);
    if (it == w.end())
      only_master.push_back(name);
    else if (it->second->fingerprint != t->fingerprint)
      other_signature.push_back(name + " (" + t->signature + " in the master, " + it->second->signature + " there)");
  }
  for (const auto& [name, t] : w)
    if (!m.count(name)) only_worker.push_back(name);
  std::vector<std::string> other_build;
  std::map<std::string, std::string> wlib;
  for (const auto& lib : worker.libraries) wlib[lib.path] = lib.build_id;
  for (const auto& lib : master.libraries) {
    auto it = wlib.find(lib.path);
    if (it != wlib.end() && it->second != lib.build_id)
      other_build.push_back(lib.path + " (build " + (lib.build_id.empty() ? "?" : lib.build_id.substr(0, 12)) +
                            " in the master, " + (it->second.empty() ? "?" : it->second.substr(0, 12)) + " there)");
  }
  std::string r = label + " does not have the tasks the master has:";
  if (!only_master.empty()) r += " unknown there: " + join(only_master) + ";";
  if (!only_worker.empty()) r += " known only there: " + join(only_worker) + ";";
  if (!other_signature.empty()) r += " other signatures: " + join(other_signature, 4) + ";";
  if (!other_build.empty()) r += " task libraries of another build: " + join(other_build, 4) + ";";
  if (only_master.empty() && only_worker.empty() && other_signature.empty() && other_build.empty())
    r += " its task libraries differ;";
  r.back() = '.';
  return r + " Run the master and its workers from one build of the program, with the same task libraries "
             "loaded (wm::load_task_library before creating the work manager).";
}

}  // namespace wm::sdk::remote
