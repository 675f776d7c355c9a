// SPDX-License-Identifier: MIT
// wm_zmq_floor: raw ZeroMQ floor, `wm_zmq_floor [--bench-runs 5] [--bench-smoke]` (built only where
// cppzmq is found). Two processes (this one and a child), a ROUTER and a DEALER over a Unix socket
// (ipc), as a zmq master and a node on one host talk; prints JSON lines (bench_common.hpp) with
// source "floor":
//   zmq_rt_median / zmq_rt_p99   1-byte ping-pong, both sides blocking in zmq recv [us]
//   zmq_bandwidth                a 64 MiB message echoed (sent without a copy from warm memory,
//                                received as libzmq receives it), 2 x bytes / time [GB/s]
// What a zmq work manager's round trip adds to this: the node's hop to its worker and back, the
// dispatcher, the host's future.
#include "bench_common.hpp"

#include <zmq.hpp>

#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <string>
#include <vector>

int main(int argc, char** argv) {
  const bool smoke = bench::arg_flag(argc, argv, "--bench-smoke");
  const int runs = std::max(1, std::atoi(bench::arg_value(argc, argv, "--bench-runs", smoke ? "1" : "5").c_str()));
  const int m = smoke ? 200 : 20000;
  char dir[] = "/tmp/wm_zmq_floor.XXXXXX";
  if (mkdtemp(dir) == nullptr) return 1;
  const std::string endpoint = std::string("ipc://") + dir + "/s";
  const std::size_t big = smoke ? (std::size_t(4) << 20) : (std::size_t(64) << 20);
  const int big_runs = runs + 2;  // two warm-ups
  const long total = long(m) * (runs + 1) + big_runs;
  const pid_t child = fork();
  if (child == 0) {
    {
      zmq::context_t ctx(1);
      zmq::socket_t s(ctx, zmq::socket_type::dealer);
      s.set(zmq::sockopt::linger, 5000);  // the last answer still leaves when the socket closes
      s.connect(endpoint);
      s.send(zmq::str_buffer("hello"), zmq::send_flags::none);
      for (long i = 0; i < total; ++i) {
        zmq::message_t msg;
        if (!s.recv(msg)) break;
        s.send(msg, zmq::send_flags::none);
      }
    }
    _exit(0);
  }
  std::vector<double> med, p99, all, gbs;
  {
    zmq::context_t ctx(1);
    zmq::socket_t r(ctx, zmq::socket_type::router);
    r.set(zmq::sockopt::linger, 0);
    r.bind(endpoint);
    zmq::message_t id, hello;
    (void)r.recv(id);
    (void)r.recv(hello);
    for (int run = -1; run < runs; ++run) {  // run -1: warm-up
      std::vector<double> s;
      s.reserve(std::size_t(m));
      for (int i = 0; i < m; ++i) {
        const auto t0 = std::chrono::steady_clock::now();
        r.send(zmq::buffer(id.data(), id.size()), zmq::send_flags::sndmore);
        r.send(zmq::str_buffer("x"), zmq::send_flags::none);
        zmq::message_t who, back;
        (void)r.recv(who);
        (void)r.recv(back);
        s.push_back(std::chrono::duration<double, std::micro>(std::chrono::steady_clock::now() - t0).count());
      }
      if (run >= 0) {
        med.push_back(bench::quantile(s, 0.5));
        p99.push_back(bench::quantile(s, 0.99));
        all.insert(all.end(), s.begin(), s.end());
      }
    }
    std::vector<char> payload(big, 'z');
    for (int run = 0; run < big_runs; ++run) {
      const auto t0 = std::chrono::steady_clock::now();
      r.send(zmq::buffer(id.data(), id.size()), zmq::send_flags::sndmore);
      r.send(zmq::message_t(payload.data(), payload.size(), [](void*, void*) {}), zmq::send_flags::none);
      zmq::message_t who, back;
      (void)r.recv(who);
      (void)r.recv(back);
      const double dt = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
      if (back.size() != big) return 1;
      if (run >= 2) gbs.push_back(2.0 * double(big) / dt / 1e9);
    }
  }
  int status = 0;
  waitpid(child, &status, 0);
  unlink((std::string(dir) + "/s").c_str());
  rmdir(dir);
  const std::string note = "1-byte ROUTER/DEALER ping-pong between two processes over ipc (libzmq " +
                           std::to_string(ZMQ_VERSION_MAJOR) + "." + std::to_string(ZMQ_VERSION_MINOR) + "." +
                           std::to_string(ZMQ_VERSION_PATCH) + ")";
  bench::emit_metric("floor", "zmq_rt_median", "us", med, note);
  bench::emit_metric("floor", "zmq_rt_p99", "us", p99, note);
  bench::emit_hist("floor", "zmq_roundtrip", all);
  bench::emit_metric("floor", "zmq_bandwidth", "GB/s", gbs,
                     std::to_string(big >> 20) + " MiB message echoed by a DEALER to a ROUTER over ipc (sent from warm "
                     "memory without a copy)");
  return 0;
}
