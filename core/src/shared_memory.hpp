// SPDX-License-Identifier: MIT
// shared_memory.hpp: the core's side of wm::SharedArray: when its encodes may refer to regions of
// shared memory instead of carrying bytes, when its decodes may map them, and the pool's limit.
#pragma once

#include <wm/abi.h>

#include <cstddef>
#include <cstdint>
#include <string>

namespace wm::detail {

/** While alive on this thread, shared arrays encode as references to their regions (the peer runs
 *  on this host and maps them). reply: a worker's reply, whose regions of this process's pool stay
 *  lent (not reused) until the master lets go of them. */
class ShareEncodeScope {
 public:
  ShareEncodeScope(bool refs, bool reply) noexcept;
  ~ShareEncodeScope();
  ShareEncodeScope(const ShareEncodeScope&) = delete;
  ShareEncodeScope& operator=(const ShareEncodeScope&) = delete;

 private:
  bool refs_, reply_;
};

/** While alive on this thread, shared-array references decode (else they are a decode error).
 *  peer_pid: the worker whose reply this is, checked against every reference and the region it
 *  names (master); 0: from the master, trusted, mapped read-only (a worker's arguments). */
class ShareDecodeScope {
 public:
  ShareDecodeScope(bool refs, std::int64_t peer_pid) noexcept;
  ~ShareDecodeScope();
  ShareDecodeScope(const ShareDecodeScope&) = delete;
  ShareDecodeScope& operator=(const ShareDecodeScope&) = delete;

 private:
  bool refs_;
  std::int64_t peer_;
};

/** This worker process's master maps its memory (the core service share_memory): its replies and
 *  requests use references. */
void set_share_with_master(bool on) noexcept;
bool share_with_master() noexcept;

/** The core services of ABI 1.2 for receiving large messages into pooled memory (abi.h). */
struct SharedBlockServices {
  static wm_shared_block* create(std::size_t size, char** data) noexcept;
  static void release(wm_shared_block* block) noexcept;
  static void decode_from(const wm_shared_block* block) noexcept;
  static int describe(const wm_shared_block* block, std::size_t size, wm_shared_ref* out) noexcept;
  static wm_shared_block* map(const wm_shared_ref* ref, char** data, wm_error* err) noexcept;
};

/** The most bytes of shared-array regions this process keeps (--wm-shared-memory-limit). */
void set_shared_memory_limit(std::uint64_t bytes) noexcept;
/** The default limit: WM_SHARED_MEMORY_LIMIT as the master passed it on, else half of this machine's memory. */
std::uint64_t default_shared_memory_limit() noexcept;
/** "8G", "512M", "1.5GiB", "1000000": bytes; false if it is not a size. */
bool parse_memory_size(const std::string& text, std::uint64_t& bytes);
/** "1.50 GiB" */
std::string memory_size_text(std::uint64_t bytes);

}  // namespace wm::detail
