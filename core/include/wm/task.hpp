// SPDX-License-Identifier: MIT
// wm/task.hpp: tasks: registering functions by name (WM_TASK), and binding a call (wm::task).
//
// @code
//   #include <wm/wm.hpp>
//   #include <wm/task.hpp>
//
//   double integrate(double a, double b) { ... }
//   WM_TASK(integrate);                       // at namespace scope, in the host or a task library
//
//   auto f = wm.submit(integrate, 0.0, 1.0);   // Future<double>; runs on any backend
//   auto g = wm.submit<double>("integrate", 0.0, 1.0);     // by name, e.g. from a task library
//   auto h = wm.submit([](int x) { return x + 1; }, 41);  // lambdas: in-process backends only
// @endcode
//
// Include it where tasks are declared (WM_TASK) or calls are bound (wm::task, wm::task_by_name,
// submit(fn, args...), submit<R>("name", args...)): binding a call encodes its arguments (or
// measures their encoding) right there, with cereal, which this header brings. Code that only
// holds, waits on and reads futures needs <wm/wm.hpp> alone, which stays light.
//
// A registered task's arguments and result must be serializable with cereal (standard types are
// covered; for your own types write a `serialize(Archive&)` member) and default constructible.
// A result may be move-only (std::unique_ptr<T>, a vector of them, a type of your own with a
// deleted copy constructor): Future<R>::get_result() moves it out of the future. Every call carries a
// fingerprint of the signature, so a name called with other argument types fails with
// SignatureMismatchError instead of misreading bytes.
#pragma once

#include <wm/detail/codec.hpp>
#include <wm/detail/task_decl.hpp>
#include <wm/detail/task_state.hpp>
#include <wm/errors.hpp>

#include <cstddef>
#include <cstdint>
#include <functional>
#include <optional>
#include <string>
#include <string_view>
#include <tuple>
#include <type_traits>
#include <typeinfo>
#include <utility>

