// SPDX-License-Identifier: MIT
/* wm/abi.h: the versioned C ABI between the work-manager core (libwm_core) and backend plugins.
 *
 * C at this boundary keeps third-party backends working across compilers and standard libraries.
 * Backend authors normally do not use this header directly: <wm/sdk/backend.hpp> wraps it in a C++
 * base class and one macro (WM_DECLARE_BACKEND).
 *
 * Two records describe a backend:
 *  - wm_plugin_metadata: a fixed-layout record with no pointers, placed in the ELF section
 *    WM_PLUGIN_SECTION. The core reads it from the file WITHOUT loading the library, so discovery
 *    never runs plugin code. It names the backend, its ABI version, its options and entry symbol.
 *  - wm_backend_descriptor: returned by the entry symbol once the chosen plugin is loaded; it holds
 *    the entry points. The core hands the backend a table of services (wm_core_services).
 *
 * Ownership rules:
 *  - wm_task is owned by the core. A task passed to submit() is accepted by the backend, which must
 *    then call exactly one of services->execute, ->complete_encoded or ->fail for it, exactly once,
 *    at the latest before a waiting shutdown() returns. After that call the backend must not touch
 *    the task.
 *  - All entry points may be called from any thread; submit() and shutdown() may be called
 *    concurrently, and shutdown() may be called again from inside a task or a done-callback that
 *    the backend itself is running (the core then never asks it to wait: WM_SHUTDOWN_WAIT unset).
 *  - Loaded backend libraries are never unloaded during the life of the process.
 *  - Nothing thrown crosses this boundary: entry points report failure through wm_error.
 */
#ifndef WM_ABI_H
#define WM_ABI_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/**
 * ABI version: major.minor, packed as (major << 16) | minor in every record's abi_version field.
 *
 * The growth rule, checked by both sides:
 *  - a different MAJOR is incompatible: the record is refused, naming both versions;
 *  - a newer MINOR only appends fields at the end of a record (and entry points or services at the
 *    end of a table, in the reserved space); every record carries its struct_size (record_size),
 *    so a reader of an older minor reads the fields it knows and ignores the rest, and a reader of
 *    a newer minor treats the fields beyond an older record's struct_size as absent (NULL / 0).
 *  - a record shorter than the first version of its major (its x.0 layout) is malformed.
 *
 * Which core a plugin runs on, one rule decided once, at discovery: a plugin runs on a core of its
 * major whose minor is at least the plugin's min_core_abi_version (wm_plugin_metadata), which is
 * the minor it was built against unless it says less (WM_SDK_MIN_CORE_MINOR). Discovery reads that
 * from the record without loading the plugin and refuses, with the reason, a plugin that needs a
 * newer core; `wm list --why`, `wm check` and a host selecting it all say that same reason. The
 * SDK's create() checks the same bound again (a record written by hand may disagree with its code).
 * The core refuses plugins of another major at discovery (metadata) and at load (descriptor).
 */
#define WM_ABI_MAJOR 1u
#define WM_ABI_MINOR 2u
#define WM_ABI_VERSION ((WM_ABI_MAJOR << 16) | WM_ABI_MINOR)
#define WM_ABI_MAJOR_OF(v) ((uint32_t)(v) >> 16)
#define WM_ABI_MINOR_OF(v) ((uint32_t)(v)&0xffffu)

/** ELF section holding the wm_plugin_metadata record (at most 8 characters). */
#define WM_PLUGIN_SECTION ".wmplug"
/** First 8 bytes of the metadata record. */
#define WM_PLUGIN_MAGIC "WMPLUG01"

#define WM_META_NAME_LEN 32
#define WM_META_VERSION_LEN 24
#define WM_META_DESCRIPTION_LEN 160
#define WM_META_SYMBOL_LEN 64
#define WM_META_MAX_OPTIONS 16
#define WM_OPTION_NAME_LEN 32
#define WM_OPTION_DEFAULT_LEN 48
#define WM_OPTION_HELP_LEN 160

