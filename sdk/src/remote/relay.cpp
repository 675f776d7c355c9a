// SPDX-License-Identifier: MIT
// relay.cpp: a relay between a master and local workers of its own (see relay.hpp).
#include <wm/sdk/remote/relay.hpp>

#include "link.hpp"

#include <malloc.h>
#include <sched.h>

#include <algorithm>
#include <chrono>
#include <cstddef>
#include <cstring>
#include <deque>
#include <memory>
#include <stdexcept>

namespace wm::sdk::remote {

void keep_freed_memory(int mib) {
  if (mib <= 0) return;
  // Freed memory stays for the next task instead of being unmapped: large arguments and results
  // then reuse warm pages (a fresh page fault costs 10-30 us on the VMs measured, 0.4 s for
  // 64 MiB). Large blocks come from the heap (glibc would map them fresh every time).
  mallopt(M_MMAP_MAX, 0);
  mallopt(M_TRIM_THRESHOLD, std::min(mib, 2047) << 20);
}

namespace {

using Clock = std::chrono::steady_clock;

class Relay;

// One link to the master (one local worker), as the Port the engine's worker side writes through.
class UpLink final : public Port, public WorkerLinkEvents {
 public:
  UpLink(Relay& relay, Uplink& uplink, WorkerId w, std::size_t large)
      : relay_(relay), uplink_(uplink), w_(w), link(*this, *this, large) {}

  Capabilities capabilities() const override { return uplink_.capabilities(); }
  void start(PortHost&) override {}
  int progress(int) override { return 0; }  // the relay drives its uplink itself
  Buffer& outbox() override { return uplink_.outbox(w_); }
  bool flush() override {
    uplink_.flush(w_);
    return true;
  }
  const char* lent_request(std::size_t size) override { return uplink_.lent_request(w_, size); }
  bool lend_reply(std::size_t size, char*& data, std::size_t& capacity) override {
    return uplink_.lend_reply(w_, size, data, capacity);
  }
  bool send_payload(const char* data, std::size_t size) override {
    // A copy: the reply sits in the local worker's storage, which its next reply reuses.
    Buffer b = std::move(spare);
    b.size = 0;
    b.append(data, size);
    uplink_.send_payload(w_, std::move(b));
    return true;
  }

  Relay& relay_;
  Uplink& uplink_;
  const WorkerId w_;
  WorkerLink link;
  Buffer spare;     // a reply's payload buffer, back from the uplink
  Buffer incoming;  // a request received as a payload
  Incoming due{};   // the task whose payload is being received
  bool receiving = false;

 private:
  void setup(const WorkerSetup& s, const char*, std::size_t) override;
  void task(const Incoming& t) override;
  void task_payload(const Incoming& t) override;
  void task_ref(const Incoming&, const wm_shared_ref&) override {
    broken("a request in a relay's shared memory came from the master");
  }
  void stop() override;
  void broken(const std::string& why) override;
};

// The node's own workers get their share of the node's own GPUs and cores (the core plans over them).
LocalProcessOptions with_services(LocalProcessOptions o, const wm_core_services& services) {
  if (o.services == nullptr) o.services = &services;
  return o;
}

class Relay final : public MasterLinkEvents {
 public:
  Relay(Uplink& uplink, LocalProcessOptions local, const wm_core_services& services, const EngineOptions& options,
        Log log)
      : uplink_(uplink),
        local_options_(with_services(std::move(local), services)),
        options_(options),
        log_(std::move(log)),
        services_(services),
        large_(static_cast<std::size_t>(services.large_payload_bytes)),
        up_host_(*this),
        down_host_(*this) {}

  ~Relay() { local_.reset(); }  // kills and reaps every local worker still there

  void run();

  // ---- what the master sends link w (from UpLink) ----
  void setup(WorkerId w, const WorkerSetup& s);
  void task(WorkerId w, const Incoming& t);
  void task_payload(WorkerId w, const Incoming& t);
  void stop(WorkerId w);
  /** Sends local worker w a reference to request t in pooled (this process's shared) memory, and
   *  holds that memory until the reply; false if the memory is not shared (the caller sends bytes). */
  bool send_in_place(WorkerId w, const Incoming& t, Buffer& pooled);
  [[noreturn]] void master_broke(WorkerId w, const std::string& why) {
    throw std::runtime_error("the master sent bytes that are not the protocol on the link of worker " +
                             std::to_string(w) + " (" + why + ")");
  }

