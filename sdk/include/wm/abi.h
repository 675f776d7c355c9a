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
 *    at the latest before shutdown() returns. After that call the backend must not touch the task.
 *  - All entry points may be called from any thread; submit() may be called concurrently.
 *  - Loaded backend libraries are never unloaded during the life of the process.
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
 *  - a record shorter than the first version of its major (WM_ABI_MIN_*_SIZE) is malformed.
 */
#define WM_ABI_MAJOR 1u
#define WM_ABI_MINOR 0u
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
  WM_CAP_SPMD = 1u << 3
};

/** Type of a backend option. Environment and command line share one grammar per type. */
enum wm_option_type {
  WM_OPTION_BOOL = 1,   /* 1/0, true/false, yes/no, on/off */
  WM_OPTION_INT = 2,    /* decimal integer within [int_min, int_max] */
  WM_OPTION_DOUBLE = 3, /* decimal number within [double_min, double_max] */
  WM_OPTION_STRING = 4  /* any text */
};

/** One option a backend declares. Its variable is WM_<BACKEND>_<NAME>, its flag --wm-<backend>-<name>. */
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
  uint8_t reserved[128];
} wm_plugin_metadata;

typedef struct wm_task wm_task;       /* opaque, owned by the core */
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
  WM_FAIL_BACKEND = 5      /* any other backend failure */
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

/** What the core tells a backend at creation. */
typedef struct wm_backend_config {
  uint32_t struct_size;
  uint32_t n_workers;     /* 0: the backend's default */
  int32_t worker_role;    /* nonzero: this process was started by the backend as a worker */
  int32_t reserved0;
  const char* worker_arg; /* backend-defined text passed to the worker role (WM_WORKER_ARG) */
  const wm_option_value* options;
  size_t n_options;
  const char* host_program; /* absolute path of the running host executable */
  const char* const* task_libraries; /* task libraries the host loaded, for workers to load */
  size_t n_task_libraries;
  void* reserved[8];
} wm_backend_config;

/** Byte sink used by execute_encoded to hand the reply to the backend. */
typedef struct wm_reply_sink {
  void* context;
  /* called once or more; the concatenation of all calls is the reply */
  void (*write)(void* context, const void* data, size_t size);
} wm_reply_sink;

/**
 * Growable storage a backend lends the core to write encoded bytes into (encode_into,
 * execute_encoded_into): a shared-memory region, a socket batch, a pooled buffer. The core
 * appends at data + size; before writing past capacity it calls grow, which must make
 * capacity >= need while keeping the first size bytes (it may move data) and return 0, or
 * return nonzero when it cannot (the core then reports out of memory).
 */
typedef struct wm_byte_buffer {
  char* data;
  size_t size;
  size_t capacity;
  void* context; /* the backend's */
  int (*grow)(struct wm_byte_buffer* self, size_t need);
} wm_byte_buffer;

/** Log levels for wm_core_services.log. */
enum wm_log_level { WM_LOG_DEBUG = 0, WM_LOG_INFO = 1, WM_LOG_WARNING = 2, WM_LOG_ERROR = 3 };

/** Services the core offers a backend. Valid for the life of the process. */
typedef struct wm_core_services {
  uint32_t abi_version;
  uint32_t struct_size;

  /* ---- master side: tasks accepted through submit() ---- */
  /** Runs the task in this thread and completes its future (in-process backends). */
  void (*execute)(wm_task* task);
  /** Encoded request of a task (name, fingerprint, arguments); valid until the task is finished.
   *  Returns nonzero (with err) if the task cannot run remotely. */
  int (*encode)(wm_task* task, const void** data, size_t* size, wm_error* err);
  /** Completes the task from the reply bytes of execute_encoded; bad bytes fail it (PROTOCOL). */
  void (*complete_encoded)(wm_task* task, const void* reply, size_t size);
  /** Fails the task with a failure kind and a message naming what happened. */
  void (*fail)(wm_task* task, int32_t kind, const char* message);
  /** Registered name of the task ("" for unregistered callables). */
  const char* (*task_name)(wm_task* task);
  /** Process-unique sequence number of the task (for backend bookkeeping). */
  uint64_t (*task_sequence)(wm_task* task);

  /* ---- worker side ---- */
  /** Executes an encoded request by task name and writes the encoded reply (result or error) to
   *  sink. Never throws; undecodable requests produce an error reply. */
  void (*execute_encoded)(const void* request, size_t size, wm_reply_sink* sink);
  /** Records where tasks of this thread run, for error reports (-1: not a worker). */
  void (*set_worker_index)(int32_t index);

  /* ---- misc ---- */
  void (*log)(int32_t level, const char* backend, const char* message);

  /** As fail, saying where the task ran: worker index (-1: unknown), pid (0: unknown) and the
   *  number of attempts made (0 counts as 1). Added in ABI 1 from reserved space: a backend
   *  that may meet an older core checks the pointer for NULL and falls back to fail. */
  void (*fail_at)(wm_task* task, int32_t kind, const char* message, int32_t worker_index, int64_t pid,
                  uint32_t attempts);

  /* ---- added in ABI 1 from reserved space (a backend checks each pointer for NULL) ---- */
  /** Size in bytes of the task's encoded request, as encode returns it and encode_into appends it.
   *  Returns nonzero (with err) if the task cannot run remotely. */
  int (*encoded_size)(wm_task* task, size_t* size, wm_error* err);
  /** Appends the task's encoded request to out. Large requests (a block of 1 MiB or more in the
   *  arguments) are not encoded at submit, only checked and measured: this call then encodes them
   *  straight into out, so the arguments are copied once, into the backend's storage. May be called
   *  again for the same task (a retry). Returns nonzero (with err) on failure. */
  int (*encode_into)(wm_task* task, wm_byte_buffer* out, wm_error* err);
  /** As execute_encoded, appending the reply to out instead of handing it to a sink: a large
   *  result is encoded straight into the backend's storage. Never throws. */
  void (*execute_encoded_into)(const void* request, size_t size, wm_byte_buffer* out);

  void* reserved[12];
} wm_core_services;

/** Entry points of a loaded backend. Returned by the entry symbol named in the metadata. */
typedef struct wm_backend_descriptor {
  uint32_t abi_version; /* WM_ABI_VERSION */
  uint32_t struct_size; /* sizeof(wm_backend_descriptor) */
  const char* name;
  const char* version;
  uint64_t capabilities;

  wm_backend* (*create)(const wm_core_services* services, const wm_backend_config* config,
                        wm_error* err);
  void (*destroy)(wm_backend* backend);
  int (*startup)(wm_backend* backend, wm_error* err);
  /** Completes or fails every accepted task, stops workers, then returns. Idempotent. */
  int (*shutdown)(wm_backend* backend, wm_error* err);
  /** Accepts all n tasks (returns 0) or none of them (returns nonzero with err). */
  int (*submit)(wm_backend* backend, wm_task* const* tasks, size_t n, wm_error* err);
  /** Worker role: serves tasks until the master says stop. Master: returns at once. */
  int (*run)(wm_backend* backend, wm_error* err);
  int (*is_master)(wm_backend* backend);
  uint32_t (*n_workers)(wm_backend* backend);

  void* reserved[16];
} wm_backend_descriptor;

/** Signature of the entry symbol named in wm_plugin_metadata.entry_symbol. */
typedef const wm_backend_descriptor* (*wm_backend_entry_fn)(void);

#ifdef __cplusplus
} /* extern "C" */
#endif

#endif /* WM_ABI_H */
