// SPDX-License-Identifier: MIT
// backend_link.cpp: loading the chosen backend plugin, the core's service table, and WorkManager.
#include "backend_link.hpp"

#include "console.hpp"
#include "internal.hpp"
#include "link_stats.hpp"
#include "shared_memory.hpp"

#include <wm/stats.hpp>
#include <wm/task.hpp>
#include <wm/work_manager.hpp>

#include <wm/sdk/abi_version.hpp>

// Boost.DLL loads the plugins and finds this library and the program. BOOST_DLL_USE_STD_FS (set for
// the core in CMake): std::filesystem paths, so no Boost.Filesystem to link.
#include <string>
#include <vector>
#include <boost/dll/runtime_symbol_info.hpp>
#include <boost/dll/shared_library.hpp>

#include <dlfcn.h>  // dlerror(): the loader's own message, which Boost.DLL's error_code does not carry

#include <cxxabi.h>

#include <algorithm>
#include <chrono>
#include <condition_variable>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <map>
#include <set>
#include <system_error>
#include <thread>

namespace wm::detail {
namespace {

TaskState* state_of(wm_task* t) { return reinterpret_cast<TaskState*>(t); }
wm_task* task_of(TaskState* s) { return reinterpret_cast<wm_task*>(s); }

void set_error(wm_error* err, const std::string& message) {
  if (err == nullptr) return;
  err->code = 1;
  std::snprintf(err->message, sizeof err->message, "%s", message.c_str());
}

// ---- services: every call that finishes a task drops the reference the backend held ----

// A task cancelled before its backend started it is finished already (Future::cancel): the backend
// drops it, and these calls only release the backend's reference.
void svc_execute(wm_task* t) {
  TaskState* s = state_of(t);
  if (claim_start(s)) {
    // On the meter of the worker this thread is (set_worker): the task it runs, for stats().
    if (begin_metered(s)) {
      execute_local(s);
      end_metered();
    } else {
      execute_local(s);
    }
  }
  intrusive_ptr_release(s);
}

// Counts the bytes of an encoded request without keeping them.
class CountingSink final : public BlockSink {
 public:
  std::uint64_t total() const { return total_; }

 protected:
  pos_type seekoff(off_type off, std::ios_base::seekdir dir, std::ios_base::openmode) override {
    if (off != 0 || dir != std::ios_base::cur) return pos_type(off_type(-1));
    return pos_type(static_cast<off_type>(total_));
  }
  std::streamsize xsputn(const char*, std::streamsize n) override {
    total_ += static_cast<std::uint64_t>(n);
    return n;
  }

