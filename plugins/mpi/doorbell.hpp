// doorbell.hpp: the small TCP connection between rank 0 and each worker rank. MPI has no way to
// sleep until a message comes (Open MPI's waits spin), so a process that has nothing to do sleeps in
// poll() on its doorbells, and a sender that may find its peer asleep rings (one byte). The
// connection's end of file is also how a dead rank shows: no MPI call reports it.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

namespace wm_mpi {

/** A listening TCP socket on every interface, port chosen by the system (close-on-exec, nonblocking). */
struct Listener {
  int fd = -1;
  std::uint16_t port = 0;
};
/** Throws with the reason if the socket cannot be made. */
Listener listen_for_workers(int backlog);

/** IPv4 addresses (network order) workers may reach this host at: `address` resolved if given (a
 *  name or a dotted quad; throws if it does not resolve), else every interface that is up, loopback
 *  last. */
std::vector<std::uint32_t> doorbell_addresses(const std::string& address);

/** Connects to one of the addresses, in order, each within timeout_ms; loopback first if
 *  same_host. Returns the connected socket (nonblocking, close-on-exec, no Nagle), or -1 with why. */
int connect_doorbell(const std::vector<std::uint32_t>& addresses, std::uint16_t port, bool same_host,
                     int timeout_ms, std::string& why);

/** Nonblocking, no SIGPIPE. A full socket counts as sent: it holds rings the peer has not read, so
 *  it will wake anyway. False if the connection is gone. */
bool ring(int fd, char what);

/** Writes all n bytes (a doorbell full of bytes rank 0 has not read yet makes this wait until it
 *  reads them). False if the connection is gone. */
bool send_all(int fd, const char* data, std::size_t n);

/** Reads what is there without waiting. Returns the bytes read ("" if none); eof set at end of file
 *  or when the connection broke. */
std::string drain(int fd, bool& eof);

/** "a.b.c.d" of an address in network order. */
std::string address_text(std::uint32_t address);

}  // namespace wm_mpi
