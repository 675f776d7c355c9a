// SPDX-License-Identifier: MIT
// wm_tool.cpp: the `wm` command: lists the backends and every plugin file (taken, shadowed or refused,
// and why), shows a backend's options and the effective configuration, and checks a backend in a
// child process. Plain text by default, JSON with --json.
#include <wm/task.hpp>
#include <wm/wm.hpp>

#include <boost/dll/shared_library.hpp>
#include <boost/program_options.hpp>
#include <httplib.h>  // wm status: the dashboard's client
#include <nlohmann/json.hpp>

#include "duration_text.hpp"  // core/src: durations written as the core writes them
#include "option_value.hpp"   // core/src: the core's grammar of option values

#include <cxxabi.h>
#include <dlfcn.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <spawn.h>
#include <sys/prctl.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <iomanip>
#include <iostream>
#include <limits>
#include <map>
#include <memory>
#include <optional>
#include <sstream>
#include <string>
#include <string_view>
#include <thread>
#include <utility>
#include <vector>

extern char** environ;

namespace po = boost::program_options;

// The task `wm check` runs. Registered by name: remote backends run it in their worker processes,
// which are this program started again (hence serve_if_worker() first thing in main()).
std::vector<std::int64_t> wm_check_task(std::int64_t x) { return {3 * x + 1, static_cast<std::int64_t>(getpid())}; }
WM_TASK(wm_check_task);

