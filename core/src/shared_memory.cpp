// SPDX-License-Identifier: MIT
// shared_memory.cpp: the storage of wm::SharedArray. Small arrays live on the heap. Large ones live
// in regions of this process's pool: each an anonymous memory file (memfd, close-on-exec, sealed
// against shrinking and growing so that no peer can make a mapping of it fault), mapped and
// pre-faulted once, then reused. A peer on this host maps a region through /proc/PID/fd/FD of the
// process that names it; a mapping costs about what a copy of the region costs (3-6 ms for 64 MiB
// of 4 KiB pages, bench/NOTES.md), so both sides keep the mappings of regions they saw.
//
// Who may reuse what:
//  - a region of this pool is reused once no array here views it and no peer holds it lent: a
//    worker's reply that refers to its own region counts one lend in the region's header; the
//    master gives it back (decrements) when the last array there that came from that reply goes;
//  - the master's own regions, sent as arguments, are held by the task's bound arguments until the
//    task finished; the worker maps them read-only.
// Nothing a worker sends is trusted: the master opens the region the worker names in the worker's
// own descriptor table, checks that it is the inode named, sealed, and large enough, and reads only
// within it.
#include "shared_memory.hpp"

#include "internal.hpp"

#include <wm/detail/codec.hpp>
#include <wm/shared_array.hpp>

#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <limits>
#include <list>
#include <mutex>
#include <unordered_map>
#include <vector>

#ifndef F_SEAL_SHRINK
#include <linux/fcntl.h>
#endif

namespace wm::detail {

SharedBlock::~SharedBlock() = default;

void throw_read_only_shared_array() {
  throw std::logic_error(
      "this wm::SharedArray is read-only: it is an argument read in place from the host's memory; copy it into an "
      "array of your own (wm::make_shared_array(arg)) to change it");
}

namespace {

constexpr std::size_t kHeaderBytes = 4096;                 // a region's header page; the data follow
constexpr std::size_t kPooledBytes = std::size_t(64) << 10;  // smaller arrays live on the heap
constexpr std::size_t kGrain = std::size_t(2) << 20;
constexpr std::uint64_t kMagic = 0x776d2d7368617265ull;    // "wm-share"
constexpr std::size_t kPeerCacheEntries = 16;              // mappings of others' regions kept unused

struct RegionHeader {
  std::uint64_t magic;
  std::atomic<std::uint32_t> lent;  // replies that refer to it and that the master still holds
};
static_assert(std::atomic<std::uint32_t>::is_always_lock_free, "the lend count is shared between processes");

// One memfd mapped in this process: a region of this pool (own), or another process's.
struct Region {
  int fd = -1;
  ino_t ino = 0;
  char* base = nullptr;
  std::size_t size = 0;  // of the mapping, the whole file
  bool own = false;
  bool writable = false;
  std::int64_t owner_pid = 0;  // a peer's region: the process that first lent it to us

  Region() = default;
  Region(const Region&) = delete;
  Region& operator=(const Region&) = delete;
  ~Region() {
    if (base != nullptr) munmap(base, size);
    if (fd >= 0) close(fd);
  }
  RegionHeader* header() const noexcept { return reinterpret_cast<RegionHeader*>(base); }
  std::size_t capacity() const noexcept { return size - kHeaderBytes; }
  std::uint32_t lent() const noexcept { return writable ? header()->lent.load(std::memory_order_acquire) : 0; }
};
using RegionPtr = std::shared_ptr<Region>;

class HeapBlock final : public SharedBlock {
 public:
  explicit HeapBlock(std::size_t bytes) : p_(std::aligned_alloc(64, (bytes + 63) / 64 * 64)) {
    if (p_ == nullptr) throw SharedMemoryError("wm::make_shared_array: out of memory for " + std::to_string(bytes) + " bytes");
  }
  ~HeapBlock() override { std::free(p_); }
  void* data() const noexcept { return p_; }

