// Queue administration: what a durable (Redis) queue holds, and the
// operator's repairs. `yard queue ...` and `yard result` are this library
// with flags and printing around it.
//
//   auto q = admin::ConnectQueue("redis://127.0.0.1:6379", "default");
//   Result<nlohmann::ordered_json> stats = admin::QueueStats(*q);
//   admin::RequeueDead(*q, /*limit=*/0);  // every dead letter
//
// Reads go straight to the keys of queue/redis_layout.h and change nothing
// (a queue no broker has set up yet reads as empty). Changes go through the
// queue's Functions (yard_requeue_dead, yard_purge), which are atomic with
// respect to the brokers, in chunks so that no call blocks Redis for long.
//
// A sharded queue (queue/redis_layout.h: shard count in {yard}:shards:Q)
// is read and changed shard by shard, each on the primary serving its slot,
// and the answers are added up: counts sum, lists concatenate (each line
// says its "shard"; a limit is for all shards together), and QueueStats
// lists each shard's own numbers under "shards". The registry (brokers,
// workers) is read in the "{yard}" slot.
//
// A record (stream entry) holds one or more jobs. QueueStats, InspectJobs
// and ListDead count and list jobs; RequeueDead and PurgeDead count dead
// letters (records), PurgeWaiting counts jobs (what yard_purge reports).
//
// Every call blocks (the connect and each command to Redis wait at most
// RedisTimeoutMs(), --redis-timeout-ms).
// hiredis writes with write(2): a caller must ignore SIGPIPE, or a server
// that hangs up kills the process.
//
// Thread-safety: a QueueConnection belongs to one thread at a time.
#ifndef YARD_ADMIN_QUEUE_ADMIN_H_
#define YARD_ADMIN_QUEUE_ADMIN_H_

#include <cstddef>
#include <cstdint>
#include <memory>
#include <nlohmann/json.hpp>
#include <span>
#include <string>
#include <vector>

#include "common/job_id.h"
#include "common/status.h"
#include "queue/redis_layout.h"
#include "redis/redis_client.h"

namespace yard::admin {

using Json = nlohmann::ordered_json;

// One shard of the queue (queue/redis_layout.h): its keys and a connection
// to the primary serving their slot.
struct QueueShard {
  int index = 0;
  QueueKeys keys;
  std::unique_ptr<RedisClient> client;
};

struct QueueConnection {
  // The "{yard}" slot's primary: the shard count and the registry.
  std::unique_ptr<RedisClient> registry;
  std::vector<QueueShard> shards;  // in shard order; one when not sharded
};

// Connects to the "{yard}" slot of the Redis at `redis_url`
// (redis://, sentinel:// or cluster://; redis/redis_target.h), reads the
// queue's shard count (ReadShardCount) and connects to every shard's primary
// (in a Cluster, each to the primary serving its slot; elsewhere all to the
// one server). A bad URL ("redis URL: ...") or queue name ("queue name:
// ..."), or a stored shard count that is not one, is kInvalidArgument; a
// server that does not answer is kUnavailable ("cannot reach Redis at URL:
// ...").
Result<QueueConnection> ConnectQueue(const std::string& redis_url,
                                     const std::string& queue);

// What the queue holds: {queue, ready, running, delayed, dead, queued,
// records: {ready, running}, priorities: {"0".."2": {ready, running}},
// counters: {submitted, completed, ...}, leader, consumers: [{name, pending,
// idle_ms}], brokers: [{id, queue, frontend, backend, draining, held,
// counters}], workers: [{name, capacity, tags, taints, brokers,
// outstanding}], shards: [{shard, tag, ready, running, delayed, dead,
// queued, leader}], paused, rate_limit (ReadControl)}. Jobs are "running"
// while their record is leased to a broker (in the consumer group's pending
// list).
Result<Json> QueueStats(const QueueConnection& q);

// Up to `limit` jobs, ready and running ones (highest priority first, each
// {id, priority, state, attempt, max_attempts, task, payload_bytes,
// lock_key, broker, record, shard}, plus "error" for a record that does not
// decode), then delayed ones ({id, state: "delayed", due_ms, shard}):
// {queue, jobs: [...]}.
Result<Json> InspectJobs(const QueueConnection& q, size_t limit);

// Up to `limit` (may be 0) dead jobs, oldest first, each {id, why, error,
// attempts, expired_leases, priority, task, dead_at_ms, record, shard},
// plus "decode_error" for a record that does not decode; and how many dead
// jobs there are: {queue, dead: [...], total}.
Result<Json> ListDead(const QueueConnection& q, size_t limit);

// Moves up to `limit` dead letters (<= 0: all) back to their ready streams,
// their attempts starting over: {queue, requeued}.
Result<Json> RequeueDead(const QueueConnection& q, int64_t limit);

// Deletes the waiting jobs (ready and delayed), never running ones:
// {queue, purged} (jobs).
Result<Json> PurgeWaiting(const QueueConnection& q);

// Deletes every dead letter: {queue, purged} (dead letters).
Result<Json> PurgeDead(const QueueConnection& q);

// The operator's controls, stored on every shard and read by every broker
// within a quarter of a second. Pause: brokers claim no more jobs and hand
// none they hold to workers; submits are still accepted. {queue, paused}.
Result<Json> PauseQueue(const QueueConnection& q, bool paused);
// A rate limit for all brokers together: at most `rate` jobs per second go
// to workers, with bursts of `burst` (0: a tenth of a second's worth); a
// sharded queue's K shards get rate/K each. rate 0 removes it.
// {queue, rate, burst}.
Result<Json> LimitQueue(const QueueConnection& q, double rate, int64_t burst);
// Per-key locks: at most `n` running jobs per lock key (`key` empty: every
// key without its own number; n 1 removes the number, back to one holder).
// Stored on every shard; brokers' lock functions read it at each lock.
// {queue, key (null: every key), per_key}.
Result<Json> SetKeyConcurrency(const QueueConnection& q, const std::string& key,
                               int64_t n);
// An admin's cancel of jobs wherever they are: recorded on every shard
// (P cx, yard_cancel) for the broker that holds or claims each job, which
// finishes it Cancelled (a delayed job goes to its ready stream at once).
// {queue, jobs: {id: "requested" | "full" (too many cancels recorded)}}.
// Whether a job was cancelled shows in its stored result (StoredResult).
Result<Json> RecordCancels(const QueueConnection& q,
                           std::span<const JobId> ids);
// {paused, rate_limit: {rate, burst} or null, key_concurrency: {default,
// keys: {key: n}}}, over every shard.
Result<Json> ReadControl(const QueueConnection& q);

// The stored result of job `id` (a sharded queue keeps it in the shard that
// ran the job): {id, status, output (valid UTF-8) or output_base64, error
// (null when empty), attempt, duration_us}, and progress {fraction,
// message, at_ms} when the job reported any (its last report). A job that
// reported progress but has no result yet: {id, status "Unfinished",
// progress}. kNotFound when neither is stored (unknown, not finished, or
// expired); kCorruption when the stored bytes are not a JobResult.
Result<Json> StoredResult(const QueueConnection& q, const JobId& id);

}  // namespace yard::admin

#endif  // YARD_ADMIN_QUEUE_ADMIN_H_
