// SPDX-License-Identifier: MIT
// environment.cpp: WMEnvironment: settings from the command line, WM_* variables and defaults;
// backend options declared in plugin metadata; discovery as data; creating the chosen work
// manager; the worker role.
#include "backend_link.hpp"
#include "binding.hpp"
#include "console.hpp"
#include "internal.hpp"
#include "log_level.hpp"
#include "option_value.hpp"
#include "plugin_scan.hpp"
#include "shared_memory.hpp"
#include "watch.hpp"

#include <wm/environment.hpp>
#include <wm/sdk/abi_version.hpp>
#include <wm/worker.hpp>

#include <boost/program_options.hpp>

#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cctype>
#include <cstdlib>
#include <cstring>
#include <iostream>
#include <limits>
#include <map>
#include <mutex>
#include <sstream>

extern char** environ;

namespace po = boost::program_options;

namespace wm {
namespace {

constexpr long long kMaxWorkers = 65536;
constexpr const char* kPluginPathVariable = "WM_PLUGIN_PATH";
constexpr const char* kLogLevelVariable = "WM_LOG_LEVEL";
// Flags are never completed from an abbreviation: `--n-worker 3` must not quietly mean --n-workers.
constexpr int kCommandLineStyle = po::command_line_style::unix_style & ~po::command_line_style::allow_guessing;

std::string upper_snake(const std::string& s) {
  std::string out;
  for (char c : s) out += (c == '-') ? '_' : static_cast<char>(std::toupper(static_cast<unsigned char>(c)));
  return out;
}

std::string lower(std::string s) {
  std::transform(s.begin(), s.end(), s.begin(), [](unsigned char c) { return std::tolower(c); });
  return s;
}

std::string trim(const std::string& s) {
  std::size_t b = s.find_first_not_of(" \t\n");
  if (b == std::string::npos) return {};
  std::size_t e = s.find_last_not_of(" \t\n");
  return s.substr(b, e - b + 1);
}

std::string join(const std::vector<std::string>& items, const char* separator, const char* none = "(none)") {
  std::string s;
  for (const auto& item : items) s += (s.empty() ? "" : separator) + item;
  return s.empty() ? none : s;
}

// Strict parsers: the whole text must be the value. "what" names the variable or flag.
[[noreturn]] void bad_value(const std::string& what, const std::string& text, const std::string& problem) {
  throw ConfigError(what + "='" + text + "' " + problem);
}
long long parse_integer(const std::string& text, const std::string& what, long long min, long long max) {
  std::string problem;
  if (auto v = detail::parse_integer_text(text, min, max, problem)) return *v;
  bad_value(what, text, problem);
}
double parse_double(const std::string& text, const std::string& what, double min, double max) {
  std::string problem;
  if (auto v = detail::parse_number_text(text, min, max, problem)) return *v;
  bad_value(what, text, problem);
}
bool parse_bool(const std::string& text, const std::string& what) {
  std::string problem;
  if (auto v = detail::parse_bool_text(text, problem)) return *v;
  bad_value(what, text, problem);
}

OptionType option_type(std::uint32_t type) {
  switch (type) {
    case WM_OPTION_BOOL: return OptionType::boolean;
    case WM_OPTION_INT: return OptionType::integer;
    case WM_OPTION_DOUBLE: return OptionType::number;
    default: return OptionType::text;
  }
}

// Backend options are always prefixed: --wm-threads-spin-us / WM_THREADS_SPIN_US.
std::string backend_setting(const std::string& backend, const char* option) { return backend + "-" + option; }

// wm's options for GPUs, cores and resources per worker (binding.cpp). Always prefixed, as backend
// options are (--wm-gpus, WM_GPUS): a host's own --gpus or --bind is left alone.
struct BindingOption {
  const char* name;
  const char* value_name;
  const char* help;
  const char* default_text;
};
const BindingOption kBindingOptions[] = {
    {"gpus-per-worker", "N", "GPUs each worker gets, in its CUDA_VISIBLE_DEVICES or the like", "0: none"},
    {"gpus", "LIST", "the devices to share out, comma-separated, kept as written",
     "CUDA_VISIBLE_DEVICES or the like if set, else the GPUs hwloc finds"},
    {"cpus-per-worker", "N", "cores each worker gets, and its OMP_NUM_THREADS", "0: not counted"},
    {"bind", "MODE", "none, cores or numa: bind each worker to its cores, or to their NUMA node",
     "cores when cores are counted"},
    {"resources", "LIST", "what else each worker has: NAME=AMOUNT,... (mem=64e9,license=1)", "none"},
};

// Runs a step of wm's configuration for the host (parsing, choosing, validating; not loading or
// creating the backend): a ConfigError or PluginError it throws is marked on its way out, so that a
// host that does not catch it ends with the message and exit code 2 (setup_errors.cpp). These
// errors depend on the command line, the environment and the plugin files only, the same in every
// process of a parallel job, so rank 0 alone says them.
template <class Fn>
decltype(auto) configuration_step(Fn&& fn) {
  try {
    return fn();
  } catch (const ConfigError& e) {
    detail::exit_2_if_uncaught(e);
    throw;
  } catch (const PluginError& e) {
    detail::exit_2_if_uncaught(e);
    throw;
  }
}

// ---- help text ----

constexpr std::size_t kHelpWidth = 80;
constexpr std::size_t kHelpColumn = 28;  // where a short entry's description starts

// Appends text word by word, lines at most kHelpWidth wide (a longer word gets a line of its own);
// `column` is where the cursor is now, continuation lines start at `indent`.
void wrap_into(std::string& out, std::string_view text, std::size_t column, std::size_t indent) {
  bool line_start = true;
  std::size_t i = 0;
  while (i < text.size()) {
    while (i < text.size() && text[i] == ' ') ++i;
    const std::size_t end = std::min(text.find(' ', i), text.size());
    if (end == i) break;
    const std::string_view word = text.substr(i, end - i);
    if (!line_start && column + 1 + word.size() > kHelpWidth) {
      out += "\n" + std::string(indent, ' ');
      column = indent;
      line_start = true;
    }
    if (!line_start) {
      out += ' ';
      ++column;
    }
    out += word;
    column += word.size();
    line_start = false;
    i = end;
  }
  out += '\n';
}

// "  --flag VALUE" then its description at kHelpColumn (or on the next line if the flag is wider).
void short_entry(std::string& out, const std::string& flag, std::string_view description) {
  std::string head = "  " + flag;
  if (head.size() + 2 <= kHelpColumn) {
    head.resize(kHelpColumn, ' ');
    out += head;
  } else {
    out += head + "\n" + std::string(kHelpColumn, ' ');
  }
  wrap_into(out, description, kHelpColumn, kHelpColumn);
}

// An option's help without its longer asides in parentheses, for the short listing (the full one,
// --help-wm BACKEND, has them): "times a task is run again (never for exceptions the task throws)"
// -> "times a task is run again". Short asides stay: they say what a special value means
// ("(0: no limit)"). Text whose parentheses do not balance, or that is all aside, stays as it is.
constexpr std::size_t kLongAside = 24;
std::string without_asides(std::string_view text) {
  std::string out;
  std::size_t i = 0;
  while (i < text.size()) {
    if (text[i] == ')') return std::string(text);
    if (text[i] != '(') {
      out += text[i++];
      continue;
    }
    std::size_t end = i;  // the matching ')'
    for (int depth = 0; end < text.size(); ++end) {
      if (text[end] == '(') ++depth;
      if (text[end] == ')' && --depth == 0) break;
    }
    if (end == text.size()) return std::string(text);
    if (end + 1 - i > kLongAside) {
      if (!out.empty() && out.back() == ' ') out.pop_back();
    } else {
      out.append(text.substr(i, end + 1 - i));
    }
    i = end + 1;
  }
  if (out.find_first_not_of(' ') == std::string::npos) return std::string(text);
  return out;
}

const char* value_name(std::uint32_t type) {
  switch (type) {
    case WM_OPTION_BOOL: return "[=BOOL]";
    case WM_OPTION_INT: return "N";
    case WM_OPTION_DOUBLE: return "X";
    default: return "TEXT";
  }
}

std::string number_text(double v) {
  std::ostringstream os;
  os << v;
  return os.str();
}

}  // namespace

const char* to_string(ValueSource source) noexcept {
  switch (source) {
    case ValueSource::default_value: return "default";
    case ValueSource::environment: return "environment";
    case ValueSource::command_line: return "command line";
  }
  return "default";
}

const char* to_string(OptionType type) noexcept {
  switch (type) {
    case OptionType::boolean: return "bool";
    case OptionType::integer: return "int";
    case OptionType::number: return "number";
    case OptionType::text: return "text";
  }
  return "text";
}

const char* to_string(PluginStatus status) noexcept {
  switch (status) {
    case PluginStatus::taken: return "taken";
    case PluginStatus::shadowed: return "shadowed";
    case PluginStatus::refused: return "refused";
  }
  return "refused";
}

const char* to_string(DirectoryStatus status) noexcept {
  switch (status) {
    case DirectoryStatus::scanned: return "scanned";
    case DirectoryStatus::duplicate: return "duplicate";
    case DirectoryStatus::missing: return "missing";
    case DirectoryStatus::not_a_directory: return "not a directory";
    case DirectoryStatus::unreadable: return "unreadable";
    case DirectoryStatus::empty_entry: return "empty entry";
  }
  return "scanned";
}

std::vector<std::string> PluginScan::names() const {
  std::vector<std::string> out;
  for (const auto& p : plugins)
    if (p.status == PluginStatus::taken) out.push_back(p.name);
  return out;
}

const PluginInfo* PluginScan::find(std::string_view name) const {
  const std::string wanted = lower(std::string(name));
  for (const auto& p : plugins)
    if (p.status == PluginStatus::taken && p.name == wanted) return &p;
  return nullptr;
}

std::vector<std::string> PluginScan::directory_problems() const {
  std::vector<std::string> out;
  std::size_t entry = 0;
  for (const auto& d : directories) {
    if (d.origin == kPluginPathVariable) ++entry;
    if (d.status == DirectoryStatus::scanned || d.status == DirectoryStatus::duplicate) continue;
    const std::string which = d.origin == kPluginPathVariable
                                  ? "entry " + std::to_string(entry) + " of " + kPluginPathVariable
                                  : std::string("the bundled plugin directory");
    if (d.status == DirectoryStatus::empty_entry)
      out.push_back(which + " is empty: ignored (it does not mean the current directory); remove the extra ':'");
    else
      out.push_back("plugin directory '" + d.path + "' (" + which + ") " + d.detail + ": not scanned");
  }
  return out;
}

namespace {

struct FullScan {
  PluginScan info;
  std::vector<detail::ScannedPlugin> raw;  // usable entries are the taken ones (first of their name)
  std::string signature;                   // what the scan depended on (see search_signature)
};

// The directories to scan: the bundled one, then WM_PLUGIN_PATH's entries (empty ones included,
// so they can be reported).
std::vector<std::string> search_path() {
  std::vector<std::string> dirs;
  if (std::string bundled = detail::default_plugin_directory(); !bundled.empty()) dirs.push_back(std::move(bundled));
  if (const char* p = std::getenv(kPluginPathVariable))
    for (std::string& d : detail::split_search_path(p)) dirs.push_back(std::move(d));
  return dirs;
}

// A scan is reused while this stays the same: the search path, the prefixes the option names are
// built with, and each directory's identity and modification time (a file added or removed).
std::string search_signature(const std::vector<std::string>& dirs, const std::string& env_prefix,
                             const std::string& arg_prefix) {
  std::ostringstream os;
  os << env_prefix << '\n' << arg_prefix << '\n';
  for (const auto& d : dirs) {
    struct stat st {};
    os << d << '\0';
    if (::stat(d.c_str(), &st) == 0)
      os << st.st_dev << ':' << st.st_ino << ':' << st.st_mtim.tv_sec << '.' << st.st_mtim.tv_nsec;
    os << '\n';
  }
  return os.str();
}

std::vector<OptionInfo> option_infos(const wm_plugin_metadata& meta, const std::string& env_prefix,
                                     const std::string& arg_prefix) {
  std::vector<OptionInfo> out;
  for (std::uint32_t i = 0; i < meta.n_options; ++i) {
    const wm_option_meta& o = meta.options[i];
    const std::string setting = backend_setting(meta.name, o.name);
    OptionInfo info;
    info.name = o.name;
    info.type = option_type(o.type);
    info.default_value = o.default_value;
    info.help = o.help;
    info.int_min = o.int_min;
    info.int_max = o.int_max;
    info.number_min = o.double_min;
    info.number_max = o.double_max;
    info.variable = env_prefix + "_" + upper_snake(setting);
    info.flag = "--" + arg_prefix + "-" + setting;
    out.push_back(std::move(info));
  }
  return out;
}

void log_scan(const FullScan& s) {
  for (const auto& d : s.info.directories)
    detail::log(WM_LOG_DEBUG, "core",
                "plugin directory '" + d.path + "' (" + d.origin + "): " + to_string(d.status) +
                    (d.detail.empty() ? "" : " (" + d.detail + ")"));
  for (const auto& p : s.info.plugins) {
    std::string line = p.path + ": " + to_string(p.status);
    if (!p.name.empty()) line += " '" + p.name + "'";
    if (p.status == PluginStatus::taken) line += " version " + p.version;
    if (!p.reason.empty()) line += ": " + p.reason;
    if (!p.note.empty()) line += " (" + p.note + ")";
    detail::log(p.status == PluginStatus::shadowed ? WM_LOG_INFO : WM_LOG_DEBUG, "core", line);
  }
}

FullScan do_scan(const std::vector<std::string>& dirs, const std::string& env_prefix, const std::string& arg_prefix) {
  FullScan s;
  s.signature = search_signature(dirs, env_prefix, arg_prefix);
  std::vector<detail::DirectoryReport> reports;
  s.raw = detail::scan_plugin_directories(dirs, &reports);
  const bool has_bundled = !detail::default_plugin_directory().empty();
  for (std::size_t i = 0; i < reports.size(); ++i) {
    PluginDirectory d;
    d.path = reports[i].path;
    d.origin = (i == 0 && has_bundled) ? "bundled" : kPluginPathVariable;
    d.status = static_cast<DirectoryStatus>(reports[i].status);
    d.detail = reports[i].detail;
    s.info.directories.push_back(std::move(d));
  }
  std::map<std::string, std::string> first;  // name -> path of the taken copy
  for (auto& r : s.raw) {
    PluginInfo p;
    p.path = r.path;
    p.status = r.usable ? PluginStatus::taken : PluginStatus::refused;
    if (r.has_meta) {
      p.name = r.meta.name;
      p.abi_version = r.meta.abi_version;
      p.min_core_abi_version = r.meta.min_core_abi_version != 0 ? r.meta.min_core_abi_version : r.meta.abi_version;
    }
    if (r.usable) {
      auto [it, inserted] = first.emplace(r.meta.name, r.path);
      if (!inserted) {
        r.usable = false;
        r.reason = "shadowed by " + it->second + ", the first file of work manager '" + std::string(r.meta.name) +
                   "' in path order (the bundled directory, then WM_PLUGIN_PATH in order)";
        p.status = PluginStatus::shadowed;
        p.shadowed_by = it->second;
      }
      p.version = r.meta.version;
      p.description = r.meta.description;
      p.capabilities = r.meta.capabilities;
      p.entry_symbol = r.meta.entry_symbol;
      p.options = option_infos(r.meta, env_prefix, arg_prefix);
      p.note = r.note;
    }
    p.usable = p.status == PluginStatus::taken;
    p.reason = r.reason;
    s.info.plugins.push_back(std::move(p));
  }
  log_scan(s);
  return s;
}

}  // namespace

PluginScan scan_plugins() { return do_scan(search_path(), "WM", "wm").info; }

struct WMEnvironment::Impl {
  bool use_arg_prefixes = false;
  std::vector<std::string> allowed;        // lower case; empty: every discovered backend
  std::map<std::string, std::string> cli;  // setting name -> value given on the command line
  bool cli_serial = false, cli_parallel = false;
  std::optional<std::string> help;         // --help-wm given: "" for all of wm's options, or a backend