namespace {

// ---- output ----

// For names taken from the file system: every byte a terminal could misread (control characters,
// non-ASCII bytes, the backslash itself) as \xNN, so a file name can never fake a line or a column.
std::string escaped(std::string_view s) {
  static const char* const kHex = "0123456789abcdef";
  std::string out;
  for (const char ch : s) {
    const auto c = static_cast<unsigned char>(ch);
    if (c >= 0x20 && c < 0x7f && c != '\\') {
      out += ch;
    } else {
      out += "\\x";
      out += kHex[c >> 4];
      out += kHex[c & 15];
    }
  }
  return out;
}

// For messages (which may quote escaped names already): only what could break the line is escaped.
std::string one_line(std::string_view s) {
  std::string out;
  for (const char ch : s) {
    const auto c = static_cast<unsigned char>(ch);
    if (c >= 0x20 && c != 0x7f) {
      out += ch;
    } else {
      char buf[8];
      std::snprintf(buf, sizeof buf, "\\x%02x", c);
      out += buf;
    }
  }
  return out;
}

// ---- JSON (nlohmann-json; fields in the order written) ----
using Json = nlohmann::ordered_json;

// Strings in the JSON output are UTF-8, kept as they are. Text that is not valid UTF-8 (a file name
// is bytes, not necessarily UTF-8) is written with each invalid byte replaced by U+FFFD, and its
// exact bytes are given beside it as an array of numbers (0-255), under the key with "_bytes"
// appended: every JSON parser takes the document, and nothing is lost.
bool valid_utf8(const std::string& s) {
  try {
    (void)Json(s).dump();  // the strict handler throws on a byte that is not valid UTF-8
    return true;
  } catch (const Json::type_error&) {
    return false;
  }
}

// Sets obj[key] to the text (see above for text that is not UTF-8).
void put_text(Json& obj, const std::string& key, const std::string& text) {
  obj[key] = text;
  if (!valid_utf8(text)) obj[key + "_bytes"] = std::vector<unsigned char>(text.begin(), text.end());
}

Json text_list(const std::vector<std::string>& items) {
  Json out = Json::array();
  for (const auto& s : items) out.push_back(s);
  return out;
}

// One line on stdout; invalid UTF-8 becomes U+FFFD here (the exact bytes are in the _bytes fields).
void print_json(const Json& j) {
  std::cout << j.dump(-1, ' ', false, Json::error_handler_t::replace) << "\n";
}

// A value of the given option type as JSON, read by the core's own grammar: a number, a boolean or
// a string. Text the grammar refuses (which the core would have refused before) stays a string.
Json typed_value(wm::OptionType type, const std::string& text) {
  std::string problem;
  switch (type) {
    case wm::OptionType::integer:
      if (auto v = wm::detail::parse_integer_text(text, std::numeric_limits<long long>::min(),
                                                  std::numeric_limits<long long>::max(), problem))
        return *v;
      break;
    case wm::OptionType::number:
      if (auto v = wm::detail::parse_number_text(text, -std::numeric_limits<double>::infinity(),
                                                 std::numeric_limits<double>::infinity(), problem))
        return std::isfinite(*v) ? Json(*v) : Json(nullptr);
      break;
    case wm::OptionType::boolean:
      if (auto v = wm::detail::parse_bool_text(text, problem)) return *v;
      break;
    case wm::OptionType::text: break;
  }
  return text;
}

std::string abi_text(std::uint32_t v) { return std::to_string(v >> 16) + "." + std::to_string(v & 0xffffu); }

std::vector<std::string> capability_names(std::uint64_t caps) {
  std::vector<std::string> out;
  const std::pair<std::uint64_t, const char*> known[] = {{WM_CAP_IN_PROCESS, "in-process"},
                                                         {WM_CAP_REMOTE, "remote"},
                                                         {WM_CAP_SPAWNS_WORKERS, "spawns-workers"},
                                                         {WM_CAP_SPMD, "spmd"},
                                                         {WM_CAP_MAPS_MEMORY, "maps-memory"}};
  for (const auto& [bit, name] : known)
    if (caps & bit) {
      out.emplace_back(name);
      caps &= ~bit;
    }
  if (caps != 0) {
    std::ostringstream os;
    os << "unknown bits 0x" << std::hex << caps;
    out.push_back(os.str());
  }
  return out;
}

std::string join(const std::vector<std::string>& items, const char* separator) {
  std::string s;
  for (const auto& i : items) s += (s.empty() ? "" : separator) + i;
  return s;
}

std::string option_range(const wm::OptionInfo& o) {
  std::ostringstream os;
  if (o.type == wm::OptionType::integer) os << o.int_min << ".." << o.int_max;
  if (o.type == wm::OptionType::number) os << o.number_min << ".." << o.number_max;
  return os.str();
}

Json option_json(const wm::OptionInfo& o) {
  Json j;
  j["name"] = o.name;
  j["type"] = wm::to_string(o.type);
  j["default"] = typed_value(o.type, o.default_value);
  j["variable"] = o.variable;
  j["flag"] = o.flag;
  put_text(j, "help", o.help);
  if (o.type == wm::OptionType::integer) {
    j["min"] = static_cast<long long>(o.int_min);
    j["max"] = static_cast<long long>(o.int_max);
  } else if (o.type == wm::OptionType::number) {
    j["min"] = o.number_min;
    j["max"] = o.number_max;
  }
  return j;
}

Json plugin_json(const wm::PluginInfo& p) {
  Json j;
  put_text(j, "path", p.path);
  j["status"] = wm::to_string(p.status);
  if (p.name.empty()) j["name"] = nullptr;
  else put_text(j, "name", p.name);
  if (p.abi_version != 0) j["abi_version"] = abi_text(p.abi_version);
  if (p.status != wm::PluginStatus::refused) {
    put_text(j, "version", p.version);
    put_text(j, "description", p.description);
    j["capabilities"] = text_list(capability_names(p.capabilities));
    put_text(j, "entry_symbol", p.entry_symbol);
    j["options"] = Json::array();
    for (const auto& o : p.options) j["options"].push_back(option_json(o));
  }
  if (!p.reason.empty()) put_text(j, "reason", p.reason);
  if (!p.note.empty()) put_text(j, "note", p.note);
  if (!p.shadowed_by.empty()) put_text(j, "shadowed_by", p.shadowed_by);
  return j;
}

Json directory_json(const wm::PluginDirectory& d) {
  Json j;
  put_text(j, "path", d.path);
  j["origin"] = d.origin;
  j["status"] = wm::to_string(d.status);
  if (!d.detail.empty()) put_text(j, "detail", d.detail);
  return j;
}

std::string file_name(const std::string& path) {
  const auto slash = path.find_last_of('/');
  return slash == std::string::npos ? path : path.substr(slash + 1);
}

// ---- command lines ----

// A command line that names no command: exit status 2, like a bad flag, with the general help.
class UsageError : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

// Flags are never guessed from abbreviations, here as in the library.
constexpr int kStyle = po::command_line_style::unix_style & ~po::command_line_style::allow_guessing;

struct Command {
  const char* name;
  const char* synopsis;
  const char* summary;
};
const Command kCommands[] = {
    {"list", "wm list [--why] [--names] [--json]",
     "The valid work managers: name, version and the file each was found in. --why lists every\n"
     "candidate file in every scanned directory instead, taken, shadowed or refused, with the reason."},
    {"plugins", "wm plugins [--why] [--names] [--json]", "The same as `wm list`."},
    {"info", "wm info NAME [--json]",
     "A backend's version, ABI version, capabilities, description and every option (type, default,\n"
     "range, environment variable and flag)."},
    {"config", "wm config [--json] [wm flags: --work-manager NAME --n-workers N --wm-BACKEND-OPTION V ...]",
     "The configuration a host would get with these flags and this environment: every effective\n"
     "value and where it came from (command line > environment > default), and the warnings the\n"
     "host would print."},
    {"check", "wm check NAME [--timeout SECONDS] [--json] [wm flags: --n-workers N --wm-NAME-OPTION V ...]",
     "Loads the backend in a child process, creates, starts and shuts it down, and runs one task: each\n"
     "stage reported, the first failing one with the error (a missing entry symbol, an unresolved\n"
     "symbol, a create or startup failure, a crash, a hang past the timeout). Exit status 0 if\n"
     "every stage passed."},
    {"status", "wm status URL [--json] [--token TOKEN] [--timeout SECONDS]",
     "A running job's statistics, from the dashboard its master serves (--wm-dashboard HOST:PORT):\n"
     "tasks, queue, rate, each worker and the task it runs, the last failures. URL is the address\n"
     "the master printed (http://HOST:PORT/, with ?token=... off loopback; or the token in --token or\n"
     "WM_DASHBOARD_TOKEN). --json: the snapshot as the dashboard's /status.json gives it."},
};

void print_general_help(std::ostream& os) {
  os << "usage: wm COMMAND [OPTIONS]    (wm alone: wm list)\n\n"
        "Shows what this wm (" WM_VERSION_STRING ", plugin ABI "
     << abi_text(WM_ABI_VERSION) << ") finds and checks its work-manager backends.\n\ncommands:\n";
  for (const Command& c : kCommands) os << "  " << c.synopsis << "\n";
  os << "\nEvery command takes --help (what it does) and --json (machine-readable output).\n"
        "Plugins are read from the bundled directory next to libwm_core, then from the directories of\n"
        "WM_PLUGIN_PATH (colon-separated), in order; of two files with one backend name the first is\n"
        "used. Discovery reads each file's metadata record and runs no plugin code.\n";
}

const Command* find_command(const std::string& name) {
  for (const Command& c : kCommands)
    if (name == c.name) return &c;
  return nullptr;
}

// Parses a command's own flags strictly (after wm's flags were taken out, for config and check).
po::variables_map parse_command(const std::vector<std::string>& args, const po::options_description& desc,
                                const po::positional_options_description& positional = {}) {
  po::variables_map vm;
  po::store(po::command_line_parser(args).options(desc).positional(positional).style(kStyle).run(), vm);
  po::notify(vm);
  return vm;
}

po::options_description common_options() {
  po::options_description desc("options");
  desc.add_options()("help,h", "show what this command does")("json", "machine-readable output (JSON)");
  return desc;
}

bool wants_help(const po::variables_map& vm, const Command& c, const po::options_description& desc,
                const std::string& extra = {}) {
  if (!vm.count("help")) return false;
  std::cout << "usage: " << c.synopsis << "\n\n" << c.summary << "\n\n" << desc << extra;
  return true;
}

// ---- wm list ----

int cmd_list(const Command& c, const std::vector<std::string>& args) {
  po::options_description desc = common_options();
  desc.add_options()("why", "every candidate file in every scanned directory, and what became of it")(
      "names", "only the names of the valid work managers, one a line (for scripts and shell completion)");
  const auto vm = parse_command(args, desc);
  if (wants_help(vm, c, desc)) return 0;
  const bool why = vm.count("why") != 0;
  const wm::PluginScan scan = wm::scan_plugins();

  if (vm.count("json")) {
    Json j;
    j["work_managers"] = Json::array();
    j["directories"] = Json::array();
    Json files = Json::array();
    for (const auto& p : scan.plugins) {
      if (p.status == wm::PluginStatus::taken) {
        Json m;
        m["name"] = p.name;
        put_text(m, "version", p.version);
        put_text(m, "path", p.path);
        m["abi_version"] = abi_text(p.abi_version);
        put_text(m, "description", p.description);
        j["work_managers"].push_back(std::move(m));
      }
      if (why) files.push_back(plugin_json(p));
    }
    for (const auto& d : scan.directories) j["directories"].push_back(directory_json(d));
    if (why) j["files"] = std::move(files);
    j["problems"] = text_list(scan.directory_problems());
    print_json(j);
    return 0;
  }
  if (vm.count("names")) {
    for (const auto& name : scan.names()) std::cout << name << "\n";
    return 0;
  }

  if (!why) {
    std::size_t width = 4, version_width = 7;
    for (const auto& p : scan.plugins)
      if (p.status == wm::PluginStatus::taken) {
        width = std::max(width, p.name.size());
        version_width = std::max(version_width, escaped(p.version).size());
      }
    const int name_column = static_cast<int>(width + 2), version_column = static_cast<int>(version_width + 2);
    std::cout << std::left << std::setw(name_column) << "NAME" << std::setw(version_column) << "VERSION" << "FILE\n";
    std::size_t shadowed = 0, refused = 0;
    for (const auto& p : scan.plugins) {
      if (p.status == wm::PluginStatus::shadowed) ++shadowed;
      if (p.status == wm::PluginStatus::refused) ++refused;
      if (p.status != wm::PluginStatus::taken) continue;
      std::cout << std::setw(name_column) << p.name << std::setw(version_column) << escaped(p.version)
                << escaped(p.path) << "\n";
    }
    if (scan.names().empty()) std::cout << "(no valid work manager found)\n";
    for (const auto& problem : scan.directory_problems()) std::cout << "warning: " << one_line(problem) << "\n";
    if (shadowed + refused > 0)
      std::cout << "(" << refused << " file(s) refused, " << shadowed
                << " shadowed: `wm list --why` says why)\n";
    return 0;
  }

  // --why: directory by directory, every candidate file.
  std::size_t name_width = 8;
  for (const auto& p : scan.plugins) name_width = std::max(name_width, p.name.size());
  std::size_t entry = 0;
  for (const auto& d : scan.directories) {
    if (d.origin != "bundled") ++entry;
    const std::string where = d.origin == "bundled" ? "bundled" : "WM_PLUGIN_PATH entry " + std::to_string(entry);
    if (d.status != wm::DirectoryStatus::empty_entry) std::cout << where << " " << escaped(d.path) << ": ";
    else std::cout << where << " is empty: ";
    std::cout << (d.detail.empty() ? wm::to_string(d.status) : one_line(d.detail)) << "\n";
    if (d.status != wm::DirectoryStatus::scanned) continue;
    bool any = false;
    for (const auto& p : scan.plugins) {
      const std::string prefix = d.path.back() == '/' ? d.path : d.path + "/";
      if (p.path.compare(0, prefix.size(), prefix) != 0 || p.path.find('/', prefix.size()) != std::string::npos)
        continue;
      any = true;
      std::cout << "  " << std::left << std::setw(9) << wm::to_string(p.status)
                << std::setw(static_cast<int>(name_width)) << (p.name.empty() ? "-" : p.name) << "  "
                << escaped(file_name(p.path));
      if (p.status == wm::PluginStatus::taken) std::cout << " (version " << escaped(p.version) << ")";
      if (!p.reason.empty()) std::cout << ": " << one_line(p.reason);
      if (!p.note.empty()) std::cout << " (note: " << one_line(p.note) << ")";
      std::cout << "\n";
    }
    if (!any) std::cout << "  (no plugin files: names ending in .so or containing .so.)\n";
  }
  return 0;
}

// ---- wm info ----

// Throws the library's own error for a name that is not a valid work manager: "refused, because
// ...", "unknown, did you mean ...", exactly what a host selecting it would be told.
void require_work_manager(const std::string& name) {
  wm::WMEnvironment env;
  const std::string flag = "--work-manager=" + name;
  const char* argv[] = {"wm", flag.c_str()};
  env.parse_args(2, argv);
  env.work_manager_name();
}

// The options every work manager takes besides its own (--n-workers, the GPU and core options), as
// the core reports them: its settings that are neither the choice of backend nor the backend's.
std::vector<wm::ConfigEntry> common_options(const std::string& name) {
  wm::WMEnvironment env;
  const std::string flag = "--work-manager=" + name;
  const char* argv[] = {"wm", flag.c_str()};
  env.parse_args(2, argv);
  std::vector<wm::ConfigEntry> out;
  for (auto& e : env.config_report())
    if (!e.flag.empty() && e.name != "work-manager" && e.name.rfind(name + "-", 0) != 0) out.push_back(std::move(e));
  return out;
}

int cmd_info(const Command& c, const std::vector<std::string>& args) {
  po::options_description desc = common_options();
  po::options_description hidden;
  hidden.add_options()("name", po::value<std::string>());
  po::options_description all;
  all.add(desc).add(hidden);
  po::positional_options_description positional;
  positional.add("name", 1);
  const auto vm = parse_command(args, all, positional);
  if (wants_help(vm, c, desc)) return 0;
  if (!vm.count("name")) throw po::error("wm info needs the NAME of a backend (`wm list` shows them)");
  const std::string name = vm["name"].as<std::string>();
  require_work_manager(name);
  const wm::PluginScan scan = wm::scan_plugins();
  const wm::PluginInfo& p = *scan.find(name);
  std::vector<const wm::PluginInfo*> others;
  for (const auto& q : scan.plugins)
    if (&q != &p && q.name == p.name) others.push_back(&q);

  if (vm.count("json")) {
    Json j;
    j["work_manager"] = plugin_json(p);
    j["core_abi_version"] = abi_text(WM_ABI_VERSION);
    j["common_options"] = Json::array();
    for (const auto& e : common_options(p.name))
      j["common_options"].push_back(Json{{"name", e.name}, {"variable", e.variable}, {"flag", e.flag}});
    j["other_copies"] = Json::array();
    for (const auto* q : others) j["other_copies"].push_back(plugin_json(*q));
    print_json(j);
    return 0;
  }
  std::cout << p.name << " " << escaped(p.version) << ": " << one_line(p.description) << "\n"
            << "  file          " << escaped(p.path) << "\n"
            << "  ABI version   " << abi_text(p.abi_version) << " (this wm: " << abi_text(WM_ABI_VERSION) << ")\n"
            << "  capabilities  " << join(capability_names(p.capabilities), ", ") << "\n"
            << "  entry symbol  " << escaped(p.entry_symbol) << "\n";
  if (!p.note.empty()) std::cout << "  note          " << one_line(p.note) << "\n";
  if (p.options.empty()) std::cout << "  options       (none)\n";
  else std::cout << "  options:\n";
  for (const auto& o : p.options) {
    std::cout << "    " << o.name << "  " << wm::to_string(o.type) << ", default '" << one_line(o.default_value) << "'";
    if (const std::string range = option_range(o); !range.empty()) std::cout << ", range " << range;
    std::cout << "\n      " << o.variable << " / " << o.flag << "\n      " << one_line(o.help) << "\n";
  }
  for (const auto* q : others)
    std::cout << "  other copy    " << escaped(q->path) << ": " << wm::to_string(q->status) << ": "
              << one_line(q->reason) << "\n";
  std::vector<std::string> common;
  for (const auto& e : common_options(p.name)) common.push_back(e.flag);
  std::cout << "  common        " << join(common, ", ") << " (every backend takes them; `wm config --help`)\n";
  return 0;
}

// ---- wm config ----

// The workers whose plan `wm config` shows, and what they are: --n-workers, else the backend's
// default as its description says it (serial: one; the others: one per core). An SPMD backend whose
// processes are its workers (mpi) plans per node: rank i of a node takes worker i's share.
struct PlanScope {
  unsigned n = 1;
  std::string note;
};
PlanScope plan_scope(const wm::WMEnvironment& env, const std::string& backend, const wm::PluginInfo* plugin) {
  PlanScope s;
  const std::uint64_t caps = plugin != nullptr ? plugin->capabilities : 0;
  const bool ranks = (caps & WM_CAP_SPMD) != 0 && (caps & WM_CAP_SPAWNS_WORKERS) == 0;
  if (const unsigned n = env.n_workers(); n != 0) {
    s.n = n;
    s.note = "--n-workers";
  } else if (backend == "serial" || ranks) {
    s.n = 1;
    s.note = backend == "serial" ? "serial: this process is worker 0" : "one rank alone (--n-workers N: N ranks a node)";
  } else {
    s.n = std::max(1u, std::thread::hardware_concurrency());
    s.note = "the backend's default: one per core";
  }
  if (ranks) s.note += "; each rank takes the share of its node-local rank, itself, before MPI starts";
  if ((caps & WM_CAP_SPMD) != 0 && !ranks)
    s.note += "; each node shares out its own devices and cores among its own workers: this is a node's plan";
  return s;
}

std::string amount_text(double v) {
  std::ostringstream os;
  os << v;
  return os.str();
}

Json plan_json(const wm::BindingPlan& p, const PlanScope& scope) {
  Json j;
  j["n_workers"] = p.n_workers;
  j["scope"] = scope.note;
  j["gpus_from"] = p.gpus_from.empty() ? Json(nullptr) : Json(p.gpus_from);
  j["gpu_variable"] = p.gpu_variable.empty() ? Json(nullptr) : Json(p.gpu_variable);
  j["bind"] = p.bind;
  j["workers"] = Json::array();
  for (std::size_t i = 0; i < p.workers.size(); ++i) {
    const wm::WorkerInfo& w = p.workers[i];
    Json x;
    x["index"] = w.index;
    x["gpus"] = w.gpus;
    x["cores"] = w.cores;
    x["resources"] = Json::object();
    for (const auto& r : w.resources) x["resources"][r.name] = r.amount;
    x["environment"] = Json::object();
    for (const auto& [name, value] : p.environment[i]) x["environment"][name] = value;
    j["workers"].push_back(std::move(x));
  }
  return j;
}

void print_plan(const wm::BindingPlan& p, const PlanScope& scope) {
  std::cout << "binding plan for " << p.n_workers << (p.n_workers == 1 ? " worker" : " workers") << " (" << scope.note
            << "):\n";
  if (!p.gpus_from.empty())
    std::cout << "  devices from " << p.gpus_from << "; each worker's in " << p.gpu_variable << "\n";
  std::cout << "  cores: " << (p.bind == "none" ? "not bound" : "bound to " + p.bind) << "\n";
  for (std::size_t i = 0; i < p.workers.size(); ++i) {
    const wm::WorkerInfo& w = p.workers[i];
    std::string gpus, cores, resources;
    for (const auto& g : w.gpus) gpus += (gpus.empty() ? "" : ",") + g;
    for (int c : w.cores) cores += (cores.empty() ? "" : ",") + std::to_string(c);
    for (const auto& r : w.resources) resources += (resources.empty() ? "" : " ") + r.name + "=" + amount_text(r.amount);
    std::cout << "  worker " << w.index << ": gpus " << (gpus.empty() ? "-" : escaped(gpus)) << "; cores "
              << (cores.empty() ? "-" : cores) << "; " << escaped(resources) << "\n";
  }
  if (p.environment.empty() || p.environment[0].empty())
    std::cout << "  (nothing asked: workers start with this environment and these CPUs as they are)\n";
}

int cmd_config(const Command& c, const std::vector<std::string>& args) {
  wm::WMEnvironment env;
  std::vector<const char*> argv{"wm config"};
  for (const auto& a : args) argv.push_back(a.c_str());
  std::vector<std::string> rest = env.parse_args(static_cast<int>(argv.size()), argv.data());
  rest.erase(rest.begin());
  po::options_description desc = common_options();
  const auto vm = parse_command(rest, desc);
  if (wants_help(vm, c, desc, "\n" + env.help_text())) return 0;
  const auto report = env.config_report();
  const auto warnings = env.warnings();
  const std::string backend = env.work_manager_name();
  const wm::PluginInfo* plugin = env.plugin_scan().find(backend);
  const PlanScope scope = plan_scope(env, backend, plugin);
  const wm::BindingPlan plan = wm::binding_plan(env, scope.n);
  if (vm.count("json")) {
    // Each value typed as the option is: the common settings by what they are, a backend's options
    // by their declared type.
    Json j;
    j["settings"] = Json::array();
    for (const auto& e : report) {
      Json entry;
      entry["name"] = e.name;
      if (e.name == "n-workers") {
        entry["value"] = e.source == wm::ValueSource::default_value ? Json(nullptr)
                                                                    : typed_value(wm::OptionType::integer, e.value);
      } else if (e.name == "gpus-per-worker" || e.name == "cpus-per-worker") {
        entry["value"] = typed_value(wm::OptionType::integer, e.value);
      } else if (e.name == "gpus" || e.name == "bind" || e.name == "resources") {
        entry["value"] = e.source == wm::ValueSource::default_value ? Json(nullptr) : Json(e.value);
      } else {
        wm::OptionType type = wm::OptionType::text;
        if (plugin != nullptr)
          for (const auto& o : plugin->options)
            if (e.name == backend + "-" + o.name) type = o.type;
        entry["value"] = typed_value(type, e.value);
      }
      entry["source"] = wm::to_string(e.source);
      entry["variable"] = e.variable;
      entry["flag"] = e.flag.empty() ? Json(nullptr) : Json(e.flag);
      j["settings"].push_back(std::move(entry));
    }
    j["binding"] = plan_json(plan, scope);
    j["warnings"] = text_list(warnings);
    print_json(j);
    return 0;
  }
  std::cout << "effective configuration (command line > environment > default):\n" << env.format_config_report();
  print_plan(plan, scope);
  if (!warnings.empty()) std::cout << "warnings (a host prints these when it makes this work manager):\n";
  for (const auto& w : warnings) std::cout << "  " << one_line(w) << "\n";
  return 0;
}

// ---- wm check ----

const char* const kStages[] = {"load", "entry symbol", "create", "startup", "task", "shutdown"};

// The child reports on fd 3, one event a line: "begin|ok|fail <TAB> stage <TAB> text"; tabs, newlines
// and backslashes in text are escaped, so plugin output can never be taken for a report.
constexpr int kReportFd = 3;

std::string protocol_escape(std::string_view s) {
  std::string out;
  for (const char ch : s) {
    if (ch == '\\') out += "\\\\";
    else if (ch == '\n') out += "\\n";
    else if (ch == '\t') out += "\\t";
    else out += ch;
  }
  return out;
}
std::string protocol_unescape(std::string_view s) {
  std::string out;
  for (std::size_t i = 0; i < s.size(); ++i) {
    if (s[i] != '\\' || i + 1 == s.size()) {
      out += s[i];
      continue;
    }
    const char n = s[++i];
    out += n == 'n' ? '\n' : n == 't' ? '\t' : n;
  }
  return out;
}

void report(const char* event, const char* stage, const std::string& text = {}) {
  const std::string line = std::string(event) + "\t" + stage + "\t" + protocol_escape(text) + "\n";
  for (std::size_t done = 0; done < line.size();) {
    const ssize_t n = ::write(kReportFd, line.data() + done, line.size() - done);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) std::_Exit(3);  // the parent is gone
    done += static_cast<std::size_t>(n);
  }
}