/** Capability flags (wm_plugin_metadata.capabilities). */
enum wm_capability {
  /** Tasks run in the submitting process: plain callables and lambdas are accepted. */
  WM_CAP_IN_PROCESS = 1u << 0,
  /** Tasks run in other processes: only registered tasks (WM_TASK) are accepted, as bytes. */
  WM_CAP_REMOTE = 1u << 1,
  /** The backend starts worker processes of the host program in a worker role. */
  WM_CAP_SPAWNS_WORKERS = 1u << 2,
  /** Every process of the job runs the host program; non-master processes serve in run(). */
  WM_CAP_SPMD = 1u << 3,
  /** ABI 1.2: its workers run on this host and map this process's memory: shared arrays
   *  (wm::SharedArray) travel as references to their regions, never as bytes (processes). */
  WM_CAP_MAPS_MEMORY = 1u << 4
};

/** Type of a backend option. Environment and command line share one grammar per type. */
enum wm_option_type {
  WM_OPTION_BOOL = 1,   /* 1/0, true/false, yes/no, on/off */
  WM_OPTION_INT = 2,    /* decimal integer within [int_min, int_max] */
  WM_OPTION_DOUBLE = 3, /* decimal number within [double_min, double_max] */
  WM_OPTION_STRING = 4  /* any text */
};

/** One option a backend declares. Its variable is `WM_<BACKEND>_<NAME>`, its flag `--wm-<backend>-<name>`. */
typedef struct wm_option_meta {
  char name[WM_OPTION_NAME_LEN]; /* lower case letters, digits and '-' */
  uint32_t type;                 /* enum wm_option_type */
  uint32_t reserved0;
  int64_t int_min, int_max;
  double double_min, double_max;
  char default_value[WM_OPTION_DEFAULT_LEN];
  char help[WM_OPTION_HELP_LEN];
} wm_option_meta;

/** The metadata record read from the plugin file without loading it. No pointers, fixed layout. */
typedef struct wm_plugin_metadata {
  char magic[8];        /* WM_PLUGIN_MAGIC, not NUL-terminated */
  uint32_t abi_version; /* WM_ABI_VERSION the plugin was built against */
  uint32_t record_size; /* sizeof(wm_plugin_metadata) of that ABI */
  char name[WM_META_NAME_LEN];
  char version[WM_META_VERSION_LEN];
  char description[WM_META_DESCRIPTION_LEN];
  char entry_symbol[WM_META_SYMBOL_LEN]; /* extern "C" const wm_backend_descriptor* fn(void) */
  uint64_t capabilities;                 /* enum wm_capability bits */
  uint32_t n_options;
  uint32_t reserved1;
  wm_option_meta options[WM_META_MAX_OPTIONS];
  /* The oldest core this plugin runs on, (major << 16) | minor, of the plugin's major and not newer
   * than abi_version. 0 (as in records written before this field, in what was reserved space)
   * means abi_version: the minor the plugin was built against. */
  uint32_t min_core_abi_version;
  uint8_t reserved[124];
} wm_plugin_metadata;

typedef struct wm_task wm_task;       /* opaque, owned by the core */
typedef struct wm_shared_block wm_shared_block; /* opaque, owned by the core (ABI 1.2) */
typedef struct wm_backend wm_backend; /* opaque, owned by the plugin */

/** Error out-parameter of entry points that can fail (they return nonzero). */
typedef struct wm_error {
  int32_t code; /* nonzero on failure */
  char message[1024];
} wm_error;

/** Why a backend failed a task instead of completing it (wm_core_services.fail). */
enum wm_failure_kind {
  WM_FAIL_WORKER_LOST = 1, /* the worker running it died */
  WM_FAIL_TIMEOUT = 2,     /* it ran past the backend's per-task timeout */
  WM_FAIL_SHUTDOWN = 3,    /* the work manager shut down before it ran */
  WM_FAIL_PROTOCOL = 4,    /* bytes did not decode (corrupt message, other build) */
  WM_FAIL_BACKEND = 5,     /* any other backend failure */
  /* ABI 1.1 */
  WM_FAIL_CANCELLED = 6,   /* stopped on request while it ran (wm::kill_running; wm_backend_descriptor.cancel) */
  WM_FAIL_RESOURCES = 7    /* it needs more of a resource than any worker has */
};

/** A resolved option value handed to create(); `type` tells which field is meaningful. */
typedef struct wm_option_value {
  const char* name;
  uint32_t type;
  int32_t bool_value;
  int64_t int_value;
  double double_value;
  const char* string_value; /* the text as given, for every type */
  const char* source;       /* "default", "environment" or "command line" */
} wm_option_value;

/**
 * Variables through which a backend that starts worker processes of the host program tells them
 * their role. The backend (the SDK's process launcher) sets them for the child; the core reads them
 * in the child (wm::serve_if_worker) and hands the values to the backend in wm_backend_config.
 */
