// SPDX-License-Identifier: MIT
// util.cpp: small helpers of the engine and its transports (transport.hpp, waker.hpp).
#include <wm/sdk/remote/transport.hpp>
#include <wm/sdk/remote/waker.hpp>

#include <sys/eventfd.h>
#include <unistd.h>

#include <cctype>
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <stdexcept>

namespace wm::sdk::remote {

const std::string& this_host() {
  static const std::string name = [] {
    char buf[256] = {};
    return gethostname(buf, sizeof buf - 1) == 0 ? std::string(buf) : std::string("unknown-host");
  }();
  return name;
}

std::string seconds_text(double s) {
  char buf[64];
  std::snprintf(buf, sizeof buf, "%g s", s);
  return buf;
}

std::string upper_snake(const std::string& text) {
  std::string out;
  for (char c : text) out += c == '-' ? '_' : static_cast<char>(std::toupper(static_cast<unsigned char>(c)));
  return out;
}

Waker::Waker() : fd_(eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK)) {
  if (fd_ < 0) throw std::runtime_error(std::string("eventfd failed: ") + std::strerror(errno));
}

Waker::~Waker() { close(fd_); }

void Waker::ring() const noexcept {
  const std::uint64_t one = 1;
  [[maybe_unused]] ssize_t r = write(fd_, &one, sizeof one);
}

void Waker::drain() const noexcept {
  std::uint64_t v;
  [[maybe_unused]] ssize_t r = read(fd_, &v, sizeof v);
}

}  // namespace wm::sdk::remote
