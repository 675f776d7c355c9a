// doorbell.cpp: TCP sockets for the doorbells (see doorbell.hpp).
#include "doorbell.hpp"

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
#include <stdexcept>

namespace wm_mpi {
namespace {

std::string sys_error(const char* what) { return std::string(what) + ": " + std::strerror(errno); }

void no_delay(int fd) {
  const int one = 1;
  setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);  // a ring is one byte: never hold it back
}

constexpr std::uint32_t kLoopback = 0x7f000001;  // 127.0.0.1, host order

}  // namespace

std::string address_text(std::uint32_t address) {
  char buf[INET_ADDRSTRLEN] = {};
  in_addr a{};
  a.s_addr = address;
  inet_ntop(AF_INET, &a, buf, sizeof buf);
  return buf;
}

Listener listen_for_workers(int backlog) {
  Listener l;
  l.fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
  if (l.fd < 0) throw std::runtime_error(sys_error("cannot make the doorbell socket"));
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_addr.s_addr = htonl(INADDR_ANY);
  a.sin_port = 0;
  socklen_t len = sizeof a;
  if (bind(l.fd, reinterpret_cast<sockaddr*>(&a), sizeof a) != 0 || listen(l.fd, std::max(backlog, 16)) != 0 ||
      getsockname(l.fd, reinterpret_cast<sockaddr*>(&a), &len) != 0) {
    const std::string why = sys_error("cannot listen for the worker ranks' doorbells");
    close(l.fd);
    throw std::runtime_error(why);
  }
  l.port = ntohs(a.sin_port);
  return l;
}

std::vector<std::uint32_t> doorbell_addresses(const std::string& address) {
  std::vector<std::uint32_t> out;
  if (!address.empty()) {
    addrinfo hints{};
    hints.ai_family = AF_INET;
    hints.ai_socktype = SOCK_STREAM;
    addrinfo* res = nullptr;
    const int rc = getaddrinfo(address.c_str(), nullptr, &hints, &res);
    if (rc != 0)
      throw std::runtime_error("WM_MPI_DOORBELL_ADDRESS='" + address + "' does not resolve to an IPv4 address: " +
                               gai_strerror(rc));
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

int connect_doorbell(const std::vector<std::uint32_t>& addresses, std::uint16_t port, bool same_host,
                     int timeout_ms, std::string& why) {
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
    int rc = connect(fd, reinterpret_cast<sockaddr*>(&sa), sizeof sa);
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
      return fd;
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

}  // namespace wm_mpi
