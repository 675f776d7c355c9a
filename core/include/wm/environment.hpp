// SPDX-License-Identifier: MIT
// wm/environment.hpp: WMEnvironment: picks and configures the work manager from the command line,
// the environment and defaults, in that order of precedence; plugin discovery as data.
//
// @code
//   // One call: wm's flags are taken out of argv, the rest is the program's.
//   auto wm = wm::make_work_manager(&argc, argv);
//
//   // Or inside the program's own Boost.Program_options parser:
//   namespace po = boost::program_options;       // #include <boost/program_options.hpp> yourself
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

#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

// Only references cross this header: a host that hands wm its parser includes
// <boost/program_options.hpp> itself, and hosts that do not never parse it.
namespace boost::program_options {
class options_description;
class variables_map;
}  // namespace boost::program_options

namespace wm {

struct BindingPlan;  // <wm/worker.hpp>

/** Where a configuration value came from. */
enum class ValueSource { default_value, environment, command_line };
const char* to_string(ValueSource source) noexcept;

/** One effective setting, for reports (`wm config`, format_config_report()). */
struct ConfigEntry {
  std::string name;      // e.g. "work-manager", "threads-spin-us"
  std::string variable;  // WM_WORK_MANAGER
  std::string flag;      // --work-manager
  std::string value;
  ValueSource source = ValueSource::default_value;
};

/** Type of a backend option. */
enum class OptionType { boolean, integer, number, text };
/** "bool", "int", "number", "text". */
const char* to_string(OptionType type) noexcept;

/** One option a backend declares in its metadata. */
struct OptionInfo {
  std::string name;  // "spin-us"
  OptionType type = OptionType::text;
  std::string default_value;
  std::string help;
  std::int64_t int_min = 0, int_max = 0;  // range of an integer option
  double number_min = 0, number_max = 0;  // range of a number option
  std::string variable;                   // WM_THREADS_SPIN_US
  std::string flag;                       // --wm-threads-spin-us
};

/** What discovery made of a plugin file. */
enum class PluginStatus {
  taken,     // a valid work manager: the first usable file of its name in path order
  shadowed,  // usable, but a file of the same name came earlier in path order
  refused    // not usable; `reason` says why
};
/** "taken", "shadowed", "refused". */
const char* to_string(PluginStatus status) noexcept;

/** A plugin file found by discovery. Read from the file's metadata record; no plugin code ran. */
struct PluginInfo {
  std::string path;
  std::string name;  // empty if no name could be read
  std::string version;
  std::string description;
  bool usable = false;  // status == taken
  PluginStatus status = PluginStatus::refused;
  std::string reason;       // shadowed or refused: why
  std::string note;         // taken or shadowed: anything worth knowing (e.g. built for a newer ABI minor)
  std::string shadowed_by;  // shadowed: the path of the copy that is used
  std::uint32_t abi_version = 0;  // as recorded ((major << 16) | minor; 0 if unreadable)
  std::uint32_t min_core_abi_version = 0;  // the oldest core ABI it runs on (0 if unreadable)
  std::uint64_t capabilities = 0;  // wm_capability bits (taken or shadowed)
  std::string entry_symbol;
  std::vector<OptionInfo> options;
};

/** What became of one entry of the plugin search path. */
enum class DirectoryStatus {
  scanned,          // listed (it may hold no plugin)
  duplicate,        // the same directory as an earlier entry, scanned there
  missing,          // does not exist
  not_a_directory,  // a file where a directory was expected
  unreadable,       // cannot be listed (permissions)
  empty_entry       // an empty entry in WM_PLUGIN_PATH (ignored; it does not mean ".")
};
/** "scanned", "duplicate", "missing", "not a directory", "unreadable", "empty entry". */
const char* to_string(DirectoryStatus status) noexcept;

struct PluginDirectory {
  std::string path;
  std::string origin;  // "bundled" (next to libwm_core) or "WM_PLUGIN_PATH"
  DirectoryStatus status = DirectoryStatus::scanned;
  std::string detail;  // unless scanned: why, in one line
};

/** Result of scanning the plugin directories. */
struct PluginScan {
  std::vector<PluginDirectory> directories;  // in search order, one per entry
  std::vector<PluginInfo> plugins;           // every candidate file, in search order
  /** Names of the taken backends, in search order. */
  std::vector<std::string> names() const;
  /** The taken plugin of that name (names are lower case; matched case-insensitively), or null. */
  const PluginInfo* find(std::string_view name) const;
  /** Problems a host warns about: directories that could not be scanned, empty entries. */
  std::vector<std::string> directory_problems() const;
};

/**
 * Scans the plugin directories (the bundled one next to libwm_core first, then the entries of
 * WM_PLUGIN_PATH, colon-separated, in order) and reads each file's metadata without loading it.
 * For two usable files of one name the first in this order is taken, the other shadowed.
 */
PluginScan scan_plugins();

/** Configuration of a work manager: environment variables, command line and defaults. */
class WMEnvironment {
 public:
  /**
   * use_arg_prefixes: name the generic flags --wm-work-manager etc. instead of --work-manager.
   * valid_work_managers: the backends this program allows (empty: every one discovery finds);
   * names not installed are simply not offered.
   */
  explicit WMEnvironment(bool use_arg_prefixes = false, std::vector<std::string> valid_work_managers = {});
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

