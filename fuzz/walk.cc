#include "fuzz/walk.h"

#include <string>

namespace yard::fuzz {
namespace {

// Every byte, one load each (ASan checks each).
uint64_t Sum(const uint8_t* data, size_t size) {
  uint64_t sum = size;
  for (size_t i = 0; i < size; ++i) sum = sum * 31 + data[i];
  return sum;
}

uint64_t Sum(const flatbuffers::String* s) {
  if (s == nullptr) return 0;
  // The Verifier guarantees the terminator; c_str() readers rely on it.
  const std::string copy = s->str();
  return Sum(s->Data(), s->size()) +
         static_cast<uint8_t>(s->c_str()[s->size()]) + copy.size();
}

uint64_t Sum(const flatbuffers::Vector<uint8_t>* v) {
  return v ? Sum(v->data(), v->size()) : 0;
}

uint64_t Sum(
    const flatbuffers::Vector<flatbuffers::Offset<flatbuffers::String>>* v) {
  if (v == nullptr) return 0;
  uint64_t sum = v->size();
  for (const auto* s : *v) sum += Sum(s);
  return sum;
}

uint64_t Sum(const wire::Id* id) {
  if (id == nullptr) return 0;
  const JobId j = FromWire(id);
  return j.hi ^ (j.lo * 3) ^ JobId::Parse(j.ToString()).value_or(JobId{}).lo;
}

uint64_t Sum(const flatbuffers::Vector<const wire::Id*>* ids) {
  if (ids == nullptr) return 0;
  uint64_t sum = ids->size();
  for (const auto* id : *ids) sum += Sum(id);
  return sum;
}

// The blobs of a Submit or Dispatch: each job, its counters, and the
// broker's per-job check.
uint64_t WalkJobBlobs(
    const flatbuffers::Vector<flatbuffers::Offset<wire::JobBlob>>* blobs,
    const Limits& limits) {
  uint64_t sum = blobs->size();
  for (const auto* blob : *blobs) {
    sum += Sum(blob->data()) + blob->attempt() + SendsOf(*blob);
    const wire::Job* job = blob->data_nested_root();
    sum += WalkJob(*job);
    std::string why;
    sum += static_cast<uint64_t>(CheckJob(*job, limits, &why)) + why.size();
  }
  return sum;
}

uint64_t WalkResults(const wire::Results& results) {
  uint64_t sum = results.withheld() + Sum(results.accepted());
  for (const auto* blob : *results.results()) {
    sum += Sum(blob->data()) + WalkResult(*blob->data_nested_root());
  }
  return sum;
}

uint64_t WalkReady(const wire::Ready& ready) {
  return ready.credit() + ready.capacity() + Sum(ready.tasks()) +
         Sum(ready.tags()) + Sum(ready.taints()) + Sum(ready.name());
}

uint64_t WalkError(const wire::Error& error) {
  return static_cast<uint64_t>(error.code()) +
         std::string(wire::EnumNameErrorCode(error.code())).size() +
         Sum(error.message()) + Sum(error.ids()) + error.retry_after_ms();
}

}  // namespace

uint64_t WalkJob(const wire::Job& job) {
  uint64_t sum = Sum(job.id()) + Sum(job.task()) + Sum(job.queue()) +
                 Sum(job.payload()) + job.priority() + job.max_attempts();
  sum += static_cast<uint64_t>(job.deadline_ms()) +
         static_cast<uint64_t>(job.not_before_ms()) +
         static_cast<uint64_t>(job.created_ms());
  sum += Sum(job.idempotency_key()) + Sum(job.affinity_key()) +
         Sum(job.tags()) + Sum(job.tolerations()) + Sum(job.trace_id()) +
         Sum(job.lock_key());
  return sum;
}

uint64_t WalkResult(const wire::JobResult& r) {
  return Sum(r.id()) + static_cast<uint64_t>(r.status()) +
         std::string(wire::EnumNameResultStatus(r.status())).size() +
         Sum(r.output()) + Sum(r.error()) + r.attempt() + r.duration_us() +
         Sum(r.duplicate_of());
}

uint64_t WalkEnvelope(const wire::Envelope& env, const Limits& limits) {
  uint64_t sum =
      env.version() + std::string(wire::EnumNameBody(env.body_type())).size();
  switch (env.body_type()) {
    case wire::Body::Submit:
      return sum + WalkJobBlobs(env.body_as_Submit()->jobs(), limits);
    case wire::Body::Dispatch:
      return sum + WalkJobBlobs(env.body_as_Dispatch()->jobs(), limits);
    case wire::Body::Results:
      return sum + WalkResults(*env.body_as_Results());
    case wire::Body::Accepted:
      return sum + Sum(env.body_as_Accepted()->ids());
    case wire::Body::Cancel:
      return sum + Sum(env.body_as_Cancel()->ids());
    case wire::Body::Ready:
      return sum + WalkReady(*env.body_as_Ready());
    case wire::Body::Credit: {
      const auto* c = env.body_as_Credit();
      return sum + c->credit() + c->withdraw();
    }
    case wire::Body::Heartbeat:
      return sum + Sum(env.body_as_Heartbeat()->instance());
    case wire::Body::Disconnect:
      return sum + Sum(env.body_as_Disconnect()->reason());
    case wire::Body::Error:
      return sum + WalkError(*env.body_as_Error());
    case wire::Body::StatsRequest:
      return sum + 1;
    case wire::Body::Stats:
      return sum + Sum(env.body_as_Stats()->json());
    case wire::Body::Progress:
      for (const auto* u : *env.body_as_Progress()->updates()) {
        sum += Sum(u->id()) + u->attempt() + Sum(u->message()) +
               (u->fraction() > 0.5f ? 1 : 0);
      }
      return sum;
    default:
      return sum;
  }
}

void Sink(uint64_t sum) {
  static volatile uint64_t sink;
  sink = sink + sum;
}

}  // namespace yard::fuzz
