// SPDX-License-Identifier: MIT
// wm/detail/task_decl.hpp: the light half of <wm/task.hpp>, which <wm/wm.hpp> includes: TaskSpec,
// and wm::task, wm::task_by_name and WM_TASK as calls into what <wm/task.hpp> defines.
//
// Binding a call or registering a task encodes arguments with cereal (a typed submit encodes them,
// or measures their encoding, where it is called); holding, waiting on and reading a future needs
// no codec. So the codec lives in <wm/task.hpp> alone, and where it is not included, each of these
// stops at a static_assert that says to include it.
#pragma once

#include <wm/detail/task_state.hpp>

#include <initializer_list>
#include <string>
#include <string_view>
#include <type_traits>
#include <utility>
#include <vector>

namespace wm {

namespace detail {

/**
 * What binds a call to a task, with the codec that encodes its arguments: defined by <wm/task.hpp>
 * (cereal), declared here so that holding and waiting on futures does not need it. T is any type of
 * the call: it only defers the check below to the point where a call is bound.
 */
template <class T>
struct TaskBinder;
/** True where <wm/task.hpp> is included (TaskBinder is defined). */
template <class T, class = void>
struct task_header_included : std::false_type {};
template <class T>
struct task_header_included<T, std::void_t<decltype(sizeof(TaskBinder<T>))>> : std::true_type {};

// The result type of a bound call: what wm::task and submit return when <wm/task.hpp> is missing,
// so that their static_assert is the only error (no cascade of "invalid use of void").
template <class D>
struct call_result {
  template <class... Args>
  using with = std::invoke_result_t<D&, std::decay_t<Args>&...>;
};
template <class R, class... P>
struct call_result<R (*)(P...)> {
  template <class...>
  using with = R;
};
template <class R, class... P>
struct call_result<R (*)(P...) noexcept> : call_result<R (*)(P...)> {};
template <class F, class... Args>
using bound_result_t = typename call_result<std::decay_t<F>>::template with<Args...>;

/** Makes the object whose construction registers the task Fn under `name` (see WM_TASK). */
template <auto Fn>
auto task_registrar(const char* name) {
  static_assert(task_header_included<decltype(Fn)>::value,
                "WM_TASK needs #include <wm/task.hpp>: a task's arguments and result are encoded "
                "with cereal, which <wm/wm.hpp> leaves out");
  if constexpr (task_header_included<decltype(Fn)>::value)
    return TaskBinder<decltype(Fn)>::template registrar<Fn>(name);
  else
    return 0;
}

}  // namespace detail

/**
 * A call bound to its arguments, not yet submitted. Made by wm::task() or wm::task_by_name()
 * (<wm/task.hpp>); consumed by WorkManager::submit / submit_many / submit_as_completed.
 */
template <class R>
class TaskSpec {
 public:
  using result_type = R;
  TaskSpec() = default;
  explicit TaskSpec(detail::StatePtr state) : state_(std::move(state)) {}
  const detail::StatePtr& state() const noexcept { return state_; }
  /** Name of the task (registered name, or the callable's type). */
  std::string name() const { return state_ ? state_->display_name() : std::string(); }

  /**
   * What the task needs of a worker, e.g. `wm::task(md_segment, seg).needs({{"gpu", 1}})`: it runs
   * only on a worker that has at least that much of each ("gpu": its devices, "cpu": its cores,
   * any other name: what --wm-resources / WM_RESOURCES declared). It waits while every such worker
   * is busy, and fails at submit with wm::ResourceError if no worker has that much. Names are lower
   * case letters, digits, '_' and '-'; amounts finite and > 0. Throws wm::Error on a bad name or
   * amount, a name given twice, or a task already submitted.
   */
  TaskSpec& needs(std::initializer_list<std::pair<std::string_view, double>> amounts) & {
    if (!state_) detail::throw_no_task();
    detail::set_needs(state_.get(), amounts.begin(), amounts.size());
    return *this;
  }
  TaskSpec&& needs(std::initializer_list<std::pair<std::string_view, double>> amounts) && {
    return std::move(needs(amounts));
  }

 private:
  detail::StatePtr state_;
};

/**
 * Binds fn to args (a TaskSpec for submit_many / submit_as_completed). A function registered with
 * WM_TASK can run on every backend; any other callable (lambda, functor, unregistered function)
 * runs on in-process backends only. Needs <wm/task.hpp>, which encodes the arguments.
 */
template <class F, class... Args>
auto task(F&& fn, Args&&... args) {
  static_assert(detail::task_header_included<F>::value,
                "wm::task(fn, args...) and submit(fn, args...) need #include <wm/task.hpp>: binding a "
                "call encodes its arguments with cereal, which <wm/wm.hpp> leaves out");
  if constexpr (detail::task_header_included<F>::value)
    return detail::TaskBinder<F>::bind(std::forward<F>(fn), std::forward<Args>(args)...);
  else
    return TaskSpec<detail::bound_result_t<F, Args...>>();
}

/**
 * Binds a task by its registered name. R and the argument types must be exactly the registered
 * signature's (after decay); otherwise the future fails with SignatureMismatchError. Needs
 * <wm/task.hpp>, which encodes the arguments.
 */
template <class R, class... Args>
TaskSpec<R> task_by_name(std::string_view name, Args&&... args) {
  static_assert(detail::task_header_included<R>::value,
                "wm::task_by_name<R>(name, args...) and submit<R>(name, args...) need #include "
                "<wm/task.hpp>: binding a call encodes its arguments with cereal, which <wm/wm.hpp> "
                "leaves out");
  if constexpr (detail::task_header_included<R>::value)
    return detail::TaskBinder<R>::template bind_name<R>(name, std::forward<Args>(args)...);
  else
    return TaskSpec<R>();
}

/** Names of all tasks registered in this process (host program and loaded task libraries). */
std::vector<std::string> registered_tasks();

/**
 * Loads a task library (a shared library whose tasks are registered with WM_TASK), so its tasks
 * can be submitted by name. Remote backends load the same libraries in their workers.
 * Throws PluginError naming the file and the loader's reason.
 */
void load_task_library(const std::string& path);

}  // namespace wm

#define WM_DETAIL_CONCAT_(a, b) a##b
#define WM_DETAIL_CONCAT(a, b) WM_DETAIL_CONCAT_(a, b)

/** Registers the function `fn` (at namespace scope) as a task named after it. Needs <wm/task.hpp>. */
#define WM_TASK(fn) WM_TASK_NAMED(fn, #fn)

/** Registers the function `fn` as a task with the given name (a string literal). Needs <wm/task.hpp>. */
#define WM_TASK_NAMED(fn, name)                                                        \
  [[maybe_unused]] static const auto WM_DETAIL_CONCAT(wm_task_registrar_, __COUNTER__) = \
      ::wm::detail::task_registrar<&fn>(name)
