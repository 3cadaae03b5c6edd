// The durable queue's data in Redis: key names, record fields, and the
// Functions library.
//
// One queue NAME = one shard whose keys all share the hash tag {jq:NAME}
// (so a Redis Cluster keeps them in one slot). With P = "{jq:NAME}:":
//
//   P s:0  P s:1  P s:2   ready/in-flight jobs per priority (0 low, 2 high):
//                         streams with one consumer group "g". One entry is
//                         a record of one or more jobs (a producer's submit
//                         batch): the unit of claim, lease and ack. The
//                         group's pending-entries list is the lease table
//                         (owner = the broker's consumer name, idle = time
//                         since the last touch); the entry id is the
//                         fencing token (a reclaimed record is re-added
//                         under a new id).
//   P dly / P dlyh        delayed jobs and retries: ZSET due-ms -> job id,
//                         HASH job id -> packed record
//   P dlq                 dead letters: the record + q (priority), why
//                         (failed | lease-expired | undecodable), err, t (ms)
//   P dd:<idempotency key>  STRING: the first job's id, EX the dedupe window
//   P mx:<lock key>       STRING: holder "<stream>|<entry id>", PX lease
//                         (the key's first slot)
//   P mxz:<lock key>      ZSET: its other holders (N > 1 per key), scored by
//                         lease expiry ms (Redis's clock); PEXPIREd with them
//   P mxw:<lock key>      LIST: jobs parked behind that lock
//   P res:<bucket>:<h>    HASH job id -> JobResult flatbuffer, for the
//                         results finished in one 10-second bucket whose
//                         job id starts with hex digit h (16 hashes per
//                         bucket keep each small, which makes HSET 3x
//                         cheaper than one big hash; a batch costs at most
//                         16 HSETs, not one key per job); EXPIREs after the
//                         result TTL. P resb: ZSET of live bucket numbers.
//   P in:<broker>         STREAM: results for jobs a broker accepted, written
//                         by whichever broker completed them
//   P leader / P fence    maintenance leader lock (token) / fencing counter
//   P stats               HASH of counters (submitted, completed, ...)
//   P ctl                 HASH: the operator's controls (yard queue pause,
//                         resume, limit, concurrency): paused "1", rate
//                         (jobs/s), burst, kc (holders per lock key) and
//                         kc:<lock key> (that key's own number);
//                         brokers read it every kControlEveryMs
//   P tb                  HASH: the rate limit's token bucket (t tokens,
//                         ts ms), shared by every broker (yard_take_tokens)
//   P reapcur:<p>         XAUTOCLAIM cursors
//   P pg:<job id>         HASH f (fraction 0..1), m (message), t (unix ms):
//                         the job's last progress report, EXPIREs after the
//                         result TTL; written at most once a second per job
//   P cx                  HASH job id -> msgpack [admin "1"|"0", canceller's
//                         CURVE key, its broker, its route, unix ms]: cancels
//                         no broker could serve itself (yard_cancel, yard
//                         cancel --redis); checked at claim and lease
//                         renewal while not empty; at most kMaxCancels ids,
//                         PEXPIREd kCancelTtlMs after the last write
//
// Record fields (stream entries; all strings): o the submitter's CURVE key
// (absent without CURVE: the owner is then b and r), n number of jobs, j the
// (first) job's id (32 hex digits), a failed attempts so far, x expired
// leases so far, m max attempts ('' in batches: each Job says), k lock key
// ('' none; only one-job records have one), b the accepting broker's
// consumer name, r the producer's route at that broker (binary), p the jobs:
// n times [4-byte little-endian length][4 zero bytes][Job flatbuffer][zero
// padding to a multiple of 8] (binary, verified by every reader before
// use; the padding keeps each Job 8-aligned, as FlatBuffers structs need).
//
// Never trim the job streams (MAXLEN/MINID drop unacknowledged entries in
// Redis 7.0); entries leave with XACK+XDEL in one MULTI or a function.
#ifndef YARD_QUEUE_REDIS_LAYOUT_H_
#define YARD_QUEUE_REDIS_LAYOUT_H_

#include <cstdint>
#include <functional>
#include <string>
#include <string_view>
#include <vector>

#include "common/job_id.h"
#include "common/status.h"
#include "redis/redis_call.h"
#include "redis/redis_client.h"
#include "schemas/codec.h"

namespace yard {

inline constexpr char kRedisGroup[] = "g";
// The cancel records of one shard (P cx): at most this many, and kept this
// long after the last one was written (a cancel of a job that never comes
// is forgotten then).
inline constexpr int64_t kMaxCancels = 100000;
inline constexpr int64_t kCancelTtlMs = 24 * 3600 * 1000;
inline constexpr int kRedisPriorities = 3;

struct QueueKeys {
  // The one-shard layout: hash tag "jq:NAME".
  explicit QueueKeys(std::string_view queue_name);
  // Shard `shard` of `shards` (sharded queues, below): the one-shard layout
  // when shards == 1, else the tag ShardHashTag(NAME, shard, shards).
  QueueKeys(std::string_view queue_name, int shard, int shards);

