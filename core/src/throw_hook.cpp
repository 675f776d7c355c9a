// SPDX-License-Identifier: MIT
// throw_hook.cpp: records where exceptions are thrown, for the stack traces of task errors.
//
// Where an exception was thrown is gone by the time a catch block runs, and C++17 offers no way to
// get it back. So the core interposes __cxa_throw (the core is linked before libstdc++) and, for
// throws inside a task only (UserCodeScope, internal.hpp), records the thrower's frames,
// unresolved, in a thread-local buffer; they are resolved to text only when a task's failure is
// recorded. Any other throw in the process goes straight on to the real __cxa_throw after one
// thread-local check. WM_STACKTRACE=0 turns tracing off. This file includes no C++ header: the
// compiler's built-in declaration of __cxa_throw must be the only one it sees.
//
// The hook must not add a frame to the stack the unwinder walks: every frame costs each throw an
// FDE lookup and a CFI run in both unwinding phases (measured: +25% instructions per throw). So
// the real __cxa_throw is called in tail position (a jump, in optimized builds) and this function
// is not declared [[noreturn]], which would keep the call a call.
#include <dlfcn.h>

namespace wm::detail {
bool in_task() noexcept;
void record_throw_trace() noexcept;
}

extern "C" {
using cxa_throw_fn = void (*)(void*, void*, void (*)(void*));

void __cxa_throw(void* object, void* type, void (*destructor)(void*)) {
  static const cxa_throw_fn real = reinterpret_cast<cxa_throw_fn>(dlsym(RTLD_NEXT, "__cxa_throw"));
  if (wm::detail::in_task()) wm::detail::record_throw_trace();
  real(object, type, destructor);  // never returns
}
}
