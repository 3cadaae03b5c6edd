// ShardedQueue: one DurableQueue made of several (the shards of a durable queue
// on a Redis Cluster, queue/redis_layout.h), so one broker serves a queue
// whose keys are spread over several primaries.
//
// - Push: the plain jobs of a batch go to one shard, the next available one
//   in turn (a shard whose Redis is down is skipped while another is up).
//   A job whose queue-side state is keyed goes to the shard its key hashes
//   to, the same on every broker: a job with a lock key by its lock key (the
//   lock and its waiters live in one shard), else one with an idempotency
//   key by that key, else, with job-id dedupe, by its id. So a key is only
//   ever checked in one shard. A batch split over shards is answered once
//   all have answered: one outcome per job, in order; if any shard failed
//   the batch is answered with its error (the producer resends: the parts
//   that were accepted run twice unless keyed, never lost).
// - Claim: `Want(n)` gives each shard an equal share of n; `Claim(max)`
//   takes an equal share of max from each shard first, starting from the
//   next shard in turn, then fills up from those with more, and answers
//   with one call.
// - Complete/Fail/Release go to the shard that handed the job out (a map
//   filled at claim time). A second copy of a job this broker already runs
//   (a resend that went to another shard) is dropped at claim time, as a
//   single shard drops a duplicate. Cancel asks every shard.
// - Stats add up; DescribeStats adds up the shards' numbers and lists each
//   shard under "shards".
//
// Thread-safety: none (one broker loop), like every JobQueue.
#ifndef YARD_QUEUE_SHARDED_QUEUE_H_
#define YARD_QUEUE_SHARDED_QUEUE_H_

#include <cstddef>
#include <cstdint>
#include <memory>
#include <string_view>
#include <vector>

#include "queue/job_queue.h"
#include "queue/queue_events.h"

namespace yard {

// The shard (0..shards-1) of a key: FNV-1a 64 of the bytes, mod shards. The
// same on every host (brokers must agree). REQUIRES: shards >= 1.
size_t ShardOfKey(std::string_view key, size_t shards);

struct ShardedQueueOptions {
  // Route jobs without lock or idempotency key by their id (the queue's
  // job-id dedupe is on: a resend must meet its first copy's trace).
  bool route_by_id = false;
};

// REQUIRES: at least two shards, none null.
std::unique_ptr<DurableQueue> NewShardedQueue(
    std::vector<std::unique_ptr<DurableQueue>> shards,
    const ShardedQueueOptions& options);

}  // namespace yard

#endif  // YARD_QUEUE_SHARDED_QUEUE_H_
