// SPDX-License-Identifier: MIT
// byte_ring.hpp: the bytes between the master and one local worker process go through shared
// memory, not the socket: a memfd with two single-producer single-consumer byte rings, master -> worker and
// worker -> master. A system call costs 1.2-1.7 us on the VMs measured; a look at a ring is a
// memory read, so a spinning side finds a message without one.
//
// The socket stays, as doorbell and life line: a producer sends one doorbell byte only when the
// consumer said it sleeps (or a waiting producer when the consumer freed room); end of file keeps
// its meaning (graceful stop, peer gone), acted on once the ring is drained. The flags follow
// the classic pattern: the sleeper raises its flag, fences, looks again, then blocks in poll();
// the other side publishes, fences, then reads the flag. One of the two always sees the other.
//
// Positions are byte counts since the start (never wrap in practice); each side keeps its own
// position privately and only publishes it, and checks the one it reads from the other side: a
// worker that scribbles on the ring can fail itself, not the master.
#pragma once

#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <new>

namespace wm::sdk::remote {

/** The only byte that goes on the socket while a ring carries the frames. */
constexpr unsigned char kDoorbellByte = 0xDB;

// The control words of one direction, each on its own cache line (the two sides write them from
// different cores).
struct RingControl {
  alignas(64) std::atomic<std::uint64_t> head;  // bytes the producer has written
  alignas(64) std::atomic<std::uint64_t> tail;  // bytes the consumer has read
  alignas(64) std::atomic<std::uint32_t> consumer_sleeping;
  alignas(64) std::atomic<std::uint32_t> producer_waiting;
};
static_assert(std::atomic<std::uint64_t>::is_always_lock_free && std::atomic<std::uint32_t>::is_always_lock_free,
              "the rings need lock-free atomics (they are shared between processes)");

/** The shared file: [control to worker][control from worker] in the first page, then the two
 *  rings' bytes. */
class RingFile {
 public:
  static constexpr std::size_t kCapacity = std::size_t(1) << 20;  // per direction, a power of two
  static constexpr std::size_t kHeader = 4096;
  static constexpr std::size_t kSize = kHeader + 2 * kCapacity;
  enum Direction { to_worker = 0, from_worker = 1 };

  RingFile() = default;
  RingFile(const RingFile&) = delete;
  RingFile& operator=(const RingFile&) = delete;
  ~RingFile() { reset(); }

  /** Master: a fresh file (positions 0), mapped; the descriptor stays open for the spawn. */
  bool create() {
    reset();
#ifdef MFD_CLOEXEC
    fd_ = memfd_create("wm-processes-ring", MFD_CLOEXEC);
    if (fd_ >= 0 && fd_ < 10) {  // clear of the numbers the spawn duplicates onto (see SharedRegion)
      const int high = fcntl(fd_, F_DUPFD_CLOEXEC, 10);
      close(fd_);
      fd_ = high;
    }
#endif
    if (fd_ < 0 || ftruncate(fd_, static_cast<off_t>(kSize)) != 0 || !map(fd_)) {
      reset();
      return false;
    }
    for (int d = 0; d < 2; ++d) new (control(static_cast<Direction>(d))) RingControl{};
    return true;
  }
  /** Worker: maps the file it inherited (the descriptor stays the caller's); false if it is not one. */
  bool adopt(int fd) {
    reset();
    struct stat st;
    return fstat(fd, &st) == 0 && static_cast<std::size_t>(st.st_size) == kSize && map(fd);
  }
  int fd() const { return fd_; }
  /** Master, after the spawn: the mapping is all it needs. */
  void close_fd() {
    if (fd_ >= 0) close(fd_);
    fd_ = -1;
  }
  bool mapped() const { return base_ != nullptr; }
  RingControl* control(Direction d) const {
    return reinterpret_cast<RingControl*>(base_ + (d == to_worker ? 0 : kHeader / 2));
  }
  char* bytes(Direction d) const { return base_ + kHeader + (d == to_worker ? 0 : kCapacity); }
  void reset() {
    if (base_ != nullptr) munmap(base_, kSize);
    base_ = nullptr;
    close_fd();
  }

 private:
  bool map(int fd) {
    void* p = mmap(nullptr, kSize, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
    if (p == MAP_FAILED) return false;
    base_ = static_cast<char*>(p);
    return true;
  }
  int fd_ = -1;
  char* base_ = nullptr;
};
static_assert(sizeof(RingControl) <= RingFile::kHeader / 2, "two controls fit in the header page");

/** The producer's end of one ring. */
class RingWriter {
 public:
  void attach(RingControl* c, char* bytes) {
    c_ = c;
    bytes_ = bytes;
    head_ = 0;
  }
  void detach() { c_ = nullptr; }
  bool attached() const { return c_ != nullptr; }

