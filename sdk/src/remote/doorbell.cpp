// SPDX-License-Identifier: MIT
// doorbell.cpp: doorbell connections (see wm/sdk/remote/doorbell.hpp).
#include <wm/sdk/remote/doorbell.hpp>

#include <arpa/inet.h>
#include <fcntl.h>
#include <ifaddrs.h>
#include <net/if.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <random>
#include <stdexcept>

namespace wm::sdk::remote::doorbell {
namespace {

std::string sys_error(const char* what) { return std::string(what) + ": " + std::strerror(errno); }

void no_delay(int fd) {
  const int one = 1;
  setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);  // a ring is one byte: never hold it back
}

constexpr std::uint32_t kLoopback = 0x7f000001;  // 127.0.0.1, host order

// "a.b.c.d" of an address in network order.
std::string address_text(std::uint32_t address) {
  char buf[INET_ADDRSTRLEN] = {};
  in_addr a{};
  a.s_addr = address;
  inet_ntop(AF_INET, &a, buf, sizeof buf);
  return buf;
}

}  // namespace

std::vector<std::uint32_t> addresses(const std::string& address, const std::string& variable) {
  std::vector<std::uint32_t> out;
  if (!address.empty()) {
    addrinfo hints{};
    hints.ai_family = AF_INET;
    hints.ai_socktype = SOCK_STREAM;
    addrinfo* res = nullptr;
    const int rc = getaddrinfo(address.c_str(), nullptr, &hints, &res);
    if (rc != 0)
      throw std::runtime_error(variable + "='" + address + "' does not resolve to an IPv4 address: " + gai_strerror(rc));
    for (addrinfo* p = res; p != nullptr; p = p->ai_next)
      out.push_back(reinterpret_cast<sockaddr_in*>(p->ai_addr)->sin_addr.s_addr);
    freeaddrinfo(res);
    return out;
  }
  ifaddrs* list = nullptr;
  if (getifaddrs(&list) == 0) {
    for (ifaddrs* i = list; i != nullptr; i = i->ifa_next) {
      if (i->ifa_addr == nullptr || i->ifa_addr->sa_family != AF_INET || (i->ifa_flags & IFF_UP) == 0) continue;
      const std::uint32_t a = reinterpret_cast<sockaddr_in*>(i->ifa_addr)->sin_addr.s_addr;
      if ((i->ifa_flags & IFF_LOOPBACK) != 0 || std::find(out.begin(), out.end(), a) != out.end()) continue;
      out.push_back(a);
    }
    freeifaddrs(list);
  }
  out.push_back(htonl(kLoopback));
  return out;
}

int connect(const std::vector<std::uint32_t>& addresses, std::uint16_t port, bool same_host, int timeout_ms,
            const Hail& hail, std::string& why) {
  std::vector<std::uint32_t> order;
  if (same_host) order.push_back(htonl(kLoopback));
  for (std::uint32_t a : addresses)
    if (std::find(order.begin(), order.end(), a) == order.end() && (same_host || a != htonl(kLoopback)))
      order.push_back(a);
  why.clear();
  for (std::uint32_t a : order) {
    const int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
    if (fd < 0) {
      why = sys_error("socket");
      return -1;
    }
    sockaddr_in sa{};
    sa.sin_family = AF_INET;
    sa.sin_addr.s_addr = a;
    sa.sin_port = htons(port);
    int rc = ::connect(fd, reinterpret_cast<sockaddr*>(&sa), sizeof sa);
    if (rc != 0 && errno == EINPROGRESS) {
      pollfd p{fd, POLLOUT, 0};
      int err = 0;
      socklen_t len = sizeof err;
      if (poll(&p, 1, timeout_ms) == 1 && getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &len) == 0 && err == 0)
        rc = 0;
      else
        errno = err != 0 ? err : ETIMEDOUT;
    }
    if (rc == 0) {
      no_delay(fd);
      if (send_all(fd, reinterpret_cast<const char*>(&hail), sizeof hail)) return fd;
      why = std::string("cannot talk to it: ") + std::strerror(errno);
      close(fd);
      return -1;
    }
    why += (why.empty() ? "" : "; ") + address_text(a) + ":" + std::to_string(port) + ": " + std::strerror(errno);
    close(fd);
  }
  return -1;
}

bool ring(int fd, char what) {
  for (;;) {
    const ssize_t w = send(fd, &what, 1, MSG_DONTWAIT | MSG_NOSIGNAL);
    if (w == 1) return true;
    if (w < 0 && errno == EINTR) continue;
    return w < 0 && (errno == EAGAIN || errno == EWOULDBLOCK);
  }
}

