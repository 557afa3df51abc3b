#pragma once

#include <cerrno>
#include <string>
#include <system_error>
#include <utility>
#include <variant>

namespace keel {

// What kind of failure an Error is, apart from the errno kept for its message. Callers decide
// on the kind (only api/ turns kinds into HTTP statuses); the errno only explains.
enum class ErrorKind {
  kInvalid,       // the request, a flag or an input file is wrong: the caller can fix it
  kNotFound,      // the object named (a VM, a device id) does not exist
  kWrongState,    // the object exists but is in the wrong state for this (boot twice, ...)
  kNotSupported,  // Keel cannot do this (yet)
  kExists,        // the object is there already (an id or a path added twice)
  kRetry,         // not now: something under way must finish first (a vCPU the guest is ejecting)
  kHost,          // the host failed: a syscall, the kernel, a device
};

// What went wrong: its kind, the errno (or another error_code) kept intact, and a context string
// that names the object and the operation, e.g. "open /dev/vfio/12".
class Error {
 public:
  Error(ErrorKind kind, std::error_code code, std::string context)
      : kind_(kind), code_(code), context_(std::move(context)) {}

  // A failed syscall: captures the current errno; call it right after the call. Kind kHost.
  static Error from_errno(std::string context) { return from_errno(errno, std::move(context)); }
  static Error from_errno(int err, std::string context) {
    return Error(ErrorKind::kHost, std::error_code(err, std::system_category()), std::move(context));
  }
  // A path the user named (a kernel, a serial file) that the kernel would not open: the user's
  // to fix (kInvalid), unless the host itself ran out of something or failed (kHost).
  static Error opening_user_path(std::string context) { return opening_user_path(errno, std::move(context)); }
  static Error opening_user_path(int err, std::string context) {
    const bool host = err == EMFILE || err == ENFILE || err == ENOMEM || err == EIO;
    return Error(host ? ErrorKind::kHost : ErrorKind::kInvalid,
                 std::error_code(err, std::system_category()), std::move(context));
  }
  // Errors no syscall reported: bad input, a violated format, a missing object, a wrong state.
  // Their code is in the generic category, so message() is the context alone.
  static Error invalid(std::string context) { return of(ErrorKind::kInvalid, EINVAL, std::move(context)); }
  static Error not_found(std::string context) { return of(ErrorKind::kNotFound, ENOENT, std::move(context)); }
  static Error wrong_state(std::string context) { return of(ErrorKind::kWrongState, EBUSY, std::move(context)); }
  static Error not_supported(std::string context) {
    return of(ErrorKind::kNotSupported, ENOTSUP, std::move(context));
  }
  static Error exists(std::string context) { return of(ErrorKind::kExists, EEXIST, std::move(context)); }
  static Error retry(std::string context) { return of(ErrorKind::kRetry, EAGAIN, std::move(context)); }

  ErrorKind kind() const { return kind_; }
  const std::error_code& code() const { return code_; }
  int errno_value() const {
    const bool is_errno = code_.category() == std::system_category() ||
                          code_.category() == std::generic_category();
    return is_errno ? code_.value() : 0;
  }
  const std::string& context() const { return context_; }

  // "context: strerror" for syscall errors; the context alone for the others.
  std::string message() const {
    if (code_.category() == std::generic_category()) {
      return context_;
    }
    return context_ + ": " + code_.message();
  }

  // Prepends an outer context: "boot kernel: open /x: No such file or directory".
  Error wrap(const std::string& outer) const& { return Error(kind_, code_, outer + ": " + context_); }
  // The same failure seen as another kind: a file the user named that cannot be opened is the
  // user's to fix (kInvalid), though the kernel reported it.
  Error as(ErrorKind kind) const& { return Error(kind, code_, context_); }

 private:
  static Error of(ErrorKind kind, int err, std::string context) {
    return Error(kind, std::error_code(err, std::generic_category()), std::move(context));
  }

  ErrorKind kind_;
  std::error_code code_;
  std::string context_;
};

// A value or an Error. Marked [[nodiscard]] so a failure cannot be dropped silently.
template <typename T>
class [[nodiscard]] Result {
 public:
  Result(T value) : v_(std::move(value)) {}        // NOLINT(google-explicit-constructor)
  Result(Error error) : v_(std::move(error)) {}    // NOLINT(google-explicit-constructor)

  bool ok() const { return std::holds_alternative<T>(v_); }
  explicit operator bool() const { return ok(); }

  T& value() & { return std::get<T>(v_); }
  const T& value() const& { return std::get<T>(v_); }
  T&& value() && { return std::get<T>(std::move(v_)); }
  T* operator->() { return &value(); }
  const T* operator->() const { return &value(); }
  T& operator*() & { return value(); }
  T&& operator*() && { return std::move(*this).value(); }

  const Error& error() const { return std::get<Error>(v_); }

 private:
  std::variant<T, Error> v_;
};

template <>
class [[nodiscard]] Result<void> {
 public:
  Result() = default;
  Result(Error error) : error_(std::move(error)), failed_(true) {}  // NOLINT(google-explicit-constructor)

  bool ok() const { return !failed_; }
  explicit operator bool() const { return ok(); }
  const Error& error() const { return error_; }

 private:
  Error error_{ErrorKind::kHost, std::error_code(), std::string()};
  bool failed_ = false;
};

using Status = Result<void>;

inline Status ok_status() { return {}; }

}  // namespace keel

#define KEEL_CONCAT_INNER_(a, b) a##b
#define KEEL_CONCAT_(a, b) KEEL_CONCAT_INNER_(a, b)

// Returns the error of a failed Status (or Result) from the enclosing function; otherwise
// evaluates to nothing.
#define KEEL_TRY_STATUS(expr)                  \
  do {                                         \
    auto keel_try_status_ = (expr);            \
    if (!keel_try_status_.ok()) {              \
      return keel_try_status_.error();         \
    }                                          \
  } while (0)

// The same, with the error wrapped in an outer context.
#define KEEL_TRY_STATUS_WRAP(expr, outer)          \
  do {                                             \
    auto keel_try_status_ = (expr);                \
    if (!keel_try_status_.ok()) {                  \
      return keel_try_status_.error().wrap(outer); \
    }                                              \
  } while (0)

// KEEL_TRY(auto name, expr): evaluates the Result `expr`; on failure returns its error from the
// enclosing function, otherwise declares `name` holding the value (moved out).
#define KEEL_TRY(decl, expr) KEEL_TRY_IMPL_(KEEL_CONCAT_(keel_try_, __LINE__), decl, expr, )
// The same, with the error wrapped in an outer context: KEEL_TRY_WRAP(auto x, f(), "ACPI tables").
#define KEEL_TRY_WRAP(decl, expr, outer) \
  KEEL_TRY_IMPL_(KEEL_CONCAT_(keel_try_, __LINE__), decl, expr, .wrap(outer))
#define KEEL_TRY_IMPL_(tmp, decl, expr, wrapper) \
  auto tmp = (expr);                             \
  if (!tmp.ok()) {                               \
    return tmp.error() wrapper;                  \
  }                                              \
  decl = std::move(tmp).value()