// What the exception being handled says, whatever its type.
std::string describe_current_exception() {
  const std::type_info* type = abi::__cxa_current_exception_type();
  std::string type_name = "unknown type";
  if (type != nullptr) {
    int status = 0;
    std::unique_ptr<char, void (*)(void*)> d(abi::__cxa_demangle(type->name(), nullptr, nullptr, &status), std::free);
    type_name = status == 0 && d ? d.get() : type->name();
  }
  try {
    throw;
  } catch (const wm::Error& e) {
    return e.what();
  } catch (const std::exception& e) {
    return type_name + ": " + e.what();
  } catch (...) {
    return "an exception of type " + type_name + ", not derived from std::exception";
  }
}

struct CheckArgs {
  std::string name;
  double timeout = 30;
  bool json = false;
  std::vector<std::string> given;  // the command's arguments, handed to the child as they came
};

// The child: runs the stages in this process and reports each on fd 3. Exit 0 if all passed.
int check_child(const std::string& name, wm::WMEnvironment& env) {
  const char* stage = "load";
  try {
    report("begin", stage);
    const wm::PluginInfo* p = env.plugin_scan().find(name);
    if (p == nullptr) throw wm::PluginError("work manager '" + name + "' is no longer in the plugin scan");
    // The core loads the plugin again in `create`; doing it here first tells loading (missing
    // library, unresolved symbol) and the entry symbol apart from what create does.
    // As the core loads it (Boost.DLL, rtld_now | rtld_local); static: never unloaded (a library
    // that links Open MPI must stay loaded until the process ends).
    static auto& library = *new boost::dll::shared_library;
    std::error_code ec;
    library.load(p->path, boost::dll::load_mode::rtld_now | boost::dll::load_mode::rtld_local, ec);
    if (ec) {
      // Boost.DLL's error_code says only "bad file descriptor"; the loader's message says what is missing.
      const char* e = ::dlerror();
      throw wm::PluginError("cannot load " + p->path + ": " + (e != nullptr ? e : "unknown loader error"));
    }
    report("ok", stage, p->path);
    stage = "entry symbol";
    report("begin", stage);
    if (!library.has(p->entry_symbol))
      throw wm::PluginError(p->path + " does not export its entry symbol " + p->entry_symbol +
                            ": rebuild it with WM_DECLARE_BACKEND");
    report("ok", stage, p->entry_symbol);
    stage = "create";
    report("begin", stage);
    auto manager = env.make_work_manager(name);
    report("ok", stage,
           std::to_string(manager->n_workers()) + " worker(s), tasks run " +
               (manager->runs_in_process() ? "in this process" : "in other processes"));
    stage = "startup";
    report("begin", stage);
    manager->startup();
    report("ok", stage);
    stage = "task";
    report("begin", stage);
    const std::vector<std::int64_t> r = manager->submit(wm_check_task, std::int64_t(14)).get_result();
    if (r.size() != 2 || r[0] != 43)
      throw wm::Error("wm_check_task(14) returned a wrong result (expected 43): the backend corrupts results");
    report("ok", stage,
           "wm_check_task(14) = 43, run in pid " + std::to_string(r[1]) +
               (r[1] == getpid() ? " (the check process)" : " (a worker)"));
    stage = "shutdown";
    report("begin", stage);
    manager->shutdown();
    manager.reset();
    report("ok", stage);
    return 0;
  } catch (...) {
    report("fail", stage, describe_current_exception());
    return 1;
  }
}

