// The framing between the worker and a handler process (docs/exec-protocol.md
// says it for handler authors). Every frame is a little-endian u32 body
// length, then the body:
//
//   job    (worker -> handler)  id[16] attempt:u16 task_len:u16 task payload
//   result (handler -> worker)  id[16] status:u8 data
//
// A handler may send progress before its result: a result-shaped frame with
// status 3 whose data is fraction:f32 (little-endian IEEE 754, 0..1) then a
// UTF-8 message; it does not end the job.
//
// Ids are the 128-bit job id, big-endian (hi then lo, the order it prints
// in). Status 0: ok (data is the output); 1: error (data is the reason,
// UTF-8); 2: out of memory (data optional). A job "echo", attempt 1,
// payload "hi", id 00..01:
//
//   1a 00 00 00 | 00*15 01 | 01 00 | 04 00 | 'e' 'c' 'h' 'o' | 'h' 'i'
//
// Thread-safety: the functions are pure; a FrameReader belongs to one
// thread.
#ifndef YARD_WORKER_EXEC_FRAME_H_
#define YARD_WORKER_EXEC_FRAME_H_

#include <sys/types.h>

#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>

#include "common/job_id.h"
#include "common/status.h"

namespace yard::exec {

constexpr size_t kLengthBytes = 4;
constexpr size_t kIdBytes = 16;
constexpr size_t kJobFixedBytes = kIdBytes + 2 + 2;
constexpr size_t kResultFixedBytes = kIdBytes + 1;

enum class ResultCode : uint8_t {
  kOk = 0,
  kError = 1,
  kOutOfMemory = 2,
  kProgress = 3,  // not an end: data is a ProgressData
};

constexpr size_t kProgressFixedBytes = 4;  // the f32 fraction

struct ProgressData {
  float fraction = 0;
  std::string_view message;
};

struct JobFrame {
  JobId id;
  uint16_t attempt = 0;
  std::string_view task;
  std::string_view payload;
};

struct ResultFrame {
  JobId id;
  ResultCode code = ResultCode::kOk;
  std::string_view data;
};

// Replaces *out with a job frame's length prefix and fixed fields and task:
// everything but the payload, which follows it on the wire (so it can be
// written from where it lies, with writev). REQUIRES: task.size() < 65536.
void EncodeJobHead(const JobId& id, uint16_t attempt, std::string_view task,
                   size_t payload_size, std::string* out);
// Replaces *out with a whole result frame.
void EncodeResult(const JobId& id, ResultCode code, std::string_view data,
                  std::string* out);

// Replaces *out with a whole progress frame (status kProgress).
void EncodeProgress(const JobId& id, float fraction, std::string_view message,
                    std::string* out);
// The data of a kProgress result frame. Corruption when shorter than the
// fraction, or the fraction is not a number.
[[nodiscard]] Result<ProgressData> DecodeProgress(std::string_view data);

// Bodies (without the length prefix). Corruption when malformed; the views
// point into `body`.
[[nodiscard]] Result<JobFrame> DecodeJob(std::string_view body);
[[nodiscard]] Result<ResultFrame> DecodeResult(std::string_view body);

// Splits a byte stream into frame bodies; refuses a body over max_body.
class FrameReader {
 public:
  explicit FrameReader(size_t max_body) : max_body_(max_body) {}

  // Appends what one read(2) of fd returns (at most 64 KiB, or the rest of
  // a long frame): > 0 bytes, 0 at end of file, -1 on error (errno set).
  ssize_t ReadFrom(int fd);
  void Append(std::string_view bytes) { buffer_.append(bytes); }

  // The next whole body, consumed; empty optional-like false when none yet.
  // Corruption when a length exceeds max_body. The view stays valid until
  // the next call to ReadFrom, Append or Next.
  [[nodiscard]] Result<bool> Next(std::string_view* body);
  size_t buffered() const { return buffer_.size() - start_; }

 private:
  size_t max_body_;
  std::string buffer_;
  size_t start_ = 0;  // first unconsumed byte
};

}  // namespace yard::exec

#endif  // YARD_WORKER_EXEC_FRAME_H_
