// backend_link.cpp: loading the chosen backend plugin, the core's service table, and WorkManager.
#include "backend_link.hpp"

#include "internal.hpp"

#include <wm/work_manager.hpp>

#include <dlfcn.h>
#include <fcntl.h>
#include <signal.h>
#include <unistd.h>

#include <cerrno>
#include <climits>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <map>
#include <set>
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

void svc_execute(wm_task* t) {
  TaskState* s = state_of(t);
  execute_local(s);
  intrusive_ptr_release(s);
}

// Writes a request (StringSink) until a block of kDeferBytes or more comes, then only counts: a
// large request is measured at submit and encoded when sent, straight into the backend's storage.
class RequestSink final : public BlockSink {
 public:
  static constexpr std::size_t kDeferBytes = std::size_t(1) << 20;
  explicit RequestSink(std::string& out) : copy_(out) {}
  bool deferred() const { return deferred_; }
  std::size_t total() const { return total_; }

 protected:
  std::streamsize xsputn(const char* p, std::streamsize n) override {
    const auto k = static_cast<std::size_t>(n);
    if (k >= kDeferBytes) deferred_ = true;
    if (!deferred_) copy_.sputn(p, n);
    total_ += k;
    return n;
  }

 private:
  StringSink copy_;
  bool deferred_ = false;
  std::size_t total_ = 0;
};

// Encodes (or, if large, measures) a task's request at submit. False: it cannot run by name.
// Throws what encoding throws.
bool prepare_request(TaskState* s) {
  if (!s->request.empty() || s->deferred_size != 0) return true;
  RequestSink sink(s->request);
  if (!s->encode_request(sink)) return false;
  if (sink.deferred()) {
    std::string().swap(s->request);
    s->deferred_size = sink.total();
  }
  return true;
}

// prepare_request, with the error a backend reports for a task that cannot run by name.
bool prepared(TaskState* s, wm_error* err) {
  if (prepare_request(s)) return true;
  set_error(err, "task '" + s->display_name() + "' cannot run by name: register it with WM_TASK");
  return false;
}

int encode_failed(TaskState* s, wm_error* err, const char* what) {
  set_error(err, "encoding task '" + s->display_name() + "' failed: " + what);
  return 1;
}

// The request bytes of a task, encoded now if they were deferred (a backend that uses encode).
int svc_encode(wm_task* t, const void** data, std::size_t* size, wm_error* err) {
  TaskState* s = state_of(t);
  try {
    if (!prepared(s, err)) return 1;
    if (s->deferred_size != 0) {
      StringSink sink(s->request);
      s->encode_request(sink);
      s->deferred_size = 0;
    }
  } catch (const std::exception& e) {
    return encode_failed(s, err, e.what());
  }
  *data = s->request.data();
  *size = s->request.size();
  return 0;
}

int svc_encoded_size(wm_task* t, std::size_t* size, wm_error* err) {
  TaskState* s = state_of(t);
  try {
    if (!prepared(s, err)) return 1;
  } catch (const std::exception& e) {
    return encode_failed(s, err, e.what());
  }
  *size = s->deferred_size != 0 ? s->deferred_size : s->request.size();
  return 0;
}

int svc_encode_into(wm_task* t, wm_byte_buffer* out, wm_error* err) {
  TaskState* s = state_of(t);
  const std::size_t start = out->size;
  try {
    if (!prepared(s, err)) return 1;
    BufferSink sink(*out);
    if (s->deferred_size == 0) {
      sink.sputn(s->request.data(), static_cast<std::streamsize>(s->request.size()));
      return 0;
    }
    s->encode_request(sink);
    if (out->size - start != s->deferred_size) {
      set_error(err, "the arguments of task '" + s->display_name() + "' encoded to " +
                         std::to_string(s->deferred_size) + " bytes at submit and to " +
                         std::to_string(out->size - start) +
                         " bytes when sent: their serialize() must not depend on anything but their value");
      out->size = start;
      return 1;
    }
  } catch (const std::exception& e) {
    out->size = start;
    return encode_failed(s, err, e.what());
  }
  return 0;
}

void svc_complete_encoded(wm_task* t, const void* reply, std::size_t size) {
  TaskState* s = state_of(t);
  complete_from_reply(s, static_cast<const char*>(reply), size);
  intrusive_ptr_release(s);
}

