// wm/environment.hpp: WMEnvironment: picks and configures the work manager from the command line,
// the environment and defaults, in that order of precedence.
//
// @code
//   namespace po = boost::program_options;
//   po::options_description desc("my driver");
//   wm::WMEnvironment env;
//   env.add_wm_args(desc);                 // --serial --parallel --work-manager --n-workers --wm-<backend>-<option>
//   po::variables_map vm;
//   po::store(po::parse_command_line(argc, argv, desc), vm);
//   env.process_wm_args(vm);
//   auto wm = env.make_work_manager();     // command line > WM_* environment > defaults
// @endcode
#pragma once

#include <wm/work_manager.hpp>

#include <boost/program_options/options_description.hpp>
#include <boost/program_options/variables_map.hpp>

#include <cstdint>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <vector>

namespace wm {

/** Where a configuration value came from. */
enum class ValueSource { default_value, environment, command_line };
const char* to_string(ValueSource source) noexcept;

/** One effective setting, for reports (--wm-print-config). */
struct ConfigEntry {
  std::string name;      // e.g. "work-manager", "threads-spin-us"
  std::string variable;  // WM_WORK_MANAGER
  std::string flag;      // --work-manager
  std::string value;
  ValueSource source = ValueSource::default_value;
};

/** A plugin file found by discovery: usable, or rejected with its reason. */
struct PluginInfo {
  std::string path;
  std::string name;         // empty if unreadable
  std::string version;
  std::string description;
  bool usable = false;
  std::string reason;       // why it was rejected
};

/** Result of scanning the plugin directories. */
struct PluginScan {
  std::vector<std::string> directories;  // in scan order
  std::vector<PluginInfo> plugins;       // every file seen, in scan order
  /** Names of the usable backends, first occurrence wins, in scan order. */
  std::vector<std::string> names() const;
};

/**
 * Scans the plugin directories (the install-relative default, then WM_PLUGIN_PATH,
 * colon-separated) and reads each file's metadata without loading it.
 */
PluginScan scan_plugins();

/** Configuration of a work manager: environment variables, command line and defaults. */
class WMEnvironment {
 public:
  /** use_arg_prefixes: name generic flags --wm-work-manager etc. instead of --work-manager. */
  explicit WMEnvironment(bool use_arg_prefixes = false);
  ~WMEnvironment();
  WMEnvironment(WMEnvironment&&) noexcept;
  WMEnvironment& operator=(WMEnvironment&&) noexcept;

  std::string env_prefix = "WM";
  std::string arg_prefix = "wm";
  std::string default_work_manager = "serial";
  std::string default_parallel_work_manager = "processes";  // if installed, else "threads"
  std::string group_title = "parallelization options";

  /** WM_<NAME> for a setting name like "n-workers". */
  std::string env_name(const std::string& name) const;
  /** Flag name without dashes: "n-workers" or "wm-n-workers". */
  std::string arg_name(const std::string& name) const;
  /** "--n-workers". */
  std::string arg_flag(const std::string& name) const;

  /** Backends found by the plugin scan (never a fixed list). */
  std::vector<std::string> valid_work_managers() const;
  /** The plugin scan behind valid_work_managers(). */
  const PluginScan& plugin_scan() const;

  /** Adds the generic options and every discovered backend's options to a description. */
  void add_wm_args(boost::program_options::options_description& desc) const;
  /** Takes the values of the options added by add_wm_args from a parsed variables_map. */
  void process_wm_args(const boost::program_options::variables_map& vm);
  /** Parses only the options of add_wm_args out of argv (others are left alone). */
  void parse_args(int argc, const char* const* argv);

  /** Raw value of a setting: command line, then environment; nullopt if neither set it. */
  std::optional<std::string> get_val(const std::string& name) const;
  /** Typed value with default: bool, integers, double or std::string. Throws ConfigError naming
   *  the variable or flag and the value if it does not convert. */
  template <class T>
  T get_val(const std::string& name, const T& default_value) const;

  /** The work manager the settings pick (validated against valid_work_managers()). */
  std::string work_manager_name() const;
  /** Number of workers asked for; 0 if unset (the backend's default). */
  unsigned n_workers() const;

  /** Every effective setting of the chosen work manager with where it came from. */
  std::vector<ConfigEntry> config_report() const;
  /** config_report() as aligned text lines. */
  std::string format_config_report() const;

  /** Creates the configured work manager (started lazily by the first submit, or by startup()). */
  std::unique_ptr<WorkManager> make_work_manager() const;

 private:
  friend void serve_if_worker();
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

extern template bool WMEnvironment::get_val<bool>(const std::string&, const bool&) const;
extern template int WMEnvironment::get_val<int>(const std::string&, const int&) const;
extern template unsigned WMEnvironment::get_val<unsigned>(const std::string&, const unsigned&) const;
extern template long WMEnvironment::get_val<long>(const std::string&, const long&) const;
extern template unsigned long WMEnvironment::get_val<unsigned long>(const std::string&, const unsigned long&) const;
extern template long long WMEnvironment::get_val<long long>(const std::string&, const long long&) const;
extern template double WMEnvironment::get_val<double>(const std::string&, const double&) const;
extern template std::string WMEnvironment::get_val<std::string>(const std::string&, const std::string&) const;

/** Creates the work manager the environment (WM_*) asks for. */
std::unique_ptr<WorkManager> make_work_manager();
/** Creates the work manager the command line (generic and --wm-* flags) and environment ask for.
 *  Flags it does not know are left for the program. Serves and exits if this is a worker process. */
std::unique_ptr<WorkManager> make_work_manager(int argc, const char* const* argv);
inline std::unique_ptr<WorkManager> make_work_manager(int argc, char** argv) {
  return make_work_manager(argc, const_cast<const char* const*>(argv));
}

}  // namespace wm
