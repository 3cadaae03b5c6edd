// Status and Result<T>: how every fallible call in Switchyard reports failure.
//
// A Status is cheap to return on success (code kOk, empty message). Codes map
// one-to-one onto the wire's ErrorCode where an error reaches a peer, so a
// sender always sees why it was refused. Exceptions from libraries (cppzmq,
// hiredis wrappers) are caught at the transport boundary and become a Status.
//
// Thread-safety: values; safe to copy between threads.
#ifndef YARD_COMMON_STATUS_H_
#define YARD_COMMON_STATUS_H_

#include <string>
#include <string_view>
#include <utility>
#include <variant>

namespace yard {

enum class StatusCode : int {
  kOk = 0,
  kInvalidArgument = 1,    // bad input from a caller or peer
  kResourceExhausted = 2,  // a bound is reached: retry later (backpressure)
  kUnavailable = 3,        // a dependency is down or we are shutting down
  kNotFound = 4,
  kCorruption = 5,  // bytes that do not decode
  kIoError = 6,
  kDeadlineExceeded = 7,
  kInternal = 8,
};

std::string_view StatusCodeName(StatusCode code);

class [[nodiscard]] Status {
 public:
  Status() = default;
  Status(StatusCode code, std::string message)
      : code_(code), message_(std::move(message)) {}

  static Status OK() { return Status(); }
  static Status InvalidArgument(std::string m) {
    return {StatusCode::kInvalidArgument, std::move(m)};
  }
  static Status ResourceExhausted(std::string m) {
    return {StatusCode::kResourceExhausted, std::move(m)};
  }
  static Status Unavailable(std::string m) {
    return {StatusCode::kUnavailable, std::move(m)};
  }
  static Status NotFound(std::string m) {
    return {StatusCode::kNotFound, std::move(m)};
  }
  static Status Corruption(std::string m) {
    return {StatusCode::kCorruption, std::move(m)};
  }
  static Status IoError(std::string m) {
    return {StatusCode::kIoError, std::move(m)};
  }
  static Status DeadlineExceeded(std::string m) {
    return {StatusCode::kDeadlineExceeded, std::move(m)};
  }
  static Status Internal(std::string m) {
    return {StatusCode::kInternal, std::move(m)};
  }

  bool ok() const { return code_ == StatusCode::kOk; }
  StatusCode code() const { return code_; }
  const std::string& message() const { return message_; }
  // "InvalidArgument: frame too large" (or "OK").
  std::string ToString() const;

 private:
  StatusCode code_ = StatusCode::kOk;
  std::string message_;
};

// Either a value or a non-OK Status.
template <typename T>
class [[nodiscard]] Result {
 public:
  Result(T value) : v_(std::move(value)) {}  // NOLINT: implicit by design
  Result(Status status) : v_(std::move(status)) {}  // NOLINT
  bool ok() const { return std::holds_alternative<T>(v_); }
  // REQUIRES: ok()
  T& value() & { return std::get<T>(v_); }
  const T& value() const& { return std::get<T>(v_); }
  T&& value() && { return std::get<T>(std::move(v_)); }
  T* operator->() { return &value(); }
  const T* operator->() const { return &value(); }
  T& operator*() & { return value(); }
  // OK when ok(), the error otherwise.
  Status status() const { return ok() ? Status::OK() : std::get<Status>(v_); }

 private:
  std::variant<T, Status> v_;
};

}  // namespace yard

#endif  // YARD_COMMON_STATUS_H_
