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
// JobQueue is the store's verbs only. A queue that lives outside the process
// (Redis) also has the events a broker's loop polls, results it forwards,
// and registry records it keeps: QueueEvents (queue/queue_events.h), which
// the durable queue implements beside JobQueue (DurableQueue).
//
// Thread-safety: not thread-safe; one broker event loop owns a queue.
#ifndef YARD_QUEUE_JOB_QUEUE_H_
#define YARD_QUEUE_JOB_QUEUE_H_

#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
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
  // Who may cancel it besides its route: the submitter's CURVE key, kept on
  // a durable record (field o) so that any broker can check a Cancel; ""
  // without CURVE (the route and the accepting broker identify the owner).
  std::string_view owner;
  // The producer sent this job before (a resend after no ack): a durable
  // queue with dedupe_ids_ttl_s checks whether a broker already queued it.
  bool resend = false;
};

enum class PushOutcome : uint8_t {
  kAccepted,   // queued now
  kDuplicate,  // already held, or an idempotent duplicate whose result the
               // queue delivers through the result sink: not queued twice
  kBusy,       // the queue is full: retry later
};

struct ClaimedJob {
  JobId id;
  Bytes blob;
  uint16_t attempt = 1;  // 1 on the first delivery
  std::string_view route;
  // The route is a producer of this broker. false: another broker accepted
  // the job; the queue forwards its result there on Complete/Fail.
  bool local = true;
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
  // implementation for its anti-starvation rule). Calls `done` (at most
  // once) before it returns.
  virtual void Claim(size_t max, ClaimCallback done) = 0;
  // The job is finished; `result` is its JobResult blob (kept, in durable
  // mode, for `yard result`). Forget it.
  virtual void Complete(const JobId& id, Bytes result) = 0;
  // The attempt failed. retry_at_ms > 0: run again then; 0: give up (a
  // durable queue keeps it as a dead letter with the result's error).
  virtual void Fail(const JobId& id, int64_t retry_at_ms, Bytes result) = 0;
  // Put leased jobs back at the front (their worker died or left).
  virtual void Release(std::span<const JobId> ids) = 0;
  // Removes jobs that are still waiting; returns the ids removed. Checks
  // no owner: the broker asks WaitingRoute first.
  virtual size_t Cancel(std::span<const JobId> ids,
                        std::vector<JobId>* removed) = 0;
  // A producer's or admin's cancel of a job Cancel would remove: finishes it
  // with `result` (its Cancelled JobResult) as its final result, which a
  // durable queue stores for `yard result` and forwards to the broker that
  // accepted the job, as for any other. False when it was not waiting here.
  virtual bool CancelWaiting(const JobId& id, Bytes result) {
    (void)result;  // memory mode keeps no results
    return Cancel({&id, 1}, nullptr) == 1;
  }
  // The route (producer) of a job Cancel would remove now; "" when another
  // broker accepted it (a durable queue's foreign job); nullopt when Cancel
  // would not remove it (unknown, running or finished). The view is valid
  // until the next call on the queue.
  virtual std::optional<std::string_view> WaitingRoute(
      const JobId& id) const = 0;
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

// The durable queue on Redis (NewRedisQueue in queue/queue_events.h; layout
// in queue/redis_layout.h).
struct RedisQueueOptions {
  // redis://HOST:PORT[/DB], or sentinel://HOST:PORT[,HOST:PORT...]/MASTER[/DB]
  // (the primary is resolved through Sentinel on every (re)connect;
  // redis/redis_target.h).
  std::string url;
  std::string queue = "default";  // one queue per broker
  // Shards of the queue (queue/redis_layout.h): each keeps its keys under
  // its own hash tag, so a Redis Cluster spreads them over its primaries.
  // 0: the count stored in Redis for the queue, or when none is, the
  // number of primaries of a cluster:// target (1 for the others). > 0: must
  // match the stored count; stored when there is none. All brokers of a
  // queue use the stored count.
  int shards = 0;
  std::string consumer;         // this broker's name; empty: random
  int64_t lease_ms = 10000;     // visibility timeout of a claimed job
  int64_t result_ttl_s = 3600;  // 0: results are not kept
  int64_t dedupe_ttl_s = 3600;  // idempotency-key window
  size_t capacity = 1000000;    // jobs in Redis beyond which submits are Busy
  size_t claim_batch = 256;     // jobs per XREADGROUP (per priority)
  int max_expiries = 5;         // expired leases before a dead letter
  bool require_fsync = false;   // refuse a Redis without appendfsync always
  int64_t connect_timeout_ms = 2000;
  // The broker's registry record lives this long unless refreshed
  // (Advertise); the broker sets three heartbeats.
  int64_t registry_ttl_ms = 3000;
  // Replication safety of accepted jobs. > 0: after the writes of a submit
  // batch the queue sends WAIT wait_replicas wait_timeout_ms and answers
  // "accepted" only when that many replicas acknowledged them; otherwise the
  // batch is answered Unavailable (the producer resends: duplicates, never
  // losses) and, until a WAIT succeeds again, further batches are refused at
  // once while one probe batch waits. One WAIT covers every batch sent
  // before it (group commit). A WAIT holds up the queue's main connection
  // for up to wait_timeout_ms, so it must be 1..lease_ms/3. WAIT confirms
  // receipt by the replicas, not fsync. 0: no WAIT (a failover can lose the
  // jobs the old primary had not yet sent to its replica; README).
  int wait_replicas = 0;
  int64_t wait_timeout_ms = 1000;
  // > 0: a producer's resend of a job (same id) that any broker already
  // queued within this many seconds is not queued again; it gets the first
  // copy's result (as with idempotency keys). Costs one SET per job at
  // submit (~100 B of Redis memory per job for the window); resends go
  // through the checked path. 0: off (a resend after a lost ack may run
  // the job twice).
  int64_t dedupe_ids_ttl_s = 0;
  // > 0: the leader trims the dead-letter stream to this many records,
  // oldest first (counted as dead_trimmed). 0: unbounded.
  int64_t max_dead = 100000;
};

}  // namespace yard

#endif  // YARD_QUEUE_JOB_QUEUE_H_