  /** Backends found by the plugin scan (never a fixed list), restricted to the ones allowed. */
  std::vector<std::string> valid_work_managers() const;
  /** The plugin scan behind valid_work_managers(); rescanned when WM_PLUGIN_PATH or a scanned
   *  directory changes. */
  const PluginScan& plugin_scan() const;

  /** Adds the generic options (--help-wm included) and every valid backend's options to a description. */
  void add_wm_args(boost::program_options::options_description& desc) const;
  /** Takes the values of the options added by add_wm_args from a parsed variables_map. */
  void process_wm_args(const boost::program_options::variables_map& vm);
  /**
   * Takes the options of add_wm_args out of argv and returns the arguments it did not consume,
   * in order, argv[0] first (everything from a "--" on is left alone). Flags are never guessed
   * from abbreviations. An unknown `--<arg_prefix>-*` flag is a ConfigError naming it and the
   * closest option; other unknown flags are the program's. `--help-wm [BACKEND]` (also
   * `--help-wm=BACKEND`) is noted here and answered by make_work_manager().
   */
  std::vector<std::string> parse_args(int argc, const char* const* argv);
  /** wm's options, short, for the program's own --help (what `--help-wm` prints): the common
   *  options first, then each valid backend's, one entry each (flag, what it does, default). */
  std::string help_text() const;
  /** One backend's options in full (what `--help-wm BACKEND` prints): for each, its flag, help,
   *  type, default, range and variable. Throws ConfigError for a name that is no valid work manager
   *  (with the closest), PluginError for a backend whose plugin was refused (with the reason). */
  std::string help_text(const std::string& backend) const;

  /** Raw value of a setting: command line, then environment; nullopt if neither set it. */
  std::optional<std::string> get_val(const std::string& name) const;
  /** Typed value with default: bool, integers, double or std::string. Throws ConfigError naming
   *  the variable or flag and the value if it does not convert. */
  template <class T>
  T get_val(const std::string& name, const T& default_value) const;

  /** The work manager the settings pick (validated against valid_work_managers()). Names are
   *  matched case-insensitively. Throws ConfigError for an unknown name (with the closest valid
   *  one), PluginError for a backend whose plugin file was refused (with the reason). */
  std::string work_manager_name() const;
  /** Number of workers asked for; 0 if unset (the backend's default). */
  unsigned n_workers() const;

