// mpi_wire.hpp: how rank 0 and the worker ranks of the mpi backend move the engine's bytes: the MPI
// tags, the size of a bytes message, the doorbell bytes, the start-up broadcast, and small helpers
// both sides use (see README.md, "Transport").
#pragma once

#include <wm/sdk/remote/buffer.hpp>
#include <wm/sdk/remote/doorbell.hpp>

#include <mpi.h>
#include <sched.h>

#include <algorithm>
#include <chrono>
#include <climits>
#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

namespace wm_mpi {

namespace remote = wm::sdk::remote;
namespace doorbell = wm::sdk::remote::doorbell;
using Clock = std::chrono::steady_clock;

// MPI tags on the backend's own communicator (a duplicate of MPI_COMM_WORLD).
constexpr int kTagBytes = 1;    // the engine's bytes, at most kMessageBytes a message
constexpr int kTagPayload = 2;  // one large payload (the engine announced it in the bytes)

/** Largest bytes message (the engine's batches stop there; more is cut into messages this long).
 *  A larger unit travels as a payload, received into memory of its size. 64 KiB stays below the
 *  eager limit of Open MPI's TCP transport, so a bytes message never waits for its sender's
 *  progress there. */
constexpr std::size_t kMessageBytes = std::size_t(64) << 10;

// The mpi backend's own doorbell signals (besides the SDK's ring and sleep notice: doorbell.hpp);
// one TCP connection per worker rank, whose end of file is how a death shows.
constexpr char kPull = 'p';      // worker -> rank 0: I posted the receive for your payload: push it
constexpr char kKill = 'k';      // rank 0 -> worker: stopped by force, leave now (--enable-recovery)
constexpr char kPark = 'K';      // rank 0 -> worker: stopped by force, run nothing more, leave when rank 0
                                 // ends (leaving now would make mpirun end the job)
constexpr char kFinalize = 'f';  // rank 0 -> worker, after its goodbye: every rank finalizes MPI
constexpr char kExit = 'e';      // rank 0 -> worker, after its goodbye: leave without MPI_Finalize when
                                 // rank 0 ends (its doorbell closes)
constexpr char kStay = 'n';      // rank 0 -> worker, after its goodbye: rank 0's work manager ended in
                                 // order; stay for its next one (kNext) or the end of the job
constexpr char kNext = 'N';      // rank 0 -> worker that stays: serve rank 0's next work manager

/** What rank 0 tells every rank at start-up (one broadcast, fixed layout). */
struct Setup {
  static constexpr int kMaxAddresses = 16;
  std::uint64_t nonce;       // a worker proves with it that it belongs to this job
  std::int32_t master_pid;
  std::uint16_t port;        // rank 0's doorbell port
  std::uint16_t n_addresses;
  std::uint32_t addresses[kMaxAddresses];  // IPv4, network order, the order to try them in
  char host[256];            // rank 0's host name
  char error[512];           // rank 0 could not start: why (every rank then fails with it)
};

/** The text of an MPI error code. */
inline std::string mpi_error_text(int code) {
  char text[MPI_MAX_ERROR_STRING] = {};
  int len = 0;
  if (MPI_Error_string(code, text, &len) != MPI_SUCCESS) return "MPI error " + std::to_string(code);
  return std::string(text, static_cast<std::size_t>(len));
}

/** Free bytes-message buffers (kMessageBytes each), kept for the next message: a rank sends and
 *  receives many small messages, and each would otherwise allocate. */
class MessagePool {
 public:
  explicit MessagePool(std::size_t keep) : keep_(keep) {}
  /** An empty buffer that holds a bytes message. */
  remote::Buffer take() {
    remote::Buffer b;
    if (!free_.empty()) {
      b = std::move(free_.back());
      free_.pop_back();
      b.size = 0;
    } else {
      b.reserve(kMessageBytes);
    }
    return b;
  }
  /** A buffer MPI is done with; kept if it is a message buffer and the pool has room. */
  void give(remote::Buffer&& b) {
    if (b.capacity <= kMessageBytes && free_.size() < keep_) free_.push_back(std::move(b));
  }

 private:
  std::size_t keep_;
  std::vector<remote::Buffer> free_;
};

/** A payload travels as messages of at most 1 GiB (MPI counts are ints), received in order. */
constexpr std::size_t kChunk = std::size_t(1) << 30;

/** Starts sending len bytes as messages of at most `piece` bytes with this tag (in order; the
 *  receiver sees one stream); appends their requests. */
inline int isend_pieces(const char* p, std::size_t len, std::size_t piece, int dest, int tag, MPI_Comm comm,
                        std::vector<MPI_Request>& reqs) {
  std::size_t off = 0;
  do {
    const std::size_t n = std::min(piece, len - off);
    MPI_Request r = MPI_REQUEST_NULL;
    const int rc = MPI_Isend(p + off, static_cast<int>(n), MPI_BYTE, dest, tag, comm, &r);
    if (rc != MPI_SUCCESS) return rc;
    reqs.push_back(r);
    off += n;
  } while (off < len);
  return MPI_SUCCESS;
}

/** Posts the receives of a payload of len bytes from src into p; appends their requests. */
inline int irecv_payload(char* p, std::size_t len, int src, MPI_Comm comm, std::vector<MPI_Request>& reqs) {
  std::size_t off = 0;
  do {
    const std::size_t n = std::min(kChunk, len - off);
    MPI_Request r = MPI_REQUEST_NULL;
    const int rc = MPI_Irecv(p + off, static_cast<int>(n), MPI_BYTE, src, kTagPayload, comm, &r);
    if (rc != MPI_SUCCESS) return rc;
    reqs.push_back(r);
    off += n;
  } while (off < len);
  return MPI_SUCCESS;
}

/** Cancels a posted receive and forgets it. False if MPI would not let go of it (it had matched a
 *  message that never finishes, from a rank that died): the request is freed, and its buffer must
 *  be kept (keep_for_mpi). */
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

/** Lets go of a send that may never finish (to a rank that is gone); its buffer must be kept. */
inline void release_send(MPI_Request& r) {
  if (r != MPI_REQUEST_NULL) MPI_Request_free(&r);
}

/** A buffer MPI may still read (a send to a rank that is gone, or a rank about to leave without
 *  waiting for its sends): kept, and reachable, for the life of the process. */
inline void keep_for_mpi(remote::Buffer&& b) {
  static auto* kept = new std::vector<remote::Buffer>;
  kept->push_back(std::move(b));
}

}  // namespace wm_mpi
