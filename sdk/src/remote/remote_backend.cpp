// remote_backend.cpp: the Backend hooks of every remote backend, on the dispatcher and the worker loop.
#include <wm/sdk/remote/remote_backend.hpp>

#include <unistd.h>

#include <stdexcept>

namespace wm::sdk::remote {

RemoteBackend::RemoteBackend(const wm_core_services* services, const wm_backend_config* config, const char* name)
    : Backend(services, config, name), options_(remote::engine_options(*config, name)) {
  loop_options_.spin_us = options_.spin_us;
}

RemoteBackend::~RemoteBackend() = default;

WorkerIdentity RemoteBackend::worker_identity() const {
  return WorkerIdentity{config().worker_index, static_cast<std::int64_t>(getpid()), -1, this_host()};
}

std::shared_ptr<Dispatcher> RemoteBackend::current() const {
  std::lock_guard<std::mutex> lock(mutex_);
  return dispatcher_;
}

void RemoteBackend::do_startup() {
  if (worker_role()) return;
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
}

void RemoteBackend::do_stop(bool now) {
  std::shared_ptr<Dispatcher> d;
  {
    std::lock_guard<std::mutex> lock(mutex_);
    stopped_ = true;
    stop_now_ = stop_now_ || now;
    d = dispatcher_;
  }
  if (d) d->stop(now);
}

void RemoteBackend::do_join() {
  if (auto d = current()) d->join();
}

void RemoteBackend::do_submit(wm_task* const* tasks, std::size_t n) {
  if (worker_role()) throw std::runtime_error(std::string("a ") + name() + " worker does not accept tasks");
  auto d = current();
  if (!d) throw std::runtime_error(std::string("the ") + name() + " work manager is not started");
  d->submit(tasks, n);
}

void RemoteBackend::do_run() {
  if (!worker_role()) return;
  auto channel = make_worker_channel();
  run_worker_loop(*channel, services(), name(), worker_identity(), config().worker_seed, loop_options_);
}

unsigned RemoteBackend::do_n_workers() const {
  if (auto d = current()) return d->n_workers();
  return planned_workers();
}

}  // namespace wm::sdk::remote