#define WM_ENV_WORKER_BACKEND "WM_WORKER_BACKEND" /* name of the backend whose worker this is */
#define WM_ENV_WORKER_ARG "WM_WORKER_ARG"         /* backend-defined text (wm_backend_config.worker_arg) */
#define WM_ENV_PROCESS_INDEX "WM_PROCESS_INDEX"   /* the worker's index, 0..n-1 (also for tasks to read) */
#define WM_ENV_PROCESS_SEED "WM_PROCESS_SEED"     /* the worker's random seed (decimal) */
#define WM_ENV_TASK_LIBRARIES "WM_TASK_LIBRARIES" /* task libraries to load first, ':'-separated */

/** What the core tells a backend at creation. */
typedef struct wm_backend_config {
  uint32_t abi_version; /* the core's WM_ABI_VERSION */
  uint32_t struct_size; /* sizeof(wm_backend_config) of the core */
  uint32_t n_workers;   /* 0: the backend's default */
  int32_t worker_role;  /* nonzero: this process was started by the backend as one of its workers */
  /* ---- worker role only (from the WM_ENV_* variables) ---- */
  const char* worker_arg; /* the text the master passed (WM_WORKER_ARG), "" if none */
  int32_t worker_index;   /* WM_PROCESS_INDEX, -1 if none */
  int32_t reserved0;
  uint64_t worker_seed; /* WM_PROCESS_SEED, 0 if none (the core has already seeded rand/random/drand48) */
  /* ---- every role ---- */
  const wm_option_value* options;
  size_t n_options;
  const char* host_program;          /* absolute path of the running host executable */
  const char* const* task_libraries; /* task libraries the host loaded, for workers to load */
  size_t n_task_libraries;
  void* reserved[8];
} wm_backend_config;

/**
 * Growable storage a backend lends the core to write encoded bytes into (encode, execute_encoded):
 * a socket batch, a shared-memory region, an MPI send buffer. The core appends at data + size;
 * before writing past capacity it calls grow, which must make capacity >= need while keeping the
 * first size bytes (it may move data) and return 0, or return nonzero when it cannot (the core then
 * reports the failure: encode returns nonzero, execute_encoded writes an out-of-memory reply if it
 * can).
 */
typedef struct wm_byte_buffer {
  char* data;
  size_t size;
  size_t capacity;
  void* context; /* the backend's */
  int (*grow)(struct wm_byte_buffer* self, size_t need);
} wm_byte_buffer;

/** ABI 1.2: where bytes in pooled shared-array memory are, for another process on this host: the
 *  region's descriptor in process pid, its inode, and the bytes' offset and size in it. */
typedef struct wm_shared_ref {
  int64_t pid;
  int32_t fd;
  uint32_t reserved0;
  uint64_t ino;
  uint64_t offset;
  uint64_t size;
} wm_shared_ref;

/** Where a task ran or was running: a worker of a backend. Fields unknown are -1 / 0 / NULL. */
typedef struct wm_worker_identity {
  uint32_t struct_size; /* sizeof(wm_worker_identity) */
  int32_t index;        /* the worker's index (WM_PROCESS_INDEX), -1: unknown */
  int64_t pid;          /* its process id, 0: unknown */
  int32_t rank;         /* its MPI rank, -1: none */
  int32_t reserved0;
  const char* host; /* host name, NULL: this host */
} wm_worker_identity;

/** An amount of a named resource: what a task needs, or what a worker has (ABI 1.1). Names are
 *  lower case letters, digits, '_' and '-'; "gpu" counts devices, "cpu" cores; any other name is
 *  an abstract resource the user declared (WM_RESOURCES). */
typedef struct wm_resource_amount {
  const char* name;
  double amount;
} wm_resource_amount;

/** What a backend may know about a task it accepted (wm_core_services.task_info). */
typedef struct wm_task_info {
  uint32_t struct_size; /* set by the caller to sizeof(wm_task_info); the core fills what fits */
  uint32_t reserved0;
  const char* name;      /* registered name; "" for unregistered callables (in-process only) */
  uint64_t sequence;     /* process-unique, increasing in submit order */
  uint64_t encoded_size; /* bytes encode() will append (remote backends; 0 for in-process ones) */
  /* ---- ABI 1.1 ---- */
  /** What the task needs of a worker (wm::TaskSpec::needs): n_needs amounts, each > 0, names
   *  distinct, in name order; valid while the backend holds the task. 0 / NULL: nothing. A backend
   *  sends the task only to a worker that has at least that much of each, and fails it at once
   *  (WM_FAIL_RESOURCES) when none of its workers could ever run it. */
  uint32_t n_needs;
  uint32_t reserved1;
  const wm_resource_amount* needs;
} wm_task_info;