FailureKind kind_of(std::int32_t kind) {
  switch (kind) {
    case WM_FAIL_WORKER_LOST: return FailureKind::worker_lost;
    case WM_FAIL_TIMEOUT: return FailureKind::timeout;
    case WM_FAIL_SHUTDOWN: return FailureKind::shutdown;
    case WM_FAIL_PROTOCOL: return FailureKind::protocol;
    default: return FailureKind::backend;
  }
}

void svc_fail_at(wm_task* t, std::int32_t kind, const char* message, std::int32_t worker_index,
                 std::int64_t pid, std::uint32_t attempts) {
  TaskState* s = state_of(t);
  finish_with(s, kind_of(kind), message != nullptr ? message : "", worker_index, pid, attempts);
  intrusive_ptr_release(s);
}

// fail() is fail_at() without knowing where the task ran.
void svc_fail(wm_task* t, std::int32_t kind, const char* message) { svc_fail_at(t, kind, message, -1, 0, 1); }

// What submit() and startup() throw once the work manager is shut down.
ShutdownError shut_down_error(const std::string& backend, const std::string& task) {
  ErrorInfo info;
  info.kind = FailureKind::shutdown;
  info.message = "work manager '" + backend + "' was shut down; create a new one to submit more tasks";
  info.task_name = task;
  info.host = host_name();
  info.pid = getpid();
  info.backend = backend;
  return ShutdownError(std::move(info));
}

const char* svc_task_name(wm_task* t) {
  const TaskState* s = state_of(t);
  return s->registered != nullptr ? s->registered->name : "";
}

std::uint64_t svc_task_sequence(wm_task* t) { return state_of(t)->sequence; }

void svc_set_worker_index(std::int32_t index) { set_worker_index(index); }

void svc_log(std::int32_t level, const char* backend, const char* message) {
  log(level, backend != nullptr ? backend : "backend", message != nullptr ? message : "");
}

const wm_core_services g_services = [] {
  wm_core_services s{};
  s.abi_version = WM_ABI_VERSION;
  s.struct_size = sizeof(wm_core_services);
  s.execute = &svc_execute;
  s.encode = &svc_encode;
  s.complete_encoded = &svc_complete_encoded;
  s.fail = &svc_fail;
  s.task_name = &svc_task_name;
  s.task_sequence = &svc_task_sequence;
  s.execute_encoded = &execute_encoded;
  s.set_worker_index = &svc_set_worker_index;
  s.log = &svc_log;
  s.fail_at = &svc_fail_at;
  s.encoded_size = &svc_encoded_size;
  s.encode_into = &svc_encode_into;
  s.execute_encoded_into = &execute_encoded_into;
  return s;
}();

// Loaded plugin libraries, by path. Never unloaded (see DESIGN: dlclose after MPI_Finalize crashes,
// and futures, exception objects and callbacks may point into the library).
std::mutex g_load_mutex;
std::map<std::string, const wm_backend_descriptor*>& loaded_libraries() {
  static auto* m = new std::map<std::string, const wm_backend_descriptor*>;
  return *m;
}

const wm_backend_descriptor* load_descriptor(const ScannedPlugin& plugin) {
  std::lock_guard<std::mutex> lock(g_load_mutex);
  auto& loaded = loaded_libraries();
  if (auto it = loaded.find(plugin.path); it != loaded.end()) return it->second;
  const std::string name = plugin.meta.name;
  // RTLD_NOW: a missing symbol fails here with a message, not later with an uncatchable exit.
  // RTLD_LOCAL: one plugin's helpers never bind to another's.
  void* handle = dlopen(plugin.path.c_str(), RTLD_NOW | RTLD_LOCAL);
  if (handle == nullptr) {
    const char* e = dlerror();
    throw PluginError("cannot load work manager '" + name + "' from " + plugin.path + ": " +
                      (e ? e : "unknown loader error") +
                      ". Check that the libraries it needs are installed (ldd " + plugin.path + ").");
  }
  void* sym = dlsym(handle, plugin.meta.entry_symbol);
  if (sym == nullptr)
    throw PluginError("work manager '" + name + "' in " + plugin.path + " does not export its entry " +
                      "symbol " + plugin.meta.entry_symbol + ": rebuild it with WM_DECLARE_BACKEND");
  auto entry = reinterpret_cast<wm_backend_entry_fn>(sym);
  const wm_backend_descriptor* d = entry();
  if (d == nullptr || d->abi_version != WM_ABI_VERSION || d->struct_size < sizeof(wm_backend_descriptor))
    throw PluginError("work manager '" + name + "' in " + plugin.path +
                      " returned a descriptor of another ABI version: rebuild it against this SDK");
  if (d->name == nullptr || name != d->name)
    throw PluginError("work manager in " + plugin.path + " calls itself '" + (d->name ? d->name : "") +
                      "' in its descriptor but '" + name + "' in its metadata");
  if (!d->create || !d->destroy || !d->startup || !d->shutdown || !d->submit || !d->run ||
      !d->is_master || !d->n_workers)
    throw PluginError("work manager '" + name + "' in " + plugin.path + " lacks entry points");
  loaded.emplace(plugin.path, d);
  return d;
}

}  // namespace

