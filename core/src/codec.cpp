// SPDX-License-Identifier: MIT
// codec.cpp: the out-of-line parts of the codec: its errors, and preparing large destinations.
#include <wm/detail/codec.hpp>
#include <wm/errors.hpp>

#include <sys/mman.h>
#include <unistd.h>

#include <algorithm>
#include <cstdint>
#include <cstdlib>

namespace wm::detail {

void throw_trailing_bytes(std::size_t remaining, std::size_t size) {
  throw Error(std::to_string(remaining) + " of " + std::to_string(size) +
              " bytes left over after decoding: the two sides disagree on the types");
}

void throw_short_input(std::size_t wanted, std::size_t available) {
  throw Error("the bytes end early: " + std::to_string(wanted) + " more were needed where " + std::to_string(available) +
              " are left (truncated or corrupt bytes, or the two sides disagree on the types)");
}

void throw_bad_length(std::size_t announced, std::size_t available) {
  throw Error("a block of " + std::to_string(announced) + " bytes is announced where " + std::to_string(available) +
              " bytes are left: corrupt bytes, or the two sides disagree on the types");
}

void throw_bad_bool(unsigned value) {
  throw Error("a bool is encoded as the byte " + std::to_string(value) + " (0 or 1 expected): corrupt bytes");
}

void throw_write_failure(std::size_t wanted, std::size_t written) {
  throw Error("encoding failed: " + std::to_string(written) + " of " + std::to_string(wanted) + " bytes written");
}

void prepare_bulk_write(void* p, std::size_t n) noexcept {
#if defined(__linux__) && defined(MADV_HUGEPAGE)
  constexpr std::uintptr_t kHuge = std::uintptr_t(2) << 20;
  const auto begin = (reinterpret_cast<std::uintptr_t>(p) + kHuge - 1) & ~(kHuge - 1);
  const auto end = (reinterpret_cast<std::uintptr_t>(p) + n) & ~(kHuge - 1);
  if (end <= begin) return;
  // Only memory nobody has touched yet: a resident first page means the range is in use (a reused
  // heap block), and its pages are already there.
  unsigned char resident = 0;
  if (mincore(reinterpret_cast<void*>(begin), static_cast<std::size_t>(sysconf(_SC_PAGESIZE)), &resident) != 0 ||
      (resident & 1u) != 0)
    return;
  madvise(reinterpret_cast<void*>(begin), end - begin, MADV_HUGEPAGE);
  // And fault the range in with one call rather than a trap per page (Linux 5.14; a no-op before).
  constexpr int kPopulateWrite = 23;  // MADV_POPULATE_WRITE, missing from older headers
  madvise(reinterpret_cast<void*>(begin), end - begin, kPopulateWrite);
#else
  (void)p;
  (void)n;
#endif
}

int grow_byte_buffer(wm_byte_buffer* self, std::size_t need) noexcept {
  if (need <= self->capacity) return 0;
  std::size_t cap = std::max<std::size_t>({need, self->capacity + self->capacity / 2, 256});
  // realloc moves a large block by remapping its pages, not by copying them.
  void* p = std::realloc(self->data, cap);
  if (p == nullptr) return 1;
  self->data = static_cast<char*>(p);
  if (cap - self->size >= kBulkBytes) prepare_bulk_write(self->data + self->size, cap - self->size);
  self->capacity = cap;
  return 0;
}

}  // namespace wm::detail
