// SPDX-License-Identifier: MIT
// remote_backend.cpp: the lifecycle of every remote backend's roles (see remote_backend.hpp).
#include <wm/sdk/remote/remote_backend.hpp>

#include <unistd.h>

#include <stdexcept>

namespace wm::sdk::remote {

RemoteBackend::RemoteBackend(const wm_core_services* services, const wm_backend_config* config, const char* name)
    : Backend(services, config, name), options_(remote::engine_options(*config, name)), role_(Role::master) {}

RemoteBackend::~RemoteBackend() = default;

WorkerIdentity RemoteBackend::worker_identity() const {
  return WorkerIdentity{-1, static_cast<std::int64_t>(getpid()), -1, this_host()};
}

std::unique_ptr<Port> RemoteBackend::make_port() { return local_process_port(config().worker_arg, name()); }

std::unique_ptr<Uplink> RemoteBackend::make_uplink() {
  throw std::logic_error(std::string("the ") + name() + " work manager has no relay role");
}

Log RemoteBackend::logger() const {
  return [this](wm_log_level level, const std::string& message) { log(level, message); };
}

LocalProcessOptions RemoteBackend::local_processes(unsigned n) const {
  LocalProcessOptions o;
  o.n_workers = n;
  o.host_program = config().host_program != nullptr ? config().host_program : "";
  o.worker_backend = name();
  o.services = &services();
  for (std::size_t i = 0; i < config().n_task_libraries; ++i) o.task_libraries.emplace_back(config().task_libraries[i]);
  return o;
}

std::shared_ptr<Dispatcher> RemoteBackend::current() const {
  std::lock_guard<std::mutex> lock(mutex_);
  return dispatcher_;
}

bool RemoteBackend::wait_for_workers(unsigned n, double seconds) {
  auto d = current();
  return d && d->wait_for_workers(n, seconds);
}

void RemoteBackend::do_startup() {
  prepare();
  role_ = decide_role();
  decided_ = true;
  if (role_ != Role::master) return;  // a worker or relay serves in run()
  auto d = std::make_shared<Dispatcher>(services(), name(), make_transport(), options_);
  {
    // Published before it starts, so that a shutdown during startup reaches it.
    std::lock_guard<std::mutex> lock(mutex_);
    if (stopped_) throw std::runtime_error(std::string("the ") + name() + " work manager was shut down");
    dispatcher_ = d;
  }
  try {
    d->start();
  } catch (...) {
    // Left restartable: a later startup() makes a new dispatcher and transport.
    std::lock_guard<std::mutex> lock(mutex_);
    if (!stopped_) dispatcher_.reset();
    throw;
  }
  started();
}

void RemoteBackend::do_stop(bool now) {
  std::shared_ptr<Dispatcher> d;
  {
    std::lock_guard<std::mutex> lock(mutex_);
    stopped_ = true;
    d = dispatcher_;
  }
  if (d) d->stop(now);
}

void RemoteBackend::do_join() {
  auto d = current();
  if (!d) return;
  d->join();
  joined(d->transport());
}

void RemoteBackend::do_submit(wm_task* const* tasks, std::size_t n) {
  if (role_ != Role::master)
    throw std::runtime_error(std::string("this process is a worker of the ") + name() +
                             " work manager: only its master submits tasks");
  auto d = current();
  if (!d) throw std::runtime_error(std::string("the ") + name() + " work manager is not started");
  d->submit(tasks, n);
}

void RemoteBackend::do_run() {
  if (!decided_ || role_ == Role::master) return;
  if (role_ == Role::relay) {
    run_relay(*make_uplink(), local_processes(0), services(), options_, logger());
    return;
  }
  auto port = make_port();
  const WorkerEnd end = run_worker_loop(*port, services(), name(), worker_identity(), loop_options_);
  served(*port, end);
}

bool RemoteBackend::do_cancel_running(wm_task* task) {
  auto d = role_ == Role::master ? current() : nullptr;
  return d && d->stop_running(task_info(task).sequence);
}

bool RemoteBackend::do_stats(BackendStats& out) {
  auto d = role_ == Role::master ? current() : nullptr;
  return d && d->snapshot(out);
}

bool RemoteBackend::do_is_master() const { return decided_ ? role_ == Role::master : !worker_role(); }

unsigned RemoteBackend::do_n_workers() const {
  if (auto d = current()) return d->n_workers();
  return planned_workers();
}

}  // namespace wm::sdk::remote
