// SPDX-License-Identifier: MIT
// wm/sdk/remote/doorbell.hpp: a part for transports whose own waits cannot sleep or do not show a
// peer's death (MPI's waits spin, and no MPI call reports a dead rank): one small TCP connection
// between the master and each worker. A side with nothing to do sleeps in poll() on it; a sender
// rings (one byte) a peer that may be asleep; its end of file is how the peer's end shows.
//
// The sleep rule that keeps rings rare: a side about to sleep tells the other so, with the number
// of messages it has taken (tell_asleep); the other rings at once if it sent more (one may have
// arrived after the sleeper's last look), else with its next message. Bytes other than rings and
// sleep notices are the transport's own signals.
#pragma once

#include <wm/sdk/remote/transport.hpp>

#include <poll.h>

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <string>
#include <vector>

namespace wm::sdk::remote::doorbell {

constexpr char kRing = 'r';    // a message is there for you
constexpr char kAsleep = 's';  // then 4 bytes (host order): I sleep, having taken this many messages

/** What a worker sends first: the job's nonce (proof that it belongs to the job), who it is. */
struct Hail {
  std::uint64_t nonce;
  std::int32_t id;
  std::int32_t pid;
};

/** IPv4 addresses (network order) workers may reach this host at: `address` resolved if given (a
 *  name or a dotted quad; throws naming `variable` if it does not resolve), else every interface
 *  that is up, loopback last. */
std::vector<std::uint32_t> addresses(const std::string& address, const std::string& variable);

/** Connects to one of the addresses, in order, each within timeout_ms (loopback first if
 *  same_host), and sends the hail. Returns the socket (nonblocking, close-on-exec, no Nagle), or
 *  -1 with why. */
int connect(const std::vector<std::uint32_t>& addresses, std::uint16_t port, bool same_host, int timeout_ms,
            const Hail& hail, std::string& why);

/** Nonblocking, no SIGPIPE. A full socket counts as rung: it holds bytes the peer has not read, so
 *  it will wake anyway. False if the connection is gone. */
bool ring(int fd, char what);
/** Writes all n bytes (waiting while the socket is full). False if the connection is gone. */
bool send_all(int fd, const char* data, std::size_t n);
/** Reads what is there without waiting ("" if nothing); eof set at end of file or a broken connection. */
std::string drain(int fd, bool& eof);
/** Tells the peer this side sleeps, having taken `taken` messages. */
void tell_asleep(int fd, std::uint32_t taken);

/** @brief The master's listening side: accepts connections and reads their hails. */
class Acceptor {
 public:
  /** Listens on every interface, port chosen by the system, with a random nonce; throws why not. */
  explicit Acceptor(int backlog);
  ~Acceptor();
  Acceptor(const Acceptor&) = delete;
  Acceptor& operator=(const Acceptor&) = delete;

  std::uint16_t port() const { return port_; }
  std::uint64_t nonce() const { return nonce_; }
  /** The descriptors to poll for POLLIN: the listener and connections that have not hailed. */
  void add_fds(std::vector<pollfd>& fds) const;
  /** Accepts what waits and reads the hails: connected(hail, fd, bytes after it) for each of this
   *  job's; a connection that is not (or says nothing within 5 s) is closed. Returns how many
   *  strangers were closed. */
  int take(const std::function<void(const Hail& hail, int fd, const std::string& after)>& connected);
  /** Milliseconds until a silent connection is due to be closed (-1: none). */
  int timeout_ms(std::chrono::steady_clock::time_point now) const;

 private:
  struct Pending {
    int fd;
    std::string got;
    std::chrono::steady_clock::time_point until;
  };
  int fd_ = -1;
  std::uint16_t port_ = 0;
  std::uint64_t nonce_ = 0;
  std::vector<Pending> pending_;
};

/** @brief What a peer wrote on its doorbell, read byte by byte. */
class Reader {
 public:
  /** Rings are dropped; a sleep notice calls asleep(count); any other byte goes to signal(c), which
   *  returns false for a byte it does not take: reading stops and feed() returns false. */
  bool feed(const std::string& bytes, const std::function<void(std::uint32_t taken)>& asleep,
            const std::function<bool(char signal)>& signal);

 private:
  int notice_got_ = -1;  // bytes of a sleep notice's count read so far (-1: none under way)
  char notice_[4] = {};
};

}  // namespace wm::sdk::remote::doorbell
