// SPDX-License-Identifier: MIT
// mpi_wire.hpp: how rank 0 and the worker ranks of the mpi backend move the engine's bytes: MPI tags,
// doorbell bytes, the start-up broadcast, and one peer's messages (see README.md, "How it works").
#pragma once

#include <wm/sdk/remote/buffer.hpp>
#include <wm/sdk/remote/doorbell.hpp>

#include <mpi.h>
#include <sched.h>

#include <algorithm>
#include <chrono>
#include <cstdint>
#include <deque>
#include <string>
#include <vector>

namespace wm_mpi {

namespace remote = wm::sdk::remote;
namespace doorbell = wm::sdk::remote::doorbell;
using Clock = std::chrono::steady_clock;

constexpr int kTagBytes = 1, kTagPayload = 2;  // the engine's bytes; a payload announced in them
// The largest bytes message (the engine's batches stop there): 64 KiB stays below the eager limit
// of Open MPI's TCP transport, so a bytes message never waits for its sender's progress there.
constexpr std::size_t kMessageBytes = std::size_t(64) << 10;
constexpr std::size_t kChunk = std::size_t(1) << 30;  // a payload's messages (MPI counts are ints)

// The backend's own doorbell bytes (besides the SDK's ring and sleep notice).
constexpr char kPull = 'p';  // worker -> rank 0: I posted the receive for your payload: push it
constexpr char kKill = 'k';  // rank 0 -> worker: stopped by force, leave now (--enable-recovery)
constexpr char kPark = 'K';  // rank 0 -> worker: stopped by force, run nothing more, leave when rank 0
                             // ends (leaving now would make mpirun end the job)
// Rank 0 -> a worker, after its goodbye: every rank finalizes MPI; or leave without MPI_Finalize
// when rank 0 ends; or stay for rank 0's next work manager (kNext: serve it) or the job's end.
constexpr char kFinalize = 'f', kExit = 'e', kStay = 'n', kNext = 'N';

/** What rank 0 tells every rank at start-up (one broadcast, fixed layout). */
struct Setup {
  std::uint64_t nonce;          // a worker proves with it that it belongs to this job
  std::uint16_t port;           // rank 0's doorbell port
  std::uint16_t n_addresses;
  std::uint32_t addresses[16];  // IPv4, network order, the order to try them in
  char host[256], error[512];   // rank 0's host; why rank 0 could not start (every rank then fails)
};

inline remote::Capabilities capabilities() {
  remote::Capabilities c;
  c.batch_limit = kMessageBytes;
  c.payloads = true;
  return c;
}

inline std::string mpi_error_text(int code) {
  char text[MPI_MAX_ERROR_STRING] = {};
  int len = 0;
  if (MPI_Error_string(code, text, &len) != MPI_SUCCESS) return "MPI error " + std::to_string(code);
  return std::string(text, static_cast<std::size_t>(len));
}

/** Posts the sends (or receives) of len bytes as messages of at most `piece` bytes; appends their requests. */
inline int post_pieces(bool send, char* p, std::size_t len, std::size_t piece, int peer, int tag, MPI_Comm comm,
                       std::vector<MPI_Request>& reqs) {
  std::size_t off = 0;
  do {
    const int n = static_cast<int>(std::min(piece, len - off));
    MPI_Request r = MPI_REQUEST_NULL;
    const int rc = send ? MPI_Isend(p + off, n, MPI_BYTE, peer, tag, comm, &r)
                        : MPI_Irecv(p + off, n, MPI_BYTE, peer, tag, comm, &r);
    if (rc != MPI_SUCCESS) return rc;
    reqs.push_back(r);
    off += static_cast<std::size_t>(n);
  } while (off < len);
  return MPI_SUCCESS;
}

/** A buffer MPI may still use (a request to a rank that is gone, or of a rank about to leave
 *  without waiting for it): kept, and reachable, for the life of the process. */
inline void keep_for_mpi(remote::Buffer&& b) {
  static auto* kept = new std::vector<remote::Buffer>;
  kept->push_back(std::move(b));
}

/** Cancels a posted receive. False if MPI would not let go of it (it had matched a message that
 *  never finishes, from a rank that died): the request is freed, and its buffer must be kept. */
inline bool cancel_receive(MPI_Request& r) {
  if (r == MPI_REQUEST_NULL) return true;
  MPI_Cancel(&r);
  for (int i = 0; i < 1000; ++i) {
    int done = 0;
    MPI_Test(&r, &done, MPI_STATUS_IGNORE);  // sets r to MPI_REQUEST_NULL once complete
    if (done) return true;
    sched_yield();
  }
  MPI_Request_free(&r);
  return false;
}

/** One peer's bytes messages: a receive always posted into one of two buffers, reposted into the
 *  other as soon as a message came (a message never waits in MPI's unexpected queue while the
 *  previous one is read), and the sends MPI has not finished (on rank 0, payloads too). Message
 *  buffers are kept for the next messages: a rank sends many, and each would allocate. */
struct Channel {
  struct Sending {
    std::vector<MPI_Request> reqs;
    remote::Buffer buf;
    bool payload = false;
  };
  Channel(MPI_Comm c = MPI_COMM_NULL, int p = 0, MPI_Request* r = nullptr) : comm(c), peer(p), rreq(r) {}
  MPI_Comm comm;
  int peer;
  MPI_Request* rreq;  // the posted receive (rank 0 keeps them side by side for MPI_Testsome)
  remote::Buffer in[2], out;
  int posted = 0;
  std::uint32_t sent = 0, taken = 0;  // bytes messages
  std::deque<Sending> sending;
  std::vector<remote::Buffer> spare;

