// Codec: builds and verifies Switchyard envelopes (see envelope.fbs for the
// wire layout and a worked example).
//
// Reading: Decode() is the only way into an inbound frame. It checks the
// frame size, runs the FlatBuffers Verifier on the envelope, checks the
// protocol version and the body kind, bounds every vector of the body in
// entries and in decoded bytes, and only then verifies each nested Job and
// JobResult on its own. Only then may anything read the envelope. The
// returned pointers point into the frame; nothing is copied.
//
// Why decoded bytes, not frame bytes: a legal FlatBuffer may point many
// offsets at one object, so a 3 MB frame can hold a million references to
// one 1 MB string, or a thousand job blobs that are all one job with two
// million tags. Whoever walks such a message does the work (and a copier
// allocates the memory) once per reference. Decode therefore counts every
// referenced object once per reference, and refuses the message before
// anything walks it; nested blobs are verified only after their total size,
// counted that way, fits in a frame, so verification work is bounded by the
// frame limit too.
//
// Writing: a Writer owns a reusable FlatBufferBuilder; each Encode* call
// clears it and returns a view of the finished envelope, valid until the
// next call on the same Writer. A BlobBatch collects job or result blobs
// (nested FlatBuffers, copied with one memcpy each) into one Submit,
// Dispatch or Results message.
//
// Thread-safety: Writer and BlobBatch are not thread-safe; use one per
// thread. Decode is pure.
#ifndef YARD_SCHEMAS_CODEC_H_
#define YARD_SCHEMAS_CODEC_H_

#include <cstdint>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "common/job_id.h"
#include "common/trace_context.h"
#include "schemas/envelope_generated.h"

namespace yard {

inline constexpr uint16_t kProtocolVersion = 1;

using Bytes = std::span<const uint8_t>;

inline Bytes AsBytes(std::string_view s) {
  return {reinterpret_cast<const uint8_t*>(s.data()), s.size()};
}
inline std::string_view AsString(Bytes b) {
  return {reinterpret_cast<const char*>(b.data()), b.size()};
}
inline std::string_view AsString(const flatbuffers::Vector<uint8_t>* v) {
  return v ? std::string_view(reinterpret_cast<const char*>(v->data()),
                              v->size())
           : std::string_view();
}
inline std::string_view AsString(const flatbuffers::String* s) {
  return s ? std::string_view(s->data(), s->size()) : std::string_view();
}

inline wire::Id ToWire(const JobId& id) { return wire::Id(id.hi, id.lo); }
inline JobId FromWire(const wire::Id& id) { return JobId{id.hi(), id.lo()}; }
inline JobId FromWire(const wire::Id* id) {
  return id ? FromWire(*id) : JobId{};
}

// Limits every receiver enforces before it acts on a message.
struct Limits {
  size_t max_frame_bytes = 16u << 20;   // one envelope frame
  size_t max_batch = 4096;              // jobs or results in one message
  size_t max_payload_bytes = 4u << 20;  // one job's payload
  // Entries of a list of names (a worker's tasks, tags, taints; a job's tags
  // and tolerations), and the bytes of all names of one message together.
  size_t max_list_entries = 256;
  size_t max_names_bytes = 64u << 10;
  // A free-text string (an error message, a disconnect reason, a stats
  // document is bounded by the frame alone).
  size_t max_text_bytes = 64u << 10;
};

// The outcome of Decode: an envelope, or why the frame was refused (the code
// and message go back to the sender in an Error).
struct Decoded {
  const wire::Envelope* envelope = nullptr;
  wire::ErrorCode error = wire::ErrorCode::None;
  std::string message;
  bool ok() const { return envelope != nullptr; }
  wire::Body kind() const { return envelope->body_type(); }
};

// `frame` must start as aligned as its widest scalar needs (8): frames read
// by RecvRouter/RecvDealer are, and so is a FlatBufferBuilder's own buffer.
// The Verifier checks alignment relative to the frame's start only.
Decoded Decode(Bytes frame, const Limits& limits);

// The root of a standalone FlatBuffer (a Job or JobResult blob read back
// from storage), or null when `bytes` do not verify: stored bytes are only as
// trustworthy as whoever wrote them.
template <typename T>
const T* VerifiedRoot(std::string_view bytes) {
  const auto* data = reinterpret_cast<const uint8_t*>(bytes.data());
  flatbuffers::Verifier verifier(data, bytes.size());
  if (!verifier.VerifyBuffer<T>(nullptr)) return nullptr;
  return flatbuffers::GetRoot<T>(data);
}

// Task names, queue names and keys (idempotency, affinity, lock), and each
// worker tag, taint, task and job tag or toleration, are at most this long.
inline constexpr size_t kMaxKeyBytes = 256;

// Job-level checks a broker applies to each job of a verified Submit, so that
// one bad job is refused alone (with its id) and the rest are accepted.
// Returns None, or the code with *why set.
wire::ErrorCode CheckJob(const wire::Job& job, const Limits& limits,
                         std::string* why);

// Everything a producer may set on a job.
struct JobSpec {
  JobId id;
  std::string_view task;
  std::string_view queue;
  Bytes payload;
  uint8_t priority = 1;
  uint16_t max_attempts = 1;
  int64_t deadline_ms = 0;
  int64_t not_before_ms = 0;
  std::string_view idempotency_key;
  std::string_view affinity_key;
  std::vector<std::string> tags;
  std::vector<std::string> tolerations;
  JobId trace_id;
  int64_t created_ms = 0;
  std::string_view lock_key;    // durable mode: one running job per key
  uint32_t run_timeout_ms = 0;  // 0: the broker's default
  // W3C traceparent (common/trace_context.h); empty: none (the producer
  // library makes one).
  std::string_view traceparent;
};

struct ReadyInfo {
  uint32_t credit = 0;
  uint32_t capacity = 0;
  std::vector<std::string> tasks;
  std::vector<std::string> tags;
  std::vector<std::string> taints;
  std::string name;
};

// A handler's progress report (wire::JobProgress). A message longer than
// kMaxProgressMessageBytes is refused by Decode; senders cut theirs.
inline constexpr size_t kMaxProgressMessageBytes = 1024;
struct ProgressUpdate {
  JobId id;
  uint16_t attempt = 0;
  float fraction = 0;  // clamped to 0..1 when encoded (NaN: 0)
  std::string message;
};

class Writer {
 public:
  Writer() : fbb_(1024) {}

