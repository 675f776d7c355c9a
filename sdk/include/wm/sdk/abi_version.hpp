// SPDX-License-Identifier: MIT
// wm/sdk/abi_version.hpp: the ABI version (wm/abi.h) as text, for messages that name both sides' versions.
#pragma once

#include <wm/abi.h>

#include <cstdint>
#include <string>

namespace wm::sdk {

/** "1.0" for (1 << 16) | 0. */
inline std::string abi_version_text(std::uint32_t version) {
  return std::to_string(WM_ABI_MAJOR_OF(version)) + "." + std::to_string(WM_ABI_MINOR_OF(version));
}

}  // namespace wm::sdk