 private:
  struct Down {
    std::unique_ptr<MasterLink> link;
    std::deque<Incoming> inflight;  // tasks sent to the local worker: their sequence and the master's flags
    // Requests the worker reads in place from this process's pooled memory (kFrameTaskRef), by
    // sequence: kept until their replies come.
    std::deque<std::pair<std::uint64_t, Buffer>> held;
    bool alive = false;
  };

  // The uplink's events.
  struct UpHost final : UplinkHost {
    explicit UpHost(Relay& r) : r(r) {}
    Inbox& inbox(WorkerId w) override { return r.up_.at(w)->link.inbox(); }
    void arrived(WorkerId w) override { r.up_.at(w)->link.arrived(); }
    void received(WorkerId w, const char* data, std::size_t size) override { r.up_.at(w)->link.received(data, size); }
    void payload_received(WorkerId w, Buffer&& payload) override { r.payload_received(w, std::move(payload)); }
    void payload_sent(WorkerId w, Buffer&& buffer) override {
      UpLink& u = *r.up_.at(w);
      if (buffer.capacity > u.spare.capacity) u.spare = std::move(buffer);
    }
    void stop_worker(WorkerId w) override {
      if (w < r.down_.size() && r.down_[w].alive) r.local_->stop_worker(w);
    }
    void end() override { r.end(); }
    Relay& r;
  };

  // The local workers' events.
  struct DownHost final : TransportHost {
    explicit DownHost(Relay& r) : r(r) {}
    void worker_added(WorkerId) override {}  // each starts when its master sends its setup
    Inbox& inbox(WorkerId w) override { return r.down_.at(w).link->inbox(); }
    void arrived(WorkerId w) override { r.down_.at(w).link->arrived(); }
    void received(WorkerId w, const char* data, std::size_t size) override { r.down_.at(w).link->received(data, size); }
    void payload_received(WorkerId, Buffer&&) override {}  // local workers share storage: no payloads
    void payload_sent(WorkerId, Buffer&&) override {}
    void broken(WorkerId w, const std::string& why) override { r.broken(w, why); }
    void worker_lost(WorkerId w, const std::string& status) override { r.worker_lost(w, status); }
    Relay& r;
  };

  void dirty_up(WorkerId w) {
    if (std::find(up_dirty_.begin(), up_dirty_.end(), w) == up_dirty_.end()) up_dirty_.push_back(w);
  }
  void dirty_down(WorkerId w) {
    if (std::find(down_dirty_.begin(), down_dirty_.end(), w) == down_dirty_.end()) down_dirty_.push_back(w);
  }
  void payload_received(WorkerId w, Buffer&& payload);
  void end();
  void worker_lost(WorkerId w, const std::string& status);
  void release_idle();
  std::size_t alive() const {
    return static_cast<std::size_t>(std::count_if(down_.begin(), down_.end(), [](const Down& d) { return d.alive; }));
  }

  // ---- MasterLinkEvents: what a local worker sends ----
  void hello(WorkerId w, const char* data, std::size_t size) override {
    up_.at(w)->link.send_hello(std::string(data, size));
    dirty_up(w);
  }
  void reply(WorkerId w, std::uint64_t seq, const char* data, std::size_t size, const wm_shared_block*) override;
  void bye(WorkerId w) override {
    up_.at(w)->link.send_bye();
    dirty_up(w);
  }
  void broken(WorkerId w, const std::string& why) override {
    local_->stop_worker(w);
    uplink_.worker_broken(w, why);
  }