struct StageResult {
  std::string stage;
  bool ok = false;
  std::string detail;
};

struct ChildOutcome {
  std::vector<StageResult> stages;
  std::string output;  // the check process's stdout and stderr
  bool timed_out = false;
  int exit_code = -1;  // when it exited
  int signal = 0;      // when a signal killed it
};

volatile sig_atomic_t g_interrupted = 0;

// A pipe whose read end the parent polls; both ends close on exec except where dup2'ed.
struct Pipe {
  int r = -1, w = -1;
  Pipe() {
    int fds[2];
    if (::pipe2(fds, O_CLOEXEC) != 0) throw wm::Error(std::string("pipe: ") + std::strerror(errno));
    r = fds[0];
    w = fds[1];
  }
  ~Pipe() {
    if (r >= 0) ::close(r);
    if (w >= 0) ::close(w);
  }
  Pipe(const Pipe&) = delete;
  Pipe& operator=(const Pipe&) = delete;
};

// Runs `wm check-child PARENT NAME FLAGS...` in its own process group, collects its reports and
// output until it exits or the timeout passes (then the group is killed), and reaps it.
ChildOutcome run_check_child(const CheckArgs& a) {
  Pipe reports, output;
  posix_spawn_file_actions_t fa;
  posix_spawn_file_actions_init(&fa);
  posix_spawn_file_actions_adddup2(&fa, reports.w, kReportFd);
  posix_spawn_file_actions_adddup2(&fa, output.w, 1);
  posix_spawn_file_actions_adddup2(&fa, output.w, 2);
  posix_spawnattr_t attr;
  posix_spawnattr_init(&attr);
  posix_spawnattr_setflags(&attr, POSIX_SPAWN_SETPGROUP);
  posix_spawnattr_setpgroup(&attr, 0);
  std::vector<std::string> args = {"wm", "check-child", std::to_string(getpid())};
  args.insert(args.end(), a.given.begin(), a.given.end());
  std::vector<char*> argv;
  for (auto& s : args) argv.push_back(s.data());
  argv.push_back(nullptr);
  pid_t pid = -1;
  const int rc = ::posix_spawn(&pid, "/proc/self/exe", &fa, &attr, argv.data(), environ);
  posix_spawn_file_actions_destroy(&fa);
  posix_spawnattr_destroy(&attr);
  if (rc != 0) throw wm::Error(std::string("cannot start the check process: ") + std::strerror(rc));
  ::close(reports.w);
  ::close(output.w);
  reports.w = output.w = -1;

  ChildOutcome out;
  std::string report_text;
  // Its exit is seen on a pidfd; a kernel without pidfd_open falls back to short poll slices.
  const int pidfd = static_cast<int>(::syscall(SYS_pidfd_open, pid, 0));
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::duration<double>(a.timeout);
  // Reads what is there; false once the pipe is closed (EOF or error) or, non-blocking, empty.
  auto read_some = [](int& fd, std::string& into) {
    char buf[4096];
    const ssize_t n = ::read(fd, buf, sizeof buf);
    if (n > 0) {
      into.append(buf, static_cast<std::size_t>(n));
      if (into.size() > (1u << 20)) into.erase(0, into.size() - (1u << 20));  // keep the last MiB
      return true;
    }
    if (n < 0 && (errno == EINTR || errno == EAGAIN)) return false;
    ::close(fd);
    fd = -1;
    return false;
  };
  bool exited = false;
  while (!exited) {
    const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - std::chrono::steady_clock::now());
    if (left.count() <= 0 || g_interrupted) {
      out.timed_out = !g_interrupted;
      break;
    }
    pollfd fds[3];
    nfds_t n = 0;
    if (reports.r >= 0) fds[n++] = {reports.r, POLLIN, 0};
    if (output.r >= 0) fds[n++] = {output.r, POLLIN, 0};
    if (pidfd >= 0) fds[n++] = {pidfd, POLLIN, 0};
    const int wait_ms = pidfd >= 0 ? static_cast<int>(left.count()) : static_cast<int>(std::min<long long>(left.count(), 100));
    if (::poll(fds, n, wait_ms) < 0 && errno != EINTR) break;
    for (nfds_t i = 0; i < n; ++i) {
      if (fds[i].revents == 0) continue;
      if (fds[i].fd == reports.r) read_some(reports.r, report_text);
      else if (fds[i].fd == output.r) read_some(output.r, out.output);
    }
    // Seen without reaping: while it is a zombie its pid (its group's id) cannot be reused, so the
    // killpg below reaches only what it started.
    siginfo_t info{};
    exited = ::waitid(P_PID, static_cast<id_t>(pid), &info, WEXITED | WNOHANG | WNOWAIT) == 0 && info.si_pid == pid;
  }
  // On timeout the check process; in any case whatever it started and left behind in its group.
  ::killpg(pid, SIGKILL);
  int status = 0;
  while (::waitpid(pid, &status, 0) < 0 && errno == EINTR) {
  }
  if (pidfd >= 0) ::close(pidfd);
  // What is still buffered in the pipes (leftover processes may hold them open: no waiting for EOF).
  for (int* fd : {&reports.r, &output.r}) {
    if (*fd < 0) continue;
    ::fcntl(*fd, F_SETFL, O_NONBLOCK);
    std::string& into = fd == &reports.r ? report_text : out.output;
    while (*fd >= 0 && read_some(*fd, into)) {
    }
  }
  if (WIFEXITED(status)) out.exit_code = WEXITSTATUS(status);
  if (WIFSIGNALED(status)) out.signal = WTERMSIG(status);

  std::istringstream lines(report_text);
  for (std::string line; std::getline(lines, line);) {
    const auto t1 = line.find('\t');
    const auto t2 = t1 == std::string::npos ? t1 : line.find('\t', t1 + 1);
    if (t2 == std::string::npos) continue;
    const std::string event = line.substr(0, t1), stage = line.substr(t1 + 1, t2 - t1 - 1);
    const std::string text = protocol_unescape(line.substr(t2 + 1));
    if (event == "begin") out.stages.push_back({stage, false, ""});
    else if (!out.stages.empty() && out.stages.back().stage == stage) {
      out.stages.back().ok = event == "ok";
      out.stages.back().detail = text;
    }
  }
  return out;
}