  /** Every effective setting of the chosen work manager with where it came from. */
  std::vector<ConfigEntry> config_report() const;
  /** config_report() as aligned text lines. */
  std::string format_config_report() const;
  /** The warnings make_work_manager() prints (to stderr, at level warning) for these settings:
   *  plugin directories that could not be scanned, WM_<BACKEND>_* variables that are no option of
   *  the chosen backend, shadowed copies of the chosen backend. */
  std::vector<std::string> warnings() const;

  /**
   * Creates the configured work manager (started lazily by the first submit, or by startup()).
   *
   * If `--help-wm [BACKEND]` was given, prints that help to stdout instead and ends the program
   * with exit code 0, as --help does (in a parallel job, rank 0 alone prints).
   *
   * A configuration error (this call, parse_args, work_manager_name, n_workers, get_val) is thrown
   * as ConfigError, or PluginError for a backend whose plugin was refused; a host may catch it. If
   * it does not, the program ends with the message on stderr ("program: message", rank 0 only in a
   * parallel job) and exit code 2, instead of std::terminate's abort. Errors of loading, creating
   * and starting the backend are not configuration errors: they propagate as they are.
   */
  std::unique_ptr<WorkManager> make_work_manager() const;
  /** Creates the named backend (not the one the settings pick), configured by these settings:
   *  workers and backend options. */
  std::unique_ptr<WorkManager> make_work_manager(const std::string& backend) const;

 private:
  friend void serve_if_worker();
  friend BindingPlan binding_plan(const WMEnvironment& env, unsigned n_workers);
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

/** The process-wide environment the free functions below use when given none (WESTPA's default_env).
 *  Configure it from one thread, before work managers are made from several. */
WMEnvironment& default_env();

/** Adds wm's options to the program's option description (WESTPA's add_wm_args). */
void add_wm_args(boost::program_options::options_description& desc, const WMEnvironment& env = default_env());
/** Takes wm's options from the parsed values (WESTPA's process_wm_args). */
void process_wm_args(const boost::program_options::variables_map& vm, WMEnvironment& env = default_env());
/** The --help text of wm's options: `std::cout << wm::wm_args_help();` in the program's --help
 *  (the text `--help-wm` prints: the common options, then each backend's, short). */
std::string wm_args_help(const WMEnvironment& env = default_env());
/** One backend's options in full (the text `--help-wm BACKEND` prints). */
std::string wm_args_help(const std::string& backend, const WMEnvironment& env = default_env());

/** Creates the work manager the environment asks for. */
std::unique_ptr<WorkManager> make_work_manager(const WMEnvironment& env);
/** Creates the work manager default_env() asks for (WM_* variables, and flags it processed). */
std::unique_ptr<WorkManager> make_work_manager();
/** Creates the work manager the command line (generic and --wm-* flags) and environment ask for.
 *  Flags it does not know are left for the program. Serves and exits if this is a worker process.
 *  Answers `--help-wm [BACKEND]` (prints, exit code 0); an uncaught configuration error ends the
 *  program with its message and exit code 2 (WMEnvironment::make_work_manager). */
std::unique_ptr<WorkManager> make_work_manager(int argc, const char* const* argv);
inline std::unique_ptr<WorkManager> make_work_manager(int argc, char** argv) {
  return make_work_manager(argc, const_cast<const char* const*>(argv));
}
/** As make_work_manager(argc, argv), and takes the arguments it consumed out of argv: *argc and
 *  argv are updated in place (argv[*argc] is null), like MPI_Init and testing::InitGoogleTest. */
std::unique_ptr<WorkManager> make_work_manager(int* argc, char** argv);

/** Creates the named backend configured from an environment (WESTPA's WorkManager.from_environ):
 *  `wm::from_environ("threads")` is a threads work manager with WM_N_WORKERS workers. */
std::unique_ptr<WorkManager> from_environ(const std::string& backend, const WMEnvironment& env = default_env());

}  // namespace wm
