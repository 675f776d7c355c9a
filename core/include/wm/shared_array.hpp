// SPDX-License-Identifier: MIT
// wm/shared_array.hpp: arrays that reach workers and come back without copies.
//
//   #include <wm/shared_array.hpp>
//   wm::SharedArray<double> coords = wm::make_shared_array<double>(n);   // in the host or in a task
//   ... fill coords.data() ...
//   auto f = wm->submit(analyse, coords);            // a worker reads it in place
//   wm::SharedArray<double> out = f.get_result();    // a task's result, a view of what it wrote
//
// Large arrays (64 KiB and more) live in shared memory that this process keeps in a pool: regions of
// an anonymous memory file (memfd; never a name in /dev/shm, gone when the last process holding it
// ends), pre-faulted when made and reused, so that steady use touches no fresh memory. Where the
// worker runs on this host and maps memory (processes), an argument is read in place (mapped
// read-only: writing it in the task is an error, copy it first) and a result reaches the host as a
// view of the region the task wrote, given back to that worker's pool when the last copy of it
// here is dropped. Elsewhere (mpi, zmq) the bytes are encoded into the
// message, which is received into pooled memory, and the array is kept where it landed. On serial
// and threads the array itself is passed: nothing is copied at all. Small arrays go as bytes.
//
// Copies of a SharedArray share its storage, as copies of a std::shared_ptr do. std::vector and
// std::string keep working as before (they are copied into and out of messages).
#pragma once

#include <wm/errors.hpp>

#include <cereal/cereal.hpp>

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <memory>
#include <iterator>
#include <stdexcept>
#include <string>
#if __has_include(<span>) && __cplusplus >= 202002L
#include <span>
#endif
#include <type_traits>

namespace wm {

/** make_shared_array() would take this process's shared memory past --wm-shared-memory-limit
 *  (WM_SHARED_MEMORY_LIMIT), or the system refused the memory. The message names the limit and the
 *  size. Thrown in a task, it fails that task's future. */
class SharedMemoryError : public Error {
 public:
  using Error::Error;
};

namespace detail {
class WireOutputArchive;
class WireInputArchive;

/** Where a shared array's bytes are: heap memory (small arrays), a region of this process's pool,
 *  or a region of another process mapped here. Shared by the copies of an array. */
class SharedBlock {
 public:
  virtual ~SharedBlock();
  /** Mapped read-only (an argument read in place from the host's memory). */
  bool read_only = false;
};

/** Storage for `bytes` bytes (0 gives none), aligned for any T; throws SharedMemoryError. */
std::shared_ptr<SharedBlock> allocate_shared(std::size_t bytes, void*& data);
/** The wire forms of a shared array (core/src/shared_memory.cpp): a reference to a region where the
 *  peer maps this process's memory, else the bytes. */
void save_shared(WireOutputArchive& ar, const SharedBlock* block, const void* data, std::size_t bytes);
std::shared_ptr<SharedBlock> load_shared(WireInputArchive& ar, std::size_t element_size, void*& data,
                                         std::size_t& bytes);
[[noreturn]] void throw_read_only_shared_array();
}  // namespace detail

/**
 * A contiguous array of trivially copyable T whose storage can be shared with workers (see the top
 * of this header). An argument and a result of tasks, also inside a user's struct serialized with
 * cereal. Copies share the elements. The interface of a contiguous range.
 */
template <class T>
class SharedArray {
  static_assert(std::is_trivially_copyable_v<T> && !std::is_const_v<T> && !std::is_volatile_v<T>,
                "wm::SharedArray<T> holds trivially copyable, non-const T (its bytes are shared as they are)");

 public:
  using value_type = T;
  using size_type = std::size_t;
  using difference_type = std::ptrdiff_t;
  using pointer = T*;
  using const_pointer = const T*;
  using reference = T&;
  using const_reference = const T&;
  using iterator = T*;
  using const_iterator = const T*;

  SharedArray() = default;

  std::size_t size() const noexcept { return size_; }
  std::size_t size_bytes() const noexcept { return size_ * sizeof(T); }
  bool empty() const noexcept { return size_ == 0; }
  /** True for an argument mapped in place from the host's memory: reading is free, writing is an
   *  error (data() and the other mutable accessors throw std::logic_error); copy it into an array
   *  of your own to change it. */
  bool read_only() const noexcept { return block_ != nullptr && block_->read_only; }

