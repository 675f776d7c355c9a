// wm/wm.hpp: everything a host program needs, in one include.
#pragma once

#include <wm/environment.hpp>
#include <wm/errors.hpp>
#include <wm/future.hpp>
#include <wm/future_watcher.hpp>
#include <wm/task.hpp>
#include <wm/version.hpp>
#include <wm/work_manager.hpp>