void on_interrupt(int) { g_interrupted = 1; }

// ---- wm status ----

// A running job's snapshot, from its dashboard (/status.json), as text or as the JSON it is.
int cmd_status(const Command& c, const std::vector<std::string>& args) {
  po::options_description desc = common_options();
  desc.add_options()("url", po::value<std::string>()->value_name("URL"), "the dashboard's address")(
      "token", po::value<std::string>()->value_name("TOKEN"), "its token (default: ?token= in URL, or WM_DASHBOARD_TOKEN)")(
      "timeout", po::value<double>()->default_value(10)->value_name("SECONDS"), "how long to wait for the answer");
  po::positional_options_description positional;
  positional.add("url", 1);
  const po::variables_map vm = parse_command(args, desc, positional);
  if (wants_help(vm, c, desc)) return 0;
  if (!vm.count("url")) throw UsageError("wm status needs the dashboard's URL (what the master printed)");
  std::string url = vm["url"].as<std::string>();
  // http://HOST:PORT[/...][?token=T]: the client is given scheme, host and port; the token goes as
  // a bearer token (it stays out of logs of the path).
  std::string token;
  if (const auto q = url.find("?token="); q != std::string::npos) {
    token = url.substr(q + 7);
    token = token.substr(0, token.find('&'));
    url.erase(q);
  }
  if (vm.count("token")) token = vm["token"].as<std::string>();
  else if (const char* t = std::getenv("WM_DASHBOARD_TOKEN"); token.empty() && t != nullptr) token = t;
  if (url.find("://") == std::string::npos) url = "http://" + url;
  if (url.rfind("http://", 0) != 0) throw UsageError("wm status: '" + escaped(url) + "' is not an http:// address");
  const auto path_at = url.find('/', 7);
  const std::string origin = url.substr(0, path_at);
  const double timeout = vm["timeout"].as<double>();
  httplib::Client client(origin);
  client.set_connection_timeout(static_cast<time_t>(timeout), 0);
  client.set_read_timeout(static_cast<time_t>(timeout), 0);
  httplib::Headers headers;
  if (!token.empty()) headers.emplace("Authorization", "Bearer " + token);
  auto reply = client.Get("/status.json", headers);
  if (!reply)
    throw std::runtime_error("no answer from " + escaped(origin) + ": " + httplib::to_string(reply.error()) +
                             " (is the job running, with --wm-dashboard?)");
  if (reply->status == 401)
    throw std::runtime_error(escaped(origin) + " refused the request: it needs the token its master printed "
                             "(?token=... in the URL, --token or WM_DASHBOARD_TOKEN)");
  if (reply->status != 200)
    throw std::runtime_error(escaped(origin) + "/status.json answered HTTP " + std::to_string(reply->status));
  const Json s = Json::parse(reply->body);
  if (vm.count("json")) {
    print_json(s);
    return 0;
  }
  const Json& t = s.at("tasks");
  std::ostringstream os;
  os << "work manager '" << one_line(s.value("backend", "?")) << "' (pid " << s.value("pid", 0) << "), up "
     << wm::detail::duration_text(s.value("uptime_seconds", 0.0)) << ", at " << escaped(origin) << "/\n";
  std::string kinds;
  for (const auto& [kind, n] : t.at("failed_by_kind").items())
    if (kind != "cancelled") kinds += (kinds.empty() ? "" : ", ") + n.dump() + " " + kind;
  char rate[32];
  std::snprintf(rate, sizeof rate, "%.1f", t.value("per_second", 0.0));
  os << "  tasks: " << t.value("submitted", 0) << " submitted, " << t.value("completed", 0) << " completed, "
     << t.value("failed", 0) << " failed" << (kinds.empty() ? "" : " (" + kinds + ")") << ", " << t.value("cancelled", 0)
     << " cancelled, " << t.value("retried", 0) << " retried; " << t.value("queued", 0) << " queued, "
     << t.value("in_flight", 0) << " in flight; " << rate << " tasks/s\n";
  std::string states;
  for (const auto& [state, n] : s.at("workers_by_state").items())
    if (n.get<int>() != 0) states += (states.empty() ? "" : ", ") + n.dump() + " " + state;
  os << "  workers: " << s.at("workers").size() << (states.empty() ? "" : " (" + states + ")") << "\n";
  for (const Json& w : s.at("workers")) {
    os << "  worker " << w.value("index", -1) << " (";
    if (w.value("rank", -1) >= 0) os << "rank " << w.value("rank", -1) << ", ";
    os << "pid " << w.value("pid", 0) << " on " << one_line(w.value("host", "")) << "): " << w.value("state", "")
       << ", " << w.value("tasks_done", 0) << " done, " << w.value("tasks_failed", 0) << " failed, "
       << w.value("restarts", 0) << " restarts, busy " << std::lround(100 * w.value("busy_fraction", 0.0)) << "%";
    if (w.contains("task") && !w["task"].is_null())
      os << "; running '" << one_line(w["task"].value("name", "")) << "' (task " << w["task"].value("id", "")
         << ") for " << wm::detail::duration_text(w["task"].value("seconds", 0.0));
    os << "\n";
  }
  if (!s.value("workers_note", "").empty()) os << "  (" << one_line(s.value("workers_note", "")) << ")\n";
  if (!s.at("recent_failures").empty()) {
    os << "  last failures:\n";
    for (const Json& f : s.at("recent_failures"))
      os << "    " << wm::detail::duration_text(f.value("seconds_ago", 0.0)) << " ago, worker " << f.value("worker", -1) << ": "
         << one_line(f.value("task_name", "")) << " (" << f.value("kind", "") << "): " << one_line(f.value("message", ""))
         << "\n";
  }
  std::cout << os.str();
  return 0;
}

