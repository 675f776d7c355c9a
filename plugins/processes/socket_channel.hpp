// socket_channel.hpp: the worker side of local worker processes: the Unix socket to the master (fd
// 3), the two shared regions (fds 4 and 5) and the byte rings (fd 6, byte_ring.hpp), as a
// WorkerChannel of the remote engine.
#pragma once

#include "byte_ring.hpp"
#include "shared_region.hpp"

#include <wm/sdk/remote/transport.hpp>

#include <cstddef>
#include <cstdint>
#include <string>

struct iovec;

namespace wm_processes {

namespace remote = wm::sdk::remote;

class SocketChannel final : public remote::WorkerChannel {
 public:
  /** fd: the socket to the master; shm: whether fds 4 and 5 hold the shared regions; ring_fd: the
   *  byte rings' file (-1: the frames go through the socket). */
  SocketChannel(int fd, bool shm, int ring_fd, std::size_t large_payload_bytes);

  void send_hello(const remote::Hello& hello) override;
  remote::Incoming receive(int timeout_ms) override;
  wm_byte_buffer& begin_reply(const remote::Incoming& task) override;
  void end_reply(const remote::Incoming& task) override;
  std::size_t pending() const override { return out_.size; }
  bool flush() override;

 private:
  // Where a reply is encoded: the worker's own buffer, moved to the shared region from the worker
  // as soon as it grows large, if this task holds the right to use the region.
  struct ReplyBuffer : wm_byte_buffer {
    SocketChannel* owner = nullptr;
    bool may_use_region = false;
    bool in_region = false;
    std::uint16_t generation = 0;
    static int grow_reply(wm_byte_buffer* b, std::size_t need);
  };

  bool fill(int timeout_ms, bool& eof, std::string& why);
  bool send_bytes(iovec* iov, int n);
  bool ring_send(const iovec* iov, int n);
  bool wait_for_room();
  bool take_doorbells(std::string& why);
  void doorbell();

  int fd_;
  std::size_t large_;
  remote::FrameReader reader_;
  bool holding_frame_ = false;  // a frame returned by receive() is not consumed yet
  remote::Buffer out_;          // frames queued for the master
  remote::Buffer reply_;        // where replies are encoded (kept for the next task; given back when idle)
  ReplyBuffer current_;
  SharedRegion to_worker_, from_worker_;
  RingFile ring_;
  RingReader in_ring_;   // frames from the master, when ring_ is mapped
  RingWriter out_ring_;  // frames to the master
  bool eof_seen_ = false;  // the master closed its sending side (acted on once in_ring_ is empty)
  bool broken_ = false;
};

}  // namespace wm_processes
