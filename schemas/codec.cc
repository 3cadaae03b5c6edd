#include "schemas/codec.h"

#include <string>

namespace yard {
namespace {

// Nested buffers are aligned as if they stood alone, so readers of a blob
// copied out of a message (into Redis, into a queue) see the same layout.
constexpr size_t kBlobAlign = 8;

Decoded Refuse(wire::ErrorCode code, std::string message) {
  Decoded d;
  d.error = code;
  d.message = std::move(message);
  return d;
}

template <typename Vec>
const char* CheckBatch(const Vec* v, const Limits& limits) {
  if (v == nullptr || v->size() == 0) return "empty batch";
  if (v->size() > limits.max_batch) return "batch too large";
  return nullptr;
}

}  // namespace

Decoded Decode(Bytes frame, const Limits& limits) {
  if (frame.size() > limits.max_frame_bytes) {
    return Refuse(wire::ErrorCode::TooLarge,
                  "frame of " + std::to_string(frame.size()) +
                      " bytes exceeds the limit of " +
                      std::to_string(limits.max_frame_bytes));
  }
  flatbuffers::Verifier verifier(frame.data(), frame.size());
  if (frame.size() < 8 || !verifier.VerifyBuffer<wire::Envelope>(nullptr)) {
    return Refuse(wire::ErrorCode::BadFrame, "frame is not a valid envelope (" +
                                                 std::to_string(frame.size()) +
                                                 " bytes)");
  }
  const auto* env = flatbuffers::GetRoot<wire::Envelope>(frame.data());
  if (env->version() != kProtocolVersion) {
    return Refuse(wire::ErrorCode::BadVersion,
                  "protocol version " + std::to_string(env->version()) +
                      " is not supported (this side speaks " +
                      std::to_string(kProtocolVersion) + ")");
  }
  auto kind = env->body_type();
  if (kind == wire::Body::NONE || kind > wire::Body::MAX ||
      env->body() == nullptr) {
    return Refuse(
        wire::ErrorCode::UnknownKind,
        "unknown message kind " + std::to_string(static_cast<int>(kind)));
  }
  const char* batch_error = nullptr;
  switch (kind) {
    case wire::Body::Submit:
      batch_error = CheckBatch(env->body_as_Submit()->jobs(), limits);
      break;
    case wire::Body::Dispatch:
      batch_error = CheckBatch(env->body_as_Dispatch()->jobs(), limits);
      break;
    case wire::Body::Results: {
      const auto* r = env->body_as_Results();
      batch_error = CheckBatch(r->results(), limits);
      if (!batch_error && r->accepted() &&
          r->accepted()->size() > limits.max_batch) {
        batch_error = "batch too large";
      }
      break;
    }
    case wire::Body::Accepted:
      batch_error = CheckBatch(env->body_as_Accepted()->ids(), limits);
      break;
    default:
      break;
  }
  if (batch_error) {
    return Refuse(batch_error[0] == 'e' ? wire::ErrorCode::BadBatch
                                        : wire::ErrorCode::TooLarge,
                  std::string(batch_error) + " (limit " +
                      std::to_string(limits.max_batch) + ")");
  }
  Decoded d;
  d.envelope = env;
  return d;
}

wire::ErrorCode CheckJob(const wire::Job& job, const Limits& limits,
                         std::string* why) {
  if (job.payload() && job.payload()->size() > limits.max_payload_bytes) {
    *why = "payload of " + std::to_string(job.payload()->size()) +
           " bytes exceeds the limit of " +
           std::to_string(limits.max_payload_bytes);
    return wire::ErrorCode::TooLarge;
  }
  if (job.task()->size() == 0) {
    *why = "job with an empty task name";
    return wire::ErrorCode::BadBatch;
  }
  if (job.id()->hi() == 0 && job.id()->lo() == 0) {
    *why = "job with a zero id";
    return wire::ErrorCode::BadBatch;
  }
  // Keys become parts of Redis key names in durable mode.
  const std::pair<const flatbuffers::String*, const char*> keys[] = {
      {job.task(), "task name"},
      {job.queue(), "queue name"},
      {job.idempotency_key(), "idempotency key"},
      {job.affinity_key(), "affinity key"},
      {job.lock_key(), "lock key"}};
  for (const auto& [key, what] : keys) {
    if (key && key->size() > kMaxKeyBytes) {
      *why = std::string(what) + " of " + std::to_string(key->size()) +
             " bytes exceeds the limit of " + std::to_string(kMaxKeyBytes);
      return wire::ErrorCode::TooLarge;
    }
  }
  return wire::ErrorCode::None;
}

// ---- Writer ----

template <typename T>
Bytes Writer::FinishEnvelope(flatbuffers::Offset<T> body, wire::Body kind) {
  auto env = wire::CreateEnvelope(fbb_, kProtocolVersion, kind, body.Union());
  fbb_.Finish(env);
  return View();
}

flatbuffers::Offset<flatbuffers::Vector<const wire::Id*>> Writer::Ids(
    std::span<const JobId> ids) {
  wire::Id* out = nullptr;
  auto vec = fbb_.CreateUninitializedVectorOfStructs(ids.size(), &out);
  for (const auto& id : ids) *out++ = ToWire(id);
  return vec;
}

Bytes Writer::EncodeJob(const JobSpec& j) {
  fbb_.Clear();
  auto task = fbb_.CreateString(j.task.data(), j.task.size());
  auto queue =
      j.queue.empty() ? 0 : fbb_.CreateString(j.queue.data(), j.queue.size());
  auto payload = fbb_.CreateVector(j.payload.data(), j.payload.size());
  auto idem = j.idempotency_key.empty()
                  ? 0
                  : fbb_.CreateString(j.idempotency_key.data(),
                                      j.idempotency_key.size());
  auto affinity =
      j.affinity_key.empty()
          ? 0
          : fbb_.CreateString(j.affinity_key.data(), j.affinity_key.size());
  auto lock = j.lock_key.empty()
                  ? 0
                  : fbb_.CreateString(j.lock_key.data(), j.lock_key.size());
  auto tags = j.tags.empty() ? 0 : fbb_.CreateVectorOfStrings(j.tags);
  auto tols =
      j.tolerations.empty() ? 0 : fbb_.CreateVectorOfStrings(j.tolerations);
  wire::JobBuilder b(fbb_);
  wire::Id id = ToWire(j.id);
  b.add_id(&id);
  b.add_task(task);
  if (!queue.IsNull()) b.add_queue(queue);
  b.add_payload(payload);
  b.add_priority(j.priority);
  b.add_max_attempts(j.max_attempts);
  if (j.deadline_ms) b.add_deadline_ms(j.deadline_ms);
  if (j.not_before_ms) b.add_not_before_ms(j.not_before_ms);
  if (!idem.IsNull()) b.add_idempotency_key(idem);
  if (!affinity.IsNull()) b.add_affinity_key(affinity);
  if (!tags.IsNull()) b.add_tags(tags);
  if (!tols.IsNull()) b.add_tolerations(tols);
  wire::Id trace = ToWire(j.trace_id);
  if (!j.trace_id.IsZero()) b.add_trace_id(&trace);
  if (j.created_ms) b.add_created_ms(j.created_ms);
  if (!lock.IsNull()) b.add_lock_key(lock);
  fbb_.Finish(b.Finish());
  return View();
}

Bytes Writer::EncodeResult(const JobId& id, wire::ResultStatus status,
                           Bytes output, std::string_view error,
                           uint16_t attempt, uint64_t duration_us,
                           const JobId& duplicate_of) {
  fbb_.Clear();
  auto out = fbb_.CreateVector(output.data(), output.size());
  auto err = error.empty() ? 0 : fbb_.CreateString(error.data(), error.size());
  wire::JobResultBuilder b(fbb_);
  wire::Id wid = ToWire(id);
  b.add_id(&wid);
  b.add_status(status);
  b.add_output(out);
  if (!err.IsNull()) b.add_error(err);
  b.add_attempt(attempt);
  b.add_duration_us(duration_us);
  wire::Id dup = ToWire(duplicate_of);
  if (!duplicate_of.IsZero()) b.add_duplicate_of(&dup);
  fbb_.Finish(b.Finish());
  return View();
}

Bytes Writer::EncodeAccepted(std::span<const JobId> ids) {
  fbb_.Clear();
  auto v = Ids(ids);
  return FinishEnvelope(wire::CreateAccepted(fbb_, v), wire::Body::Accepted);
}

Bytes Writer::EncodeError(wire::ErrorCode code, std::string_view message,
                          std::span<const JobId> ids, uint32_t retry_after_ms) {
  fbb_.Clear();
  auto msg = fbb_.CreateString(message.data(), message.size());
  auto v = ids.empty() ? 0 : Ids(ids);
  return FinishEnvelope(wire::CreateError(fbb_, code, msg, v, retry_after_ms),
                        wire::Body::Error);
}

Bytes Writer::EncodeReady(const ReadyInfo& info) {
  fbb_.Clear();
  auto tasks = fbb_.CreateVectorOfStrings(info.tasks);
  auto tags = fbb_.CreateVectorOfStrings(info.tags);
  auto taints = fbb_.CreateVectorOfStrings(info.taints);
  auto name = fbb_.CreateString(info.name);
  return FinishEnvelope(wire::CreateReady(fbb_, info.credit, info.capacity,
                                          tasks, tags, taints, name),
                        wire::Body::Ready);
}

Bytes Writer::EncodeCredit(uint32_t credit, uint32_t withdraw) {
  fbb_.Clear();
  return FinishEnvelope(wire::CreateCredit(fbb_, credit, withdraw),
                        wire::Body::Credit);
}

Bytes Writer::EncodeHeartbeat(const JobId& instance) {
  fbb_.Clear();
  wire::Id id = ToWire(instance);
  return FinishEnvelope(
      wire::CreateHeartbeat(fbb_, instance.IsZero() ? nullptr : &id),
      wire::Body::Heartbeat);
}

Bytes Writer::EncodeDisconnect(std::string_view reason) {
  fbb_.Clear();
  auto r = fbb_.CreateString(reason.data(), reason.size());
  return FinishEnvelope(wire::CreateDisconnect(fbb_, r),
                        wire::Body::Disconnect);
}

Bytes Writer::EncodeCancel(std::span<const JobId> ids) {
  fbb_.Clear();
  auto v = Ids(ids);
  return FinishEnvelope(wire::CreateCancel(fbb_, v), wire::Body::Cancel);
}

Bytes Writer::EncodeStatsRequest() {
  fbb_.Clear();
  return FinishEnvelope(wire::CreateStatsRequest(fbb_),
                        wire::Body::StatsRequest);
}

Bytes Writer::EncodeStats(std::string_view json) {
  fbb_.Clear();
  auto s = fbb_.CreateString(json.data(), json.size());
  return FinishEnvelope(wire::CreateStats(fbb_, s), wire::Body::Stats);
}

// ---- BlobBatch ----

void BlobBatch::AddJob(Bytes job_blob, uint16_t attempt) {
  AddJobBlob(job_blob, attempt, 0);
}

void BlobBatch::AddSubmission(Bytes job_blob, uint16_t sends) {
  AddJobBlob(job_blob, sends, sends);
}

void BlobBatch::AddJobBlob(Bytes job_blob, uint16_t attempt, uint16_t sends) {
  fbb_.ForceVectorAlignment(job_blob.size(), 1, kBlobAlign);
  auto data = fbb_.CreateVector(job_blob.data(), job_blob.size());
  offsets_.push_back(wire::CreateJobBlob(fbb_, data, attempt, sends).Union());
}

void BlobBatch::AddResult(Bytes result_blob) {
  fbb_.ForceVectorAlignment(result_blob.size(), 1, kBlobAlign);
  auto data = fbb_.CreateVector(result_blob.data(), result_blob.size());
  offsets_.push_back(wire::CreateResultBlob(fbb_, data).Union());
}

template <typename T>
Bytes BlobBatch::Finish(flatbuffers::Offset<T> body, wire::Body kind) {
  auto env = wire::CreateEnvelope(fbb_, kProtocolVersion, kind, body.Union());
  fbb_.Finish(env);
  return {fbb_.GetBufferPointer(), fbb_.GetSize()};
}

Bytes BlobBatch::FinishSubmit() {
  auto v = fbb_.CreateVector(
      reinterpret_cast<const flatbuffers::Offset<wire::JobBlob>*>(
          offsets_.data()),
      offsets_.size());
  return Finish(wire::CreateSubmit(fbb_, v), wire::Body::Submit);
}

Bytes BlobBatch::FinishDispatch() {
  auto v = fbb_.CreateVector(
      reinterpret_cast<const flatbuffers::Offset<wire::JobBlob>*>(
          offsets_.data()),
      offsets_.size());
  return Finish(wire::CreateDispatch(fbb_, v), wire::Body::Dispatch);
}

Bytes BlobBatch::FinishResults(std::span<const JobId> accepted,
                               uint32_t withheld) {
  flatbuffers::Offset<flatbuffers::Vector<const wire::Id*>> acc = 0;
  if (!accepted.empty()) {
    wire::Id* out = nullptr;
    acc = fbb_.CreateUninitializedVectorOfStructs(accepted.size(), &out);
    for (const JobId& id : accepted) *out++ = ToWire(id);
  }
  auto v = fbb_.CreateVector(
      reinterpret_cast<const flatbuffers::Offset<wire::ResultBlob>*>(
          offsets_.data()),
      offsets_.size());
  return Finish(wire::CreateResults(fbb_, v, acc, withheld),
                wire::Body::Results);
}

void BlobBatch::Clear() {
  fbb_.Clear();
  offsets_.clear();
}

}  // namespace yard