  const T* data() const noexcept { return data_; }
  T* data() {
    if (read_only()) detail::throw_read_only_shared_array();
    return data_;
  }
#if defined(__cpp_lib_span)
  /** (C++20) */
  std::span<const T> span() const noexcept { return {data_, size_}; }
  std::span<T> span() { return {data(), size_}; }
  operator std::span<const T>() const noexcept { return span(); }
#endif

  const T* begin() const noexcept { return data_; }
  const T* end() const noexcept { return data_ + size_; }
  const T* cbegin() const noexcept { return data_; }
  const T* cend() const noexcept { return data_ + size_; }
  T* begin() { return data(); }
  T* end() { return data() + size_; }

  const T& operator[](std::size_t i) const noexcept { return data_[i]; }
  T& operator[](std::size_t i) { return data()[i]; }
  const T& at(std::size_t i) const {
    if (i >= size_) throw std::out_of_range("wm::SharedArray::at: index out of range");
    return data_[i];
  }

  template <class Archive>
  void save(Archive& ar) const {
    if constexpr (std::is_same_v<Archive, detail::WireOutputArchive>) {
      detail::save_shared(ar, block_.get(), data_, size_bytes());
    } else {  // another cereal archive of the user's: the elements as bytes
      ar(cereal::make_size_tag(static_cast<cereal::size_type>(size_)));
      ar(cereal::binary_data(data_, size_bytes()));
    }
  }
  template <class Archive>
  void load(Archive& ar) {
    if constexpr (std::is_same_v<Archive, detail::WireInputArchive>) {
      void* p = nullptr;
      std::size_t bytes = 0;
      block_ = detail::load_shared(ar, sizeof(T), p, bytes);
      data_ = static_cast<T*>(p);
      size_ = bytes / sizeof(T);
    } else {
      cereal::size_type n = 0;
      ar(cereal::make_size_tag(n));
      *this = SharedArray(static_cast<std::size_t>(n));
      ar(cereal::binary_data(data_, size_bytes()));
    }
  }

 private:
  template <class U>
  friend SharedArray<U> make_shared_array(std::size_t n);
  explicit SharedArray(std::size_t n) : size_(n) {
    void* p = nullptr;
    block_ = detail::allocate_shared(n * sizeof(T), p);
    data_ = static_cast<T*>(p);
  }

  std::shared_ptr<detail::SharedBlock> block_;
  T* data_ = nullptr;
  std::size_t size_ = 0;
};

/** Untyped bytes: a SharedArray of std::byte. */
using SharedBytes = SharedArray<std::byte>;

/** A new array of n elements, not initialised (as std::make_shared_for_overwrite): the memory may be
 *  reused from this process's pool. Throws SharedMemoryError past --wm-shared-memory-limit. */
template <class T>
SharedArray<T> make_shared_array(std::size_t n) {
  if (n > SIZE_MAX / sizeof(T))
    throw SharedMemoryError("wm::make_shared_array: " + std::to_string(n) + " elements do not fit in memory");
  return SharedArray<T>(n);
}

/** A new array of n copies of value. */
template <class T>
SharedArray<T> make_shared_array(std::size_t n, const T& value) {
  SharedArray<T> a = make_shared_array<T>(n);
  std::fill(a.begin(), a.end(), value);
  return a;
}

/** A new array holding a copy of the elements of a contiguous range (a std::vector, a std::array,
 *  a std::span, another SharedArray: make an argument you were given writable this way). */
template <class R, class T = std::remove_cv_t<std::remove_pointer_t<decltype(std::data(std::declval<const R&>()))>>,
          class = decltype(std::size(std::declval<const R&>()))>
SharedArray<T> make_shared_array(const R& from) {
  const std::size_t n = static_cast<std::size_t>(std::size(from));
  SharedArray<T> a = make_shared_array<T>(n);
  if (n != 0) std::memcpy(a.data(), std::data(from), n * sizeof(T));
  return a;
}

}  // namespace wm