const wm_core_services* core_services() { return &g_services; }

const std::string* intern_name(const std::string& name) {
  static std::mutex m;
  static auto* names = new std::set<std::string>;
  std::lock_guard<std::mutex> lock(m);
  return &*names->insert(name).first;
}

std::string default_plugin_directory() {
  Dl_info info{};
  if (dladdr(reinterpret_cast<void*>(&default_plugin_directory), &info) == 0 || info.dli_fname == nullptr)
    return {};
  std::error_code ec;
  std::filesystem::path lib = std::filesystem::canonical(info.dli_fname, ec);
  if (ec) lib = info.dli_fname;
  return (lib.parent_path() / "wm" / "plugins").string();
}

std::vector<std::string> plugin_directories() {
  std::vector<std::string> dirs;
  std::string d = default_plugin_directory();
  if (!d.empty()) dirs.push_back(d);
  if (const char* p = std::getenv("WM_PLUGIN_PATH")) {
    std::string path = p;
    std::size_t start = 0;
    while (start <= path.size()) {
      std::size_t end = path.find(':', start);
      if (end == std::string::npos) end = path.size();
      if (end > start) dirs.push_back(path.substr(start, end - start));
      start = end + 1;
    }
  }
  return dirs;
}

std::string host_program_path() {
  char buf[PATH_MAX + 1] = {};
  ssize_t n = readlink("/proc/self/exe", buf, PATH_MAX);
  return n > 0 ? std::string(buf, static_cast<std::size_t>(n)) : std::string();
}

void BackendConfigStorage::finalize() {
  values.clear();
  for (const ResolvedOption& o : options)
    values.push_back(wm_option_value{o.name.c_str(), o.type, o.bool_value, o.int_value, o.double_value,
                                     o.text.c_str(), o.source.c_str()});
  library_ptrs.clear();
  for (const auto& l : libraries) library_ptrs.push_back(l.c_str());
  config.struct_size = sizeof(wm_backend_config);
  config.options = values.data();
  config.n_options = values.size();
  config.host_program = host_program.c_str();
  config.worker_arg = worker_arg.c_str();
  config.task_libraries = library_ptrs.data();
  config.n_task_libraries = library_ptrs.size();
}

BackendLink::BackendLink(const ScannedPlugin& plugin, std::unique_ptr<BackendConfigStorage> config)
    : name_(intern_name(plugin.meta.name)), config_(std::move(config)) {
  desc_ = load_descriptor(plugin);
  caps_ = desc_->capabilities;
  wm_error err{};
  instance_ = desc_->create(&g_services, &config_->config, &err);
  if (instance_ == nullptr)
    throw PluginError("work manager '" + *name_ + "' could not be created: " +
                      (err.code != 0 ? err.message : "its create() returned nothing"));
  set_process_backend(*name_);
}

BackendLink::~BackendLink() {
  try {
    shutdown();
  } catch (const std::exception& e) {
    log(WM_LOG_ERROR, *name_, std::string("shutdown failed: ") + e.what());
  }
  desc_->destroy(instance_);
}

void BackendLink::startup() {
  if (started_.load(std::memory_order_acquire)) return;
  std::lock_guard<std::mutex> lock(lifecycle_);
  if (started_.load(std::memory_order_relaxed)) return;
  if (shut_down_.load())
    throw shut_down_error(*name_, "");
  wm_error err{};
  if (desc_->startup(instance_, &err) != 0)
    throw PluginError("work manager '" + *name_ + "' failed to start: " + err.message);
  started_.store(true, std::memory_order_release);
}

void BackendLink::shutdown() {
  std::lock_guard<std::mutex> lock(lifecycle_);
  if (shut_down_.exchange(true)) return;
  wm_error err{};
  if (desc_->shutdown(instance_, &err) != 0)
    throw PluginError("work manager '" + *name_ + "' failed to shut down cleanly: " + err.message);
}

