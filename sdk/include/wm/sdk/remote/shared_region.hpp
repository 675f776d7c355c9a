// SPDX-License-Identifier: MIT
// wm/sdk/remote/shared_region.hpp: a memfd shared by a master and a worker (or a node), for large
// arguments and results: the writer puts a payload at offset 0 and the engine announces its length;
// the reader decodes it in place. Compared with a socket (copy in, copy out) this is one copy on
// each side, into memory that stays mapped and warm on both sides from one payload to the next.
//
// Who may do what (the engine's link protocol keeps to it):
//  - only the master shrinks a region (to give memory back when idle), and only while nothing of
//    that worker is in it; each side looks at the file's size before it uses its mapping and maps
//    afresh when it changed;
//  - the writer grows a region before writing; the reader checks the file's size before reading,
//    so a bad length is an error, never a SIGBUS.
#pragma once

#include <wm/abi.h>

#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstddef>
#include <cstdint>

namespace wm::sdk::remote {

class SharedRegion {
 public:
  static constexpr std::size_t kGrain = std::size_t(2) << 20;

  SharedRegion() = default;
  SharedRegion(const SharedRegion&) = delete;
  SharedRegion& operator=(const SharedRegion&) = delete;
  ~SharedRegion() {
    unmap();
    if (fd_ >= 0) close(fd_);
  }

  /** Master: makes the memfd (close-on-exec; a spawn duplicates it into the worker). */
  bool create(const char* name) {
#ifdef MFD_CLOEXEC
    fd_ = memfd_create(name, MFD_CLOEXEC);
    if (fd_ >= 0 && fd_ < 10) {
      // Clear of the low numbers the spawn duplicates descriptors onto (dup2 onto itself would
      // keep close-on-exec, and one region could overwrite the other's source).
      const int high = fcntl(fd_, F_DUPFD_CLOEXEC, 10);
      close(fd_);
      fd_ = high;
    }
#else
    (void)name;
    errno = ENOSYS;
#endif
    return fd_ >= 0;
  }
  /** Worker: takes a descriptor it inherited or opened. */
  void adopt(int fd) { fd_ = fd; }
  int fd() const { return fd_; }
  bool valid() const { return fd_ >= 0; }

  /** Writer: room for n bytes at data(); false if the system refuses (the caller sends another way). */
  bool reserve(std::size_t n) {
    if (fd_ < 0) return false;
    const std::size_t have = file_size();
    if (have != mapped_) unmap();
    std::size_t cap = std::max(have, mapped_);
    if (n > cap) {
      cap = (std::max(n, cap + cap / 2) + kGrain - 1) / kGrain * kGrain;
      if (ftruncate(fd_, static_cast<off_t>(cap)) != 0) return false;
    }
    if (cap != mapped_) {
      unmap();
      if (!map(cap, PROT_READ | PROT_WRITE)) return false;
    }
    return true;
  }

  /** Reader: the first len bytes, mapped; nullptr if the region is shorter (corrupt length). */
  const char* view(std::size_t len) {
    if (fd_ < 0) return nullptr;
    const std::size_t have = file_size();
    if (have < len) return nullptr;
    if (have != mapped_) {
      unmap();
      if (!map(have, PROT_READ)) return nullptr;
    }
    return data_;
  }

  char* data() const { return data_; }
  std::size_t capacity() const { return mapped_; }

  /** Master, nothing in flight: gives the pages back to the system. */
  void release() {
    unmap();
    if (fd_ >= 0) [[maybe_unused]] int r = ftruncate(fd_, 0);
  }

 private:
  std::size_t file_size() const {
    struct stat st;
    return fstat(fd_, &st) == 0 ? static_cast<std::size_t>(st.st_size) : 0;
  }
  bool map(std::size_t size, int prot) {
    if (size == 0) return true;
    // MAP_POPULATE: one system call maps every page now, instead of one fault per 4 KiB page
    // later (a fault costs 10-30 us on the VMs measured: 0.2-0.4 s for 64 MiB).
    // A writer's pages are faulted in for writing (MAP_POPULATE would map them read-only first
    // and leave a write fault per page), where the kernel can (Linux 5.14).
    const bool write = (prot & PROT_WRITE) != 0;
    void* p = mmap(nullptr, size, prot, MAP_SHARED | (write ? 0 : MAP_POPULATE), fd_, 0);
    if (p == MAP_FAILED) return false;
#ifdef MADV_HUGEPAGE
    madvise(p, size, MADV_HUGEPAGE);  // shared memory huge pages, where the system allows them
#endif
#ifndef MADV_POPULATE_WRITE
    constexpr int MADV_POPULATE_WRITE = 23;
#endif
    if (write && madvise(p, size, MADV_POPULATE_WRITE) != 0) {
      // An older kernel: touch one byte per page, which faults it in for writing.
      const long page = sysconf(_SC_PAGESIZE);
      for (std::size_t off = 0; off < size; off += static_cast<std::size_t>(page))
        static_cast<volatile char*>(p)[off] = static_cast<volatile char*>(p)[off];
    }
    data_ = static_cast<char*>(p);
    mapped_ = size;
    return true;
  }
  void unmap() {
    if (data_ != nullptr) munmap(data_, mapped_);
    data_ = nullptr;
    mapped_ = 0;
  }

  int fd_ = -1;
  char* data_ = nullptr;
  std::size_t mapped_ = 0;
};

/** A wm_byte_buffer over a region, empty, that grows the region as the core encodes into it. */
struct RegionWriter : wm_byte_buffer {
  RegionWriter() : wm_byte_buffer{nullptr, 0, 0, nullptr, &grow} {}
  explicit RegionWriter(SharedRegion& r) : wm_byte_buffer{r.data(), 0, r.capacity(), nullptr, &grow}, region(&r) {}
  SharedRegion* region = nullptr;

 private:
  static int grow(wm_byte_buffer* b, std::size_t need) {
    auto* self = static_cast<RegionWriter*>(b);
    if (self->region == nullptr || !self->region->reserve(need)) return 1;
    b->data = self->region->data();
    b->capacity = self->region->capacity();
    return 0;
  }
};

}  // namespace wm::sdk::remote