 private:
  void* p_;
};

class RegionBlock final : public SharedBlock {
 public:
  RegionBlock(RegionPtr r, bool counted) : region(std::move(r)), counted(counted) {}
  ~RegionBlock() override;
  RegionPtr region;
  bool counted;  // gives one lend back to the region's owner when it goes
};

std::string errno_text() { return std::strerror(errno); }

class Pool {
 public:
  static Pool& get() {
    static Pool* pool = new Pool;  // never destroyed: arrays may outlive static destruction
    return *pool;
  }

  std::atomic<std::uint64_t> limit{0};  // 0: not set yet (the default applies)

  std::shared_ptr<SharedBlock> allocate(std::size_t bytes, void*& data) {
    const std::size_t cap = capacity_for(bytes);
    std::vector<RegionPtr> dropped;  // unmapped outside the lock
    {
      std::lock_guard<std::mutex> lock(m_);
      auto best = own_free_.end();
      for (auto it = own_free_.begin(); it != own_free_.end(); ++it) {
        const std::size_t c = (*it)->capacity();
        if (c >= bytes && c <= cap + cap / 4 && (*it)->lent() == 0 &&
            (best == own_free_.end() || c < (*best)->capacity()))
          best = it;
      }
      if (best != own_free_.end()) {
        RegionPtr r = std::move(*best);
        own_free_.erase(best);
        return view(r, false, false, data, kHeaderBytes);
      }
      const std::uint64_t need = kHeaderBytes + cap;
      const std::uint64_t lim = effective_limit();
      for (auto it = own_free_.begin(); own_bytes_ + need > lim && it != own_free_.end();) {
        if ((*it)->lent() == 0) {
          own_bytes_ -= (*it)->size;
          dropped.push_back(std::move(*it));
          it = own_free_.erase(it);
        } else {
          ++it;
        }
      }
      if (own_bytes_ + need > lim)
        throw SharedMemoryError("a shared array of " + memory_size_text(bytes) + " would take this process's shared arrays to " +
                                memory_size_text(own_bytes_ + need) + ", over the limit of " + memory_size_text(lim) +
                                " (--wm-shared-memory-limit, WM_SHARED_MEMORY_LIMIT)");
      own_bytes_ += need;
    }
    dropped.clear();
    RegionPtr r;
    try {
      r = create(kHeaderBytes + cap);
    } catch (...) {
      std::lock_guard<std::mutex> lock(m_);
      own_bytes_ -= kHeaderBytes + cap;
      throw;
    }
    std::lock_guard<std::mutex> lock(m_);
    return view(r, false, false, data, kHeaderBytes);
  }