  /** Answers --help-wm: prints the help to stdout (rank 0 of a parallel job only) and ends the
   *  program with exit code 0, as --help does. Returns if it was not asked for. */
  void answer_help(const WMEnvironment& env) const;

  mutable std::mutex scan_mutex;
  mutable std::shared_ptr<const FullScan> scan;
  // Scans replaced by a rescan stay alive: references handed out by plugin_scan() remain valid.
  mutable std::vector<std::shared_ptr<const FullScan>> retired;

  const FullScan& get_scan(const WMEnvironment& env) const {
    const std::vector<std::string> dirs = search_path();
    const std::string signature = search_signature(dirs, env.env_prefix, env.arg_prefix);
    std::lock_guard<std::mutex> lock(scan_mutex);
    if (!scan || scan->signature != signature) {
      if (scan) retired.push_back(scan);
      scan = std::make_shared<const FullScan>(do_scan(dirs, env.env_prefix, env.arg_prefix));
    }
    return *scan;
  }
  const detail::ScannedPlugin* find(const WMEnvironment& env, const std::string& name) const {
    for (const auto& r : get_scan(env).raw)
      if (r.usable && name == r.meta.name) return &r;
    return nullptr;
  }
  bool is_allowed(const std::string& name) const {
    return allowed.empty() || std::find(allowed.begin(), allowed.end(), name) != allowed.end();
  }

