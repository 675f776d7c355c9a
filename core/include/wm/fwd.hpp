// SPDX-License-Identifier: MIT
// wm/fwd.hpp: forward declarations of the public types.
#pragma once

namespace wm {
class WorkManager;
class WMFuture;
template <class T>
class Future;
template <class R>
class TaskSpec;
class FutureWatcher;
class WMEnvironment;
struct ErrorInfo;
class Error;
}  // namespace wm