/** One registered task (wm_core_services.list_tasks). Pointers valid during the visit only. */
typedef struct wm_task_entry {
  uint32_t struct_size;
  uint32_t reserved0;
  const char* name;
  uint64_t fingerprint;  /* of the signature; the same program build gives the same value */
  const char* signature; /* readable signature, e.g. "int (int, int)" */
  const char* library;   /* path of the task library that registered it; "" for the host program */
} wm_task_entry;

/** Log levels for wm_core_services.log. */
enum wm_log_level { WM_LOG_DEBUG = 0, WM_LOG_INFO = 1, WM_LOG_WARNING = 2, WM_LOG_ERROR = 3 };

/** Services the core offers a backend. Valid for the life of the process. */
typedef struct wm_core_services {
  uint32_t abi_version; /* the core's WM_ABI_VERSION */
  uint32_t struct_size; /* sizeof(wm_core_services) of the core */
  /** Requests and replies holding a block of at least this many bytes are "large": the core
   *  encodes a large request only when it is sent, straight into the backend's storage (encode),
   *  and a remote backend should give large payloads its zero-copy path (shared memory, a
   *  dedicated message). The one threshold both sides use. */
  uint64_t large_payload_bytes;

  /* ---- master side: tasks accepted through submit() ---- */
  /** In-process backends: runs the task in this thread and completes its future. */
  void (*execute)(wm_task* task);
  /** Name, sequence number and encoded size of a task. Never fails. */
  void (*task_info)(wm_task* task, wm_task_info* info);
  /** Remote backends: appends the task's encoded request (name, signature fingerprint,
   *  arguments) to out: exactly task_info's encoded_size bytes. May be called again for the same
   *  task (a retry). Returns nonzero with err if it cannot (out cannot grow; the arguments no
   *  longer encode as they did at submit); out->size is then as before the call. */
  int (*encode)(wm_task* task, wm_byte_buffer* out, wm_error* err);
  /** Completes the task from the bytes of a reply made by execute_encoded; bad bytes fail it with
   *  WM_FAIL_PROTOCOL. where: the worker that ran it (NULL: unknown). */
  void (*complete_encoded)(wm_task* task, const void* reply, size_t size, const wm_worker_identity* where);
  /** Fails the task. where: the worker it ran or was running on (NULL: it did not run on one);
   *  attempts: runs made (0 counts as 1). */
  void (*fail)(wm_task* task, int32_t kind, const char* message, const wm_worker_identity* where,
               uint32_t attempts);

  /* ---- worker side ---- */
  /** Executes an encoded request by task name and appends the encoded reply (result or error)
   *  to out. Never fails: undecodable requests and tasks that throw produce an error reply. */
  void (*execute_encoded)(const void* request, size_t size, wm_byte_buffer* out);
  /** Says which worker this thread is, for the records of failures that happen here (who NULL:
   *  none), and, if seed is nonzero, seeds this process's rand(), random() and drand48(). (The
   *  WM_PROCESS_INDEX a task reads is the process's environment: a backend whose workers it does
   *  not start itself, such as MPI ranks, sets it before it serves.) */
  void (*set_worker)(const wm_worker_identity* who, uint64_t seed);

  /* ---- registry ---- */
  /** Calls visit once per registered task (host program and loaded task libraries), in name order. */
  void (*list_tasks)(void (*visit)(void* context, const wm_task_entry* entry), void* context);

  /* ---- misc ---- */
  void (*log)(int32_t level, const char* backend, const char* message);

  /* ---- ABI 1.1: binding and resources (WM_GPUS_PER_WORKER, WM_BIND, WM_RESOURCES, ...) ---- */
  /** A backend that starts worker processes itself: calls visit(context, name, value) for each
   *  variable to set in the environment of worker `index` of `n_workers` it starts from this
   *  process (its devices, its cores, its thread counts). None when no binding was asked for.
   *  Throws nothing; a plan that cannot be made (more GPUs asked for than there are) was refused
   *  when the work manager was created. */
  void (*worker_environment)(int32_t index, uint32_t n_workers,
                             void (*visit)(void* context, const char* name, const char* value), void* context);
  /** A backend whose workers are threads of this process: binds the calling thread to worker
   *  `index` of `n_workers` (its cores) and makes wm::this_worker() on this thread describe it. */
  void (*bind_worker_thread)(int32_t index, uint32_t n_workers);
  /** What worker `index` of `n_workers` has ("gpu", "cpu" and the declared resources), written to
   *  out (at most capacity entries; names valid for the life of the process); returns how many
   *  there are. In a process that serves as one worker (a spawned worker, an MPI rank, a node's
   *  worker) index and n_workers are ignored: it reports itself. */
  size_t (*worker_resources)(int32_t index, uint32_t n_workers, wm_resource_amount* out, size_t capacity);

  /* ---- ABI 1.2: shared arrays ---- */
  /** A worker process whose master maps its memory (the master's backend has WM_CAP_MAPS_MEMORY):
   *  from now on execute_encoded reads the shared arrays of requests in place and writes those of
   *  replies as references to this process's regions. Call it before the first task. */
  void (*share_memory_with_master)(int32_t enabled);
  /** Memory of at least size bytes from this process's pool of shared-array memory (reused, its
   *  pages already touched) for a large message to be received into; data is set to its start
   *  (aligned to 64 bytes). NULL if there is none to be had. Release it when done with it; a shared
   *  array decoded from it (decode_from_block) keeps its own hold and stays valid. */
  wm_shared_block* (*shared_block_new)(size_t size, char** data);
  void (*shared_block_release)(wm_shared_block* block);
  /** The bytes the next decodes on this thread read (complete_encoded, execute_encoded) lie in
   *  this block: a large shared array among them is kept where it is instead of copied. NULL: no
   *  block. Set it just before the call and clear it after. */
  void (*decode_from_block)(const wm_shared_block* block);
  /** Where the first size bytes of block are, for a process on this host to map (shared_block_map);
   *  0 if the block is not shared memory (small blocks live on the heap), else 1. */
  int (*shared_block_describe)(const wm_shared_block* block, size_t size, wm_shared_ref* out);
  /** Maps, read-only, the bytes another process of this host described (the process that serves
   *  this one: a worker's relay), and returns them as a block (data set); NULL with err if they
   *  cannot be mapped. A shared array decoded from it (decode_from_block) is read in place. */
  wm_shared_block* (*shared_block_map)(const wm_shared_ref* ref, char** data, wm_error* err);

  void* reserved[7];
} wm_core_services;