  int post() {
    in[posted].reserve(kMessageBytes);
    return MPI_Irecv(in[posted].data, static_cast<int>(kMessageBytes), MPI_BYTE, peer, kTagBytes, comm, rreq);
  }
  /** The message the posted receive got, read in place while the next receive waits in the other buffer. */
  const char* took() {
    ++taken;
    posted ^= 1;
    return in[posted ^ 1].data;
  }
  int send() {
    Sending& m = sending.emplace_back();
    m.buf = std::move(out);
    if (!spare.empty()) {
      out = std::move(spare.back());
      spare.pop_back();
    }
    out.size = 0;
    out.reserve(kMessageBytes);
    const int rc = post_pieces(true, m.buf.data, m.buf.size, kMessageBytes, peer, kTagBytes, comm, m.reqs);
    sent += static_cast<std::uint32_t>(m.reqs.size());
    return rc;
  }
  /** Lets go of what MPI finished sending (a payload's buffer goes to payload_sent). */
  template <class F>
  void test_sends(F&& payload_sent) {
    for (auto it = sending.begin(); it != sending.end();) {
      int done = 0;
      MPI_Testall(static_cast<int>(it->reqs.size()), it->reqs.data(), &done, MPI_STATUSES_IGNORE);
      if (!done) {
        ++it;
        continue;
      }
      if (it->payload) payload_sent(std::move(it->buf));
      else if (spare.size() < 8) spare.push_back(std::move(it->buf));
      it = sending.erase(it);
    }
  }
  void test_sends() { test_sends([](remote::Buffer&&) {}); }
  void cancel() {
    if (!cancel_receive(*rreq)) keep_for_mpi(std::move(in[posted]));
  }
  /** Lets go of the sends MPI has not finished (to a rank that is gone): their buffers are kept. */
  void abandon() {
    test_sends();
    for (auto& m : sending) {
      for (auto& r : m.reqs)
        if (r != MPI_REQUEST_NULL) MPI_Request_free(&r);
      keep_for_mpi(std::move(m.buf));
    }
    sending.clear();
  }
};

}  // namespace wm_mpi
