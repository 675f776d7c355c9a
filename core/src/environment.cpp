// environment.cpp: WMEnvironment: settings from the command line, WM_* variables and defaults;
// backend options declared in plugin metadata; creating the chosen work manager; worker role.
#include "backend_link.hpp"
#include "internal.hpp"
#include "plugin_scan.hpp"

#include <wm/environment.hpp>

#include <boost/program_options.hpp>

#include <unistd.h>

#include <algorithm>
#include <cctype>
#include <cerrno>
#include <cmath>
#include <cstdlib>
#include <cstring>
#include <limits>
#include <map>
#include <sstream>

extern char** environ;

namespace po = boost::program_options;

namespace wm {
namespace {

constexpr long long kMaxWorkers = 65536;

std::string upper_snake(const std::string& s) {
  std::string out;
  for (char c : s) out += (c == '-') ? '_' : static_cast<char>(std::toupper(static_cast<unsigned char>(c)));
  return out;
}

std::string trim(const std::string& s) {
  std::size_t b = s.find_first_not_of(" \t\n");
  if (b == std::string::npos) return {};
  std::size_t e = s.find_last_not_of(" \t\n");
  return s.substr(b, e - b + 1);
}

// Strict parsers: the whole text must be the value. "what" names the variable or flag.
long long parse_integer(const std::string& text, const std::string& what, long long min, long long max) {
  const std::string t = trim(text);
  std::size_t i = (!t.empty() && (t[0] == '-' || t[0] == '+')) ? 1 : 0;
  bool digits = i < t.size();
  for (std::size_t j = i; j < t.size(); ++j) digits = digits && std::isdigit(static_cast<unsigned char>(t[j]));
  if (!digits)
    throw ConfigError(what + "='" + text + "' is not a whole number; give a whole number from " +
                      std::to_string(min) + " to " + std::to_string(max));
  errno = 0;
  long long v = std::strtoll(t.c_str(), nullptr, 10);
  if (errno == ERANGE || v < min || v > max)
    throw ConfigError(what + "='" + text + "' is out of range; give a whole number from " +
                      std::to_string(min) + " to " + std::to_string(max));
  return v;
}

double parse_double(const std::string& text, const std::string& what, double min, double max) {
  const std::string t = trim(text);
  char* end = nullptr;
  errno = 0;
  double v = t.empty() ? 0 : std::strtod(t.c_str(), &end);
  if (t.empty() || end != t.c_str() + t.size() || errno == ERANGE || !std::isfinite(v))
    throw ConfigError(what + "='" + text + "' is not a number");
  if (v < min || v > max) {
    std::ostringstream os;
    os << what << "='" << text << "' is out of range; give a number from " << min << " to " << max;
    throw ConfigError(os.str());
  }
  return v;
}

bool parse_bool(const std::string& text, const std::string& what) {
  std::string t = trim(text);
  std::transform(t.begin(), t.end(), t.begin(), [](unsigned char c) { return std::tolower(c); });
  if (t == "1" || t == "true" || t == "yes" || t == "on") return true;
  if (t == "0" || t == "false" || t == "no" || t == "off") return false;
  throw ConfigError(what + "='" + text + "' is not a yes/no value; use 1/0, true/false, yes/no or on/off");
}

const char* type_name(std::uint32_t type) {
  switch (type) {
    case WM_OPTION_BOOL: return "bool";
    case WM_OPTION_INT: return "int";
    case WM_OPTION_DOUBLE: return "number";
    default: return "text";
  }
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

std::vector<std::string> PluginScan::names() const {
  std::vector<std::string> out;
  for (const auto& p : plugins)
    if (p.usable && std::find(out.begin(), out.end(), p.name) == out.end()) out.push_back(p.name);
  return out;
}

namespace {

struct FullScan {
  PluginScan info;
  std::vector<detail::ScannedPlugin> raw;  // usable entries are first-of-their-name
};

FullScan do_scan() {
  FullScan s;
  s.info.directories = detail::plugin_directories();
  s.raw = detail::scan_plugin_directories(s.info.directories);
  std::map<std::string, std::string> first;  // name -> path
  for (auto& r : s.raw) {
    if (r.usable) {
      auto [it, inserted] = first.emplace(r.meta.name, r.path);
      if (!inserted) {
        r.usable = false;
        r.reason = "shadowed: a work manager named '" + std::string(r.meta.name) + "' was found first in " +
                   it->second;
      }
    }
    PluginInfo p;
    p.path = r.path;
    if (r.has_meta) p.name = r.meta.name;
    if (r.usable) {
      p.version = r.meta.version;
      p.description = r.meta.description;
    }
    p.usable = r.usable;
    p.reason = r.reason;
    s.info.plugins.push_back(std::move(p));
  }
  return s;
}

}  // namespace

PluginScan scan_plugins() { return do_scan().info; }

struct WMEnvironment::Impl {
  bool use_arg_prefixes = false;
  std::map<std::string, std::string> cli;  // setting name -> value given on the command line
  bool cli_serial = false, cli_parallel = false;
  mutable std::optional<FullScan> scan;

  const FullScan& get_scan() const {
    if (!scan) scan = do_scan();
    return *scan;
  }
  const detail::ScannedPlugin* find(const std::string& name) const {
    for (const auto& r : get_scan().raw)
      if (r.usable && name == r.meta.name) return &r;
    return nullptr;
  }
};

WMEnvironment::WMEnvironment(bool use_arg_prefixes) : impl_(std::make_unique<Impl>()) {
  // A worker process must never get as far as creating a master of its own (that would start
  // workers of workers): whichever way the host configures its work manager, serve here.
  serve_if_worker();
  impl_->use_arg_prefixes = use_arg_prefixes;
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

std::vector<std::string> WMEnvironment::valid_work_managers() const { return impl_->get_scan().info.names(); }
const PluginScan& WMEnvironment::plugin_scan() const { return impl_->get_scan().info; }

namespace {
// Backend options are always prefixed: --wm-threads-spin-us / WM_THREADS_SPIN_US.
std::string backend_setting(const std::string& backend, const char* option) {
  return backend + "-" + option;
}
}  // namespace

void WMEnvironment::add_wm_args(po::options_description& desc) const {
  po::options_description group(group_title);
  auto valid = valid_work_managers();
  std::string names;
  for (const auto& n : valid) names += (names.empty() ? "" : ", ") + n;
  group.add_options()(arg_name("serial").c_str(), po::bool_switch(), "run tasks serially in this process")(
      arg_name("parallel").c_str(), po::bool_switch(),
      ("run tasks in parallel with the default parallel work manager (" + default_parallel_work_manager +
       ")").c_str())(arg_name("work-manager").c_str(), po::value<std::string>()->value_name("NAME"),
                     ("work manager to use: " + names + " (env " + env_name("work-manager") + ", default " +
                      default_work_manager + ")").c_str())(
      arg_name("n-workers").c_str(), po::value<std::string>()->value_name("N"),
      ("number of workers (env " + env_name("n-workers") + "; default: the backend's, usually the number "
       "of cores)").c_str());
  for (const auto& r : impl_->get_scan().raw) {
    if (!r.usable) continue;
    for (std::uint32_t i = 0; i < r.meta.n_options; ++i) {
      const wm_option_meta& o = r.meta.options[i];
      const std::string setting = backend_setting(r.meta.name, o.name);
      std::string help = std::string(o.help) + " [" + r.meta.name + ", " + type_name(o.type) + ", env " +
                         env_name(setting) + ", default " + o.default_value + "]";
      auto* v = po::value<std::string>()->value_name(o.type == WM_OPTION_BOOL ? "BOOL" : "VALUE");
      if (o.type == WM_OPTION_BOOL) v->implicit_value("true");
      group.add_options()((arg_prefix + "-" + setting).c_str(), v, help.c_str());
    }
  }
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
  const std::string prefix = arg_prefix + "-";
  for (const auto& [key, value] : vm) {
    if (key.compare(0, prefix.size(), prefix) != 0 || value.defaulted() || value.empty()) continue;
    const std::string setting = key.substr(prefix.size());
    if (setting == "work-manager" || setting == "n-workers" || setting == "serial" || setting == "parallel")
      continue;
    if (const auto* s = boost::any_cast<std::string>(&value.value())) impl_->cli[setting] = *s;
  }
}

void WMEnvironment::parse_args(int argc, const char* const* argv) {
  po::options_description desc;
  add_wm_args(desc);
  po::variables_map vm;
  try {
    auto parsed = po::command_line_parser(argc, argv).options(desc).allow_unregistered().run();
    po::store(parsed, vm);
  } catch (const po::error& e) {
    throw ConfigError(std::string("command line: ") + e.what());
  }
  process_wm_args(vm);
}

std::optional<std::string> WMEnvironment::get_val(const std::string& name) const {
  if (auto it = impl_->cli.find(name); it != impl_->cli.end()) return it->second;
  if (const char* v = std::getenv(env_name(name).c_str())) return std::string(v);
  return std::nullopt;
}

namespace {
// Names the source of a setting for error messages.
std::string describe_source(const WMEnvironment& env, const std::map<std::string, std::string>& cli,
                            const std::string& name, bool backend_option) {
  if (cli.count(name))
    return "option " + (backend_option ? "--" + env.arg_prefix + "-" + name : env.arg_flag(name));
  return "environment variable " + env.env_name(name);
}
}  // namespace

template <class T>
T WMEnvironment::get_val(const std::string& name, const T& default_value) const {
  auto raw = get_val(name);
  if (!raw) return default_value;
  const std::string what = describe_source(*this, impl_->cli, name, false);
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
}

template bool WMEnvironment::get_val<bool>(const std::string&, const bool&) const;
template int WMEnvironment::get_val<int>(const std::string&, const int&) const;
template unsigned WMEnvironment::get_val<unsigned>(const std::string&, const unsigned&) const;
template long WMEnvironment::get_val<long>(const std::string&, const long&) const;
template unsigned long WMEnvironment::get_val<unsigned long>(const std::string&, const unsigned long&) const;
template long long WMEnvironment::get_val<long long>(const std::string&, const long long&) const;
template double WMEnvironment::get_val<double>(const std::string&, const double&) const;
template std::string WMEnvironment::get_val<std::string>(const std::string&, const std::string&) const;

namespace {
std::string list_names(const std::vector<std::string>& names) {
  std::string s;
  for (const auto& n : names) s += (s.empty() ? "" : ", ") + n;
  return s.empty() ? "(none)" : s;
}
}  // namespace

std::string WMEnvironment::work_manager_name() const {
  const auto valid = valid_work_managers();
  std::string name;
  std::string from;
  int given = int(impl_->cli_serial) + int(impl_->cli_parallel) + int(impl_->cli.count("work-manager"));
  if (given > 1)
    throw ConfigError("give only one of " + arg_flag("serial") + ", " + arg_flag("parallel") + " and " +
                      arg_flag("work-manager"));
  if (impl_->cli_serial) {
    name = "serial";
    from = arg_flag("serial");
  } else if (impl_->cli_parallel) {
    name = std::find(valid.begin(), valid.end(), default_parallel_work_manager) != valid.end()
               ? default_parallel_work_manager
               : std::string("threads");
    from = arg_flag("parallel");
  } else if (auto v = get_val("work-manager")) {
    name = trim(*v);
    from = describe_source(*this, impl_->cli, "work-manager", false) + "='" + *v + "'";
  } else {
    name = default_work_manager;
    from = "the default";
  }
  if (std::find(valid.begin(), valid.end(), name) != valid.end()) return name;

  const PluginScan& scan = plugin_scan();
  std::string msg = "unknown work manager '" + name + "' (from " + from + "). Valid work managers: " +
                    list_names(valid) + ". Plugin directories scanned: ";
  std::string dirs;
  for (const auto& d : scan.directories) dirs += (dirs.empty() ? "" : ", ") + d;
  msg += dirs.empty() ? "(none)" : dirs;
  for (const auto& p : scan.plugins)
    if (!p.usable)
      msg += ". Rejected " + p.path + ": " + p.reason;
  msg += ". Set " + env_name("work-manager") + " or " + arg_flag("work-manager") +
         " to a valid name, or add the directory holding the plugin to WM_PLUGIN_PATH.";
  throw ConfigError(msg);
}

unsigned WMEnvironment::n_workers() const {
  auto v = get_val("n-workers");
  if (!v) return 0;
  return static_cast<unsigned>(
      parse_integer(*v, describe_source(*this, impl_->cli, "n-workers", false), 1, kMaxWorkers));
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

// A misspelt WM_<BACKEND>_<OPTION> would otherwise be ignored without a word.
void warn_unknown_variables(const WMEnvironment& env, const wm_plugin_metadata& meta) {
  const std::string prefix = env.env_name(meta.name) + "_";
  for (char** e = environ; e != nullptr && *e != nullptr; ++e) {
    std::string kv = *e;
    if (kv.compare(0, prefix.size(), prefix) != 0) continue;
    std::string var = kv.substr(0, kv.find('='));
    bool known = false;
    for (std::uint32_t i = 0; i < meta.n_options; ++i)
      known = known || var == env.env_name(backend_setting(meta.name, meta.options[i].name));
    if (!known)
      detail::log(WM_LOG_WARNING, meta.name,
                  "environment variable " + var + " is not an option of work manager '" +
                      std::string(meta.name) + "' and is ignored");
  }
}

std::unique_ptr<detail::BackendConfigStorage> make_config(const WMEnvironment& env,
                                                          const std::map<std::string, std::string>& cli,
                                                          const wm_plugin_metadata& meta, unsigned n_workers,
                                                          bool worker_role) {
  auto c = std::make_unique<detail::BackendConfigStorage>();
  c->options = resolve_options(env, cli, meta);
  if (!worker_role) warn_unknown_variables(env, meta);
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
  const detail::ScannedPlugin* p = impl_->find(name);
  if (p != nullptr) {
    for (const auto& r : resolve_options(*this, impl_->cli, p->meta)) {
      const std::string setting = backend_setting(name, r.name.c_str());
      out.push_back(ConfigEntry{setting, env_name(setting), "--" + arg_prefix + "-" + setting, r.text,
                                r.source == "command line" ? ValueSource::command_line
                                : r.source == "environment" ? ValueSource::environment
                                                            : ValueSource::default_value});
    }
  }
  return out;
}

std::string WMEnvironment::format_config_report() const {
  std::ostringstream os;
  for (const auto& e : config_report())
    os << "  " << e.name << " = " << e.value << "  (" << to_string(e.source) << "; " << e.variable << ", "
       << e.flag << ")\n";
  return os.str();
}

std::unique_ptr<WorkManager> WMEnvironment::make_work_manager() const {
  const std::string name = work_manager_name();
  const unsigned workers = n_workers();
  const detail::ScannedPlugin* p = impl_->find(name);
  if (p == nullptr) throw PluginError("work manager '" + name + "' vanished from the plugin scan");
  auto link = std::make_shared<detail::BackendLink>(*p, make_config(*this, impl_->cli, p->meta, workers, false));
  // SPMD backends (every process of the job runs the host program) learn their role as they start;
  // a process that is not the master (an MPI rank > 0, a node) serves here and never returns, as a
  // spawned worker does in serve_if_worker().
  if ((link->capabilities() & WM_CAP_SPMD) != 0) link->startup();
  if (!link->is_master()) detail::serve_and_exit(std::move(link));
  return std::make_unique<WorkManager>(std::move(link));
}

// Both go through WMEnvironment's constructor, which serves (and exits) in a worker process.
std::unique_ptr<WorkManager> make_work_manager() {
  return WMEnvironment().make_work_manager();
}

std::unique_ptr<WorkManager> make_work_manager(int argc, const char* const* argv) {
  WMEnvironment env;
  env.parse_args(argc, argv);
  return env.make_work_manager();
}

void serve_if_worker() {
  const char* backend = std::getenv(WM_ENV_WORKER_BACKEND);
  if (backend == nullptr || *backend == '\0') return;
  const std::string name = backend;
  // Programs this worker starts are not workers themselves.
  unsetenv(WM_ENV_WORKER_BACKEND);
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
    const detail::ScannedPlugin* p = env.impl_->find(name);
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