 private:
  std::uint64_t total_ = 0;
};

// Requests or replies holding a block this large are "large" (wm_core_services.large_payload_bytes).
constexpr std::uint64_t kLargePayloadBytes = std::uint64_t(1) << 20;

// Measures a task's request at submit: encoding it there is what makes a task that cannot travel
// fail in the caller's thread, with its name. The bytes are not kept: the request is encoded again
// when it is sent, straight into the backend's storage (one copy of large arguments, and no per-task
// buffer for small ones). False: it cannot run by name. Throws what encoding throws.
// Whether the task's workers map this process's memory (its shared arrays then go as references).
bool maps_memory(const TaskState* s) noexcept {
  return s->backend_name != nullptr && tag_of(s->backend_name)->maps_memory.load(std::memory_order_relaxed);
}

bool prepare_request(TaskState* s) {
  if (s->encoded_size != 0) return true;
  ShareEncodeScope share(maps_memory(s), false);
  CountingSink sink;
  if (!s->encode_request(sink)) return false;
  s->encoded_size = sink.total();
  return true;
}

void svc_task_info(wm_task* t, wm_task_info* info) {
  if (info == nullptr) return;
  const TaskState* s = state_of(t);
  wm_task_info full{};
  full.struct_size = info->struct_size;
  full.name = s->registered != nullptr ? s->registered->name : "";
  full.sequence = s->sequence;
  full.encoded_size = s->encoded_size;
  if (s->needs != nullptr) {
    full.n_needs = static_cast<std::uint32_t>(s->needs->amounts.size());
    full.needs = s->needs->amounts.data();
  }
  // A backend of an older minor passes a shorter record: fill what it has room for.
  std::memcpy(info, &full, std::min<std::size_t>(info->struct_size, sizeof full));
}

int svc_encode(wm_task* t, wm_byte_buffer* out, wm_error* err) {
  TaskState* s = state_of(t);
  const std::size_t start = out->size;
  auto failed = [&](const std::string& what) {
    out->size = start;
    set_error(err, "encoding task '" + s->display_name() + "' failed: " + what);
    return 1;
  };
  // Encoding it to send it starts it: from here on it cannot be cancelled without a kill.
  if (!claim_start(s)) return failed("it was cancelled before it was sent");
  try {
    if (!prepare_request(s)) return failed("it cannot run by name: register it with WM_TASK");
    BufferSink sink(*out);
    ShareEncodeScope share(maps_memory(s), false);
    s->encode_request(sink);
    if (out->size - start != s->encoded_size)
      return failed("its arguments encoded to " + std::to_string(s->encoded_size) + " bytes at submit and to " +
                    std::to_string(out->size - start) +
                    " bytes when sent: their serialize() must not depend on anything but their value");
  } catch (const std::exception& e) {
    return failed(e.what());
  }
  return 0;
}

void svc_complete_encoded(wm_task* t, const void* reply, std::size_t size, const wm_worker_identity* where) {
  TaskState* s = state_of(t);
  if (claim_start(s)) {
    // A reply's references name regions of the worker that sent it, checked against its pid.
    const std::int64_t pid = where != nullptr ? where->pid : 0;
    ShareDecodeScope share(maps_memory(s) && pid > 0, pid);
    complete_from_reply(s, static_cast<const char*>(reply), size, where);
  }
  intrusive_ptr_release(s);
}

FailureKind kind_of(std::int32_t kind) {
  switch (kind) {
    case WM_FAIL_WORKER_LOST: return FailureKind::worker_lost;
    case WM_FAIL_TIMEOUT: return FailureKind::timeout;
    case WM_FAIL_SHUTDOWN: return FailureKind::shutdown;
    case WM_FAIL_PROTOCOL: return FailureKind::protocol;
    case WM_FAIL_CANCELLED: return FailureKind::cancelled;
    case WM_FAIL_RESOURCES: return FailureKind::resources;
    default: return FailureKind::backend;
  }
}

void svc_fail(wm_task* t, std::int32_t kind, const char* message, const wm_worker_identity* where,
              std::uint32_t attempts) {
  TaskState* s = state_of(t);
  if (claim_start(s)) finish_with(s, kind_of(kind), message != nullptr ? message : "", where, attempts);
  intrusive_ptr_release(s);
}

void svc_set_worker(const wm_worker_identity* who, std::uint64_t seed) {
  set_worker(who != nullptr ? who->index : -1, who != nullptr ? who->rank : -1);
  if (seed != 0) seed_process(seed);
}

// What submit() and startup() throw once the work manager is shut down.
ShutdownError shut_down_error(const std::string& backend, const std::string& task) {
  ErrorInfo info;
  info.kind = FailureKind::shutdown;
  info.message = "work manager '" + backend + "' was shut down; create a new one to submit more tasks";
  info.task_name = task;
  fill_where(info, nullptr);
  info.worker_index = -1;
  info.backend = backend;
  return ShutdownError(std::move(info));
}

void svc_log(std::int32_t level, const char* backend, const char* message) {
  log(level, backend != nullptr ? backend : "backend", message != nullptr ? message : "");
}

const wm_core_services g_services = [] {
  wm_core_services s{};
  s.abi_version = WM_ABI_VERSION;
  s.struct_size = sizeof(wm_core_services);
  s.large_payload_bytes = kLargePayloadBytes;
  s.execute = &svc_execute;
  s.task_info = &svc_task_info;
  s.encode = &svc_encode;
  s.complete_encoded = &svc_complete_encoded;
  s.fail = &svc_fail;
  s.execute_encoded = &execute_encoded_into;
  s.set_worker = &svc_set_worker;
  s.list_tasks = &list_tasks;
  s.log = &svc_log;
  s.worker_environment = &svc_worker_environment;
  s.bind_worker_thread = &svc_bind_worker_thread;
  s.worker_resources = &svc_worker_resources;
  s.share_memory_with_master = [](std::int32_t enabled) { set_share_with_master(enabled != 0); };
  s.shared_block_new = &SharedBlockServices::create;
  s.shared_block_release = &SharedBlockServices::release;
  s.decode_from_block = &SharedBlockServices::decode_from;
  s.shared_block_describe = &SharedBlockServices::describe;
  s.shared_block_map = &SharedBlockServices::map;
  return s;
}();

// The type of the exception being handled, for "threw X" messages.
std::string current_exception_type() {
  const std::type_info* type = abi::__cxa_current_exception_type();
  return type != nullptr ? demangle(type->name()) : std::string("unknown");
}

// Calls into the plugin; an exception escaping it (only a plugin not built with the SDK can let one
// out) becomes a PluginError naming the backend and the entry point.
template <class Fn>
auto call_plugin(const std::string& backend, const char* entry, Fn&& fn) -> decltype(fn()) {
  try {
    return fn();
  } catch (...) {
    std::string what;
    try {
      throw;
    } catch (const std::exception& e) {
      what = std::string(": ") + e.what();
    } catch (...) {
    }
    throw PluginError("work manager '" + backend + "': its " + entry + " threw an exception of type " +
                      current_exception_type() + what +
                      " (entry points must report errors through wm_error; WM_DECLARE_BACKEND does that)");
  }
}

std::atomic<int> g_remote_links{0};  // remote_work_managers()

// Links by backend name, for cancel(kill_running), which comes with a task only: a task keeps the
// interned name of its backend (no more bytes a task, no reference counting per submit); the links
// of that name are asked in turn, and only the one holding the task (by its sequence number) stops
// it. A link that is gone is not found.
struct LinkRegistry {
  std::mutex mutex;
  std::multimap<const std::string*, std::pair<const BackendLink*, std::weak_ptr<BackendLink>>> links;
};
LinkRegistry& link_registry() {
  static auto* r = new LinkRegistry;  // never destroyed: used by futures that outlive main
  return *r;
}

// Threads that finish a work manager destroyed inside user code. The process waits for them at exit
// (a bounded time), so that none is still stopping workers while the process's statics go.
class Finishers {
 public:
  static void begin() {
    static const bool registered = [] { return std::atexit(&wait_at_exit) == 0; }();
    (void)registered;
    std::lock_guard<std::mutex> lock(mutex());
    ++running();
  }
  static void end() {
    std::lock_guard<std::mutex> lock(mutex());
    if (--running() == 0) cv().notify_all();
  }

