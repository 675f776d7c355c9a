// wm/sdk/backend.hpp: write a work-manager backend in C++: derive from wm::sdk::Backend, declare it
// with WM_DECLARE_BACKEND, build it with wm_add_backend() from CMake.
//
// @code
//   #include <wm/sdk/backend.hpp>
//   class InlineBackend final : public wm::sdk::Backend {
//    public:
//     using Backend::Backend;
//    protected:
//     void do_submit(wm_task* const* tasks, std::size_t n) override {
//       for (std::size_t i = 0; i < n; ++i) execute(tasks[i]);  // run and complete in this thread
//     }
//     unsigned do_n_workers() const override { return 1; }
//   };
//   WM_DECLARE_BACKEND(inline_demo, InlineBackend, "1.0.0", "Runs each task when it is submitted",
//                      WM_CAP_IN_PROCESS)
// @endcode
//
// Contract (see wm/abi.h): every task accepted by do_submit must be finished exactly once with
// execute(), complete_encoded() or fail(), at the latest before do_shutdown() returns. Hooks may
// throw; the SDK turns exceptions into wm_error for the core. do_startup/do_shutdown run once.
#pragma once

#include <wm/abi.h>
#include <wm/sdk/metadata.hpp>

#include <atomic>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <exception>
#include <mutex>
#include <new>
#include <stdexcept>
#include <string>
#include <utility>

namespace wm::sdk {

/** Base class of a backend. Public entry points are final; subclasses fill the protected hooks. */
class Backend {
 public:
  Backend(const wm_core_services* services, const wm_backend_config* config, const char* name)
      : services_(services), config_(config), name_(name) {}
  Backend(const Backend&) = delete;
  Backend& operator=(const Backend&) = delete;
  virtual ~Backend() = default;

  void startup() {
    std::call_once(started_, [this] { do_startup(); });
  }
  void shutdown() {
    std::lock_guard<std::mutex> lock(shutdown_mutex_);
    if (shut_down_) return;
    do_shutdown();
    shut_down_ = true;
  }
  void submit(wm_task* const* tasks, std::size_t n) { do_submit(tasks, n); }
  void run() { do_run(); }
  bool is_master() const { return do_is_master(); }
  unsigned n_workers() const { return do_n_workers(); }
  const char* name() const { return name_; }

 protected:
  // ---- hooks ----
  virtual void do_startup() {}
  /** Finish (complete or fail) every accepted task, stop the workers. Called once. */
  virtual void do_shutdown() {}
  /** Accept n tasks: either all of them (return) or none (throw). */
  virtual void do_submit(wm_task* const* tasks, std::size_t n) = 0;
  /** Worker role: serve until told to stop. The default (master-only backends) returns. */
  virtual void do_run() {}
  virtual bool do_is_master() const { return true; }
  virtual unsigned do_n_workers() const = 0;

  // ---- services ----
  const wm_core_services& services() const { return *services_; }
  const wm_backend_config& config() const { return *config_; }
  /** Workers asked for by the user (--n-workers / WM_N_WORKERS); 0 means "your default". */
  unsigned requested_workers() const { return config_->n_workers; }
  bool worker_role() const { return config_->worker_role != 0; }

  /** Runs a task in this thread and completes its future. */
  void execute(wm_task* task) const { services_->execute(task); }
  /** The encoded request of a task; valid until the task is finished. Throws if it cannot run remotely. */
  std::pair<const void*, std::size_t> encode(wm_task* task) const {
    const void* data = nullptr;
    std::size_t size = 0;
    wm_error err{};
    if (services_->encode(task, &data, &size, &err) != 0) throw std::runtime_error(err.message);
    return {data, size};
  }
  /** Size of the task's encoded request. Throws if it cannot run remotely. */
  std::size_t encoded_size(wm_task* task) const {
    if (services_->encoded_size == nullptr) return encode(task).second;  // an older core
    std::size_t size = 0;
    wm_error err{};
    if (services_->encoded_size(task, &size, &err) != 0) throw std::runtime_error(err.message);
    return size;
  }
  /** Appends the task's encoded request to out; a large one is encoded straight into it. Throws
   *  if it cannot run remotely or out cannot grow. */
  void encode_into(wm_task* task, wm_byte_buffer& out) const {
    wm_error err{};
    if (services_->encode_into != nullptr) {
      if (services_->encode_into(task, &out, &err) != 0) throw std::runtime_error(err.message);
      return;
    }
    const auto [data, size] = encode(task);  // an older core: copy its encoded request
    append(out, data, size);
  }
  /** Worker side: runs an encoded request and appends the encoded reply to out. */
  void execute_encoded_into(const void* request, std::size_t size, wm_byte_buffer& out) const {
    if (services_->execute_encoded_into != nullptr) return services_->execute_encoded_into(request, size, &out);
    wm_reply_sink sink{&out, [](void* context, const void* data, std::size_t n) {
                         try {
                           append(*static_cast<wm_byte_buffer*>(context), data, n);
                         } catch (...) {
                           // Out of memory: the reply stays short, and the master reports it as corrupt.
                         }
                       }};
    services_->execute_encoded(request, size, &sink);
  }
  /** Appends n bytes to a byte buffer through its grow callback; throws std::bad_alloc if it cannot grow. */
  static void append(wm_byte_buffer& out, const void* data, std::size_t n) {
    if (out.capacity - out.size < n && out.grow(&out, out.size + n) != 0) throw std::bad_alloc();
    if (n != 0) std::memcpy(out.data + out.size, data, n);
    out.size += n;
  }
  void complete_encoded(wm_task* task, const void* reply, std::size_t size) const {
    services_->complete_encoded(task, reply, size);
  }
  void fail(wm_task* task, wm_failure_kind kind, const std::string& message) const {
    services_->fail(task, kind, message.c_str());
  }
  /** Fails a task that ran (or was running) on a known worker: the failure record then names
   *  that worker's index and pid, and how many attempts were made. */
  void fail(wm_task* task, wm_failure_kind kind, const std::string& message, std::int32_t worker_index,
            std::int64_t pid, std::uint32_t attempts = 1) const {
    if (services_->fail_at != nullptr)
      services_->fail_at(task, kind, message.c_str(), worker_index, pid, attempts);
    else
      services_->fail(task, kind, message.c_str());
  }
  void log(wm_log_level level, const std::string& message) const {
    services_->log(level, name_, message.c_str());
  }