  // A reference a peer sent: the region's block and the data's address. peer_pid > 0: a worker's
  // reply, checked; 0: the master's request, trusted, mapped read-only.
  std::shared_ptr<SharedBlock> resolve(std::int64_t pid, std::int32_t fd, std::uint64_t ino, std::uint64_t offset,
                                       std::uint64_t bytes, std::int64_t peer_pid, void*& data) {
    const bool checked = peer_pid > 0;
    if (checked && pid != peer_pid)
      bad("refers to memory of process " + std::to_string(pid) + ", not of the worker that sent it (pid " +
          std::to_string(peer_pid) + ")");
    if (offset < kHeaderBytes || offset % alignof(std::max_align_t) != 0 || bytes == 0 ||
        bytes > std::numeric_limits<std::uint64_t>::max() - offset)
      bad("has a bad offset or size (offset " + std::to_string(offset) + ", " + std::to_string(bytes) + " bytes)");
    int opened = -1;
    struct Closer {
      int& fd;
      ~Closer() {
        if (fd >= 0) close(fd);
      }
    } closer{opened};
    std::uint64_t file_size = 0;
    auto open_and_check = [&] {
      char path[64];
      std::snprintf(path, sizeof path, "/proc/%lld/fd/%d", static_cast<long long>(pid), fd);
      opened = open(path, (checked ? O_RDWR : O_RDONLY) | O_CLOEXEC);
      if (opened < 0) bad("names a region this process cannot open (" + std::string(path) + ": " + errno_text() + ")");
      struct stat st;
      if (fstat(opened, &st) != 0 || !S_ISREG(st.st_mode) || static_cast<std::uint64_t>(st.st_ino) != ino)
        bad("names a descriptor that is not the region it says");
      const int seals = fcntl(opened, F_GET_SEALS);
      if (seals < 0 || (seals & (F_SEAL_SHRINK | F_SEAL_GROW)) != (F_SEAL_SHRINK | F_SEAL_GROW))
        bad("names a region whose size is not sealed");
      file_size = static_cast<std::uint64_t>(st.st_size);
      if (offset + bytes > file_size)
        bad("reaches past its region (" + std::to_string(offset + bytes) + " bytes of " + std::to_string(file_size) + ")");
    };
    // A worker's reference is checked every time (a cheap open and fstat); the master's only when
    // this process has no mapping of the region yet.
    if (checked) open_and_check();
    for (int round = 0; round < 2; ++round) {
      RegionPtr fresh;
      if (round == 1) {
        if (!checked) open_and_check();
        fresh = map_peer(opened, static_cast<std::size_t>(file_size), checked, pid);
        opened = -1;  // the region keeps it
      }
      std::vector<RegionPtr> dropped;
      std::lock_guard<std::mutex> lock(m_);
      RegionPtr r = find(static_cast<ino_t>(ino));
      if (r == nullptr && fresh != nullptr) r = std::move(fresh);
      if (r != nullptr) {
        if (offset + bytes > r->size) bad("reaches past its region");
        if (checked && !r->writable) bad("names a region this process may only read");
        const bool counted = checked && !r->own && r->owner_pid == pid;
        auto block = view(r, counted, !checked, data, static_cast<std::size_t>(offset));
        trim(dropped);
        return block;
      }
    }
    bad("could not be mapped");
  }

  void release(RegionPtr& r, bool counted) noexcept {
    RegionPtr unused;
    std::vector<RegionPtr> dropped;
    {
      std::lock_guard<std::mutex> lock(m_);
      if (counted && r->writable) {
        std::uint32_t n = r->header()->lent.load(std::memory_order_relaxed);
        while (n > 0 && !r->header()->lent.compare_exchange_weak(n, n - 1, std::memory_order_acq_rel)) {
        }
      }
      if (r.use_count() == 1) {  // the last array here that views it
        viewed_.erase(r->ino);
        if (r->own) {
          own_free_.push_back(std::move(r));
        } else {
          peer_cache_.push_front(std::move(r));
          trim(dropped);
        }
      }
      unused = std::move(r);
    }
  }

 private:
  std::uint64_t effective_limit() {
    std::uint64_t l = limit.load(std::memory_order_relaxed);
    return l != 0 ? l : default_shared_memory_limit();
  }

  static std::size_t capacity_for(std::size_t bytes) {
    if (bytes <= kGrain) {
      std::size_t c = kPooledBytes;
      while (c < bytes) c *= 2;
      return c;
    }
    return (bytes + kGrain - 1) / kGrain * kGrain;
  }

  [[noreturn]] static void bad(const std::string& what) {
    throw Error("a shared-array reference " + what + " (corrupt bytes, or a worker that does not keep to the protocol)");
  }

  // Under m_: the region with this inode that this process maps, taken out of the free lists.
  RegionPtr find(ino_t ino) {
    if (auto it = viewed_.find(ino); it != viewed_.end())
      if (RegionPtr r = it->second.lock()) return r;
    for (auto it = own_free_.begin(); it != own_free_.end(); ++it)
      if ((*it)->ino == ino) {
        RegionPtr r = std::move(*it);
        own_free_.erase(it);
        return r;
      }
    for (auto it = peer_cache_.begin(); it != peer_cache_.end(); ++it)
      if ((*it)->ino == ino) {
        RegionPtr r = std::move(*it);
        peer_cache_.erase(it);
        return r;
      }
    return nullptr;
  }