bool send_all(int fd, const char* data, std::size_t n) {
  while (n > 0) {
    const ssize_t w = send(fd, data, n, MSG_DONTWAIT | MSG_NOSIGNAL);
    if (w > 0) {
      data += w;
      n -= static_cast<std::size_t>(w);
      continue;
    }
    if (w < 0 && errno == EINTR) continue;
    if (w < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
      pollfd p{fd, POLLOUT, 0};
      poll(&p, 1, 100);
      continue;
    }
    return false;
  }
  return true;
}

std::string drain(int fd, bool& eof) {
  std::string out;
  char buf[256];
  for (;;) {
    const ssize_t r = recv(fd, buf, sizeof buf, MSG_DONTWAIT);
    if (r > 0) {
      out.append(buf, static_cast<std::size_t>(r));
      continue;
    }
    if (r < 0 && errno == EINTR) continue;
    if (r == 0 || (errno != EAGAIN && errno != EWOULDBLOCK)) eof = true;
    return out;
  }
}

void tell_asleep(int fd, std::uint32_t taken) {
  char notice[1 + sizeof taken];
  notice[0] = kAsleep;
  std::memcpy(notice + 1, &taken, sizeof taken);
  send_all(fd, notice, sizeof notice);  // a broken connection shows as its end of file
}

// ---------------------------------------------------------------- the master's side

constexpr auto kHailLimit = std::chrono::seconds(5);  // a new connection must say who it is by then

Acceptor::Acceptor(int backlog) {
  fd_ = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
  if (fd_ < 0) throw std::runtime_error(sys_error("cannot make the doorbell socket"));
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_addr.s_addr = htonl(INADDR_ANY);
  a.sin_port = 0;
  socklen_t len = sizeof a;
  if (bind(fd_, reinterpret_cast<sockaddr*>(&a), sizeof a) != 0 || listen(fd_, std::max(backlog, 16)) != 0 ||
      getsockname(fd_, reinterpret_cast<sockaddr*>(&a), &len) != 0) {
    const std::string why = sys_error("cannot listen for the workers' doorbells");
    close(fd_);
    throw std::runtime_error(why);
  }
  port_ = ntohs(a.sin_port);
  std::random_device rd;
  nonce_ = (std::uint64_t(rd()) << 32) ^ rd();
}

Acceptor::~Acceptor() {
  for (const Pending& p : pending_) close(p.fd);
  close(fd_);
}

void Acceptor::add_fds(std::vector<pollfd>& fds) const {
  fds.push_back(pollfd{fd_, POLLIN, 0});
  for (const Pending& p : pending_) fds.push_back(pollfd{p.fd, POLLIN, 0});
}

int Acceptor::take(const std::function<void(const Hail&, int, const std::string&)>& connected) {
  for (;;) {
    const int fd = accept4(fd_, nullptr, nullptr, SOCK_NONBLOCK | SOCK_CLOEXEC);
    if (fd < 0) break;
    pending_.push_back(Pending{fd, {}, std::chrono::steady_clock::now() + kHailLimit});
  }
  int strangers = 0;
  const auto now = std::chrono::steady_clock::now();
  for (std::size_t i = 0; i < pending_.size();) {
    Pending& p = pending_[i];
    bool eof = false;
    p.got += drain(p.fd, eof);
    Hail hail{};
    const bool complete = p.got.size() >= sizeof hail;
    if (complete) std::memcpy(&hail, p.got.data(), sizeof hail);
    if (!complete && !eof && now < p.until) {
      ++i;
      continue;
    }
    const Pending done = p;
    pending_.erase(pending_.begin() + static_cast<long>(i));
    if (complete && hail.nonce == nonce_) {
      connected(hail, done.fd, done.got.substr(sizeof hail));
    } else {
      close(done.fd);
      strangers += complete ? 1 : 0;
    }
  }
  return strangers;
}

int Acceptor::timeout_ms(std::chrono::steady_clock::time_point now) const {
  if (pending_.empty()) return -1;
  auto next = pending_.front().until;
  for (const Pending& p : pending_) next = std::min(next, p.until);
  return next <= now ? 0 : static_cast<int>(std::chrono::duration_cast<std::chrono::milliseconds>(next - now).count() + 1);
}

bool Reader::feed(const std::string& bytes, const std::function<void(std::uint32_t)>& asleep,
                  const std::function<bool(char)>& signal) {
  for (char c : bytes) {
    if (notice_got_ >= 0) {  // the count of a sleep notice
      notice_[notice_got_++] = c;
      if (notice_got_ == static_cast<int>(sizeof notice_)) {
        notice_got_ = -1;
        std::uint32_t taken = 0;
        std::memcpy(&taken, notice_, sizeof taken);
        asleep(taken);
      }
    } else if (c == kAsleep) {
      notice_got_ = 0;
    } else if (c != kRing && !signal(c)) {
      return false;
    }
  }
  return true;
}

}  // namespace wm::sdk::remote::doorbell
