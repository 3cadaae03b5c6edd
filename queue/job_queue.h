// JobQueue: where a broker keeps accepted jobs until a worker finishes them.
//
// A job is pushed (accepted), claimed (leased to the broker for dispatch),
// and then completed (gone), failed (retried later or dropped), or released
// (back to the front of the queue, e.g. its worker died). Two
// implementations: in memory (the embedded default: bounded, not durable)
// and Redis (durable, shared by all brokers).
//
// The interface is asynchronous because the Redis queue answers from the
// broker's event loop; the memory queue calls back before returning. Views
// handed to callbacks are valid only during the call.
//
// Routing: each job carries an opaque `route` (the producer's identity, as
// the accepting broker knows it) that comes back with the claimed job, so the
// result can be sent to whoever submitted it.
//
// Thread-safety: not thread-safe; one broker event loop owns a queue.
#ifndef YARD_QUEUE_JOB_QUEUE_H_
#define YARD_QUEUE_JOB_QUEUE_H_

#include <cstdint>
#include <functional>
#include <memory>
#include <span>
#include <string>
#include <string_view>

#include "common/job_id.h"
#include "common/status.h"
#include "schemas/codec.h"

namespace yard {

// Bytes kept alive by a shared owner (typically the inbound zmq message the
// job arrived in), so queuing a job copies no payload.
struct Blob {
  std::shared_ptr<const void> owner;
  Bytes bytes;
};

struct NewJob {
  JobId id;
  Blob blob;  // the Job flatbuffer, verified
  uint8_t priority = 1;
  int64_t not_before_ms = 0;
  std::string_view route;
};

enum class PushOutcome : uint8_t {
  kAccepted,   // queued now
  kDuplicate,  // already held (queued or leased): not queued twice
  kBusy,       // the queue is full: retry later
};

struct ClaimedJob {
  JobId id;
  Bytes blob;
  uint16_t attempt = 1;  // 1 on the first delivery
  std::string_view route;
};

struct QueueStats {
  uint64_t ready = 0;    // waiting for a worker
  uint64_t delayed = 0;  // waiting for their not-before time or a retry
  uint64_t leased = 0;   // dispatched, not finished
  uint64_t capacity = 0;
};

class JobQueue {
 public:
  using PushCallback =
      std::function<void(Status, std::span<const PushOutcome>)>;
  using ClaimCallback = std::function<void(std::span<const ClaimedJob>)>;

  virtual ~JobQueue() = default;

  // Accepts a batch. `done` gets one outcome per job, in order; a non-OK
  // Status (storage down) means none was accepted.
  virtual void Push(std::span<const NewJob> jobs, PushCallback done) = 0;
  // Leases up to `max` ready jobs, highest priority first (see the
  // implementation for its anti-starvation rule).
  virtual void Claim(size_t max, ClaimCallback done) = 0;
  // The jobs are finished; forget them.
  virtual void Complete(std::span<const JobId> ids) = 0;
  // The attempt failed. retry_at_ms > 0: run again then; 0: give up.
  virtual void Fail(const JobId& id, int64_t retry_at_ms) = 0;
  // Put leased jobs back at the front (their worker died or left).
  virtual void Release(std::span<const JobId> ids) = 0;
  // Removes jobs that are still waiting; returns the ids removed.
  virtual size_t Cancel(std::span<const JobId> ids,
                        std::vector<JobId>* removed) = 0;
  // Whether Claim could return something now (a hint for the dispatcher).
  virtual bool HasReady(int64_t now_ms) = 0;
  // Jobs held but not leased (for a draining broker to hand back).
  virtual void DrainWaiting(
      const std::function<void(const ClaimedJob&)>& fn) = 0;
  virtual QueueStats Stats() const = 0;
};

struct MemoryQueueOptions {
  size_t capacity = 100000;   // jobs held (ready + delayed + leased)
  int starvation_limit = 16;  // see MemoryQueue
};

std::unique_ptr<JobQueue> NewMemoryQueue(const MemoryQueueOptions& options);

}  // namespace yard

#endif  // YARD_QUEUE_JOB_QUEUE_H_