namespace wm {

namespace detail {

/** A task that can be executed by name, in this process or another. */
struct RegisteredTask {
  const char* name;
  const void* address;        // the function; lets submit(fn, ...) find the name
  std::uint64_t fingerprint;  // of the signature R(P...)
  const char* signature;      // mangled R(P...), for error messages
  /** Decodes the arguments, calls the function, writes the encoded result to reply. */
  void (*invoke_encoded)(const char* args, std::size_t size, std::streambuf& reply);
};

void register_task(const RegisteredTask& task) noexcept;
const RegisteredTask* find_task(std::string_view name) noexcept;
const RegisteredTask* find_task(const void* address) noexcept;
/** FNV-1a hash of a mangled signature. */
std::uint64_t fingerprint_of(const char* mangled) noexcept;
/** Demangled type name. */
std::string demangle(const char* mangled);
/** Writes the request header: magic, name, fingerprint. Arguments follow. */
void write_request_header(std::streambuf& out, std::string_view name, std::uint64_t fingerprint);
/** Runs an encoded request through the registry, appending its payload (locally, for by-name tasks
 *  on in-process backends). Throws the task's exception or a TaskFailure. */
void invoke_request_locally(const std::string& request, ByteBuffer& payload);
/** Throws ProtocolError "<what>: <detail>". */
[[noreturn]] void throw_decode_failure(const char* what, const char* detail);

template <class R, class... P>
std::uint64_t signature_fingerprint() {
  static const std::uint64_t value = fingerprint_of(typeid(R(P...)).name());
  return value;
}

template <class F>
struct function_traits;
template <class R, class... P>
struct function_traits<R (*)(P...)> {
  using result = R;
  using args = std::tuple<std::decay_t<P>...>;
  using params = std::tuple<P...>;
  static std::uint64_t fingerprint() { return signature_fingerprint<R, std::decay_t<P>...>(); }
  static const char* signature() { return typeid(R(std::decay_t<P>...)).name(); }
};
template <class R, class... P>
struct function_traits<R (*)(P...) noexcept> : function_traits<R (*)(P...)> {};

template <class Tuple>
struct all_encodable;
template <class... T>
struct all_encodable<std::tuple<T...>>
    : std::bool_constant<(is_encodable_v<T> && ...) && (is_decodable_v<T> && ...)> {};

template <class R>
inline constexpr bool result_codable_v =
    std::is_void_v<R> || (is_encodable_v<R> && is_decodable_v<R>);

// Passes a stored argument on as the parameter type wants it: by reference for lvalue
// references, moved otherwise.
template <class P, class A>
decltype(auto) pass_arg(A& a) {
  if constexpr (std::is_lvalue_reference_v<P>)
    return (a);
  else
    return std::move(a);
}

template <class Fn, class Params, class Args, std::size_t... I>
decltype(auto) call_with(Fn&& fn, Args& args, std::index_sequence<I...>) {
  return std::invoke(std::forward<Fn>(fn),
                     pass_arg<std::tuple_element_t<I, Params>>(std::get<I>(args))...);
}

template <auto Fn>
void invoke_encoded(const char* data, std::size_t size, std::streambuf& reply) {
  using T = function_traits<decltype(Fn)>;
  using Args = typename T::args;
  Args args;
  try {
    args = decode_value<Args>(data, size);
  } catch (const std::exception& e) {
    throw_decode_failure("arguments did not decode", e.what());
  }
  constexpr auto seq = std::make_index_sequence<std::tuple_size_v<Args>>{};
  if constexpr (std::is_void_v<typename T::result>) {
    call_with<decltype(Fn), typename T::params>(Fn, args, seq);
  } else {
    auto result = call_with<decltype(Fn), typename T::params>(Fn, args, seq);
    try {
      encode_value(reply, result);
    } catch (const std::exception& e) {
      throw_decode_failure("result did not encode", e.what());
    }
  }
}

template <auto Fn>
RegisteredTask describe_task(const char* name) {
  using T = function_traits<decltype(Fn)>;
  static_assert(all_encodable<typename T::args>::value,
                "WM_TASK: every argument type must be serializable with cereal and default "
                "constructible (include the cereal/types/... header for it, or give your type a "
                "serialize(Archive&) member)");
  static_assert(result_codable_v<typename T::result>,
                "WM_TASK: the result type must be serializable with cereal and default "
                "constructible");
  return RegisteredTask{name, reinterpret_cast<const void*>(Fn), T::fingerprint(), T::signature(),
                        &invoke_encoded<Fn>};
}

/** Registers a task while the program or task library starts (see WM_TASK). */
struct TaskRegistrar {
  explicit TaskRegistrar(const RegisteredTask& task) noexcept { register_task(task); }
};

/** Decodes the payload of an "ok" reply into the typed result of a task returning R. */
template <class R>
void store_payload(ResultState<R>& state, const char* data, std::size_t size) {
  if constexpr (std::is_void_v<R>) {
    (void)state, (void)data;
    if (size != 0) throw_trailing_bytes(size, size);
  } else if constexpr (is_decodable_v<R>) {
    state.emplace_result(decode_value<R>(data, size));
  } else {
    (void)state, (void)data, (void)size;
    throw Error("result type cannot be decoded");
  }
}

// A call bound to its arguments. Fn is a function pointer or a callable object; Params are the
// parameter types the call is made with (they decide copy / move / reference). A function pointer
// can run by name exactly when it is registered (then `registered` is set).
template <class R, class Fn, class Params, class Args>
class TaskStateImpl final : public ResultState<R> {
 public:
  TaskStateImpl(Fn fn, Args args) : fn_(std::move(fn)), args_(std::in_place, std::move(args)) {}

  void run_local() override {
    constexpr auto seq = std::make_index_sequence<std::tuple_size_v<Args>>{};
    if constexpr (std::is_void_v<R>) {
      call_with<Fn&, Params>(fn_, *args_, seq);
    } else {
      this->emplace_result(call_with<Fn&, Params>(fn_, *args_, seq));
    }
    args_.reset();  // arguments are not kept alive by the future
  }

