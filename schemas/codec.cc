#include "schemas/codec.h"

#include <algorithm>
#include <cmath>
#include <cstdint>
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

// Tables an envelope holds besides one per blob: the Envelope and its body.
constexpr flatbuffers::uoffset_t kEnvelopeTables = 4;
// A Job or JobResult is one table with structs and vectors of scalars or
// strings; nothing legal nests deeper.
constexpr flatbuffers::uoffset_t kBlobTables = 4;
constexpr flatbuffers::uoffset_t kMaxDepth = 16;

// Why a verified envelope is still refused: the code and the reason.
struct Refusal {
  wire::ErrorCode code = wire::ErrorCode::None;
  std::string why;
  explicit operator bool() const { return code != wire::ErrorCode::None; }
};

Refusal TooLarge(std::string why) {
  return {wire::ErrorCode::TooLarge, std::move(why)};
}

template <typename Vec>
Refusal CheckEntries(const Vec* v, size_t limit, const char* what) {
  if (v && v->size() > limit) {
    return TooLarge(std::string(what) + " of " + std::to_string(v->size()) +
                    " entries exceeds the limit of " + std::to_string(limit));
  }
  return {};
}

using IdVector = flatbuffers::Vector<const wire::Id*>;

// A vector of ids: bounded in entries, and 8-aligned in memory. The
// Verifier checks a vector of structs only for the 4-byte alignment of its
// length, while an Id holds uint64s: a vector at 4 mod 8 would be read
// misaligned (undefined behaviour; a trap on strict-alignment machines).
// Builders align such vectors to 8, so only a forged frame is refused.
Refusal CheckIds(const IdVector* v, size_t limit, const char* what) {
  if (Refusal r = CheckEntries(v, limit, what)) return r;
  if (v && reinterpret_cast<uintptr_t>(v->Data()) % alignof(wire::Id) != 0) {
    return {wire::ErrorCode::BadFrame,
            std::string(what) + " are not 8-aligned"};
  }
  return {};
}

// A batch of nested blobs (JobBlob or ResultBlob): bounded in entries, in
// bytes counted once per reference, each 8-aligned in memory and a valid
// standalone `Root` (verified here, after the bounds, by a verifier of its
// own: the envelope's verifier skips nested buffers).
template <typename Root, typename BlobTable>
Refusal CheckBlobs(const flatbuffers::Vector<flatbuffers::Offset<BlobTable>>* v,
                   const Limits& limits) {
  if (v == nullptr || v->size() == 0) {
    return {wire::ErrorCode::BadBatch, "empty batch"};
  }
  if (Refusal r = CheckEntries(v, limits.max_batch, "batch")) return r;
  size_t bytes = 0;
  for (const auto* blob : *v) {
    bytes += blob->data()->size();
    if (bytes > limits.max_frame_bytes) {
      return TooLarge("blobs of more than " +
                      std::to_string(limits.max_frame_bytes) +
                      " bytes in all (a blob counts once per reference)");
    }
  }
  flatbuffers::Verifier::Options options;
  options.max_depth = kMaxDepth;
  options.max_tables = kBlobTables;
  for (const auto* blob : *v) {
    const uint8_t* data = blob->data()->data();
    const size_t size = blob->data()->size();
    // The blob is read in place: its scalars are aligned only if it is.
    if (reinterpret_cast<uintptr_t>(data) % kBlobAlign != 0) {
      return {wire::ErrorCode::BadFrame, "a nested blob is not 8-aligned"};
    }
    flatbuffers::Verifier verifier(data, size, options);
    // 8: the smallest buffer (root offset and vtable offset).
    if (size < 8 || !verifier.VerifyBuffer<Root>(nullptr)) {
      return {wire::ErrorCode::BadFrame, "a nested blob does not verify"};
    }
  }
  return {};
}