  // Under m_: a new block viewing r.
  std::shared_ptr<SharedBlock> view(const RegionPtr& r, bool counted, bool read_only, void*& data, std::size_t offset) {
    auto block = std::make_shared<RegionBlock>(r, counted);
    block->read_only = read_only || !r->writable;
    viewed_[r->ino] = r;
    data = r->base + offset;
    return block;
  }

  // Under m_: unused mappings of others' regions beyond what is kept.
  void trim(std::vector<RegionPtr>& dropped) {
    while (peer_cache_.size() > kPeerCacheEntries) {
      dropped.push_back(std::move(peer_cache_.back()));
      peer_cache_.pop_back();
    }
  }

  static RegionPtr create(std::size_t size) {
    auto r = std::make_shared<Region>();
    r->own = true;
    r->writable = true;
    r->owner_pid = getpid();
    int fd = memfd_create("wm-shared-array", MFD_CLOEXEC | MFD_ALLOW_SEALING);
    if (fd < 0) throw SharedMemoryError("wm::make_shared_array: memfd_create failed: " + errno_text());
    if (fd < 10) {  // clear of the low numbers a spawn duplicates descriptors onto
      const int high = fcntl(fd, F_DUPFD_CLOEXEC, 10);
      close(fd);
      fd = high;
      if (fd < 0) throw SharedMemoryError("wm::make_shared_array: out of file descriptors: " + errno_text());
    }
    r->fd = fd;
    struct stat st;
    if (ftruncate(fd, static_cast<off_t>(size)) != 0 ||
        fcntl(fd, F_ADD_SEALS, F_SEAL_SHRINK | F_SEAL_GROW | F_SEAL_SEAL) != 0 || fstat(fd, &st) != 0)
      throw SharedMemoryError("wm::make_shared_array: a shared region of " + memory_size_text(size) +
                              " could not be made: " + errno_text());
    r->ino = st.st_ino;
    void* p = mmap(nullptr, size, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
    if (p == MAP_FAILED)
      throw SharedMemoryError("wm::make_shared_array: a shared region of " + memory_size_text(size) +
                              " could not be mapped: " + errno_text());
    r->base = static_cast<char*>(p);
    r->size = size;
#ifdef MADV_HUGEPAGE
    madvise(p, size, MADV_HUGEPAGE);  // where the system gives shared memory huge pages
#endif
#ifndef MADV_POPULATE_WRITE
    constexpr int MADV_POPULATE_WRITE = 23;
#endif
    // Pre-faulted now, once: a region is reused from then on, and fresh pages cost 10-30 us each
    // to touch on the VMs measured.
    if (madvise(p, size, MADV_POPULATE_WRITE) != 0) {
      if (errno == ENOMEM)
        throw SharedMemoryError("wm::make_shared_array: the system has no memory for a shared region of " +
                                memory_size_text(size));
      const long page = sysconf(_SC_PAGESIZE);
      for (std::size_t off = 0; off < size; off += static_cast<std::size_t>(page)) static_cast<volatile char*>(p)[off] = 0;
    }
    new (r->base) RegionHeader{kMagic, {0}};
    return r;
  }

  static RegionPtr map_peer(int fd, std::size_t size, bool writable, std::int64_t pid) {
    auto r = std::make_shared<Region>();
    r->fd = fd;
    struct stat st;
    if (fstat(fd, &st) != 0) bad("names a region that vanished");
    r->ino = st.st_ino;
    r->writable = writable;
    r->owner_pid = pid;
    // Populated at once: one call instead of a fault per page.
    void* p = mmap(nullptr, size, writable ? PROT_READ | PROT_WRITE : PROT_READ, MAP_SHARED | MAP_POPULATE, fd, 0);
    if (p == MAP_FAILED) bad("names a region that could not be mapped (" + errno_text() + ")");
    r->base = static_cast<char*>(p);
    r->size = size;
    if (writable && r->header()->magic != kMagic) bad("names a region that is not a shared array's");
    return r;
  }

  std::mutex m_;
  std::uint64_t own_bytes_ = 0;             // the regions of this pool, in use or free
  std::vector<RegionPtr> own_free_;         // no array views them
  std::list<RegionPtr> peer_cache_;         // others' regions no array views, newest first
  std::unordered_map<ino_t, std::weak_ptr<Region>> viewed_;  // regions arrays view now
};

RegionBlock::~RegionBlock() { Pool::get().release(region, counted); }

struct ShareContext {
  bool encode_refs = false;
  bool encode_reply = false;
  bool decode_refs = false;
  std::int64_t decode_peer = 0;
  const wm_shared_block* source = nullptr;  // decode_from_block
};
// initial-exec, constinit: set around every remote task's encode and decode, so no __tls_get_addr
// call and no guard (as t_obs, link_stats.hpp).
constinit thread_local ShareContext t_share [[gnu::tls_model("initial-exec")]];
std::atomic<bool> g_share_with_master{false};

}  // namespace
}  // namespace wm::detail

// A block of pooled memory a backend receives a large message into (ABI 1.2).
struct wm_shared_block {
  std::shared_ptr<wm::detail::SharedBlock> block;
  char* data = nullptr;
  std::size_t size = 0;
};

namespace wm::detail {

wm_shared_block* SharedBlockServices::create(std::size_t size, char** data) noexcept {
  try {
    auto b = std::make_unique<wm_shared_block>();
    void* p = nullptr;
    b->block = allocate_shared(size, p);
    if (p == nullptr) return nullptr;
    b->data = static_cast<char*>(p);
    b->size = size;
    *data = b->data;
    return b.release();
  } catch (...) {
    return nullptr;  // over the limit, or no memory: the backend receives into memory of its own
  }
}
void SharedBlockServices::release(wm_shared_block* block) noexcept { delete block; }
void SharedBlockServices::decode_from(const wm_shared_block* block) noexcept { t_share.source = block; }

int SharedBlockServices::describe(const wm_shared_block* block, std::size_t size, wm_shared_ref* out) noexcept {
  const auto* rb = block != nullptr ? dynamic_cast<const RegionBlock*>(block->block.get()) : nullptr;
  if (rb == nullptr || out == nullptr || size > block->size) return 0;
  const Region& r = *rb->region;
  *out = wm_shared_ref{static_cast<std::int64_t>(getpid()), static_cast<std::int32_t>(r.fd), 0,
                       static_cast<std::uint64_t>(r.ino), static_cast<std::uint64_t>(block->data - r.base),
                       static_cast<std::uint64_t>(size)};
  return 1;
}

wm_shared_block* SharedBlockServices::map(const wm_shared_ref* ref, char** data, wm_error* err) noexcept {
  try {
    auto b = std::make_unique<wm_shared_block>();
    void* p = nullptr;
    // From the process that serves this one (trusted, as the master's arguments are): read-only.
    b->block = Pool::get().resolve(ref->pid, ref->fd, ref->ino, ref->offset, ref->size, 0, p);
    b->data = static_cast<char*>(p);
    b->size = static_cast<std::size_t>(ref->size);
    *data = b->data;
    return b.release();
  } catch (const std::exception& e) {
    if (err != nullptr) {
      err->code = 1;
      std::snprintf(err->message, sizeof err->message, "%s", e.what());
    }
    return nullptr;
  }
}

ShareEncodeScope::ShareEncodeScope(bool refs, bool reply) noexcept
    : refs_(t_share.encode_refs), reply_(t_share.encode_reply) {
  ShareContext& t = t_share;
  t.encode_refs = refs;
  t.encode_reply = reply;
}
ShareEncodeScope::~ShareEncodeScope() {
  ShareContext& t = t_share;
  t.encode_refs = refs_;
  t.encode_reply = reply_;
}

ShareDecodeScope::ShareDecodeScope(bool refs, std::int64_t peer_pid) noexcept
    : refs_(t_share.decode_refs), peer_(t_share.decode_peer) {
  ShareContext& t = t_share;
  t.decode_refs = refs;
  t.decode_peer = peer_pid;
}
ShareDecodeScope::~ShareDecodeScope() {
  ShareContext& t = t_share;
  t.decode_refs = refs_;
  t.decode_peer = peer_;
}

void set_share_with_master(bool on) noexcept { g_share_with_master.store(on, std::memory_order_relaxed); }
bool share_with_master() noexcept { return g_share_with_master.load(std::memory_order_relaxed); }

void set_shared_memory_limit(std::uint64_t bytes) noexcept { Pool::get().limit.store(bytes); }
std::uint64_t default_shared_memory_limit() noexcept {
  // A worker process (started with the master's environment) takes the master's limit from it.
  if (const char* v = std::getenv("WM_SHARED_MEMORY_LIMIT")) {
    std::uint64_t b = 0;
    if (parse_memory_size(v, b)) return b;
  }
  const long pages = sysconf(_SC_PHYS_PAGES), page = sysconf(_SC_PAGESIZE);
  if (pages <= 0 || page <= 0) return std::uint64_t(4) << 30;
  return static_cast<std::uint64_t>(pages) * static_cast<std::uint64_t>(page) / 2;
}

bool parse_memory_size(const std::string& text, std::uint64_t& bytes) {
  const char* s = text.c_str();
  char* end = nullptr;
  errno = 0;
  const double v = std::strtod(s, &end);
  if (end == s || errno != 0 || !(v > 0) || !std::isfinite(v)) return false;
  std::string unit(end);
  unit.erase(std::remove(unit.begin(), unit.end(), ' '), unit.end());
  for (char& c : unit) c = static_cast<char>(std::toupper(static_cast<unsigned char>(c)));
  if (unit.size() >= 2 && unit.back() == 'B') unit.pop_back();          // "GB", "GIB" -> "G", "GI"
  if (unit.size() == 2 && unit.back() == 'I') unit.pop_back();          // binary units either way
  double scale = 1;
  if (unit == "K") scale = 1024.0;
  else if (unit == "M") scale = 1024.0 * 1024;
  else if (unit == "G") scale = 1024.0 * 1024 * 1024;
  else if (unit == "T") scale = 1024.0 * 1024 * 1024 * 1024;
  else if (!unit.empty()) return false;
  const double b = v * scale;
  if (b < 1 || b > 1.8e19) return false;
  bytes = static_cast<std::uint64_t>(b);
  return true;
}

std::string memory_size_text(std::uint64_t bytes) {
  const char* units[] = {"bytes", "KiB", "MiB", "GiB", "TiB"};
  double v = static_cast<double>(bytes);
  int u = 0;
  while (v >= 1024 && u < 4) v /= 1024, ++u;
  char buf[48];
  if (u == 0)
    std::snprintf(buf, sizeof buf, "%llu bytes", static_cast<unsigned long long>(bytes));
  else
    std::snprintf(buf, sizeof buf, "%.2f %s", v, units[u]);
  return buf;
}

std::shared_ptr<SharedBlock> allocate_shared(std::size_t bytes, void*& data) {
  data = nullptr;
  if (bytes == 0) return nullptr;
  if (bytes < kPooledBytes) {
    auto b = std::make_shared<HeapBlock>(bytes);
    data = b->data();
    return b;
  }
  return Pool::get().allocate(bytes, data);
}

// The wire form: a tag byte; 0: the size in bytes and the bytes; 1: a reference (pid, descriptor,
// inode, offset, size) to a region the peer maps.
namespace {
constexpr std::uint8_t kInline = 0, kReference = 1;
}

void save_shared(WireOutputArchive& ar, const SharedBlock* block, const void* data, std::size_t bytes) {
  const auto* rb = t_share.encode_refs ? dynamic_cast<const RegionBlock*>(block) : nullptr;
  if (rb != nullptr && bytes != 0) {
    const Region& r = *rb->region;
    if (t_share.encode_reply && r.own) r.header()->lent.fetch_add(1, std::memory_order_acq_rel);
    ar(kReference, static_cast<std::int64_t>(getpid()), static_cast<std::int32_t>(r.fd), static_cast<std::uint64_t>(r.ino),
       static_cast<std::uint64_t>(static_cast<const char*>(data) - r.base), static_cast<std::uint64_t>(bytes));
    return;
  }
  // A large array's bytes start 64-byte aligned from the message's start, so that a receiver that
  // took the message into pooled memory (decode_from_block) can keep them where they landed.
  std::uint8_t pad = 0;
  const std::int64_t at = ar.position();
  if (bytes >= kPooledBytes && at >= 0) pad = static_cast<std::uint8_t>((64 - (static_cast<std::uint64_t>(at) + 10) % 64) % 64);
  ar(kInline, static_cast<std::uint64_t>(bytes), pad);
  static const char zeros[64] = {};
  if (pad != 0) ar.saveBinary(zeros, pad);
  ar.saveBinary(data, static_cast<std::streamsize>(bytes));
}

namespace {
// A shared array's size, as either wire form announces it, checked against its element type.
void check_whole_elements(std::uint64_t n, std::size_t element_size) {
  if (n % element_size != 0)
    throw Error("a shared array of " + std::to_string(n) + " bytes is not a whole number of " +
                std::to_string(element_size) + "-byte elements (the two sides disagree on the types)");
}
}  // namespace

std::shared_ptr<SharedBlock> load_shared(WireInputArchive& ar, std::size_t element_size, void*& data, std::size_t& bytes) {
  std::uint8_t tag = 0;
  ar(tag);
  if (tag == kInline) {
    std::uint64_t n = 0;
    std::uint8_t pad = 0;
    ar(n, pad);
    check_whole_elements(n, element_size);
    if (pad >= 64)
      throw Error("a shared array's padding is " + std::to_string(pad) + " bytes (less than 64 expected): corrupt bytes");
    ar.check_length(pad, 1);
    ar.skip(pad);
    ar.check_length(n, 1);
    const char* at = ar.position();
    const wm_shared_block* src = t_share.source;
    if (src != nullptr && n >= kPooledBytes && reinterpret_cast<std::uintptr_t>(at) % 64 == 0 && at >= src->data &&
        static_cast<std::size_t>(at - src->data) + n <= src->size) {
      // The message was received into pooled memory: the array is kept where it landed.
      data = const_cast<char*>(at);
      ar.skip(static_cast<std::size_t>(n));
      bytes = static_cast<std::size_t>(n);
      return src->block;
    }
    auto block = allocate_shared(static_cast<std::size_t>(n), data);
    if (n != 0) {
      std::memcpy(data, ar.position(), static_cast<std::size_t>(n));  // pooled memory: warm, no fresh pages
      ar.skip(static_cast<std::size_t>(n));
    }
    bytes = static_cast<std::size_t>(n);
    return block;
  }
  if (tag != kReference) throw Error("a shared array's tag is " + std::to_string(tag) + " (0 or 1 expected): corrupt bytes");
  std::int64_t pid = 0;
  std::int32_t fd = -1;
  std::uint64_t ino = 0, offset = 0, n = 0;
  ar(pid, fd, ino, offset, n);
  if (!t_share.decode_refs)
    throw Error("a shared-array reference came from a peer that cannot share memory with this process (corrupt bytes, "
                "or a worker that does not keep to the protocol)");
  check_whole_elements(n, element_size);
  auto block = Pool::get().resolve(pid, fd, ino, offset, n, t_share.decode_peer, data);
  bytes = static_cast<std::size_t>(n);
  return block;
}

}  // namespace wm::detail