/** shutdown() flags. */
enum wm_shutdown_flag {
  /** Return only once every accepted task is finished and the workers are stopped. Without it,
   *  shutdown starts stopping and returns at once: the core calls it so from inside a task or a
   *  done-callback, which may be running on a thread the waiting would wait for. */
  WM_SHUTDOWN_WAIT = 1u << 0,
  /** Do not let running tasks finish: fail them (WM_FAIL_SHUTDOWN) and stop the workers at once
   *  (Ctrl-C). Without it, running tasks get the backend's shutdown timeout. May follow an earlier
   *  shutdown without it, to cut that one short. */
  WM_SHUTDOWN_NOW = 1u << 1
};

/** ABI 1.1: what a worker is doing (wm_worker_stats.state). */
enum wm_worker_state {
  WM_WORKER_STARTING = 0, /* started (or started again), not ready yet */
  WM_WORKER_IDLE = 1,     /* ready, no task */
  WM_WORKER_BUSY = 2,     /* running a task */
  WM_WORKER_LOST = 3      /* gone and not coming back (given up, or ended with the work manager) */
};

/** ABI 1.1: one worker in a backend's statistics (wm_backend_descriptor.stats). Strings are valid
 *  during the visit only. Times are in seconds. Fields a backend does not know are 0 / NULL. */
