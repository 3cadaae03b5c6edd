#include "worker/exec_frame.h"

#include <unistd.h>

#include <algorithm>
#include <cmath>
#include <cstring>

namespace yard::exec {
namespace {

void PutU16(std::string* out, uint16_t v) {
  out->push_back(static_cast<char>(v & 0xff));
  out->push_back(static_cast<char>(v >> 8));
}

void PutU32(std::string* out, uint32_t v) {
  for (int i = 0; i < 4; ++i) out->push_back(static_cast<char>(v >> (8 * i)));
}

void PutU64BigEndian(std::string* out, uint64_t v) {
  for (int i = 7; i >= 0; --i) out->push_back(static_cast<char>(v >> (8 * i)));
}

uint64_t U64BigEndian(const unsigned char* p) {
  uint64_t v = 0;
  for (int i = 0; i < 8; ++i) v = (v << 8) | p[i];
  return v;
}

void PutId(std::string* out, const JobId& id) {
  PutU64BigEndian(out, id.hi);
  PutU64BigEndian(out, id.lo);
}

JobId GetId(const unsigned char* p) {
  JobId id;
  id.hi = U64BigEndian(p);
  id.lo = U64BigEndian(p + 8);
  return id;
}

const unsigned char* Bytes(std::string_view s) {
  return reinterpret_cast<const unsigned char*>(s.data());
}

size_t GetU32(const unsigned char* p) {
  return static_cast<size_t>(p[0]) | (static_cast<size_t>(p[1]) << 8) |
         (static_cast<size_t>(p[2]) << 16) | (static_cast<size_t>(p[3]) << 24);
}

}  // namespace

void EncodeJobHead(const JobId& id, uint16_t attempt, std::string_view task,
                   size_t payload_size, std::string* out) {
  out->clear();
  PutU32(out,
         static_cast<uint32_t>(kJobFixedBytes + task.size() + payload_size));
  PutId(out, id);
  PutU16(out, attempt);
  PutU16(out, static_cast<uint16_t>(task.size()));
  out->append(task);
}

void EncodeResult(const JobId& id, ResultCode code, std::string_view data,
                  std::string* out) {
  out->clear();
  out->reserve(kLengthBytes + kResultFixedBytes + data.size());
  PutU32(out, static_cast<uint32_t>(kResultFixedBytes + data.size()));
  PutId(out, id);
  out->push_back(static_cast<char>(code));
  out->append(data);
}

Result<JobFrame> DecodeJob(std::string_view body) {
  if (body.size() < kJobFixedBytes) {
    return Status::Corruption("job frame of " + std::to_string(body.size()) +
                              " bytes is shorter than its fixed fields");
  }
  const unsigned char* p = Bytes(body);
  JobFrame f;
  f.id = GetId(p);
  f.attempt = static_cast<uint16_t>(p[16] | (p[17] << 8));
  const size_t task_len = static_cast<size_t>(p[18] | (p[19] << 8));
  if (task_len > body.size() - kJobFixedBytes) {
    return Status::Corruption("job frame's task runs past its end");
  }
  f.task = body.substr(kJobFixedBytes, task_len);
  f.payload = body.substr(kJobFixedBytes + task_len);
  return f;
}

Result<ResultFrame> DecodeResult(std::string_view body) {
  if (body.size() < kResultFixedBytes) {
    return Status::Corruption("result frame of " + std::to_string(body.size()) +
                              " bytes is shorter than its fixed fields");
  }
  const unsigned char* p = Bytes(body);
  if (p[kIdBytes] > static_cast<uint8_t>(ResultCode::kProgress)) {
    return Status::Corruption("result frame has unknown status " +
                              std::to_string(p[kIdBytes]));
  }
  ResultFrame f;
  f.id = GetId(p);
  f.code = static_cast<ResultCode>(p[kIdBytes]);
  f.data = body.substr(kResultFixedBytes);
  return f;
}

void EncodeProgress(const JobId& id, float fraction, std::string_view message,
                    std::string* out) {
  uint32_t bits = 0;
  static_assert(sizeof(bits) == sizeof(fraction));
  std::memcpy(&bits, &fraction, sizeof(bits));
  std::string data;
  PutU32(&data, bits);
  data.append(message);
  EncodeResult(id, ResultCode::kProgress, data, out);
}

Result<ProgressData> DecodeProgress(std::string_view data) {
  if (data.size() < kProgressFixedBytes) {
    return Status::Corruption("progress frame's data of " +
                              std::to_string(data.size()) +
                              " bytes has no fraction");
  }
  const auto bits = static_cast<uint32_t>(GetU32(Bytes(data)));
  ProgressData d;
  std::memcpy(&d.fraction, &bits, sizeof(bits));
  if (!std::isfinite(d.fraction)) {
    return Status::Corruption("progress fraction is not a number");
  }
  d.message = data.substr(kProgressFixedBytes);
  return d;
}

ssize_t FrameReader::ReadFrom(int fd) {
  constexpr size_t kChunk = 64 * 1024;
  if (start_ > 0) {  // consumed frames go; views into them are void now
    buffer_.erase(0, start_);
    start_ = 0;
  }
  size_t want = kChunk;
  if (buffered() >= kLengthBytes) {
    const size_t frame = kLengthBytes + GetU32(Bytes(buffer_));
    if (frame <= kLengthBytes + max_body_ && frame > buffered()) {
      want = std::max(want, frame - buffered());
    }
  }
  const size_t old = buffer_.size();
  buffer_.resize(old + want);
  const ssize_t n = read(fd, buffer_.data() + old, want);
  buffer_.resize(old + static_cast<size_t>(std::max<ssize_t>(n, 0)));
  return n;
}

Result<bool> FrameReader::Next(std::string_view* body) {
  if (buffered() < kLengthBytes) return false;
  const size_t len = GetU32(Bytes(buffer_) + start_);
  if (len > max_body_) {
    return Status::Corruption("frame of " + std::to_string(len) +
                              " bytes is over the limit of " +
                              std::to_string(max_body_));
  }
  if (buffered() < kLengthBytes + len) return false;
  *body = std::string_view(buffer_).substr(start_ + kLengthBytes, len);
  start_ += kLengthBytes + len;
  return true;
}

}  // namespace yard::exec