int cmd_check(const Command& c, const std::vector<std::string>& args, bool child) {
  wm::WMEnvironment env;
  std::vector<const char*> argv{"wm check"};
  for (const auto& s : args) argv.push_back(s.c_str());
  std::vector<std::string> rest = env.parse_args(static_cast<int>(argv.size()), argv.data());
  rest.erase(rest.begin());
  CheckArgs a;
  a.given = args;

  po::options_description desc = common_options();
  desc.add_options()("timeout", po::value<double>(&a.timeout)->default_value(30)->value_name("SECONDS"),
                     "kill the check process if it has not finished by then");
  po::options_description hidden;
  hidden.add_options()("name", po::value<std::string>(&a.name))("parent", po::value<long long>());
  po::options_description all;
  all.add(desc).add(hidden);
  po::positional_options_description positional;
  if (child) positional.add("parent", 1);
  positional.add("name", 1);
  const auto vm = parse_command(rest, all, positional);
  if (wants_help(vm, c, desc, "\n" + env.help_text())) return 0;
  if (a.name.empty()) throw po::error("wm check needs the NAME of a backend (`wm list` shows them)");
  if (!(a.timeout > 0 && a.timeout <= 86400)) throw po::error("--timeout must be more than 0 and at most 86400 seconds");
  a.json = vm.count("json") != 0;

  if (child) {
    // Dies with the parent, even if the parent is killed; plugin processes never see the report fd.
    ::prctl(PR_SET_PDEATHSIG, SIGKILL);
    if (vm.count("parent") && static_cast<long long>(getppid()) != vm["parent"].as<long long>()) return 3;
    ::fcntl(kReportFd, F_SETFD, FD_CLOEXEC);
    return check_child(a.name, env);
  }

  env.n_workers();  // a bad --n-workers is the user's error, not the backend's: refused here
  // Discovery first, in this process: a refused or unknown backend never gets as far as a child.
  const wm::PluginInfo* p = nullptr;
  std::string discovery_error;
  try {
    require_work_manager(a.name);
    p = env.plugin_scan().find(a.name);
  } catch (const wm::Error& e) {
    discovery_error = e.what();
  }
  ChildOutcome out;
  if (p == nullptr) {
    out.stages.push_back({"discovery", false, discovery_error});
  } else {
    out.stages.push_back({"discovery", true, p->path + " (version " + p->version + ")"});
    struct sigaction sa {};
    sa.sa_handler = on_interrupt;  // no SA_RESTART: the wait below wakes, kills the child, reaps it
    for (int sig : {SIGINT, SIGTERM, SIGHUP}) ::sigaction(sig, &sa, nullptr);
    ChildOutcome child_out = run_check_child(a);
    out.stages.insert(out.stages.end(), child_out.stages.begin(), child_out.stages.end());
    out.output = std::move(child_out.output);
    out.timed_out = child_out.timed_out;
    out.exit_code = child_out.exit_code;
    out.signal = child_out.signal;
  }
  // A stage that began and never ended: the process died or hung in it.
  if (!out.stages.empty() && !out.stages.back().ok && out.stages.back().detail.empty()) {
    std::ostringstream why;
    if (out.timed_out) why << "no answer within " << a.timeout << " s: the check process was killed";
    else if (g_interrupted) why << "interrupted: the check process was killed";
    else if (out.signal != 0) why << "the check process was killed by signal " << out.signal << " (" << strsignal(out.signal) << ")";
    else why << "the check process exited with status " << out.exit_code << " during this stage";
    out.stages.back().detail = why.str();
  }
  const bool all_ok = !out.stages.empty() && out.stages.back().ok && out.stages.back().stage == "shutdown" &&
                      out.exit_code == 0;
  if (!all_ok && out.stages.back().ok) {
    // Every reported stage passed, yet the check did not finish (it died between stages, or at exit).
    std::ostringstream why;
    if (out.timed_out) why << "no answer within " << a.timeout << " s";
    else if (out.signal != 0) why << "killed by signal " << out.signal << " (" << strsignal(out.signal) << ")";
    else why << "exited with status " << out.exit_code;
    out.stages.push_back({"exit", false, "the check process " + why.str() + " after its last stage"});
  }
  const StageResult* failed = all_ok ? nullptr : &out.stages.back();

  if (a.json) {
    Json j;
    j["name"] = a.name;
    if (p != nullptr) put_text(j, "path", p->path);
    else j["path"] = nullptr;
    j["ok"] = all_ok;
    j["stages"] = Json::array();
    for (const auto& s : out.stages) {
      Json stage;
      stage["stage"] = s.stage;
      stage["ok"] = s.ok;
      put_text(stage, "detail", s.detail);
      j["stages"].push_back(std::move(stage));
    }
    j["failed_stage"] = failed != nullptr ? Json(failed->stage) : Json(nullptr);
    j["timed_out"] = out.timed_out;
    put_text(j, "output", out.output);
    if (out.exit_code >= 0) j["exit_status"] = out.exit_code;
    if (out.signal != 0) j["signal"] = out.signal;
    print_json(j);
  } else {
    std::cout << "wm check " << a.name << "\n";
    auto line = [](const char* mark, const std::string& stage, const std::string& detail) {
      std::cout << "  " << std::left << std::setw(8) << mark;
      if (detail.empty()) std::cout << stage << "\n";
      else std::cout << std::setw(14) << stage << one_line(detail) << "\n";
    };
    for (const auto& s : out.stages) line(s.ok ? "ok" : "FAILED", s.stage, s.detail);
    for (const char* stage : kStages) {
      const bool reached = std::any_of(out.stages.begin(), out.stages.end(), [&](const StageResult& s) { return s.stage == stage; });
      if (!reached && failed != nullptr) line("-", stage, "not run");
    }
    if (!out.output.empty()) {
      std::cout << "output of the check process:\n";
      std::istringstream lines(out.output);
      for (std::string line; std::getline(lines, line);) std::cout << "  | " << one_line(line) << "\n";
    }
    if (all_ok) std::cout << a.name << ": ok\n";
    else std::cout << a.name << ": FAILED in stage '" << failed->stage << "'\n";
  }
  return all_ok ? 0 : g_interrupted ? 130 : 1;
}

