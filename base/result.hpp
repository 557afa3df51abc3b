#pragma once

#include <cerrno>
#include <string>
#include <system_error>
#include <utility>
#include <variant>

namespace keel {

// What went wrong: the errno (or another error_code) kept intact, plus a context string that
// names the object and the operation, e.g. "open /dev/vfio/12".
class Error {
 public:
  Error(std::error_code code, std::string context) : code_(code), context_(std::move(context)) {}

  // Captures the current errno; call it right after the failing syscall.
  static Error from_errno(std::string context) {
    return Error(std::error_code(errno, std::system_category()), std::move(context));
  }
  static Error from_errno(int err, std::string context) {
    return Error(std::error_code(err, std::system_category()), std::move(context));
  }
  // An error that no syscall reported: bad input, a violated format. Carries EINVAL in the
  // generic category, so message() is the context alone (no "Invalid argument" tacked on).
  static Error invalid(std::string context) {
    return Error(std::make_error_code(std::errc::invalid_argument), std::move(context));
  }

  const std::error_code& code() const { return code_; }
  int errno_value() const {
    const bool is_errno = code_.category() == std::system_category() ||
                          code_.category() == std::generic_category();
    return is_errno ? code_.value() : 0;
  }
  const std::string& context() const { return context_; }

  // "context: strerror" for syscall errors; the context alone for invalid().
  std::string message() const {
    if (code_.category() == std::generic_category()) {
      return context_;
    }
    return context_ + ": " + code_.message();
  }

  // Prepends an outer context: "boot kernel: open /x: No such file or directory".
  Error wrap(const std::string& outer) const& { return Error(code_, outer + ": " + context_); }

 private:
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
  Error error_{std::error_code(), std::string()};
  bool failed_ = false;
};

using Status = Result<void>;

inline Status ok_status() { return {}; }

}  // namespace keel

// Returns the error of a failed Result from the enclosing function; otherwise evaluates to nothing.
#define KEEL_TRY_STATUS(expr)                  \
  do {                                         \
    auto keel_try_status_ = (expr);            \
    if (!keel_try_status_.ok()) {              \
      return keel_try_status_.error();         \
    }                                          \
  } while (0)