typedef struct wm_worker_stats {
  uint32_t struct_size; /* sizeof(wm_worker_stats) of the backend */
  int32_t state;        /* enum wm_worker_state */
  wm_worker_identity where; /* index (the key the core matches failures by), pid, rank, host */
  const char* task_name;    /* the task it runs now ("" for an unregistered callable); NULL: none */
  uint64_t task_sequence;   /* that task's wm_task_info.sequence; 0: none */
  double task_seconds;      /* how long that task has run */
  uint64_t tasks_done;      /* tasks finished on this worker, failed ones included */
  uint32_t restarts;        /* times this worker was started again after it was lost */
  uint32_t in_flight;       /* tasks sent to it and not finished (the running one included) */
  double busy_seconds;      /* time it had a task, since it first started */
  double up_seconds;        /* time since it first started */
  uint64_t bytes_sent;      /* requests sent to it */
  uint64_t bytes_received;  /* replies received from it */
} wm_worker_stats;

/** ABI 1.1: a backend's totals (wm_backend_descriptor.stats). The core counts submitted, finished
 *  and failed tasks itself; these are what only the backend knows. */
typedef struct wm_backend_stats {
  uint32_t struct_size; /* set by the core; the backend fills what fits */
  uint32_t reserved0;
  uint64_t queued;         /* accepted and not on a worker yet */
  uint64_t in_flight;      /* on workers and not finished */
  uint64_t retried;        /* runs again of tasks lost with a worker */
  uint64_t bytes_sent;     /* requests sent to workers */
  uint64_t bytes_received; /* replies received from workers */
} wm_backend_stats;

/** Entry points of a loaded backend. Returned by the entry symbol named in the metadata. */
typedef struct wm_backend_descriptor {
  uint32_t abi_version; /* WM_ABI_VERSION the plugin was built against */
  uint32_t struct_size; /* sizeof(wm_backend_descriptor) of that version */
  const char* name;
  const char* version;
  uint64_t capabilities;

  /** Checks the core's version (config->abi_version, services->struct_size) and refuses, with
   *  err, a core older than the plugin needs. */
  wm_backend* (*create)(const wm_core_services* services, const wm_backend_config* config,
                        wm_error* err);
  /** Called once, after a waiting shutdown has returned, never from one of the backend's threads. */
  void (*destroy)(wm_backend* backend);
  int (*startup)(wm_backend* backend, wm_error* err);
  /** Stops accepting tasks, fails those not started (WM_FAIL_SHUTDOWN), lets running ones finish
   *  within the backend's shutdown timeout (or not: WM_SHUTDOWN_NOW), stops the workers. flags:
   *  wm_shutdown_flag bits. Idempotent, re-entrant, callable concurrently from several threads. */
  int (*shutdown)(wm_backend* backend, uint32_t flags, wm_error* err);
  /** Accepts all n tasks (returns 0) or none of them (returns nonzero with err). */
  int (*submit)(wm_backend* backend, wm_task* const* tasks, size_t n, wm_error* err);
  /** Not the master (a spawned worker, an SPMD rank > 0, a node): serves tasks until the master
   *  says stop. The master: returns at once. */
  int (*run)(wm_backend* backend, wm_error* err);
  int (*is_master)(wm_backend* backend);
  uint32_t (*n_workers)(wm_backend* backend);
  /** ABI 1.1: stops a task that has started (wm::kill_running): its worker is stopped as for a
   *  timeout and replaced, and the task fails with WM_FAIL_CANCELLED. Returns 1 if it will, 0 if
   *  it cannot (the task is not running on a worker this backend can stop; in-process backends).
   *  A task that has not started is cancelled by the core alone: encode() and execute() refuse it
   *  and the backend then drops it (fail() on it only releases it). NULL: cannot stop running
   *  tasks; cores of ABI 1.0 never call it. */
  int (*cancel)(wm_backend* backend, wm_task* task);
  /** ABI 1.1: statistics, for wm::WorkManager::stats() (any thread, often: ten times a second on a
   *  busy run). Fills totals (zeroed by the core, struct_size set) and calls worker once per worker,
   *  with no lock held that a task or callback could need. May wait briefly for a thread of its own
   *  to answer; must not wait on a task. Returns 0, or nonzero if it has none to give. NULL: none
   *  (the core still counts tasks); cores of ABI 1.0 never call it. */
  int (*stats)(wm_backend* backend, wm_backend_stats* totals,
               void (*worker)(void* context, const wm_worker_stats* stats), void* context);

  void* reserved[14];
} wm_backend_descriptor;

/** Signature of the entry symbol named in wm_plugin_metadata.entry_symbol. */
typedef const wm_backend_descriptor* (*wm_backend_entry_fn)(void);

#ifdef __cplusplus
} /* extern "C" */
#endif

#endif /* WM_ABI_H */