  bool encode_request(std::streambuf& out) const override {
    if constexpr (all_encodable<Args>::value) {
      if (this->registered == nullptr || !args_) return false;
      write_request_header(out, this->registered->name, this->registered->fingerprint);
      encode_value(out, *args_);
      return true;
    } else {
      (void)out;
      return false;
    }
  }

  void set_result_from_payload(const char* data, std::size_t size) override {
    store_payload(*this, data, size);
  }

  std::string display_name() const override {
    if (this->registered != nullptr) return this->registered->name;
    return "<unregistered callable " + demangle(typeid(Fn).name()) + ">";
  }

  void release_arguments() noexcept override { args_.reset(); }

 private:
  Fn fn_;
  std::optional<Args> args_;
};

// A call by name only: the request is encoded at once (its argument types are all it has); in-process
// backends run it through the registry (which checks the fingerprint) and remote ones send it.
template <class R>
class NamedTaskState final : public ResultState<R> {
 public:
  NamedTaskState(std::string name, std::string encoded) : name_(std::move(name)), request_(std::move(encoded)) {}
  void run_local() override {
    ByteBuffer payload;
    invoke_request_locally(request_, payload);
    store_payload(*this, payload.data, payload.size);
  }
  bool encode_request(std::streambuf& out) const override {
    return out.sputn(request_.data(), static_cast<std::streamsize>(request_.size())) ==
           static_cast<std::streamsize>(request_.size());
  }
  void set_result_from_payload(const char* data, std::size_t size) override {
    store_payload(*this, data, size);
  }
  std::string display_name() const override { return name_; }
  void release_arguments() noexcept override { std::string().swap(request_); }

 private:
  std::string name_;
  std::string request_;
};

template <class T>
struct is_function_pointer
    : std::bool_constant<std::is_pointer_v<T> && std::is_function_v<std::remove_pointer_t<T>>> {};

/** Binds calls and registers tasks for wm::task, wm::task_by_name and WM_TASK (<wm/detail/task_decl.hpp>). */
template <class Tag>
struct TaskBinder {
  template <class F, class... Args>
  static auto bind(F&& fn, Args&&... args) {
    using D = std::decay_t<F>;
    if constexpr (is_function_pointer<D>::value) {
      using T = function_traits<D>;
      using R = typename T::result;
      using A = typename T::args;
      static_assert(std::is_constructible_v<A, Args&&...>,
                    "wm::task: the arguments do not convert to the function's parameter types");
      const RegisteredTask* reg = find_task(reinterpret_cast<const void*>(fn));
      auto* s = new TaskStateImpl<R, D, typename T::params, A>(fn, A(std::forward<Args>(args)...));
      s->registered = reg;
      return TaskSpec<R>(StatePtr(s, false));
    } else {
      using A = std::tuple<std::decay_t<Args>...>;
      using R = std::invoke_result_t<D&, std::decay_t<Args>&...>;
      using P = std::tuple<std::decay_t<Args>&...>;  // callables get their stored arguments by reference
      auto* s = new TaskStateImpl<R, D, P, A>(D(std::forward<F>(fn)), A(std::forward<Args>(args)...));
      return TaskSpec<R>(StatePtr(s, false));
    }
  }

  template <class R, class... Args>
  static TaskSpec<R> bind_name(std::string_view name, Args&&... args) {
    static_assert(result_codable_v<R>, "wm::task_by_name: result type must be serializable");
    using A = std::tuple<std::decay_t<Args>...>;
    static_assert(all_encodable<A>::value, "wm::task_by_name: argument types must be serializable with cereal");
    std::string request;
    StringSink sink(request);
    write_request_header(sink, name, signature_fingerprint<R, std::decay_t<Args>...>());
    encode_value(sink, A(std::forward<Args>(args)...));
    auto* s = new NamedTaskState<R>(std::string(name), std::move(request));
    s->registered = find_task(name);
    return TaskSpec<R>(StatePtr(s, false));
  }

  template <auto Fn>
  static TaskRegistrar registrar(const char* name) {
    return TaskRegistrar(describe_task<Fn>(name));
  }
};

}  // namespace detail
}  // namespace wm