  std::string name;
  std::string tag;     // "jq:NAME" or a shard's tag (no braces)
  std::string prefix;  // "{TAG}:"
  std::string stream[kRedisPriorities];
  std::string delayed, delayed_jobs, dead, stats, leader;
  std::string control;  // P ctl
  std::string cancels;  // P cx

  std::string ResultKey(int64_t bucket, const JobId& id) const;
  std::string ProgressKey(const JobId& id) const;  // P pg:<id>
  std::string result_buckets;                      // P resb
  std::string Inbox(std::string_view broker) const;
  // {"FCALL", function, "6", <the six fixed keys>, prefix}: append the
  // function's other arguments.
  std::vector<std::string> Fcall(std::string_view function) const;
};

// The operator's controls of one shard (P ctl). A sharded queue stores the
// same pause on every shard and 1/K of the rate on each of its K shards.
struct QueueControl {
  bool paused = false;
  double rate = 0;    // jobs dispatched per second, all brokers; 0: no limit
  int64_t burst = 0;  // the bucket's size; 0: DefaultBurst(rate)
  bool operator==(const QueueControl&) const = default;
};
// HGETALL's reply (a flat [field, value, ...] array); unknown fields and
// values that do not parse are ignored.
QueueControl ParseQueueControl(const RedisReply& hash);
// A tenth of a second's worth, at least 1.
int64_t DefaultBurst(double rate);

// ---- Sharded queues (Redis Cluster)
//
// A queue may be split into shards: shard k of K keeps the whole layout
// above under its own hash tag, ShardHashTag(NAME, k, K) (redis_cluster.h),
// so the shards' slots spread over a cluster's primaries. Every broker and
// tool of a queue must use the same K: it is stored in Redis, in the
// registry's slot, under ShardCountKey(NAME); no key means 1 (the layout
// of a queue from before sharding, "{jq:NAME}"; brokers store 1 then).
inline constexpr int kMaxQueueShards = 256;
std::string ShardCountKey(std::string_view queue_name);  // {yard}:shards:Q

// Blocking: the queue's stored shard count (1 when none is stored).
// `client` must serve the "{yard}" slot (in a Cluster: a connection to its
// owner). InvalidArgument when the stored value is not 1..kMaxQueueShards.
Result<int> ReadShardCount(RedisClient& client, std::string_view queue_name,
                           int64_t timeout_ms = 5000);

// Blocking: the shard count every user of the queue agrees on. The stored
// one when there is one (InvalidArgument when `want` > 0 differs from it);
// otherwise `want`, or `fallback` when want is 0, stored now with SET NX (a
// concurrent first broker may win: its count is the answer). When nothing
// is stored yet, `before_storing(count)` may refuse first.
Result<int> SettleShardCount(
    RedisClient& client, std::string_view queue_name, int want, int fallback,
    int64_t timeout_ms = 5000,
    const std::function<Status(int)>& before_storing = nullptr);

// The keys of every shard of a queue with `shards` shards, in shard order.
std::vector<QueueKeys> ShardKeys(std::string_view queue_name, int shards);

// Packs job blobs into a record's p field / unpacks one (false when the
// framing is broken; each blob still needs its Verifier).
void PackJob(std::string_view blob, std::string* out);
bool UnpackJobs(std::string_view packed, std::vector<std::string_view>* blobs);

// One job of a record: its blob (a view into the record's field p) and its
// verified root.
struct RecordJob {
  std::string_view blob;
  const wire::Job* job = nullptr;
};

// How many jobs a record says it holds (field n), counted as the Functions
// library counts them: 1 when n is missing or not a number.
int64_t RecordJobCount(std::string_view n);

// Decodes a record's jobs from its fields n and p, verifying every Job.
// Returns "" or why the record cannot be used; a record is all or nothing
// (one bad job makes it undecodable), and `jobs` is then empty. The views
// point into `packed`.
std::string DecodeRecord(std::string_view n, std::string_view packed,
                         std::vector<RecordJob>* jobs);

// Result buckets: a result finished at Unix time t (seconds) goes to bucket
// t / kResultBucketSeconds.
inline constexpr int64_t kResultBucketSeconds = 10;

// Blocking: the stored JobResult blob of `id` (newest bucket first), or
// NotFound.
Result<std::string> FindResult(RedisClient& client, const QueueKeys& keys,
                               const JobId& id, int64_t timeout_ms = 5000);

// A queue name is 1..64 characters of [A-Za-z0-9_.-].
Status ValidateQueueName(std::string_view name);

// The Lua text of queue/redis_functions.lua.
std::string_view RedisFunctionLibrary();

// Blocking set-up, idempotent: loads the Functions library (REPLACE) and
// creates the consumer group on the three ready streams, all within
// timeout_ms.
Status EnsureQueue(RedisClient& client, const QueueKeys& keys,
                   int64_t timeout_ms = 5000);

}  // namespace yard

#endif  // YARD_QUEUE_REDIS_LAYOUT_H_