void BackendLink::run() {
  wm_error err{};
  if (desc_->run(instance_, &err) != 0)
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
  if (shut_down_.load()) throw shutdown_error();
  for (std::size_t i = 0; i < n; ++i) {
    TaskState* s = states[i].get();
    if (s == nullptr) throw Error("submit: empty task");
    if (s->submitted.exchange(true))
      throw Error("task '" + s->display_name() + "' was submitted already; make a new wm::task for each run");
    s->backend_name = name_;
  }
  if (!in_process()) {
    // Remote backends get bytes: encode now, so a task that cannot travel fails here, in the
    // caller's thread, with its name.
    for (std::size_t i = 0; i < n; ++i) {
      TaskState* s = states[i].get();
      bool ok = false;
      try {
        ok = prepare_request(s);
      } catch (const std::exception& e) {
        for (std::size_t j = 0; j < n; ++j) states[j]->submitted = false;
        throw TaskNotRegisteredError("the arguments of task '" + s->display_name() +
                                     "' could not be encoded: " + e.what());
      }
      if (!ok) {
        for (std::size_t j = 0; j < n; ++j) states[j]->submitted = false;
        throw TaskNotRegisteredError(
            "work manager '" + *name_ + "' runs tasks in other processes, so it only takes tasks "
            "registered by name, and " + s->display_name() + " is not: define the task as a function "
            "at namespace scope, register it with WM_TASK(function_name), and submit the function "
            "(or wm::task_by_name<Result>(\"name\", args...))");
      }
    }
  }
  std::vector<wm_task*> tasks(n);
  for (std::size_t i = 0; i < n; ++i) {
    intrusive_ptr_add_ref(states[i].get());  // the backend's reference, dropped when it finishes the task
    tasks[i] = task_of(states[i].get());
  }
  wm_error err{};
  if (desc_->submit(instance_, tasks.data(), n, &err) != 0) {
    for (std::size_t i = 0; i < n; ++i) {
      states[i]->submitted = false;
      intrusive_ptr_release(states[i].get());
    }
    if (shut_down_.load()) throw shutdown_error();
    throw PluginError("work manager '" + *name_ + "' refused the tasks: " + err.message);
  }
}

// ---- Ctrl-C ----
namespace {
int g_sigint_pipe[2] = {-1, -1};
struct sigaction g_previous_sigint;
std::mutex g_sigint_mutex;
std::vector<std::weak_ptr<BackendLink>>& sigint_links() {
  static auto* v = new std::vector<std::weak_ptr<BackendLink>>;
  return *v;
}

void on_sigint(int) {
  const int saved = errno;
  char b = 1;
  [[maybe_unused]] ssize_t r = write(g_sigint_pipe[1], &b, 1);
  errno = saved;
}

// The handler only writes a byte; this thread does the work a signal handler may not do.
void sigint_thread() {
  char b;
  while (read(g_sigint_pipe[0], &b, 1) < 0 && errno == EINTR) {
  }
  std::vector<std::shared_ptr<BackendLink>> links;
  {
    std::lock_guard<std::mutex> lock(g_sigint_mutex);
    for (auto& w : sigint_links())
      if (auto l = w.lock()) links.push_back(std::move(l));
  }
  log(WM_LOG_WARNING, "core", "interrupted (SIGINT): shutting down the work manager");
  for (auto& l : links) {
    try {
      l->shutdown();
    } catch (const std::exception& e) {
      log(WM_LOG_ERROR, l->name(), e.what());
    }
  }
  // Chain: put back the handler that was there before and deliver the signal to it.
  sigaction(SIGINT, &g_previous_sigint, nullptr);
  kill(getpid(), SIGINT);
}
}  // namespace

void install_sigint_for(const std::shared_ptr<BackendLink>& link) {
  std::lock_guard<std::mutex> lock(g_sigint_mutex);
  sigint_links().push_back(link);
  if (g_sigint_pipe[0] >= 0) return;
  if (pipe2(g_sigint_pipe, O_CLOEXEC) != 0) throw Error("install_sigint_handler: pipe failed");
  struct sigaction sa{};
  sa.sa_handler = &on_sigint;
  sigemptyset(&sa.sa_mask);
  sa.sa_flags = SA_RESTART;
  sigaction(SIGINT, &sa, &g_previous_sigint);
  std::thread(sigint_thread).detach();
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
void WorkManager::submit_states(const detail::StatePtr* states, std::size_t n) { link_->submit(states, n); }
void WorkManager::install_sigint_handler() { detail::install_sigint_for(link_); }

}  // namespace wm