int run(int argc, char** argv) {
  std::string verb = argc > 1 ? argv[1] : "list";
  std::vector<std::string> args(argv + std::min(argc, 2), argv + argc);
  if (verb == "-h" || verb == "--help") {
    print_general_help(std::cout);
    return 0;
  }
  if (verb == "--version") {
    std::cout << "wm " << wm::core_version() << " (plugin ABI " << abi_text(wm::core_abi_version()) << ")\n";
    return 0;
  }
  if (verb == "help") {
    if (args.empty()) {
      print_general_help(std::cout);
      return 0;
    }
    verb = args[0];
    args = {"--help"};
  }
  if (verb == "check-child") return cmd_check(*find_command("check"), args, true);
  const Command* c = find_command(verb);
  if (c == nullptr) {
    std::string near;
    std::size_t best = 3;
    for (const Command& k : kCommands) {
      std::size_t d = 0;  // letters in the wrong place: enough for the few short command names
      const std::string name = k.name;
      for (std::size_t i = 0; i < std::max(name.size(), verb.size()); ++i)
        d += i >= name.size() || i >= verb.size() || name[i] != verb[i];
      if (d < best) {
        best = d;
        near = name;
      }
    }
    throw UsageError("unknown command '" + escaped(verb) + "'" + (near.empty() ? "" : "; did you mean '" + near + "'?"));
  }
  const std::string name = c->name;
  if (name == "status") return cmd_status(*c, args);
  if (name == "list" || name == "plugins") return cmd_list(*c, args);
  if (name == "info") return cmd_info(*c, args);
  if (name == "config") return cmd_config(*c, args);
  return cmd_check(*c, args, false);
}

}  // namespace

