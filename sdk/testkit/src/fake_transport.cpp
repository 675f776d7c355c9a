// SPDX-License-Identifier: MIT
// fake_transport.cpp: the test kit's fake transport (see wm/sdk/testkit/fake.hpp). Its workers
// speak the engine's wire format, read and written with the engine's own frame code.
#include <wm/sdk/testkit/fake.hpp>

#include "frame.hpp"
#include "registry.hpp"

namespace wm::testkit {

namespace {

enum class Todo { bytes, lost };
struct Event {
  Todo what;
  remote::WorkerId id;
  std::string data;  // bytes from the worker, or how it was lost
};

struct Sent {
  std::uint64_t seq;
  std::string request;
  long at_call;
};

struct W {
  bool alive = false, said_hello = false, stopping = false, killed = false, active = false, launched = false;
  bool setup_seen = false;
  std::int64_t pid = 0;
  int early_deaths_left = 0;
  std::int32_t index = -1;
  std::deque<Sent> queue;
  remote::Buffer from_master;  // what the engine queued (outbox)
  remote::Demux demux;
};

std::uint64_t id_of(const std::string& request) { return std::stoull(request.substr(5)); }

void frame(std::string& out, std::uint8_t type, std::uint64_t seq, const std::string& payload = {}) {
  const remote::FrameHeader h = remote::make_header(type, seq, payload.size());
  out.append(reinterpret_cast<const char*>(&h), sizeof h);
  out += payload;
}

}  // namespace

struct FakeTransport::State {
  unsigned n;
  bool hello_at_once;
  remote::TransportHost* host = nullptr;
  mutable std::mutex mutex;
  std::condition_variable cv;
  bool woken = false;
  std::vector<std::unique_ptr<W>> workers;
  std::vector<remote::WorkerId> active;  // workers with something to do
  std::map<std::uint64_t, Act> acts;
  long calls = 0;
  long delay = 0;
  bool refuse_restarts = false;
  int early_deaths = 0;
  std::map<remote::WorkerId, std::vector<std::pair<std::string, double>>> resources;  // said in hellos
  std::string extra_task;
  int to_add = 0;
  std::int64_t next_pid = 1000;
  std::size_t max_in_flight = 0;
  Stats stats;

  void activate(remote::WorkerId id) {  // under the lock
    if (workers[id]->active) return;
    workers[id]->active = true;
    active.push_back(id);
  }

  remote::WorkerId add() {  // under the lock
    const auto id = static_cast<remote::WorkerId>(workers.size());
    workers.push_back(std::make_unique<W>());
    return id;
  }