  Uplink& uplink_;
  LocalProcessOptions local_options_;
  const EngineOptions options_;
  Log log_;
  const wm_core_services& services_;
  const std::size_t large_;
  UpHost up_host_;
  DownHost down_host_;
  std::unique_ptr<LocalProcesses> local_;
  std::vector<std::unique_ptr<UpLink>> up_;
  std::vector<Down> down_;
  std::vector<WorkerId> up_dirty_, down_dirty_;
  bool ending_ = false, forced_ = false, big_ = false;
  Clock::time_point end_deadline_{}, last_activity_{}, last_large_{};
};

// ---------------------------------------------------------------- UpLink

void UpLink::setup(const WorkerSetup& s, const char*, std::size_t) { relay_.setup(w_, s); }
void UpLink::task(const Incoming& t) { relay_.task(w_, t); }
void UpLink::task_payload(const Incoming& t) { relay_.task_payload(w_, t); }
void UpLink::stop() { relay_.stop(w_); }
void UpLink::broken(const std::string& why) { relay_.master_broke(w_, why); }

// ---------------------------------------------------------------- the relay

void Relay::run() {
  keep_freed_memory(options_.keep_memory_mib);  // this process only relays from here on
  const unsigned n = uplink_.start(up_host_);
  local_options_.n_workers = n;
  local_ = std::make_unique<LocalProcesses>(local_options_, log_);
  for (WorkerId w = 0; w < n; ++w) {
    up_.push_back(std::make_unique<UpLink>(*this, uplink_, w, large_));
    down_.emplace_back();
  }
  local_->set_extra_fds(uplink_.wait_fds());
  local_->start(down_host_);  // before the links: it reports no worker we act on
  for (WorkerId w = 0; w < n; ++w) down_[w].link = std::make_unique<MasterLink>(*local_, w, *this, large_);
  last_activity_ = Clock::now();
  const auto spin = std::chrono::microseconds(options_.spin_us);
  for (;;) {
    const bool active = uplink_.progress() > 0;
    for (WorkerId w : down_dirty_) local_->flush(w);
    down_dirty_.clear();
    for (WorkerId w : up_dirty_) uplink_.flush(w);
    up_dirty_.clear();
    auto now = Clock::now();
    if (active) last_activity_ = now;
    if (ending_) {
      if (alive() == 0) return;
      if (!forced_ && now >= end_deadline_) {
        forced_ = true;
        for (WorkerId w = 0; w < down_.size(); ++w)
          if (down_[w].alive) local_->stop_worker(w);
      }
    }
    if (big_ && now - last_large_ >= kIdleRelease) release_idle();
    int timeout = uplink_.timeout_ms();
    auto at_most = [&](Clock::time_point t) {
      const int ms = static_cast<int>(std::max<long long>(
          0, std::chrono::duration_cast<std::chrono::milliseconds>(t - now).count() + 1));
      if (timeout < 0 || ms < timeout) timeout = ms;
    };
    if (now - last_activity_ < spin)
      timeout = 0;
    else if (ending_ && !forced_)
      at_most(end_deadline_);
    if (big_) at_most(last_large_ + kIdleRelease);
    if (timeout != 0 && uplink_.pending()) timeout = 0;
    const int events = local_->progress(timeout);
    if (events > 0)
      last_activity_ = Clock::now();
    else if (timeout == 0)
      sched_yield();
  }
}

void Relay::setup(WorkerId w, const WorkerSetup& s) {
  // (Re)starts local worker w with the setup its master chose, and passes the setup on.
  Down& d = down_.at(w);
  if (d.alive) {
    // The master replaces a worker only once it learnt that it ended: this one must go first.
    local_->stop_worker(w);
    return uplink_.worker_broken(w, "a setup came for a worker that still runs");
  }
  d.inflight.clear();
  d.held.clear();
  try {
    local_->launch(w, s);
  } catch (const std::exception& e) {
    return uplink_.worker_lost(w, e.what());
  }
  d.alive = true;
  d.link->reset();
  d.link->send_setup(s);
  dirty_down(w);
}

bool Relay::send_in_place(WorkerId w, const Incoming& t, Buffer& pooled) {
  wm_shared_ref ref{};
  if (pooled.block == nullptr || services_.struct_size <= offsetof(wm_core_services, shared_block_map) ||
      services_.shared_block_describe(pooled.block, t.size, &ref) != 1)
    return false;
  // The local worker reads the request where it is (a shared array in it without a copy); it is
  // held here until the reply.
  Down& d = down_.at(w);
  if (d.alive) {
    d.link->send_request_ref(t.seq, ref);
    d.inflight.push_back(Incoming{t.seq, t.flags, nullptr, t.size, false});
    d.held.emplace_back(t.seq, std::move(pooled));
    dirty_down(w);
  }
  return true;
}

void Relay::task(WorkerId w, const Incoming& t) {
  Down& d = down_.at(w);
  if (t.size >= large_) last_large_ = Clock::now(), big_ = true;
  if (t.size >= large_ && t.lent) {
    // In the master's storage, which it reuses once this task is answered: copied once into pooled
    // memory, which the worker then reads in place (else it would be copied into the worker's
    // storage and decoded out of it).
    Buffer pooled;
    if (pooled.pooled_for(services_, t.size) && pooled.block != nullptr) {
      std::memcpy(pooled.data, t.data, t.size);
      if (send_in_place(w, t, pooled)) return uplink_.request_done(w);
    }
  }
  if (d.alive) {
    // A task for a worker that ended meanwhile is dropped: the master learns of the end and runs it
    // elsewhere.
    d.link->send_request(t.seq, t.size, CopyEncoder(t.data, t.size));
    d.inflight.push_back(Incoming{t.seq, t.flags, nullptr, t.size, false});
    dirty_down(w);
  }
  if (t.lent) uplink_.request_done(w);
}

void Relay::task_payload(WorkerId w, const Incoming& t) {
  UpLink& u = *up_.at(w);
  // Into pooled memory: the local worker then maps it and reads a shared array there in place.
  Buffer into = std::move(u.incoming);
  if (!into.pooled_for(services_, t.size))
    master_broke(w, "no memory for a request of " + std::to_string(t.size) + " bytes");
  into.size = t.size;
  u.due = t;
  u.receiving = true;
  u.link.pause();
  if (!uplink_.receive_payload(w, std::move(into))) master_broke(w, "its payload cannot be received");
}

void Relay::payload_received(WorkerId w, Buffer&& payload) {
  UpLink& u = *up_.at(w);
  u.receiving = false;
  Incoming t = u.due;
  last_large_ = Clock::now(), big_ = true;
  if (send_in_place(w, t, payload)) return u.link.resume();  // the worker reads it where it landed
  u.incoming = std::move(payload);
  t.data = u.incoming.data;
  task(w, t);
  u.link.resume();
}

void Relay::stop(WorkerId w) {
  Down& d = down_.at(w);
  if (!d.alive) return;
  d.link->send_stop();
  dirty_down(w);
}

void Relay::end() {
  if (ending_) return;
  ending_ = true;
  end_deadline_ = Clock::now() + std::chrono::duration_cast<Clock::duration>(
                                     std::chrono::duration<double>(options_.shutdown_timeout));
  for (WorkerId w = 0; w < down_.size(); ++w) stop(w);
}

void Relay::reply(WorkerId w, std::uint64_t seq, const char* data, std::size_t size, const wm_shared_block*) {
  Down& d = down_.at(w);
  if (d.inflight.empty() || d.inflight.front().seq != seq) {
    local_->stop_worker(w);
    return uplink_.worker_broken(w, "a reply for task number " + std::to_string(seq) + " came that was not expected");
  }
  const Incoming t = d.inflight.front();
  d.inflight.pop_front();
  while (!d.held.empty() && d.held.front().first <= seq) d.held.pop_front();  // its request is read
  if (size >= large_) last_large_ = Clock::now(), big_ = true;
  up_.at(w)->link.send_reply(t, data, size);
  dirty_up(w);
}

void Relay::worker_lost(WorkerId w, const std::string& status) {
  Down& d = down_.at(w);
  if (!d.alive) return;
  d.alive = false;
  d.inflight.clear();
  d.held.clear();
  d.link->reset();
  uplink_.worker_lost(w, status);
}

void Relay::release_idle() {
  big_ = false;
  for (WorkerId w = 0; w < down_.size(); ++w) {
    if (down_[w].link->lending() || up_[w]->receiving) {
      big_ = true;
      continue;
    }
    down_[w].link->release_idle();
    up_[w]->link.release_idle();
    up_[w]->spare.release();
    up_[w]->incoming.release();
    if (down_[w].alive) local_->idle(w);
  }
  uplink_.idle();
  if (big_) last_large_ = Clock::now();
}

}  // namespace

void run_relay(Uplink& uplink, LocalProcessOptions local, const wm_core_services& services,
               const EngineOptions& options, Log log) {
  Relay relay(uplink, std::move(local), services, options, std::move(log));
  relay.run();
}

}  // namespace wm::sdk::remote