  /** The resolved value of a declared option (the core validated type and range already). */
  const wm_option_value& option(const char* option_name) const {
    for (std::size_t i = 0; i < config_->n_options; ++i)
      if (std::strcmp(config_->options[i].name, option_name) == 0) return config_->options[i];
    throw std::logic_error(std::string("backend option not declared: ") + option_name);
  }
  std::int64_t option_int(const char* n) const { return option(n).int_value; }
  double option_double(const char* n) const { return option(n).double_value; }
  bool option_bool(const char* n) const { return option(n).bool_value != 0; }
  std::string option_string(const char* n) const { return option(n).string_value; }

 private:
  const wm_core_services* services_;
  const wm_backend_config* config_;
  const char* name_;
  std::once_flag started_;
  std::mutex shutdown_mutex_;
  bool shut_down_ = false;
};

namespace detail {

inline void set_error(wm_error* err, const char* what) {
  if (err == nullptr) return;
  err->code = 1;
  std::strncpy(err->message, what, sizeof err->message - 1);
  err->message[sizeof err->message - 1] = '\0';
}

// Runs fn, turning any exception into a wm_error: nothing thrown crosses the C boundary.
template <class Fn>
int guarded(wm_error* err, Fn&& fn) noexcept {
  try {
    fn();
    return 0;
  } catch (const std::exception& e) {
    set_error(err, e.what());
  } catch (...) {
    set_error(err, "unknown exception in backend");
  }
  return 1;
}

inline Backend* self(wm_backend* b) { return reinterpret_cast<Backend*>(b); }

// Name of the backend class B; WM_DECLARE_BACKEND specialises it.
template <class B>
const char* backend_name();

template <class B>
wm_backend_descriptor make_descriptor(const char* name, const char* version, std::uint64_t caps) {
  wm_backend_descriptor d{};
  d.abi_version = WM_ABI_VERSION;
  d.struct_size = sizeof(wm_backend_descriptor);
  d.name = name;
  d.version = version;
  d.capabilities = caps;
  d.create = [](const wm_core_services* s, const wm_backend_config* c, wm_error* err) -> wm_backend* {
    Backend* created = nullptr;
    // The name pointer refers to the descriptor's static string, which lives as long as the library.
    guarded(err, [&] { created = new B(s, c, backend_name<B>()); });
    return reinterpret_cast<wm_backend*>(created);
  };
  d.destroy = [](wm_backend* b) { delete self(b); };
  d.startup = [](wm_backend* b, wm_error* err) { return guarded(err, [&] { self(b)->startup(); }); };
  d.shutdown = [](wm_backend* b, wm_error* err) { return guarded(err, [&] { self(b)->shutdown(); }); };
  d.submit = [](wm_backend* b, wm_task* const* t, std::size_t n, wm_error* err) {
    return guarded(err, [&] { self(b)->submit(t, n); });
  };
  d.run = [](wm_backend* b, wm_error* err) { return guarded(err, [&] { self(b)->run(); }); };
  d.is_master = [](wm_backend* b) -> int { return self(b)->is_master() ? 1 : 0; };
  d.n_workers = [](wm_backend* b) -> std::uint32_t { return self(b)->n_workers(); };
  return d;
}

}  // namespace detail
}  // namespace wm::sdk

/**
 * Declares the one backend of a plugin library.
 *   NAME         identifier; the backend's name (WM_WORK_MANAGER=NAME), a-z 0-9 _
 *   CLASS        a wm::sdk::Backend subclass constructible from (services, config, name)
 *   VERSION      text, e.g. "1.2.0"
 *   DESCRIPTION  one line
 *   ...          wm_capability bits (CAPS), then the options if any: wm::sdk::option_int(...),
 *                option_bool(...), ... (CAPS is part of the variadic list so that a backend without
 *                options compiles cleanly under -Wpedantic)
 * Use it once, at global scope. It emits the metadata record in the WM_PLUGIN_SECTION section (read by discovery without
 * loading the library) and the extern "C" entry symbol wm_backend_entry_NAME.
 */
#define WM_DECLARE_BACKEND(NAME, CLASS, VERSION, DESCRIPTION, ...)                                   \
  template <>                                                                                        \
  inline const char* wm::sdk::detail::backend_name<CLASS>() {                                        \
    return #NAME;                                                                                    \
  }                                                                                                  \
  [[gnu::section(WM_PLUGIN_SECTION), gnu::used, gnu::retain]] constexpr wm_plugin_metadata          \
      wm_plugin_metadata_##NAME = ::wm::sdk::make_metadata(                                          \
          #NAME, VERSION, DESCRIPTION, "wm_backend_entry_" #NAME, __VA_ARGS__);                      \
  extern "C" [[gnu::visibility("default")]] const wm_backend_descriptor* wm_backend_entry_##NAME(   \
      void) {                                                                                        \
    static const wm_backend_descriptor descriptor =                                                  \
        ::wm::sdk::detail::make_descriptor<CLASS>(#NAME, VERSION, wm_plugin_metadata_##NAME.capabilities); \
    return &descriptor;                                                                              \
  }