 private:
  static void wait_at_exit() {
    std::unique_lock<std::mutex> lock(mutex());
    cv().wait_for(lock, std::chrono::seconds(10), [] { return running() == 0; });
  }
  // Never destroyed: used at exit.
  static std::mutex& mutex() {
    static auto* m = new std::mutex;
    return *m;
  }
  static std::condition_variable& cv() {
    static auto* c = new std::condition_variable;
    return *c;
  }
  static int& running() {
    static int n = 0;
    return n;
  }
};

// A plugin library loaded, and its descriptor once it has passed the checks.
struct LoadedPlugin {
  boost::dll::shared_library library;
  const wm_backend_descriptor* descriptor = nullptr;
};

std::mutex g_load_mutex;
// Never destroyed, so no library is ever unloaded (shared_library's destructor would dlclose it):
// futures, exception objects and callbacks may point into it, a plugin's static constructors have
// run, and a backend linking Open MPI crashed at exit when unloaded after MPI_Finalize.
std::map<std::string, LoadedPlugin>& loaded_libraries() {
  static auto* m = new std::map<std::string, LoadedPlugin>;
  return *m;
}

const wm_backend_descriptor* load_descriptor(const ScannedPlugin& plugin) {
  std::lock_guard<std::mutex> lock(g_load_mutex);
  auto& loaded = loaded_libraries();
  if (auto it = loaded.find(plugin.path); it != loaded.end() && it->second.descriptor != nullptr)
    return it->second.descriptor;
  const std::string name = plugin.meta.name;
  const std::string where = "work manager '" + name + "' in " + plugin.path;
  LoadedPlugin& slot = loaded[plugin.path];
  if (!slot.library.is_loaded()) {
    // rtld_now: a missing symbol fails here with a message, not later with an uncatchable exit.
    // rtld_local: one plugin's helpers never bind to another's.
    std::error_code ec;
    slot.library.load(plugin.path, boost::dll::load_mode::rtld_now | boost::dll::load_mode::rtld_local, ec);
    if (ec) {
      // Boost.DLL's error_code only says "bad file descriptor"; the loader's message says what is
      // missing. It is still there: Boost.DLL's own throwing overload reads it the same way.
      const char* e = dlerror();
      loaded.erase(plugin.path);
      throw PluginError("cannot load work manager '" + name + "' from " + plugin.path + ": " +
                        (e ? e : "unknown loader error") +
                        ". Check that the libraries it needs are installed (ldd " + plugin.path + ").");
    }
    log(WM_LOG_INFO, "core", "loaded " + where);
  }
  if (!slot.library.has(plugin.meta.entry_symbol))
    throw PluginError(where + " does not export its entry symbol " + plugin.meta.entry_symbol +
                      ": rebuild it with WM_DECLARE_BACKEND");
  // The entry symbol is an extern "C" function (wm_backend_entry_fn); typed access, no cast.
  auto& entry = slot.library.get<const wm_backend_descriptor*()>(plugin.meta.entry_symbol);
  const wm_backend_descriptor* d = call_plugin(name, "entry symbol", [&] { return entry(); });
  if (d == nullptr)
    throw PluginError(where + ": its entry symbol " + plugin.meta.entry_symbol +
                      "() returned NULL instead of a descriptor: the plugin is broken; rebuild it with "
                      "WM_DECLARE_BACKEND");
  if (WM_ABI_MAJOR_OF(d->abi_version) != WM_ABI_MAJOR)
    throw PluginError(where + " was built for ABI version " + sdk::abi_version_text(d->abi_version) +
                      " and this core speaks ABI version " + sdk::abi_version_text(WM_ABI_VERSION) +
                      ": rebuild the plugin against the SDK of this wm");
  // Every 1.x descriptor holds at least the 1.0 layout; a newer minor's extra fields are not read.
  if (d->struct_size < sizeof(wm_backend_descriptor))
    throw PluginError(where + " returned a descriptor of " + std::to_string(d->struct_size) +
                      " bytes, shorter than the " + std::to_string(sizeof(wm_backend_descriptor)) +
                      " bytes of ABI version 1.0: the plugin is broken; rebuild it with WM_DECLARE_BACKEND");
  if (d->name == nullptr || name != d->name)
    throw PluginError("work manager in " + plugin.path + " calls itself '" + (d->name ? d->name : "") +
                      "' in its descriptor but '" + name + "' in its metadata: rebuild it with WM_DECLARE_BACKEND");
  std::string missing;
  const std::pair<const char*, bool> entries[] = {
      {"create", d->create != nullptr},       {"destroy", d->destroy != nullptr},
      {"startup", d->startup != nullptr},     {"shutdown", d->shutdown != nullptr},
      {"submit", d->submit != nullptr},       {"run", d->run != nullptr},
      {"is_master", d->is_master != nullptr}, {"n_workers", d->n_workers != nullptr}};
  for (const auto& [entry_name, present] : entries)
    if (!present) missing += std::string(missing.empty() ? "" : ", ") + entry_name;
  if (!missing.empty()) throw PluginError(where + " lacks entry points: " + missing);
  slot.descriptor = d;
  return d;
}

}  // namespace

const wm_core_services* core_services() { return &g_services; }
int remote_work_managers() noexcept { return g_remote_links.load(); }

const std::string* intern_name(const std::string& name) {
  static std::mutex m;
  static auto* names = new std::set<std::string>;
  std::lock_guard<std::mutex> lock(m);
  return &*names->insert(name).first;
}

std::string default_plugin_directory() {
  // The file holding this function is libwm_core itself (a function of the core, not an inline one
  // that another module could provide).
  std::error_code ec;
  const std::filesystem::path located = boost::dll::symbol_location(default_plugin_directory, ec);
  if (ec || located.empty()) return {};
  std::filesystem::path lib = std::filesystem::canonical(located, ec);
  if (ec) lib = located;
  return (lib.parent_path() / "wm" / "plugins").string();
}

std::string host_program_path() {
  std::error_code ec;
  const std::filesystem::path program = boost::dll::program_location(ec);
  return ec ? std::string() : program.string();
}

void BackendConfigStorage::finalize() {
  values.clear();
  for (const ResolvedOption& o : options)
    values.push_back(wm_option_value{o.name.c_str(), o.type, o.bool_value, o.int_value, o.double_value,
                                     o.text.c_str(), o.source.c_str()});
  library_ptrs.clear();
  for (const auto& l : libraries) library_ptrs.push_back(l.c_str());
  config.abi_version = WM_ABI_VERSION;
  config.struct_size = sizeof(wm_backend_config);
  config.options = values.data();
  config.n_options = values.size();
  config.host_program = host_program.c_str();
  config.worker_arg = worker_arg.c_str();
  config.task_libraries = library_ptrs.data();
  config.n_task_libraries = library_ptrs.size();
}

BackendLink::BackendLink(const ScannedPlugin& plugin, std::unique_ptr<BackendConfigStorage> config)
    // The name is this work manager's own pointer (a LinkTag's): its tasks find their counters by
    // it, and, as a name, it is never freed.
    : name_(&make_link_tag(plugin.meta.name)->name), config_(std::move(config)),
      stats_(std::make_shared<LinkStats>(plugin.meta.name)), tag_(tag_of(name_)),
      // Only for the bench's measure of what the counting costs (bench/README.md, figure stats): a
      // work manager made while WM_BENCH_NO_STATS is set counts nothing.
      counting_(std::getenv("WM_BENCH_NO_STATS") == nullptr) {
  if (counting_) tag_->stats.store(stats_.get());
  desc_ = load_descriptor(plugin);
  caps_ = desc_->capabilities;
  tag_->maps_memory.store(WM_ABI_MINOR_OF(desc_->abi_version) >= 2 && (caps_ & WM_CAP_MAPS_MEMORY) != 0);
  wm_error err{};
  instance_ = call_plugin(*name_, "create()", [&] { return desc_->create(&g_services, &config_->config, &err); });
  if (instance_ == nullptr)
    throw PluginError("work manager '" + *name_ + "' could not be created: " +
                      (err.code != 0 ? err.message : "its create() returned NULL without saying why"));
  set_process_backend(*name_);
  counted_remote_ = !in_process() && config_->config.worker_role == 0;
  if (counted_remote_) g_remote_links.fetch_add(1);
}

BackendLink::~BackendLink() {
  // The dashboard's requests call into this link: they are over before it goes.
  watch_.reset();
  if (registered_.load()) {
    LinkRegistry& r = link_registry();
    std::lock_guard<std::mutex> lock(r.mutex);
    for (auto [it, end] = r.links.equal_range(name_); it != end; ++it)
      if (it->second.first == this) {
        r.links.erase(it);
        break;
      }
  }
  if (counted_remote_) g_remote_links.fetch_sub(1);
  if (in_user_code()) {
    // A task or a done-callback let go of the last reference: it may be running on a thread of this
    // very backend, which a waiting shutdown would wait for. A thread of its own, which owns the
    // backend and its configuration from here on, waits and destroys them.
    try {
      shutdown(0);
      Finishers::begin();
      std::thread([name = name_, desc = desc_, instance = instance_, config = std::move(config_), stats = stats_,
                   tag = tag_] {
        wm_error err{};
        if (desc->shutdown(instance, WM_SHUTDOWN_WAIT, &err) != 0)
          log(WM_LOG_ERROR, *name, std::string("shutdown failed: ") + err.message);
        desc->destroy(instance);
        tag->stats.store(nullptr);
        Finishers::end();
      }).detach();
      return;
    } catch (const std::exception& e) {
      log(WM_LOG_ERROR, *name_, std::string("cannot stop the work manager from inside a task or callback (") +
                                    e.what() + "); stopping it in place");
    }
  }
  try {
    shutdown(WM_SHUTDOWN_WAIT);
  } catch (const std::exception& e) {
    log(WM_LOG_ERROR, *name_, std::string("shutdown failed: ") + e.what());
  }
  desc_->destroy(instance_);
  tag_->stats.store(nullptr);  // every task of it has finished; its counters go with it
}

void BackendLink::startup() {
  if (started_.load(std::memory_order_acquire)) return;
  if (stopping_.load()) throw shut_down_error(*name_, "");
  wm_error err{};
  if (call_plugin(*name_, "startup()", [&] { return desc_->startup(instance_, &err); }) != 0) {
    if (stopping_.load()) throw shut_down_error(*name_, "");
    throw PluginError("work manager '" + *name_ + "' failed to start: " + err.message);
  }
  started_.store(true, std::memory_order_release);
}

void BackendLink::shutdown(std::uint32_t flags) {
  if (in_user_code()) flags &= ~std::uint32_t(WM_SHUTDOWN_WAIT);
  stopping_.store(true);
  wm_error err{};
  if (call_plugin(*name_, "shutdown()", [&] { return desc_->shutdown(instance_, flags, &err); }) != 0)
    throw PluginError("work manager '" + *name_ + "' failed to shut down cleanly: " + err.message);
  if ((flags & WM_SHUTDOWN_WAIT) != 0) shut_down();
}

void BackendLink::start_watch(const WatchSettings& settings) { watch_ = std::make_unique<Watch>(shared_from_this(), settings); }

void BackendLink::shut_down() {
  if (summarized_.exchange(true)) return;
  stats_->close();
  end_work_manager_progress(stats_.get());
  if (watch_) watch_->stop();
  // A master's summary, at level info: its tasks, failures, retries and each worker's busy time.
  if (config_->config.worker_role == 0 && log_enabled(WM_LOG_INFO) && is_master()) log_shutdown_summary(stats());
}

void BackendLink::run() {
  wm_error err{};
  if (call_plugin(*name_, "run()", [&] { return desc_->run(instance_, &err); }) != 0)
    throw PluginError("work manager '" + *name_ + "' worker loop failed: " + err.message);
}

bool BackendLink::is_master() const { return desc_->is_master(instance_) != 0; }
unsigned BackendLink::n_workers() const { return desc_->n_workers(instance_); }

void BackendLink::submit(const StatePtr* states, std::size_t n) {
  if (n == 0) return;
  startup();
  auto shutdown_error = [&] {
    return shut_down_error(*name_, n == 1 ? states[0]->display_name() : std::string("<many>"));
  };
  if (stopping_.load()) throw shutdown_error();
  // Claim every task of the batch, or none: a task of the batch that is empty or was submitted
  // already leaves the others as they were.
  auto unmark_first = [&](std::size_t count) {
    for (std::size_t i = 0; i < count; ++i) {
      states[i]->submitted = false;
      states[i]->backend_name = nullptr;  // not this work manager's: a later failure is not counted here
    }
  };
  for (std::size_t i = 0; i < n; ++i) {
    TaskState* s = states[i].get();
    if (s == nullptr) {
      unmark_first(i);
      throw Error("submit: empty task");
    }
    if (s->submitted.exchange(true)) {
      unmark_first(i);
      throw Error("task '" + s->display_name() + "' was submitted already; make a new wm::task for each run");
    }
    s->backend_name = name_;  // the name, and the way to this work manager's counters
    s->wait_spin_us = in_process() ? kLocalWaitSpinMicros : kRemoteWaitSpinMicros;
  }
  auto unmark = [&] { unmark_first(n); };
  if (!in_process()) {
    // Remote backends get bytes: encode now, so a task that cannot travel fails here, in the
    // caller's thread, with its name.
    for (std::size_t i = 0; i < n; ++i) {
      TaskState* s = states[i].get();
      bool ok = false;
      try {
        ok = prepare_request(s);
      } catch (const std::exception& e) {
        unmark();
        throw TaskNotRegisteredError("the arguments of task '" + s->display_name() +
                                     "' could not be encoded: " + e.what());
      }
      if (!ok) {
        unmark();
        throw TaskNotRegisteredError(
            "work manager '" + *name_ + "' runs tasks in other processes, so it only takes tasks "
            "registered by name, and " + s->display_name() + " is not: define the task as a function "
            "at namespace scope, register it with WM_TASK(function_name), and submit the function "
            "(or wm::task_by_name<Result>(\"name\", args...))");
      }
    }
  }
  if (!registered_.load(std::memory_order_relaxed) && !registered_.exchange(true)) {
    LinkRegistry& r = link_registry();
    std::lock_guard<std::mutex> lock(r.mutex);
    r.links.emplace(name_, std::make_pair(this, weak_from_this()));
  }
  std::vector<wm_task*> tasks(n);
  for (std::size_t i = 0; i < n; ++i) {
    intrusive_ptr_add_ref(states[i].get());  // the backend's reference, dropped when it finishes the task
    tasks[i] = task_of(states[i].get());
  }
  // Counted before the backend has them: it may finish them before submit returns (serial).
  if (counting_) stats_->submitted(static_cast<std::int64_t>(n));
  // Refused: the tasks are the caller's again, not submitted, and the backend holds no reference.
  auto take_back = [&] {
    if (counting_) stats_->submitted(-static_cast<std::int64_t>(n));
    unmark();
    for (std::size_t i = 0; i < n; ++i) intrusive_ptr_release(states[i].get());
  };
  wm_error err{};
  int rc = 1;
  try {
    rc = call_plugin(*name_, "submit()", [&] { return desc_->submit(instance_, tasks.data(), n, &err); });
  } catch (...) {
    take_back();
    throw;
  }
  if (rc != 0) {
    take_back();
    if (stopping_.load()) throw shutdown_error();
    throw PluginError("work manager '" + *name_ + "' refused the tasks: " + err.message);
  }
}

bool BackendLink::stop_running(TaskState* s) {
  // Cores of ABI 1.0 never called cancel(): a plugin built for 1.0 may hold anything there.
  if (stopping_.load() || desc_->cancel == nullptr || WM_ABI_MINOR_OF(desc_->abi_version) < 1) return false;
  return call_plugin(*name_, "cancel()", [&] { return desc_->cancel(instance_, task_of(s)); }) == 1;
}

bool stop_running_task(TaskState* s) {
  std::vector<std::shared_ptr<BackendLink>> links;
  {
    LinkRegistry& r = link_registry();
    std::lock_guard<std::mutex> lock(r.mutex);
    for (auto [it, end] = r.links.equal_range(s->backend_name); it != end; ++it)
      if (auto link = it->second.second.lock()) links.push_back(std::move(link));
  }
  // No lock held while the backends are asked: they may run callbacks that cancel too.
  for (const auto& link : links)
    if (link->stop_running(s)) return true;
  return false;
}

namespace {
WorkerState worker_state(std::int32_t state) {
  switch (state) {
    case WM_WORKER_STARTING: return WorkerState::starting;
    case WM_WORKER_BUSY: return WorkerState::busy;
    case WM_WORKER_LOST: return WorkerState::lost;
    default: return WorkerState::idle;
  }
}

// wm_backend_descriptor.stats's visitor: one worker, copied (its strings live during the call only).
void visit_worker(void* context, const wm_worker_stats* in) {
  if (in == nullptr) return;
  try {
    // A backend of another minor may pass a shorter or longer record: what both know is read.
    wm_worker_stats w{};
    std::memcpy(&w, in, std::min<std::size_t>(in->struct_size, sizeof w));
    WorkerStats out;
    out.index = w.where.index;
    out.pid = w.where.pid;
    out.rank = w.where.rank;
    out.host = w.where.host != nullptr && *w.where.host != '\0' ? w.where.host : host_name();
    out.state = worker_state(w.state);
    if (w.task_sequence != 0) {
      out.task_sequence = w.task_sequence;
      out.task_name = w.task_name != nullptr && *w.task_name != '\0' ? w.task_name : "<unregistered callable>";
      out.task_id = task_uuid_of(w.task_sequence);
      out.task_seconds = w.task_seconds;
    }
    out.tasks_done = w.tasks_done;
    out.restarts = w.restarts;
    out.in_flight = w.in_flight;
    out.busy_seconds = w.busy_seconds;
    out.up_seconds = w.up_seconds;
    out.bytes_sent = w.bytes_sent;
    out.bytes_received = w.bytes_received;
    static_cast<std::vector<WorkerStats>*>(context)->push_back(std::move(out));
  } catch (...) {
    // Out of memory: the snapshot goes without this worker.
  }
}
}  // namespace

Stats BackendLink::stats() {
  Stats out;
  stats_->fill(out);
  wm_backend_stats totals{};
  totals.struct_size = sizeof totals;
  std::vector<WorkerStats> workers;
  bool answered = false;
  // Cores of ABI 1.0 never called stats(): a plugin built for 1.0 may hold anything there. No lock
  // is held: the backend may wait for its own thread, which may be running a done-callback.
  if (desc_->stats != nullptr && WM_ABI_MINOR_OF(desc_->abi_version) >= 1)
    answered = call_plugin(*name_, "stats()", [&] { return desc_->stats(instance_, &totals, &visit_worker, &workers); }) == 0;
  const std::uint64_t outstanding = out.submitted > out.finished() ? out.submitted - out.finished() : 0;
  if (answered) {
    out.workers = std::move(workers);
    out.retried = totals.retried;
    out.bytes_sent = totals.bytes_sent;
    out.bytes_received = totals.bytes_received;
    out.in_flight = std::min<std::uint64_t>(totals.in_flight, outstanding);
  } else if (in_process()) {
    stats_->fill_meters(out, n_workers());
  } else if (desc_->stats != nullptr) {
    out.workers_note = "the backend gave no per-worker view (not started yet, or its thread did not answer within 0.5 s)";
  }
  for (WorkerStats& w : out.workers) {
    w.tasks_failed = stats_->failures_of(w.index);
    if (w.up_seconds > 0) w.busy_fraction = std::min(1.0, w.busy_seconds / w.up_seconds);
    if (w.state == WorkerState::busy) ++out.running;
  }
  if (!answered) out.in_flight = std::min<std::uint64_t>(out.running, outstanding);
  out.queued = outstanding - out.in_flight;
  return out;
}

void serve_and_exit(std::shared_ptr<BackendLink> link) {
  const std::string name = link->name();
  // Its log lines say which worker, rank or node it is; a dump signal meant for the master does not
  // end it.
  set_serving_worker();
  ignore_dump_signal_in_worker();
  int code = 0;
  try {
    link->startup();
    link->run();
    link->shutdown(WM_SHUTDOWN_WAIT);
  } catch (const std::exception& e) {
    log(WM_LOG_ERROR, name, std::string("worker failed: ") + e.what());
    code = 1;
  }
  link.reset();  // destroys the backend (an MPI backend finalizes here)
  std::fflush(nullptr);
  std::exit(code);
}

}  // namespace wm::detail