  // The name given, checked: returns it (lower case) if it is a valid work manager, else throws
  // the error saying why not. `from` says where the name came from.
  std::string checked_name(const WMEnvironment& env, const std::string& given, const std::string& from) const;
  // What make_work_manager warns about: directory problems and, for the chosen backend (if any),
  // shadowed copies and WM_<BACKEND>_* variables that are none of its options.
  std::vector<std::string> warnings_for(const WMEnvironment& env, const std::string* name) const;
};

WMEnvironment::WMEnvironment(bool use_arg_prefixes, std::vector<std::string> valid_work_managers)
    : impl_(std::make_unique<Impl>()) {
  // A worker process must never get as far as creating a master of its own (that would start
  // workers of workers): whichever way the host configures its work manager, serve here.
  serve_if_worker();
  impl_->use_arg_prefixes = use_arg_prefixes;
  for (std::string& n : valid_work_managers) impl_->allowed.push_back(lower(trim(n)));
}
WMEnvironment::~WMEnvironment() = default;
WMEnvironment::WMEnvironment(WMEnvironment&&) noexcept = default;
WMEnvironment& WMEnvironment::operator=(WMEnvironment&&) noexcept = default;

std::string WMEnvironment::env_name(const std::string& name) const {
  return env_prefix + "_" + upper_snake(name);
}
std::string WMEnvironment::arg_name(const std::string& name) const {
  return impl_->use_arg_prefixes ? arg_prefix + "-" + name : name;
}
std::string WMEnvironment::arg_flag(const std::string& name) const { return "--" + arg_name(name); }

std::vector<std::string> WMEnvironment::valid_work_managers() const {
  std::vector<std::string> out;
  for (const auto& n : impl_->get_scan(*this).info.names())
    if (impl_->is_allowed(n)) out.push_back(n);
  return out;
}
const PluginScan& WMEnvironment::plugin_scan() const { return impl_->get_scan(*this).info; }

void WMEnvironment::add_wm_args(po::options_description& desc) const {
  po::options_description group(group_title);
  const std::string names = join(valid_work_managers(), ", ");
  group.add_options()(arg_name("serial").c_str(), po::bool_switch(), "run tasks serially in this process")(
      arg_name("parallel").c_str(), po::bool_switch(),
      ("run tasks in parallel with the default parallel work manager (" + default_parallel_work_manager +
       ")").c_str())(arg_name("work-manager").c_str(), po::value<std::string>()->value_name("NAME"),
                     ("work manager to use: " + names + " (env " + env_name("work-manager") + ", default " +
                      default_work_manager + ")").c_str())(
      arg_name("n-workers").c_str(), po::value<std::string>()->value_name("N"),
      ("number of workers (env " + env_name("n-workers") + "; default: the backend's, usually the number "
       "of cores)").c_str())(
      ("help-" + arg_prefix).c_str(), po::value<std::string>()->implicit_value("")->value_name("BACKEND"),
      "print wm's options (with =BACKEND, that backend's options in full) and exit");
  for (const BindingOption& b : kBindingOptions)
    group.add_options()((arg_prefix + "-" + b.name).c_str(), po::value<std::string>()->value_name(b.value_name),
                        (std::string(b.help) + " (env " + env_name(b.name) + "; default " + b.default_text + ")").c_str());
  for (const auto& r : impl_->get_scan(*this).raw) {
    if (!r.usable || !impl_->is_allowed(r.meta.name)) continue;
    for (std::uint32_t i = 0; i < r.meta.n_options; ++i) {
      const wm_option_meta& o = r.meta.options[i];
      const std::string setting = backend_setting(r.meta.name, o.name);
      std::string help = std::string(o.help) + " [" + r.meta.name + ", " + to_string(option_type(o.type)) +
                         ", env " + env_name(setting) +
                         (o.default_value[0] != '\0' ? std::string(", default ") + o.default_value : std::string()) +
                         "]";
      auto* v = po::value<std::string>()->value_name(o.type == WM_OPTION_BOOL ? "BOOL" : "VALUE");
      if (o.type == WM_OPTION_BOOL) v->implicit_value("true");
      group.add_options()((arg_prefix + "-" + setting).c_str(), v, help.c_str());
    }
  }
  // Watching a run (watch.hpp): always prefixed, as backend options are (--wm-progress, WM_PROGRESS).
  std::size_t n_watch = 0;
  for (const detail::WatchOption* w = detail::watch_options(n_watch); n_watch > 0; ++w, --n_watch)
    group.add_options()((arg_prefix + "-" + w->name).c_str(), po::value<std::string>()->value_name(w->value_name),
                        (std::string(w->help) + " (env " + env_name(w->name) + "; default " + w->default_text + ")").c_str());
  desc.add(group);
}

void WMEnvironment::process_wm_args(const po::variables_map& vm) {
  auto flag = [&](const std::string& key) {
    auto it = vm.find(key);
    return it != vm.end() && !it->second.defaulted() && it->second.as<bool>();
  };
  impl_->cli_serial = flag(arg_name("serial"));
  impl_->cli_parallel = flag(arg_name("parallel"));
  for (const char* generic : {"work-manager", "n-workers"}) {
    auto it = vm.find(arg_name(generic));
    if (it != vm.end() && !it->second.defaulted()) impl_->cli[generic] = it->second.as<std::string>();
  }
  if (auto it = vm.find("help-" + arg_prefix); it != vm.end() && !it->second.defaulted() && !it->second.empty())
    impl_->help = it->second.as<std::string>();
  const std::string prefix = arg_prefix + "-";
  for (const auto& [key, value] : vm) {
    if (key.compare(0, prefix.size(), prefix) != 0 || value.defaulted() || value.empty()) continue;
    const std::string setting = key.substr(prefix.size());
    if (setting == "work-manager" || setting == "n-workers" || setting == "serial" || setting == "parallel")
      continue;
    if (const auto* s = boost::any_cast<std::string>(&value.value())) impl_->cli[setting] = *s;
  }
}

std::vector<std::string> WMEnvironment::parse_args(int argc, const char* const* argv) {
  return configuration_step([&]() -> std::vector<std::string> {
    std::vector<std::string> remaining;
    if (argc > 0 && argv[0] != nullptr) remaining.emplace_back(argv[0]);
    int end = argc;  // a "--" and what follows it are the program's, untouched
    for (int i = 1; i < argc; ++i)
      if (std::strcmp(argv[i], "--") == 0) {
        end = i;
        break;
      }
    // --help-wm [BACKEND] and --help-wm=BACKEND: taken out here, so that the backend's name may follow
    // as a word of its own (Program_options never gives an optional value the next word).
    const std::string help_flag = "--help-" + arg_prefix;
    std::vector<const char*> args;
    for (int i = 0; i < end; ++i) {
      if (i > 0 && argv[i] == help_flag) {
        impl_->help = "";
        if (i + 1 < end && argv[i + 1][0] != '-') impl_->help = argv[++i];
        continue;
      }
      if (i > 0 && std::strncmp(argv[i], (help_flag + "=").c_str(), help_flag.size() + 1) == 0) {
        impl_->help = argv[i] + help_flag.size() + 1;
        continue;
      }
      args.push_back(argv[i]);
    }
    po::options_description desc;
    add_wm_args(desc);
    std::vector<std::string> known;
    for (const auto& o : desc.options()) known.push_back(o->long_name());
    const std::string own_prefix = "--" + arg_prefix + "-";

    po::parsed_options parsed(&desc);
    try {
      parsed = po::command_line_parser(static_cast<int>(args.size()), args.data())
                   .options(desc)
                   .style(kCommandLineStyle)
                   .allow_unregistered()
                   .run();
    } catch (const po::error& e) {
      throw ConfigError(std::string("command line: ") + e.what());
    }
    for (const auto& o : parsed.options) {
      if (!o.unregistered || o.original_tokens.empty()) continue;
      const std::string& token = o.original_tokens.front();
      if (token.size() <= 2 || token.compare(0, 2, "--") != 0) continue;
      const std::string name = token.substr(2, token.find('=') == std::string::npos ? std::string::npos
                                                                                     : token.find('=') - 2);
      const std::string near = detail::closest_name(name, known);
      if (token.compare(0, own_prefix.size(), own_prefix) == 0)
        throw ConfigError("unknown option --" + name + (near.empty() ? "" : "; did you mean --" + near + "?") +
                          " (" + help_flag + " lists wm's options, " + help_flag + " BACKEND a backend's)");
      // Another program's flag may look like ours by chance; only an abbreviation or a one-letter slip
      // is worth a word. The program's own --help is not a slip for --help-wm.
      const bool abbreviation = !near.empty() && near.compare(0, name.size(), name) == 0 &&
                                (near != help_flag.substr(2) || name.compare(0, 5, "help-") == 0);
      if (!near.empty() && (abbreviation || detail::edit_distance(name, near) <= 1))
        detail::log(WM_LOG_WARNING, "core",
                    "--" + name + " is not a wm option and is left to the program; did you mean --" + near + "?");
    }
    po::variables_map vm;
    try {
      po::store(parsed, vm);
    } catch (const po::error& e) {
      throw ConfigError(std::string("command line: ") + e.what());
    }
    process_wm_args(vm);
    for (std::string& s : po::collect_unrecognized(parsed.options, po::include_positional))
      remaining.push_back(std::move(s));
    for (int i = end; i < argc; ++i) remaining.emplace_back(argv[i]);
    return remaining;
  });
}

std::string WMEnvironment::help_text() const {
  const std::string help_flag = "--help-" + arg_prefix;
  const std::vector<std::string> valid = valid_work_managers();
  std::string out = group_title + " (command line > " + env_prefix + "_* environment > defaults):\n";
  short_entry(out, arg_flag("work-manager") + " NAME",
              "work manager to use: " + join(valid, ", ") + " (" + env_name("work-manager") + "; default " +
                  default_work_manager + ")");
  short_entry(out, arg_flag("serial"), "run tasks serially in this process");
  short_entry(out, arg_flag("parallel"),
              "run tasks in parallel on the default parallel work manager (" + default_parallel_work_manager +
                  ")");
  short_entry(out, arg_flag("n-workers") + " N",
              "number of workers (" + env_name("n-workers") + "; default: the backend's, usually the number of cores)");
  short_entry(out, help_flag + " [BACKEND]", "print this, or a backend's options in full, and exit");
  out += "\nGPUs, cores and resources of each worker:\n";
  for (const BindingOption& b : kBindingOptions)
    short_entry(out, "--" + arg_prefix + "-" + b.name + " " + b.value_name,
                std::string(b.help) + " (default " + b.default_text + ")");
  // Each backend's options, one entry each: what it does without the asides, and the default.
  const FullScan& scan = impl_->get_scan(*this);
  std::string example;  // a backend option and its variable, for the closing line
  for (const auto& r : scan.raw) {
    if (!r.usable || !impl_->is_allowed(r.meta.name)) continue;
    out += "\n";
    wrap_into(out, std::string(r.meta.name) + " " + r.meta.version + ": " + r.meta.description, 0, 2);
    if (r.meta.n_options == 0) out += "  (no options)\n";
    for (std::uint32_t i = 0; i < r.meta.n_options; ++i) {
      const wm_option_meta& o = r.meta.options[i];
      const std::string setting = backend_setting(r.meta.name, o.name);
      const std::string flag = "--" + arg_prefix + "-" + setting;
      if (example.empty()) example = flag + " is " + env_name(setting);
      std::string description = without_asides(o.help);
      if (o.default_value[0] != '\0') description += std::string(" (default ") + o.default_value + ")";
      short_entry(out, flag + (o.type == WM_OPTION_BOOL ? "" : " ") + value_name(o.type), description);
    }
  }
  out += "\nwatching a run:\n";
  std::size_t n_watch = 0;
  for (const detail::WatchOption* w = detail::watch_options(n_watch); n_watch > 0; ++w, --n_watch)
    short_entry(out, "--" + arg_prefix + "-" + w->name + " " + w->value_name,
                std::string(w->help) + " (default " + w->default_text + ")");
  out += "\n";
  wrap_into(out,
            "Every option is also an environment variable" + (example.empty() ? "" : " (" + example + ")") +
                "; the command line wins. " + help_flag +
                " BACKEND: a backend's options with their types, ranges and variables.",
            0, 0);
  return out;
}

std::string WMEnvironment::help_text(const std::string& backend) const {
  return configuration_step([&] {
    const std::string name = impl_->checked_name(*this, backend, "--help-" + arg_prefix + " " + backend);
    const detail::ScannedPlugin* p = impl_->find(*this, name);
    if (p == nullptr) throw PluginError("work manager '" + name + "' vanished from the plugin scan");
    const wm_plugin_metadata& m = p->meta;
    std::string out;
    wrap_into(out, name + " " + m.version + ": " + m.description, 0, 2);
    wrap_into(out,
              "file " + p->path + " (plugin ABI " + sdk::abi_version_text(m.abi_version) + "); chosen with " +
                  arg_flag("work-manager") + " " + name + " or " + env_name("work-manager") + "=" + name,
              0, 2);
    out += "\noptions (command line > environment > default):\n";
    if (m.n_options == 0) out += "  (none)\n";
    for (std::uint32_t i = 0; i < m.n_options; ++i) {
      const wm_option_meta& o = m.options[i];
      const std::string setting = backend_setting(name, o.name);
      out += "  --" + arg_prefix + "-" + setting + (o.type == WM_OPTION_BOOL ? "" : " ") + value_name(o.type) + "\n";
      out += "      ";
      wrap_into(out, o.help, 6, 6);
      std::string facts = to_string(option_type(o.type));
      if (o.type == WM_OPTION_BOOL) facts += " (1/0, true/false, yes/no, on/off; the flag alone means true)";
      facts += o.default_value[0] != '\0' ? std::string(", default ") + o.default_value : std::string(", no default");
      if (o.type == WM_OPTION_INT) facts += ", range " + std::to_string(o.int_min) + ".." + std::to_string(o.int_max);
      if (o.type == WM_OPTION_DOUBLE)
        facts += ", range " + number_text(o.double_min) + ".." + number_text(o.double_max);
      facts += "; variable " + env_name(setting);
      out += "      ";
      wrap_into(out, facts, 6, 6);
    }
    out += "\n";
    wrap_into(out,
              "--help-" + arg_prefix + " alone lists the common options (" + arg_flag("work-manager") + ", " +
                  arg_flag("n-workers") + ", ...) and every backend's.",
              0, 0);
    return out;
  });
}

void WMEnvironment::Impl::answer_help(const WMEnvironment& env) const {
  if (!help) return;
  const std::string text = help->empty() ? env.help_text() : env.help_text(*help);
  if (detail::is_first_rank()) {
    std::cout << text;
    std::cout.flush();
  }
  std::exit(0);
}

std::optional<std::string> WMEnvironment::get_val(const std::string& name) const {
  if (auto it = impl_->cli.find(name); it != impl_->cli.end()) return it->second;
  if (const char* v = std::getenv(env_name(name).c_str())) return std::string(v);
  return std::nullopt;
}

namespace {
// Names the source of a setting for error messages.
std::string describe_source(const WMEnvironment& env, const std::map<std::string, std::string>& cli,
                            const std::string& name) {
  if (cli.count(name)) return "option " + env.arg_flag(name);
  return "environment variable " + env.env_name(name);
}
}  // namespace

namespace {
// The GPU, core and resource settings, checked (ConfigError naming the flag or variable and value).
detail::BindingRequest binding_request(const WMEnvironment& env, const std::map<std::string, std::string>& cli) {
  return configuration_step([&] {
    return detail::parse_binding_request([&](const std::string& name) -> std::optional<detail::SettingText> {
      if (auto it = cli.find(name); it != cli.end())
        return detail::SettingText{it->second, "option --" + env.arg_prefix + "-" + name};
      if (const char* v = std::getenv(env.env_name(name).c_str()))
        return detail::SettingText{v, "environment variable " + env.env_name(name)};
      return std::nullopt;
    });
  });
}
}  // namespace

BindingPlan binding_plan(const WMEnvironment& env, unsigned n_workers) {
  const detail::BindingRequest request = binding_request(env, env.impl_->cli);
  return configuration_step([&] { return detail::public_plan(request, n_workers); });
}

template <class T>
T WMEnvironment::get_val(const std::string& name, const T& default_value) const {
  return configuration_step([&]() -> T {
    auto raw = get_val(name);
    if (!raw) return default_value;
    const std::string what = describe_source(*this, impl_->cli, name);
    if constexpr (std::is_same_v<T, bool>) {
      return parse_bool(*raw, what);
    } else if constexpr (std::is_same_v<T, std::string>) {
      return *raw;
    } else if constexpr (std::is_floating_point_v<T>) {
      return static_cast<T>(parse_double(*raw, what, -std::numeric_limits<double>::max(),
                                         std::numeric_limits<double>::max()));
    } else {
      static_assert(std::is_integral_v<T>);
      const long long lo = std::is_signed_v<T> ? static_cast<long long>(std::numeric_limits<T>::min()) : 0;
      const long long hi = static_cast<unsigned long long>(std::numeric_limits<T>::max()) >
                                   static_cast<unsigned long long>(std::numeric_limits<long long>::max())
                               ? std::numeric_limits<long long>::max()
                               : static_cast<long long>(std::numeric_limits<T>::max());
      return static_cast<T>(parse_integer(*raw, what, lo, hi));
    }
  });
}

template bool WMEnvironment::get_val<bool>(const std::string&, const bool&) const;
template int WMEnvironment::get_val<int>(const std::string&, const int&) const;
template unsigned WMEnvironment::get_val<unsigned>(const std::string&, const unsigned&) const;
template long WMEnvironment::get_val<long>(const std::string&, const long&) const;
template unsigned long WMEnvironment::get_val<unsigned long>(const std::string&, const unsigned long&) const;
template long long WMEnvironment::get_val<long long>(const std::string&, const long long&) const;
template double WMEnvironment::get_val<double>(const std::string&, const double&) const;
template std::string WMEnvironment::get_val<std::string>(const std::string&, const std::string&) const;

std::string WMEnvironment::Impl::checked_name(const WMEnvironment& env, const std::string& given,
                                              const std::string& from) const {
  const std::string name = lower(trim(given));
  const std::vector<std::string> valid = env.valid_work_managers();
  if (std::find(valid.begin(), valid.end(), name) != valid.end()) return name;
  const std::string valid_text = "Valid work managers: " + join(valid, ", ") + ".";
  const PluginScan& scan = env.plugin_scan();
  if (scan.find(name) != nullptr)
    throw ConfigError("work manager '" + name + "' (from " + from + ") is installed, but this program allows only " +
                      join(valid, ", ") + ".");

  // A file declaring this name exists but was refused: say so, with why, rather than "unknown".
  std::string refused;
  for (const auto& p : scan.plugins)
    if (p.status == PluginStatus::refused && p.name == name) refused += " " + p.path + ": " + p.reason + ".";
  if (!refused.empty())
    throw PluginError("work manager '" + name + "' (from " + from + ") was found but refused:" + refused + " " +
                      valid_text);

  const std::string near = detail::closest_name(name, valid);
  std::string msg = "unknown work manager '" + name + "' (from " + from + ")." +
                    (near.empty() ? "" : " Did you mean '" + near + "'?") + " " + valid_text +
                    " Plugin directories scanned: ";
  std::vector<std::string> scanned;
  for (const auto& d : scan.directories)
    if (d.status == DirectoryStatus::scanned) scanned.push_back(d.path);
  msg += join(scanned, ", ");
  for (const auto& problem : scan.directory_problems()) msg += ". " + problem;
  for (const auto& p : scan.plugins)
    if (p.status == PluginStatus::refused) msg += ". Rejected " + p.path + ": " + p.reason;
  msg += ". Set " + env.env_name("work-manager") + " or " + env.arg_flag("work-manager") +
         " to a valid name, or add the directory holding the plugin to WM_PLUGIN_PATH (`wm list --why` "
         "explains every file).";
  throw ConfigError(msg);
}

std::string WMEnvironment::work_manager_name() const {
  return configuration_step([&]() -> std::string {
    std::vector<std::string> given;
    if (impl_->cli_serial) given.push_back(arg_flag("serial"));
    if (impl_->cli_parallel) given.push_back(arg_flag("parallel"));
    if (auto it = impl_->cli.find("work-manager"); it != impl_->cli.end())
      given.push_back(arg_flag("work-manager") + " " + it->second);
    if (given.size() > 1)
      throw ConfigError("give only one of " + arg_flag("serial") + ", " + arg_flag("parallel") + " and " +
                        arg_flag("work-manager") + " (given: " + join(given, ", ") + ")");
    if (impl_->cli_serial) return impl_->checked_name(*this, "serial", arg_flag("serial"));
    if (impl_->cli_parallel) {
      const auto valid = valid_work_managers();
      const bool has_default = std::find(valid.begin(), valid.end(), default_parallel_work_manager) != valid.end();
      return impl_->checked_name(*this, has_default ? default_parallel_work_manager : std::string("threads"),
                                 arg_flag("parallel"));
    }
    if (auto v = get_val("work-manager"))
      return impl_->checked_name(*this, *v, describe_source(*this, impl_->cli, "work-manager") + "='" + *v + "'");
    return impl_->checked_name(*this, default_work_manager, "the default");
  });
}

unsigned WMEnvironment::n_workers() const {
  return configuration_step([&] {
    auto v = get_val("n-workers");
    if (!v) return 0u;
    return static_cast<unsigned>(parse_integer(*v, describe_source(*this, impl_->cli, "n-workers"), 1, kMaxWorkers));
  });
}

namespace {

// Resolves every option a backend declares: command line > environment > declared default.
std::vector<detail::ResolvedOption> resolve_options(const WMEnvironment& env,
                                                    const std::map<std::string, std::string>& cli,
                                                    const wm_plugin_metadata& meta) {
  std::vector<detail::ResolvedOption> out;
  for (std::uint32_t i = 0; i < meta.n_options; ++i) {
    const wm_option_meta& o = meta.options[i];
    const std::string setting = backend_setting(meta.name, o.name);
    detail::ResolvedOption r;
    r.name = o.name;
    r.type = o.type;
    std::string what;
    if (auto it = cli.find(setting); it != cli.end()) {
      r.text = it->second;
      r.source = "command line";
      what = "option --" + env.arg_prefix + "-" + setting;
    } else if (const char* e = std::getenv(env.env_name(setting).c_str())) {
      r.text = e;
      r.source = "environment";
      what = "environment variable " + env.env_name(setting);
    } else {
      r.text = o.default_value;
      r.source = "default";
      what = "the default of option " + setting + " declared by work manager '" + meta.name + "'";
    }
    switch (o.type) {
      case WM_OPTION_BOOL: r.bool_value = parse_bool(r.text, what) ? 1 : 0; break;
      case WM_OPTION_INT: r.int_value = parse_integer(r.text, what, o.int_min, o.int_max); break;
      case WM_OPTION_DOUBLE: r.double_value = parse_double(r.text, what, o.double_min, o.double_max); break;
      default: break;
    }
    out.push_back(std::move(r));
  }
  return out;
}

// A misspelt WM_<BACKEND>_<OPTION> would otherwise be ignored without a word. Variables are only
// warned about, flags refused: a variable may be left in the environment for another version of
// the plugin or another job, a flag was typed for this run.
std::vector<std::string> unknown_variable_warnings(const WMEnvironment& env, const wm_plugin_metadata& meta,
                                                   const std::vector<std::string>& other_backends) {
  const std::string prefix = env.env_name(meta.name) + "_";
  std::vector<std::string> known;
  for (std::uint32_t i = 0; i < meta.n_options; ++i)
    known.push_back(env.env_name(backend_setting(meta.name, meta.options[i].name)));
  std::vector<std::string> out;
  for (char** e = environ; e != nullptr && *e != nullptr; ++e) {
    const std::string_view kv = *e;
    if (kv.compare(0, prefix.size(), prefix) != 0) continue;
    const std::string var(kv.substr(0, kv.find('=')));
    if (std::find(known.begin(), known.end(), var) != known.end()) continue;
    // WM_MPI_EXT_X belongs to a backend "mpi_ext", not to "mpi".
    const bool other = std::any_of(other_backends.begin(), other_backends.end(), [&](const std::string& b) {
      const std::string p = env.env_name(b) + "_";
      return b != meta.name && p.size() > prefix.size() && var.compare(0, p.size(), p) == 0;
    });
    if (other) continue;
    const std::string near = detail::closest_name(var, known);
    out.push_back("environment variable " + var + " is not an option of work manager '" + meta.name +
                  "' and is ignored; " +
                  (!near.empty()       ? "did you mean " + near + "?"
                   : known.empty()     ? std::string("it has no options")
                                       : "its options are " + join(known, ", ")));
  }
  return out;
}

std::unique_ptr<detail::BackendConfigStorage> make_config(const WMEnvironment& env,
                                                          const std::map<std::string, std::string>& cli,
                                                          const wm_plugin_metadata& meta, unsigned n_workers,
                                                          bool worker_role) {
  auto c = std::make_unique<detail::BackendConfigStorage>();
  c->options = resolve_options(env, cli, meta);
  c->libraries = detail::loaded_task_libraries();
  c->host_program = detail::host_program_path();
  c->config.n_workers = n_workers;
  c->config.worker_role = worker_role ? 1 : 0;
  c->config.worker_index = -1;
  if (worker_role) {
    // The worker's side of the bootstrap: what the master's launcher put in our environment.
    if (const char* a = std::getenv(WM_ENV_WORKER_ARG)) c->worker_arg = a;
    if (const char* i = std::getenv(WM_ENV_PROCESS_INDEX))
      c->config.worker_index =
          static_cast<std::int32_t>(parse_integer(i, "environment variable " WM_ENV_PROCESS_INDEX, 0, kMaxWorkers));
    if (const char* s = std::getenv(WM_ENV_PROCESS_SEED)) {
      char* end = nullptr;
      errno = 0;
      const unsigned long long seed = std::strtoull(s, &end, 10);
      if (*s == '\0' || *end != '\0' || errno == ERANGE)
        throw ConfigError(std::string("environment variable " WM_ENV_PROCESS_SEED "='") + s +
                          "' is not a whole number (it is set by the work manager that started this worker)");
      c->config.worker_seed = seed;
      detail::seed_process(seed);
    }
  }
  c->finalize();
  return c;
}

// WM_LOG_LEVEL is refused like any other bad value (the log itself falls back to warning).
std::string checked_log_level() {
  const char* v = std::getenv(kLogLevelVariable);
  if (v == nullptr) return "warning";
  const int level = detail::parse_log_level(v);
  static const char* const names[] = {"debug", "info", "warning", "error"};
  if (level < 0)
    throw ConfigError(std::string("environment variable ") + kLogLevelVariable + "='" + v +
                      "' is not a log level; use " + detail::kLogLevelChoices);
  return names[level];
}

}  // namespace

namespace {
// wm's watching settings (--wm-progress, --wm-dump-signal, --wm-dashboard), checked.
detail::WatchSettings watch_settings(const WMEnvironment& env, const std::map<std::string, std::string>& cli) {
  return detail::read_watch_settings([&](const std::string& name) -> std::optional<std::pair<std::string, std::string>> {
    if (auto it = cli.find(name); it != cli.end()) return std::make_pair(it->second, "option --" + env.arg_prefix + "-" + name);
    if (const char* v = std::getenv(env.env_name(name).c_str()))
      return std::make_pair(std::string(v), "environment variable " + env.env_name(name));
    return std::nullopt;
  });
}
}  // namespace

std::vector<ConfigEntry> WMEnvironment::config_report() const {
  std::vector<ConfigEntry> out;
  auto source_of = [&](const std::string& name) {
    if (impl_->cli.count(name)) return ValueSource::command_line;
    if (std::getenv(env_name(name).c_str())) return ValueSource::environment;
    return ValueSource::default_value;
  };
  const std::string name = work_manager_name();
  ConfigEntry wmentry{"work-manager", env_name("work-manager"), arg_flag("work-manager"), name,
                      source_of("work-manager")};
  if (impl_->cli_serial || impl_->cli_parallel) wmentry.source = ValueSource::command_line;
  out.push_back(wmentry);
  auto nw = get_val("n-workers");
  out.push_back(ConfigEntry{"n-workers", env_name("n-workers"), arg_flag("n-workers"),
                            nw ? std::to_string(n_workers()) : std::string("(backend default)"),
                            source_of("n-workers")});
  out.push_back(ConfigEntry{"log-level", kLogLevelVariable, "", checked_log_level(),
                            std::getenv(kLogLevelVariable) ? ValueSource::environment : ValueSource::default_value});
  (void)binding_request(*this, impl_->cli);  // refuses a malformed value, as n_workers() does
  for (const BindingOption& b : kBindingOptions) {
    const auto v = get_val(b.name);
    const bool count = std::strcmp(b.value_name, "N") == 0;
    out.push_back(ConfigEntry{b.name, env_name(b.name), "--" + arg_prefix + "-" + b.name,
                              v ? trim(*v) : count ? std::string("0") : std::string("(not set)"), source_of(b.name)});
  }
  if (const detail::ScannedPlugin* p = impl_->find(*this, name)) {
    for (const auto& r : resolve_options(*this, impl_->cli, p->meta)) {
      const std::string setting = backend_setting(name, r.name.c_str());
      out.push_back(ConfigEntry{setting, env_name(setting), "--" + arg_prefix + "-" + setting, r.text,
                                r.source == "command line" ? ValueSource::command_line
                                : r.source == "environment" ? ValueSource::environment
                                                            : ValueSource::default_value});
    }
  }
  (void)watch_settings(*this, impl_->cli);  // refuses a malformed value, as n_workers() does
  std::size_t n_watch = 0;
  for (const detail::WatchOption* w = detail::watch_options(n_watch); n_watch > 0; ++w, --n_watch) {
    const auto v = get_val(w->name);
    out.push_back(ConfigEntry{w->name, env_name(w->name), "--" + arg_prefix + "-" + w->name, v ? trim(*v) : w->default_text,
                              impl_->cli.count(w->name)        ? ValueSource::command_line
                              : std::getenv(env_name(w->name).c_str()) ? ValueSource::environment
                                                                        : ValueSource::default_value});
  }
  return out;
}

std::string WMEnvironment::format_config_report() const {
  std::ostringstream os;
  for (const auto& e : config_report())
    os << "  " << e.name << " = " << e.value << "  (" << to_string(e.source) << "; " << e.variable
       << (e.flag.empty() ? "" : ", " + e.flag) << ")\n";
  return os.str();
}

std::vector<std::string> WMEnvironment::Impl::warnings_for(const WMEnvironment& env, const std::string* name) const {
  const PluginScan& scan = env.plugin_scan();
  std::vector<std::string> out = scan.directory_problems();
  if (name == nullptr) return out;
  const PluginInfo* taken = scan.find(*name);
  for (const auto& p : scan.plugins)
    if (p.status == PluginStatus::shadowed && p.name == *name && taken != nullptr)
      out.push_back("work manager '" + *name + "': using " + taken->path + " (version " + taken->version +
                    "); the copy " + p.path + " (version " + p.version +
                    ") is shadowed: the first file in path order is used (the bundled directory, then "
                    "WM_PLUGIN_PATH in order)");
  if (const detail::ScannedPlugin* p = find(env, *name)) {
    auto more = unknown_variable_warnings(env, p->meta, scan.names());
    out.insert(out.end(), more.begin(), more.end());
  }
  return out;
}

std::vector<std::string> WMEnvironment::warnings() const {
  std::string name;
  try {
    name = work_manager_name();
  } catch (const Error&) {
    return impl_->warnings_for(*this, nullptr);  // make_work_manager throws the error itself
  }
  return impl_->warnings_for(*this, &name);
}

std::unique_ptr<WorkManager> WMEnvironment::make_work_manager() const {
  impl_->answer_help(*this);
  return make_work_manager(work_manager_name());
}

std::unique_ptr<WorkManager> WMEnvironment::make_work_manager(const std::string& backend) const {
  impl_->answer_help(*this);
  std::string name;
  const detail::ScannedPlugin* p = nullptr;
  std::unique_ptr<detail::BackendConfigStorage> config;
  detail::BindingRequest binding;
  detail::WatchSettings watch;
  configuration_step([&] {
    name = impl_->checked_name(*this, backend, "the program ('" + backend + "')");
    watch = watch_settings(*this, impl_->cli);
    if (watch.shared_memory_limit != 0) {
      detail::set_shared_memory_limit(watch.shared_memory_limit);
      // The processes this one starts (workers, a node's workers) keep to it too.
      setenv(env_name("shared-memory-limit").c_str(), std::to_string(watch.shared_memory_limit).c_str(), 1);
    }
    const unsigned workers = n_workers();
    checked_log_level();
    binding = binding_request(*this, impl_->cli);
    p = impl_->find(*this, name);
    if (p == nullptr) throw PluginError("work manager '" + name + "' vanished from the plugin scan");
    for (const auto& w : impl_->warnings_for(*this, &name)) detail::log(WM_LOG_WARNING, "core", w);
    config = make_config(*this, impl_->cli, p->meta, workers, false);  // the backend's options, checked
  });
  detail::log(WM_LOG_INFO, "core",
              "work manager '" + name + "': loading " + p->path + " (version " + p->meta.version + ", ABI " +
                  sdk::abi_version_text(p->meta.abi_version) + ")");
  // Loading, creating and starting the backend: not configuration (their errors propagate as they are).
  auto link = std::make_shared<detail::BackendLink>(*p, std::move(config));
  // GPUs, cores and resources per worker, planned over the backend's workers now that it says how
  // many it has; before it starts, so before any of them runs (binding.hpp).
  configuration_step([&] {
    const std::uint64_t caps = link->capabilities();
    if ((caps & WM_CAP_SPMD) != 0 && (caps & WM_CAP_SPAWNS_WORKERS) == 0) {
      // Every process of the job is a worker (MPI ranks): each takes its node-local rank's share
      // itself, before the backend starts, so before MPI or the program initialises a GPU.
      const auto [local, ranks] = detail::node_local_rank();
      detail::configure_binding(binding, ranks, true);
      detail::bind_this_process(local, ranks, detail::launcher_rank());
      return;
    }
    const unsigned workers = link->n_workers();
    detail::configure_binding(binding, workers);
    // An in-process backend of one worker (serial): this process is that worker.
    if (link->in_process() && workers == 1) detail::bind_this_process(0, 1, -1);
  });
  // SPMD backends (every process of the job runs the host program) learn their role as they start;
  // a process that is not the master (an MPI rank > 0, a node) serves here and never returns, as a
  // spawned worker does in serve_if_worker().
  if ((link->capabilities() & WM_CAP_SPMD) != 0) link->startup();
  if (!link->is_master()) detail::serve_and_exit(std::move(link));
  link->start_watch(watch);  // the status dump, the dashboard, its own progress
  return std::make_unique<WorkManager>(std::move(link));
}

WMEnvironment& default_env() {
  // Never destroyed: work managers made from it may outlive static destruction order.
  static WMEnvironment* env = new WMEnvironment();
  return *env;
}

void add_wm_args(po::options_description& desc, const WMEnvironment& env) { env.add_wm_args(desc); }
void process_wm_args(const po::variables_map& vm, WMEnvironment& env) { env.process_wm_args(vm); }
std::string wm_args_help(const WMEnvironment& env) { return env.help_text(); }
std::string wm_args_help(const std::string& backend, const WMEnvironment& env) { return env.help_text(backend); }

std::unique_ptr<WorkManager> make_work_manager(const WMEnvironment& env) { return env.make_work_manager(); }

// Goes through WMEnvironment's constructor (default_env()), which serves (and exits) in a worker process.
std::unique_ptr<WorkManager> make_work_manager() { return default_env().make_work_manager(); }

std::unique_ptr<WorkManager> make_work_manager(int argc, const char* const* argv) {
  WMEnvironment env;
  env.parse_args(argc, argv);
  return env.make_work_manager();
}

std::unique_ptr<WorkManager> make_work_manager(int* argc, char** argv) {
  WMEnvironment env;
  const std::vector<std::string> remaining = env.parse_args(*argc, argv);
  auto wm = env.make_work_manager();
  // What is left is a subsequence of argv, token for token: keep those pointers, in order.
  int kept = 0;
  std::size_t next = 0;
  for (int i = 0; i < *argc; ++i)
    if (next < remaining.size() && remaining[next] == argv[i]) {
      argv[kept++] = argv[i];
      ++next;
    }
  argv[kept] = nullptr;
  *argc = kept;
  return wm;
}

std::unique_ptr<WorkManager> from_environ(const std::string& backend, const WMEnvironment& env) {
  return env.make_work_manager(backend);
}

void serve_if_worker() {
  const char* backend = std::getenv(WM_ENV_WORKER_BACKEND);
  if (backend == nullptr || *backend == '\0') return;
  detail::set_serving_worker();  // its log lines say "worker N" from the first one on
  const std::string name = backend;
  // Programs this worker starts are not workers themselves.
  unsetenv(WM_ENV_WORKER_BACKEND);
  // Its cores, devices and resources, from what its master put in its environment: first, so that
  // everything after runs where it belongs.
  detail::bind_spawned_worker();
  std::shared_ptr<detail::BackendLink> link;
  try {
    if (const char* libs = std::getenv(WM_ENV_TASK_LIBRARIES)) {
      std::string all = libs;
      std::size_t start = 0;
      while (start < all.size()) {
        std::size_t end = all.find(':', start);
        if (end == std::string::npos) end = all.size();
        if (end > start) load_task_library(all.substr(start, end - start));
        start = end + 1;
      }
    }
    WMEnvironment env;
    const detail::ScannedPlugin* p = env.impl_->find(env, name);
    if (p == nullptr)
      throw PluginError("worker process: work manager '" + name + "' not found in the plugin directories");
    link = std::make_shared<detail::BackendLink>(*p, make_config(env, env.impl_->cli, p->meta, env.n_workers(), true));
  } catch (const std::exception& e) {
    detail::log(WM_LOG_ERROR, name, std::string("worker process failed to start: ") + e.what());
    std::exit(1);
  }
  detail::serve_and_exit(std::move(link));
}

}  // namespace wm
