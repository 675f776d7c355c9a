// SPDX-License-Identifier: MIT
// buffer.cpp: the transports' byte buffer (see wm/sdk/remote/buffer.hpp).
#include <wm/sdk/remote/buffer.hpp>

#include <sys/mman.h>

#include <cstddef>

#include <new>

namespace wm::sdk::remote {

void Buffer::reserve(std::size_t n) {
  if (n <= capacity) return;
  std::size_t cap = capacity == 0 ? n : capacity;
  while (cap < n) cap += cap / 2 + 1;
  Buffer fresh;
  if (cap >= kHuge) {
    cap = (cap + kHuge - 1) / kHuge * kHuge;
    void* p = mmap(nullptr, cap, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (p == MAP_FAILED) throw std::bad_alloc();
    madvise(p, cap, MADV_HUGEPAGE);
    fresh.data = static_cast<char*>(p);
    fresh.mapped = true;
  } else {
    fresh.data = new char[cap];
  }
  fresh.capacity = cap;
  if (size != 0) std::memcpy(fresh.data, data, size);
  fresh.size = size;
  swap(fresh);
}

void Buffer::release() noexcept {
  if (block != nullptr) {
    drop_block(block);
    block = nullptr;
    drop_block = nullptr;
  } else if (data != nullptr) {
    if (mapped)
      munmap(data, capacity);
    else
      delete[] data;
  }
  data = nullptr;
  size = capacity = 0;
  mapped = false;
}

bool Buffer::clear_for(std::size_t n) noexcept {
  size = 0;
  if (block != nullptr) release();  // the core's memory is not grown or reused here
  try {
    reserve(n);
  } catch (const std::bad_alloc&) {
    return false;
  }
  return true;
}

bool Buffer::pooled_for(const wm_core_services& services, std::size_t n) noexcept {
  release();
  if (services.struct_size > offsetof(wm_core_services, decode_from_block) && services.shared_block_new != nullptr) {
    char* p = nullptr;
    if (wm_shared_block* b = services.shared_block_new(n, &p)) {
      data = p;
      capacity = n;
      block = b;
      drop_block = services.shared_block_release;
      return true;
    }
  }
  return clear_for(n);
}

int BufferWriter::grow(wm_byte_buffer* self, std::size_t need) noexcept {
  auto* w = static_cast<BufferWriter*>(self);
  w->buf_->size = w->size;
  try {
    w->buf_->reserve(need);
  } catch (const std::bad_alloc&) {
    return 1;
  }
  w->data = w->buf_->data;
  w->capacity = w->buf_->capacity;
  return 0;
}

}  // namespace wm::sdk::remote
