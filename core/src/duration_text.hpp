// SPDX-License-Identifier: MIT
// duration_text.hpp: one way to write a duration for people ("4.2 s", "3m05s", "2h07m"), for the
// status dump, the progress line and `wm status` (exported by libwm_core; the tool includes it).
#pragma once

#include <string>

namespace wm::detail {

/** seconds as "4.2 s" (under a minute), "3m05s" (under an hour) or "2h07m". */
std::string duration_text(double seconds);

}  // namespace wm::detail
