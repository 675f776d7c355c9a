// SPDX-License-Identifier: MIT
// wm/wm.hpp: work managers, futures, waiting, environment, errors, version and this_worker(), in
// one include.
//
// Light on purpose: it includes no serialization library. Where tasks are declared (WM_TASK) or
// calls are bound (wm::task, submit(fn, args...), submit<R>("name", args...)), include
// <wm/task.hpp> too: it brings cereal, which encodes the arguments.
#pragma once

#include <wm/environment.hpp>
#include <wm/errors.hpp>
#include <wm/future.hpp>
#include <wm/future_watcher.hpp>
#include <wm/log.hpp>
#include <wm/progress.hpp>
#include <wm/stats.hpp>
#include <wm/version.hpp>
#include <wm/work_manager.hpp>
#include <wm/worker.hpp>
