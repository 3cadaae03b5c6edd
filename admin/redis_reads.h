// The building blocks of queue administration (admin/queue_admin.h), private
// to admin/: Redis replies as fields and stream entries, blocking commands
// that read a queue that no broker has set up yet as empty, paged stream
// scans, and running one step on every shard of a queue.
#ifndef YARD_ADMIN_REDIS_READS_H_
#define YARD_ADMIN_REDIS_READS_H_

#include <cstdint>
#include <functional>
#include <limits>
#include <set>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

#include "admin/queue_admin.h"
#include "common/status.h"
#include "queue/redis_layout.h"
#include "redis/redis_client.h"

namespace yard::admin {

// Jobs one Functions call handles at most (per stream for yard_purge), and
// entries one XRANGE page holds.
inline constexpr int64_t kChunk = 1000;
// A limit that is no limit.
inline constexpr int64_t kNoLimit = std::numeric_limits<int64_t>::max();

// ---- Replies

// Field -> value; integers (XINFO) as their decimal text.
using Fields = std::unordered_map<std::string, std::string>;

struct Entry {
  std::string id;  // the stream entry id
  Fields fields;
};

// A flat [field, value, ...] array (stream entries, HGETALL, XINFO).
Fields PairsOf(const RedisReply& flat);

// A missing field reads as empty, as the Functions library treats it.
const std::string& Field(const Fields& f, const std::string& name);

// Record fields are decimal text; anything else counts as 0.
int64_t ToInt(std::string_view s);

// XRANGE's [[id, [field, value, ...]], ...].
std::vector<Entry> EntriesOf(const RedisReply& xrange);

// How many jobs a record holds, as the Functions library counts them
// (jobs_in): field n, 1 when it is missing or not a number.
int64_t JobsIn(const Fields& f);

// ---- Commands to Redis (blocking, RedisTimeoutMs() each)

Result<RedisReply> Call(RedisClient& c, std::vector<std::string> args);

// Call, with a stream or consumer group that does not exist (a queue that
// no broker has set up yet, which is empty rather than an error) answered
// as nil.
Result<RedisReply> CallOrNil(RedisClient& c, std::vector<std::string> args);

// Call, for a command that answers an integer.
Result<int64_t> CallInt(RedisClient& c, std::vector<std::string> args);

// Which of `entries` (consecutive, from one XRANGE of `stream`) are leased.
Result<std::set<std::string>> LeasedAmong(RedisClient& c,
                                          const std::string& stream,
                                          const std::vector<Entry>& entries);

// Reads all of `stream` in pages of kChunk entries, oldest first, and hands
// each page to `page`. A full scan: acceptable for an operator's command,
// never done by the brokers.
Status ForEachPage(
    RedisClient& c, const std::string& stream,
    const std::function<Status(const std::vector<Entry>&)>& page);

// The jobs in all of `stream`'s records (the sum of their n).
Result<int64_t> JobsInStream(RedisClient& c, const std::string& stream);

// Calls a Functions-library operation (its arguments after the key prefix
// are `args`, then a count) in chunks until it reports 0, or until `limit`
// (kNoLimit: none) is reached. Returns the sum of what the calls reported.
Result<int64_t> CallInChunks(RedisClient& c, const QueueKeys& keys,
                             std::string_view function,
                             const std::vector<std::string>& args,
                             int64_t limit);

// ---- Shards

// A step on one shard, given what the shards before it answered (added up;
// {} for the first).
using ShardRun =
    std::function<Result<Json>(const QueueShard&, const Json& so_far)>;

// Runs `run` on every shard in order and adds the answers up: integers add
// up, lists concatenate, objects add up key by key, and anything else (the
// queue's name, a leader) keeps the first value that is not null. Each line
// of a shard's lists gets "shard": the shard's index.
Result<Json> OverShards(const QueueConnection& q, const ShardRun& run);

// What the shards so far answered under `key`: a list's length or a count.
int64_t SoFar(const Json& so_far, const char* key);

}  // namespace yard::admin

#endif  // YARD_ADMIN_REDIS_READS_H_