int main(int argc, char** argv) {
  // `processes` (and any backend that spawns workers) re-runs this program as its workers.
  wm::serve_if_worker();
  // With --json, an error is also a JSON object on stdout (scripts read stdout; people read stderr).
  const bool json = std::any_of(argv + std::min(argc, 1), argv + argc, [](const char* a) { return std::strcmp(a, "--json") == 0; });
  auto fail = [&](const char* kind, const std::string& message, int status) {
    if (json) {
      Json j;
      Json& e = j["error"];
      e["kind"] = kind;
      put_text(e, "message", message);
      e["exit_status"] = status;
      print_json(j);
    }
    return status;
  };
  try {
    return run(argc, argv);
  } catch (const UsageError& e) {
    std::cerr << "wm: " << e.what() << "\n\n";
    print_general_help(std::cerr);
    return fail("usage", e.what(), 2);
  } catch (const po::error& e) {
    std::cerr << "wm: " << e.what() << " (see `wm " << (argc > 1 ? escaped(argv[1]) + " " : "") << "--help`)\n";
    return fail("usage", e.what(), 2);
  } catch (const wm::ConfigError& e) {
    std::cerr << "wm: " << one_line(e.what()) << "\n";
    return fail("config", e.what(), 1);
  } catch (const wm::PluginError& e) {
    std::cerr << "wm: " << one_line(e.what()) << "\n";
    return fail("plugin", e.what(), 1);
  } catch (const std::exception& e) {
    std::cerr << "wm: " << one_line(e.what()) << "\n";
    return fail("error", e.what(), 1);
  }
}