  // A Job blob (not an envelope): the bytes to put in a JobBlob.
  Bytes EncodeJob(const JobSpec& job);
  // A JobResult blob.
  // `duplicate_of`: non-zero for an idempotent duplicate's answer.
  // `traceparent`: the attempt's trace context; empty: none.
  Bytes EncodeResult(const JobId& id, wire::ResultStatus status, Bytes output,
                     std::string_view error, uint16_t attempt,
                     uint64_t duration_us, const JobId& duplicate_of = {},
                     std::string_view traceparent = {});

  Bytes EncodeAccepted(std::span<const JobId> ids);
  Bytes EncodeError(wire::ErrorCode code, std::string_view message,
                    std::span<const JobId> ids = {},
                    uint32_t retry_after_ms = 0);
  Bytes EncodeReady(const ReadyInfo& info);
  Bytes EncodeCredit(uint32_t credit, uint32_t withdraw = 0);
  Bytes EncodeHeartbeat(const JobId& instance = {});
  Bytes EncodeDisconnect(std::string_view reason);
  Bytes EncodeCancel(std::span<const JobId> ids);
  Bytes EncodeStatsRequest();
  Bytes EncodeStats(std::string_view json);
  // Messages are cut to kMaxProgressMessageBytes.
  Bytes EncodeProgress(std::span<const ProgressUpdate> updates);

 private:
  template <typename T>
  Bytes FinishEnvelope(flatbuffers::Offset<T> body, wire::Body kind);
  Bytes View() const { return {fbb_.GetBufferPointer(), fbb_.GetSize()}; }
  flatbuffers::Offset<flatbuffers::Vector<const wire::Id*>> Ids(
      std::span<const JobId> ids);

  flatbuffers::FlatBufferBuilder fbb_;
};

// Collects blobs into one batch message. Add*, then Finish*, then Clear.
class BlobBatch {
 public:
  BlobBatch() : fbb_(64 * 1024) {}

  // A job for Dispatch: `attempt` is its delivery attempt (1 first).
  void AddJob(Bytes job_blob, uint16_t attempt = 0);
  // A job for Submit: `sends` counts the producer's sends of it (1 first),
  // mirrored into `attempt` for brokers that predate `sends`.
  void AddSubmission(Bytes job_blob, uint16_t sends);
  void AddResult(Bytes result_blob);
  size_t size() const { return offsets_.size(); }
  bool empty() const { return offsets_.empty(); }
  // Encoded bytes so far (to cap a message's size).
  size_t bytes() const { return fbb_.GetSize(); }

  Bytes FinishSubmit();
  Bytes FinishDispatch();
  // `accepted`: ids acknowledged in the same message (broker -> producer).
  Bytes FinishResults(std::span<const JobId> accepted = {},
                      uint32_t withheld = 0);
  void Clear();

 private:
  template <typename T>
  Bytes Finish(flatbuffers::Offset<T> body, wire::Body kind);
  void AddJobBlob(Bytes job_blob, uint16_t attempt, uint16_t sends);

  flatbuffers::FlatBufferBuilder fbb_;
  std::vector<flatbuffers::Offset<void>> offsets_;
};

// How many times the producer sent this job (1: the first time): `sends`, or
// for a producer that predates it, `attempt`, which it set to the same.
inline uint16_t SendsOf(const wire::JobBlob& blob) {
  return blob.sends() != 0 ? blob.sends() : blob.attempt();
}

}  // namespace yard

#endif  // YARD_SCHEMAS_CODEC_H_