  // One worker's turn (under the lock): what it does is queued as events in todo.
  void step(remote::WorkerId id, std::vector<Event>& todo) {
    W& w = *workers[id];
    if (!w.alive) return;
    auto lost = [&](const std::string& status) {
      w.alive = false;
      w.queue.clear();
      todo.push_back(Event{Todo::lost, id, status});
    };
    if (w.killed) return lost("was killed by signal 9 (Killed)");
    if (!w.setup_seen) return;
    if (!w.said_hello) {
      if (w.early_deaths_left > 0) {
        --w.early_deaths_left;
        return lost("exited with code 7");
      }
      if (!hello_at_once) return;
      w.said_hello = true;
      remote::Hello h;
      h.index = w.index;
      h.pid = w.pid;
      h.host = "fakehost";
      if (auto r = resources.find(id); r != resources.end()) h.resources = r->second;
      // The fake core registers no task; a worker may know one more.
      remote::TaskListing tasks;
      if (!extra_task.empty()) tasks.tasks.push_back({extra_task, 42, "int (int)", ""});
      h.extension = tasks.encode();
      std::string why;
      remote::TaskListing::parse(h.extension.data(), h.extension.size(), tasks, why);
      h.registry_digest = tasks.digest;
      h.n_tasks = static_cast<std::uint32_t>(tasks.tasks.size());
      std::string bytes;
      frame(bytes, remote::kFrameHello, 0, remote::encode_hello(h));
      todo.push_back(Event{Todo::bytes, id, std::move(bytes)});
      return;
    }
    std::string bytes;
    while (!w.queue.empty()) {
      const Sent s = w.queue.front();
      if (calls - s.at_call < delay) break;
      const std::uint64_t task = id_of(s.request);
      const auto it = acts.find(task);
      const Act a = it == acts.end() ? Act::reply : it->second;
      if (a == Act::hold) break;
      w.queue.pop_front();
      switch (a) {
        case Act::reply: frame(bytes, remote::kFrameReply, s.seq, s.request); break;
        case Act::duplicate:
          frame(bytes, remote::kFrameReply, s.seq, s.request);
          frame(bytes, remote::kFrameReply, s.seq, s.request);
          acts.erase(task);
          break;
        case Act::corrupt_seq:
          frame(bytes, remote::kFrameReply, s.seq + 1000000, s.request);
          acts.erase(task);
          break;
        case Act::garbage:
          bytes += "fake garbage, no frame at all";
          acts.erase(task);
          break;
        case Act::die:
          acts.erase(task);
          if (!bytes.empty()) todo.push_back(Event{Todo::bytes, id, std::move(bytes)});
          return lost("was killed by signal 6 (Aborted)");
        case Act::die_always:
          if (!bytes.empty()) todo.push_back(Event{Todo::bytes, id, std::move(bytes)});
          return lost("was killed by signal 6 (Aborted)");
        case Act::hold: break;
      }
    }
    if (w.stopping && w.queue.empty()) frame(bytes, remote::kFrameBye, 0);
    if (!bytes.empty()) todo.push_back(Event{Todo::bytes, id, std::move(bytes)});
    if (w.stopping && w.queue.empty()) lost("exited with code 0");
  }
};

FakeTransport::FakeTransport(unsigned workers, bool hello_at_once) : s_(std::make_unique<State>()) {
  s_->n = workers;
  s_->hello_at_once = hello_at_once;
}

FakeTransport::~FakeTransport() = default;

void FakeTransport::act(std::uint64_t task_id, Act a) {
  std::lock_guard<std::mutex> lock(s_->mutex);
  s_->acts[task_id] = a;
}
void FakeTransport::reply_after(int calls) {
  std::lock_guard<std::mutex> lock(s_->mutex);
  s_->delay = calls;
}
void FakeTransport::refuse_restarts() {
  std::lock_guard<std::mutex> lock(s_->mutex);
  s_->refuse_restarts = true;
}
void FakeTransport::die_before_hello(int times) {
  std::lock_guard<std::mutex> lock(s_->mutex);
  s_->early_deaths = times;
}
void FakeTransport::extra_task(const std::string& name) {
  std::lock_guard<std::mutex> lock(s_->mutex);
  s_->extra_task = name;
}
void FakeTransport::worker_resources(remote::WorkerId id, std::vector<std::pair<std::string, double>> amounts) {
  std::sort(amounts.begin(), amounts.end());
  std::lock_guard<std::mutex> lock(s_->mutex);
  s_->resources[id] = std::move(amounts);
}
void FakeTransport::add_worker() {
  std::lock_guard<std::mutex> lock(s_->mutex);
  ++s_->to_add;
}
void FakeTransport::release_held() {
  std::lock_guard<std::mutex> lock(s_->mutex);
  for (auto& [id, a] : s_->acts)
    if (a == Act::hold) a = Act::reply;
}
FakeTransport::Stats FakeTransport::stats() const {
  std::lock_guard<std::mutex> lock(s_->mutex);
  return s_->stats;
}
std::size_t FakeTransport::max_in_flight() const {
  std::lock_guard<std::mutex> lock(s_->mutex);
  return s_->max_in_flight;
}

void FakeTransport::start(remote::TransportHost& host) {
  s_->host = &host;
  for (unsigned i = 0; i < s_->n; ++i) {
    remote::WorkerId id;
    {
      std::lock_guard<std::mutex> lock(s_->mutex);
      id = s_->add();
    }
    host.worker_added(id);  // the engine launches it
  }
}

bool FakeTransport::launch(remote::WorkerId id, const remote::WorkerSetup& setup) {
  std::lock_guard<std::mutex> lock(s_->mutex);
  W& w = *s_->workers.at(id);
  if (w.launched) {
    if (s_->refuse_restarts) return false;
    ++s_->stats.restarts;
  } else {
    ++s_->stats.starts;
  }
  w.alive = w.launched = true;
  w.said_hello = w.stopping = w.killed = w.setup_seen = false;
  w.queue.clear();
  w.demux.reset();
  w.from_master.size = 0;
  w.index = setup.index;
  w.pid = s_->next_pid++;
  w.early_deaths_left = s_->early_deaths;
  s_->activate(id);
  return true;
}

remote::Buffer& FakeTransport::outbox(remote::WorkerId id) { return s_->workers.at(id)->from_master; }

void FakeTransport::flush(remote::WorkerId id) {
  std::lock_guard<std::mutex> lock(s_->mutex);
  ++s_->stats.flushes;
  W& w = *s_->workers.at(id);
  if (w.from_master.size == 0) return;
  w.demux.feed(w.from_master.data, w.from_master.size);
  for (;;) {
    remote::Frame f;
    std::string why;
    if (w.demux.next(f, why) != remote::Demux::Status::frame) break;
    if (f.type == remote::kFrameSetup) {
      w.setup_seen = true;
    } else if (f.type == remote::kFrameTask) {
      ++s_->stats.sends;
      w.queue.push_back(Sent{f.seq, std::string(f.data, f.size), s_->calls});
      s_->max_in_flight = std::max(s_->max_in_flight, w.queue.size());
    } else if (f.type == remote::kFrameStop) {
      ++s_->stats.graceful_stops;
      w.stopping = true;
    }
  }
  w.demux.keep();
  w.from_master.size = 0;
  s_->activate(id);
}

void FakeTransport::stop_worker(remote::WorkerId id) {
  std::lock_guard<std::mutex> lock(s_->mutex);
  ++s_->stats.forced_stops;
  s_->workers.at(id)->killed = true;
  s_->activate(id);
}

int FakeTransport::progress(int timeout_ms) {
  int events = 0;
  std::vector<Event> todo;  // events, delivered without the fake's lock
  std::vector<remote::WorkerId> added;
  {
    std::unique_lock<std::mutex> lock(s_->mutex);
    ++s_->calls;
    for (; s_->to_add > 0; --s_->to_add) added.push_back(s_->add());
    // Only workers with something to do take a turn: the fake costs the same per task whether it
    // simulates 2 workers or 1,024 (the dispatcher's scaling bench relies on it).
    std::vector<remote::WorkerId> turn;
    turn.swap(s_->active);
    for (remote::WorkerId id : turn) {
      s_->workers[id]->active = false;
      s_->step(id, todo);
      const W& w = *s_->workers[id];
      if (w.alive && (!w.queue.empty() || !w.said_hello || w.stopping || w.killed)) s_->activate(id);
    }
    if (todo.empty() && added.empty() && timeout_ms != 0) {
      // Nothing to do: sleep like a real transport until woken (bounded, so timers fire).
      const auto limit = std::chrono::milliseconds(timeout_ms < 0 ? 50 : std::min(timeout_ms, 50));
      s_->cv.wait_for(lock, limit, [this] { return s_->woken; });
      s_->woken = false;
    }
  }
  for (remote::WorkerId id : added) {
    ++events;
    s_->host->worker_added(id);
  }
  for (const Event& e : todo) {
    ++events;
    if (e.what == Todo::bytes)
      s_->host->received(e.id, e.data.data(), e.data.size());
    else
      s_->host->worker_lost(e.id, e.data);
  }
  return events;
}

void FakeTransport::wake() {
  {
    std::lock_guard<std::mutex> lock(s_->mutex);
    s_->woken = true;
  }
  s_->cv.notify_all();
}

}  // namespace wm::testkit