  /** Copies as much of p[0, n) as there is room for and publishes it; the bytes written.
   *  corrupt: the consumer's position is impossible. */
  std::size_t write(const void* p, std::size_t n, bool& corrupt) {
    const std::size_t room = free_bytes(corrupt);
    n = std::min(n, room);
    if (n == 0) return 0;
    const std::size_t at = head_ & (kCap - 1), first = std::min(n, kCap - at);
    std::memcpy(bytes_ + at, p, first);
    std::memcpy(bytes_, static_cast<const char*>(p) + first, n - first);
    head_ += n;
    c_->head.store(head_, std::memory_order_release);
    return n;
  }
  /** After writing: whether the consumer sleeps and needs a doorbell byte (taken: one byte per sleep). */
  bool consumer_needs_wake() {
    std::atomic_thread_fence(std::memory_order_seq_cst);
    return c_->consumer_sleeping.load(std::memory_order_relaxed) != 0 &&
           c_->consumer_sleeping.exchange(0, std::memory_order_relaxed) != 0;
  }
  /** The ring is full: announce the wait, then look again. True if room came meanwhile (the
   *  announcement is withdrawn); false: wait for a doorbell byte, then call wait_done(). */
  bool announce_wait(bool& corrupt) {
    c_->producer_waiting.store(1, std::memory_order_relaxed);
    std::atomic_thread_fence(std::memory_order_seq_cst);
    if (free_bytes(corrupt) == 0 && !corrupt) return false;
    wait_done();
    return true;
  }
  void wait_done() { c_->producer_waiting.store(0, std::memory_order_relaxed); }
  std::size_t free_bytes(bool& corrupt) const {
    const std::uint64_t used = head_ - c_->tail.load(std::memory_order_acquire);
    if (used > kCap) {
      corrupt = true;
      return 0;
    }
    return kCap - static_cast<std::size_t>(used);
  }

 private:
  static constexpr std::size_t kCap = RingFile::kCapacity;
  RingControl* c_ = nullptr;
  char* bytes_ = nullptr;
  std::uint64_t head_ = 0;  // ours; the shared copy is only published
};

/** The consumer's end of one ring. */
class RingReader {
 public:
  void attach(RingControl* c, const char* bytes) {
    c_ = c;
    bytes_ = bytes;
    tail_ = 0;
  }
  void detach() { c_ = nullptr; }
  bool attached() const { return c_ != nullptr; }

  /** Bytes waiting; corrupt: the producer's position is impossible. */
  std::size_t available(bool& corrupt) const {
    const std::uint64_t n = c_->head.load(std::memory_order_acquire) - tail_;
    if (n > kCap) {
      corrupt = true;
      return 0;
    }
    return static_cast<std::size_t>(n);
  }
  /** Copies n bytes (at most available()) to dst and frees their room. */
  void read(char* dst, std::size_t n) {
    const std::size_t at = tail_ & (kCap - 1), first = std::min(n, kCap - at);
    std::memcpy(dst, bytes_ + at, first);
    std::memcpy(dst + first, bytes_, n - first);
    tail_ += n;
    c_->tail.store(tail_, std::memory_order_release);
  }
  /** After reading: whether the producer waits for room and needs a doorbell byte. */
  bool producer_needs_wake() {
    std::atomic_thread_fence(std::memory_order_seq_cst);
    return c_->producer_waiting.load(std::memory_order_relaxed) != 0 &&
           c_->producer_waiting.exchange(0, std::memory_order_relaxed) != 0;
  }
  /** About to block: announce it, then look again. True if bytes came meanwhile (or the ring is
   *  corrupt): do not block. Call sleep_done() after blocking either way. */
  bool announce_sleep() {
    c_->consumer_sleeping.store(1, std::memory_order_relaxed);
    std::atomic_thread_fence(std::memory_order_seq_cst);
    bool corrupt = false;
    return available(corrupt) != 0 || corrupt;
  }
  void sleep_done() { c_->consumer_sleeping.store(0, std::memory_order_relaxed); }

 private:
  static constexpr std::size_t kCap = RingFile::kCapacity;
  RingControl* c_ = nullptr;
  const char* bytes_ = nullptr;
  std::uint64_t tail_ = 0;  // ours; the shared copy is only published
};

}  // namespace wm::sdk::remote
