// SPDX-License-Identifier: MIT
// parting.cpp: a last word and a last line (see wm/sdk/remote/parting.hpp).
#include <wm/sdk/remote/doorbell.hpp>
#include <wm/sdk/remote/parting.hpp>

#include <signal.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstring>

namespace wm::sdk::remote {
namespace {

char g_line[512];
struct sigaction g_previous;

void on_signal(int sig) {
  [[maybe_unused]] ssize_t w = write(STDERR_FILENO, g_line, std::strlen(g_line));
  sigaction(sig, &g_previous, nullptr);
  raise(sig);  // delivered once this returns, as it was before
}

}  // namespace

void say_last(std::vector<int> fds, char what, double seconds) {
  std::vector<pollfd> open;
  for (int fd : fds) {
    doorbell::ring(fd, what);
    ::shutdown(fd, SHUT_WR);
    open.push_back(pollfd{fd, POLLIN, 0});
  }
  const auto until = std::chrono::steady_clock::now() + std::chrono::duration<double>(seconds);
  while (!open.empty() && std::chrono::steady_clock::now() < until) {
    if (poll(open.data(), open.size(), 100) <= 0) continue;
    open.erase(std::remove_if(open.begin(), open.end(),
                              [](const pollfd& p) {
                                bool eof = false;
                                if (p.revents != 0) doorbell::drain(p.fd, eof);
                                if (eof) close(p.fd);
                                return eof;
                              }),
               open.end());
  }
  for (const pollfd& p : open) close(p.fd);
}

void say_on_signal(int sig, const std::string& line) {
  struct sigaction sa {};
  sigaction(sig, nullptr, &sa);
  if (sa.sa_handler == SIG_IGN) return;
  std::snprintf(g_line, sizeof g_line, "%s\n", line.c_str());
  sa = {};
  sa.sa_handler = &on_signal;
  sigemptyset(&sa.sa_mask);
  sigaction(sig, &sa, &g_previous);
}

}  // namespace wm::sdk::remote