// Lists of names: bounded in entries each, each name in bytes, and all of
// them together in bytes counted once per reference. `total` accumulates
// over the lists of one message.
Refusal CheckNames(
    const flatbuffers::Vector<flatbuffers::Offset<flatbuffers::String>>* names,
    const char* what, const Limits& limits, size_t* total) {
  if (Refusal r = CheckEntries(names, limits.max_list_entries, what)) return r;
  if (names == nullptr) return {};
  for (const auto* name : *names) {
    if (name->size() > kMaxKeyBytes) {
      return TooLarge(std::string("an entry of ") + what + " of " +
                      std::to_string(name->size()) +
                      " bytes exceeds the limit of " +
                      std::to_string(kMaxKeyBytes));
    }
    *total += name->size();
  }
  if (*total > limits.max_names_bytes) {
    return TooLarge("names of more than " +
                    std::to_string(limits.max_names_bytes) +
                    " bytes in all (a name counts once per reference)");
  }
  return {};
}

Refusal CheckText(const flatbuffers::String* text, const char* what,
                  const Limits& limits) {
  if (text && text->size() > limits.max_text_bytes) {
    return TooLarge(std::string(what) + " of " + std::to_string(text->size()) +
                    " bytes exceeds the limit of " +
                    std::to_string(limits.max_text_bytes));
  }
  return {};
}

Refusal CheckReady(const wire::Ready& ready, const Limits& limits) {
  size_t total = ready.name() ? ready.name()->size() : 0;
  if (Refusal r = CheckNames(ready.tasks(), "tasks", limits, &total)) return r;
  if (Refusal r = CheckNames(ready.tags(), "tags", limits, &total)) return r;
  return CheckNames(ready.taints(), "taints", limits, &total);
}

// Progress: at most max_batch updates, each message at most
// kMaxProgressMessageBytes (so at most max_batch of those in all, however
// the offsets are shared).
Refusal CheckProgress(const wire::Progress& progress, const Limits& limits) {
  if (Refusal r = CheckEntries(progress.updates(), limits.max_batch,
                               "progress updates")) {
    return r;
  }
  for (const auto* u : *progress.updates()) {
    if (u->message() && u->message()->size() > kMaxProgressMessageBytes) {
      return TooLarge("a progress message of " +
                      std::to_string(u->message()->size()) +
                      " bytes exceeds the limit of " +
                      std::to_string(kMaxProgressMessageBytes));
    }
  }
  return {};
}

// Entry and byte bounds of the body, by kind (see the header comment).
Refusal CheckBody(const wire::Envelope& env, const Limits& limits) {
  switch (env.body_type()) {
    case wire::Body::Submit:
      return CheckBlobs<wire::Job>(env.body_as_Submit()->jobs(), limits);
    case wire::Body::Dispatch:
      return CheckBlobs<wire::Job>(env.body_as_Dispatch()->jobs(), limits);
    case wire::Body::Results: {
      const auto* r = env.body_as_Results();
      if (Refusal bad =
              CheckIds(r->accepted(), limits.max_batch, "accepted ids")) {
        return bad;
      }
      return CheckBlobs<wire::JobResult>(r->results(), limits);
    }
    case wire::Body::Accepted: {
      const auto* ids = env.body_as_Accepted()->ids();
      if (ids->size() == 0) return {wire::ErrorCode::BadBatch, "empty batch"};
      return CheckIds(ids, limits.max_batch, "accepted ids");
    }
    case wire::Body::Cancel:
      return CheckIds(env.body_as_Cancel()->ids(), limits.max_batch,
                      "cancelled ids");
    case wire::Body::Ready:
      return CheckReady(*env.body_as_Ready(), limits);
    case wire::Body::Error: {
      const auto* e = env.body_as_Error();
      if (Refusal r = CheckIds(e->ids(), limits.max_batch, "error ids")) {
        return r;
      }
      return CheckText(e->message(), "error message", limits);
    }
    case wire::Body::Disconnect:
      return CheckText(env.body_as_Disconnect()->reason(), "reason", limits);
    case wire::Body::Progress:
      return CheckProgress(*env.body_as_Progress(), limits);
    default:
      return {};
  }
}

}  // namespace