namespace wm {

WorkManager::WorkManager(std::shared_ptr<detail::BackendLink> link) : link_(std::move(link)) {}

WorkManager::~WorkManager() {
  try {
    link_->shutdown();
  } catch (const std::exception& e) {
    detail::log(WM_LOG_ERROR, link_->name(), std::string("shutdown failed: ") + e.what());
  } catch (...) {
  }
}

const std::string& WorkManager::name() const noexcept { return link_->name(); }
void WorkManager::startup() { link_->startup(); }
void WorkManager::shutdown() { link_->shutdown(); }
void WorkManager::run() {
  link_->startup();
  link_->run();
}
bool WorkManager::is_master() const { return link_->is_master(); }
unsigned WorkManager::n_workers() const { return link_->n_workers(); }
bool WorkManager::runs_in_process() const noexcept { return link_->in_process(); }
void WorkManager::submit_states(const detail::StatePtr* states, std::size_t n) {
  // A task that serial runs inside this call may destroy this work manager: the backend lives on
  // until the call is over.
  const std::shared_ptr<detail::BackendLink> link = link_;
  link->submit(states, n);
}
void WorkManager::install_sigint_handler() { detail::install_sigint_for(link_); }
Stats WorkManager::stats() const { return link_->stats(); }

}  // namespace wm
