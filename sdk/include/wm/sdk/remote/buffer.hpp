// SPDX-License-Identifier: MIT
// wm/sdk/remote/buffer.hpp: the byte buffer every remote transport moves bytes in and out of.
#pragma once

#include <wm/abi.h>

#include <cstddef>
#include <cstring>
#include <utility>

namespace wm::sdk::remote {

/**
 * @brief A growable byte buffer that is not zero-filled on growth.
 *
 * Large buffers (kHuge and up) are mapped directly and advised to use transparent huge pages: a
 * fresh 4 KiB page fault costs 10-30 us on the virtual machines measured, so a 64 MiB buffer would
 * spend 0.2-0.4 s faulting in. Keep a large buffer for reuse; release() gives it back.
 */
struct Buffer {
  static constexpr std::size_t kHuge = std::size_t(2) << 20;

  char* data = nullptr;
  std::size_t size = 0;
  std::size_t capacity = 0;
  bool mapped = false;
  /** Set when the memory is the core's (pooled_for): given back with drop_block, never freed here. */
  wm_shared_block* block = nullptr;
  void (*drop_block)(wm_shared_block*) = nullptr;

  Buffer() = default;
  Buffer(const Buffer&) = delete;
  Buffer& operator=(const Buffer&) = delete;
  Buffer(Buffer&& o) noexcept { swap(o); }
  Buffer& operator=(Buffer&& o) noexcept {
    if (this != &o) {
      release();
      swap(o);
    }
    return *this;
  }
  ~Buffer() { release(); }

  void swap(Buffer& o) noexcept {
    std::swap(data, o.data);
    std::swap(size, o.size);
    std::swap(capacity, o.capacity);
    std::swap(mapped, o.mapped);
    std::swap(block, o.block);
    std::swap(drop_block, o.drop_block);
  }
  /** Room for n bytes in all, keeping the first size; throws std::bad_alloc. */
  void reserve(std::size_t n);
  /** Empties it, with room for n bytes (what it held is dropped); false if that memory cannot be had. */
  bool clear_for(std::size_t n) noexcept;
  void append(const void* p, std::size_t n) {
    reserve(size + n);
    if (n != 0) std::memcpy(data + size, p, n);
    size += n;
  }
  void release() noexcept;
  /** Empties it, with room for n bytes of the core's pooled shared-array memory (ABI 1.2), so that
   *  a large shared array in a message received into it is kept there instead of copied (pass the
   *  block to services.decode_from_block around the decode). Falls back to clear_for(n) where the
   *  core has no pool to give. */
  bool pooled_for(const wm_core_services& services, std::size_t n) noexcept;
};

/** @brief A wm_byte_buffer over a Buffer (what the core encodes into); commit() writes the size back. */
class BufferWriter : public wm_byte_buffer {
 public:
  explicit BufferWriter(Buffer& b) noexcept : wm_byte_buffer{b.data, b.size, b.capacity, nullptr, &grow}, buf_(&b) {}
  /** Writes the bytes appended so far back into the Buffer's size. */
  void commit() noexcept { buf_->size = size; }

 private:
  static int grow(wm_byte_buffer* self, std::size_t need) noexcept;
  Buffer* buf_;
};

}  // namespace wm::sdk::remote