Decoded Decode(Bytes frame, const Limits& limits) {
  if (frame.size() > limits.max_frame_bytes) {
    return Refuse(wire::ErrorCode::TooLarge,
                  "frame of " + std::to_string(frame.size()) +
                      " bytes exceeds the limit of " +
                      std::to_string(limits.max_frame_bytes));
  }
  // Tables are bounded so that a million offsets to one table cost a
  // million visits only up to this count; nested blobs wait for CheckBody.
  flatbuffers::Verifier::Options options;
  options.max_depth = kMaxDepth;
  options.max_tables = static_cast<flatbuffers::uoffset_t>(
      std::min<size_t>(limits.max_batch, 1u << 24) + kEnvelopeTables);
  options.check_nested_flatbuffers = false;
  flatbuffers::Verifier verifier(frame.data(), frame.size(), options);
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
  if (Refusal r = CheckBody(*env, limits)) {
    return Refuse(r.code, std::move(r.why));
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
  // Keys become parts of Redis key names in durable mode; a traceparent is
  // bounded alike (kMaxTraceParentBytes == kMaxKeyBytes).
  static_assert(kMaxTraceParentBytes == kMaxKeyBytes);
  const std::pair<const flatbuffers::String*, const char*> keys[] = {
      {job.traceparent(), "traceparent"},
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
  // Logged by every hop and handed to handlers: refused unless it parses.
  if (job.traceparent() && !ValidTraceParent(AsString(job.traceparent()))) {
    *why =
        "traceparent is not a W3C trace context (00-<32 hex>-<16 hex>-<2 hex>)";
    return wire::ErrorCode::BadBatch;
  }
  // Tags and tolerations are walked at every placement of the job.
  size_t total = 0;
  Refusal r = CheckNames(job.tags(), "tags", limits, &total);
  if (!r) r = CheckNames(job.tolerations(), "tolerations", limits, &total);
  if (r) {
    *why = std::move(r.why);
    return r.code;
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
  auto traceparent =
      j.traceparent.empty()
          ? 0
          : fbb_.CreateString(j.traceparent.data(), j.traceparent.size());
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
  if (j.run_timeout_ms) b.add_run_timeout_ms(j.run_timeout_ms);
  if (j.not_before_ms) b.add_not_before_ms(j.not_before_ms);
  if (!idem.IsNull()) b.add_idempotency_key(idem);
  if (!affinity.IsNull()) b.add_affinity_key(affinity);
  if (!tags.IsNull()) b.add_tags(tags);
  if (!tols.IsNull()) b.add_tolerations(tols);
  wire::Id trace = ToWire(j.trace_id);
  if (!j.trace_id.IsZero()) b.add_trace_id(&trace);
  if (j.created_ms) b.add_created_ms(j.created_ms);
  if (!lock.IsNull()) b.add_lock_key(lock);
  if (!traceparent.IsNull()) b.add_traceparent(traceparent);
  fbb_.Finish(b.Finish());
  return View();
}

Bytes Writer::EncodeResult(const JobId& id, wire::ResultStatus status,
                           Bytes output, std::string_view error,
                           uint16_t attempt, uint64_t duration_us,
                           const JobId& duplicate_of,
                           std::string_view traceparent) {
  fbb_.Clear();
  auto out = fbb_.CreateVector(output.data(), output.size());
  auto err = error.empty() ? 0 : fbb_.CreateString(error.data(), error.size());
  auto tp = traceparent.empty()
                ? 0
                : fbb_.CreateString(traceparent.data(), traceparent.size());
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
  if (!tp.IsNull()) b.add_traceparent(tp);
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

Bytes Writer::EncodeProgress(std::span<const ProgressUpdate> updates) {
  fbb_.Clear();
  std::vector<flatbuffers::Offset<wire::JobProgress>> v;
  v.reserve(updates.size());
  for (const ProgressUpdate& u : updates) {
    const float f =
        std::isnan(u.fraction) ? 0.0f : std::clamp(u.fraction, 0.0f, 1.0f);
    auto message = fbb_.CreateString(
        std::string_view(u.message).substr(0, kMaxProgressMessageBytes));
    const wire::Id id = ToWire(u.id);
    v.push_back(wire::CreateJobProgress(fbb_, &id, u.attempt, f, message));
  }
  auto vec = fbb_.CreateVector(v);
  return FinishEnvelope(wire::CreateProgress(fbb_, vec), wire::Body::Progress);
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
