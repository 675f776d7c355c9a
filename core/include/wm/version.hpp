// wm/version.hpp: the library's version and the plugin ABI version it speaks.
#pragma once

#include <wm/abi.h>

#define WM_VERSION_MAJOR 0
#define WM_VERSION_MINOR 1
#define WM_VERSION_PATCH 0
#define WM_VERSION_STRING "0.1.0"

namespace wm {
/** Version of the core library the program runs against (may differ from the headers'). */
const char* core_version() noexcept;
/** Plugin ABI version (WM_ABI_VERSION) of the core library the program runs against. */
unsigned core_abi_version() noexcept;
}  // namespace wm
