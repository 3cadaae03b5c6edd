// ConnectQueue, and the verbs that list jobs (InspectJobs, ListDead) or
// change the queue (RequeueDead, PurgeWaiting, PurgeDead).
#include "admin/queue_admin.h"

#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "admin/redis_reads.h"
#include "redis/redis_target.h"
#include "registry/registry.h"
#include "schemas/codec.h"

namespace yard::admin {
namespace {

// ---- Connecting

// A failed connect to Redis at `url`, said as such.
Status Unreachable(const std::string& url, const Status& status) {
  return Status::Unavailable("cannot reach Redis at " + RedactRedisUrl(url) +
                             ": " + status.message());
}

// A connection to the primary serving `slot_key`'s slot (a Cluster; any
// other target has one server for every key).
Result<std::unique_ptr<RedisClient>> ConnectSlot(const RedisTarget& target,
                                                 const std::string& slot_key,
                                                 const std::string& url) {
  RedisTarget t = target;
  t.key = slot_key;
  auto client = ConnectRedisTarget(t, RedisTimeoutMs());
  if (!client.ok()) return Unreachable(url, client.status());
  return client;
}

// ---- Records and their jobs

struct JobSummary {
  std::string id;
  std::string task;
  size_t payload_bytes = 0;
  int64_t max_attempts = 0;
};

// What a record's jobs (fields n and p) say: one line per job, or a single
// nullopt line and `error` when the record does not decode. Like a broker,
// one bad job makes the whole record undecodable.
struct RecordJobs {
  std::vector<std::optional<JobSummary>> lines;
  std::string error;
};

RecordJobs DecodeRecordJobs(const Fields& f) {
  RecordJobs out;
  std::vector<RecordJob> jobs;
  out.error = DecodeRecord(Field(f, "n"), Field(f, "p"), &jobs);
  if (!out.error.empty()) {
    out.error = "the record's " + out.error;
    out.lines.assign(1, std::nullopt);
    return out;
  }
  for (const RecordJob& r : jobs) {
    const wire::Job* job = r.job;
    out.lines.push_back(JobSummary{
        FromWire(job->id()).ToString(), std::string(AsString(job->task())),
        job->payload() ? job->payload()->size() : 0, job->max_attempts()});
  }
  return out;
}

// Appends a line per job of `e` to `out` while it holds fewer than `limit`:
// line(e, job), then for an undecodable record `error_key` = why.
template <typename Line>
void AppendJobs(const Entry& e, size_t limit, const char* error_key,
                const Line& line, Json* out) {
  const RecordJobs record = DecodeRecordJobs(e.fields);
  for (const std::optional<JobSummary>& job : record.lines) {
    if (out->size() >= limit) return;
    Json j = line(e, job);
    if (!job) j[error_key] = record.error;
    j["record"] = e.id;
    out->push_back(std::move(j));
  }
}

Json TaskOf(const std::optional<JobSummary>& job) {
  return job ? Json(job->task) : Json(nullptr);
}

// The record's own job id (its first job's) when its jobs do not decode.
std::string IdOf(const Entry& e, const std::optional<JobSummary>& job) {
  return job ? job->id : Field(e.fields, "j");
}

Json ReadyJob(const Entry& e, const std::optional<JobSummary>& job,
              int priority, bool leased) {
  const Fields& f = e.fields;
  const std::string& lock_key = Field(f, "k");
  return {{"id", IdOf(e, job)},
          {"priority", priority},
          {"state", leased ? "running" : "ready"},
          {"attempt", ToInt(Field(f, "a"))},
          {"max_attempts", job ? job->max_attempts : ToInt(Field(f, "m"))},
          {"task", TaskOf(job)},
          {"payload_bytes", job ? Json(job->payload_bytes) : Json(nullptr)},
          {"lock_key", lock_key.empty() ? Json(nullptr) : Json(lock_key)},
          {"broker", Field(f, "b")}};
}

Json DeadLetter(const Entry& e, const std::optional<JobSummary>& job) {
  const Fields& f = e.fields;
  return {{"id", IdOf(e, job)},
          {"why", Field(f, "why")},
          {"error", Field(f, "err")},
          {"attempts", ToInt(Field(f, "a"))},
          {"expired_leases", ToInt(Field(f, "x"))},
          {"priority", ToInt(Field(f, "q"))},
          {"task", TaskOf(job)},
          {"dead_at_ms", ToInt(Field(f, "t"))}};
}

// ---- One shard's answers

// Appends the ready and running jobs of one shard's priority-`p` stream to
// `jobs` while it holds fewer than `limit`.
Status AppendReadyJobs(RedisClient& c, const QueueKeys& keys, int p,
                       size_t limit, Json* jobs) {
  Result<RedisReply> r = Call(c, {"XRANGE", keys.stream[p], "-", "+", "COUNT",
                                  std::to_string(limit - jobs->size())});
  if (!r.ok()) return r.status();
  // Each record gives at least one line, so `limit` records are enough.
  const std::vector<Entry> entries = EntriesOf(*r);
  auto leased = LeasedAmong(c, keys.stream[p], entries);
  if (!leased.ok()) return leased.status();
  const auto line = [&](const Entry& e, const std::optional<JobSummary>& job) {
    return ReadyJob(e, job, p, leased->count(e.id) > 0);
  };
  for (const Entry& e : entries) AppendJobs(e, limit, "error", line, jobs);
  return Status::OK();
}

// Appends one shard's delayed jobs to `jobs` while it holds fewer than
// `limit`. Delayed records are packed (cmsgpack) in dlyh: only id and due
// time are listed.
Status AppendDelayedJobs(RedisClient& c, const QueueKeys& keys, size_t limit,
                         Json* jobs) {
  Result<RedisReply> r =
      Call(c, {"ZRANGE", keys.delayed, "0",
               std::to_string(limit - jobs->size() - 1), "WITHSCORES"});
  if (!r.ok()) return r.status();
  for (size_t i = 0; i + 1 < r->elements.size(); i += 2) {
    jobs->push_back({{"id", r->elements[i].str},
                     {"state", "delayed"},
                     {"due_ms", ToInt(r->elements[i + 1].str)}});
  }
  return Status::OK();
}

Result<Json> ShardJobs(RedisClient& c, const QueueKeys& keys, size_t limit) {
  Json jobs = Json::array();
  for (int p = kRedisPriorities - 1; p >= 0 && jobs.size() < limit; --p) {
    if (Status s = AppendReadyJobs(c, keys, p, limit, &jobs); !s.ok()) {
      return s;
    }
  }
  if (jobs.size() < limit) {
    if (Status s = AppendDelayedJobs(c, keys, limit, &jobs); !s.ok()) return s;
  }
  return Json{{"queue", keys.name}, {"jobs", std::move(jobs)}};
}

// One line per dead job; `limit` (may be 0) and `total` count jobs, not
// records.
Result<Json> ShardDead(RedisClient& c, const QueueKeys& keys, size_t limit) {
  Result<int64_t> total = JobsInStream(c, keys.dead);
  if (!total.ok()) return total.status();
  Result<RedisReply> r = RedisReply{};
  if (limit > 0) {
    r = Call(c,
             {"XRANGE", keys.dead, "-", "+", "COUNT", std::to_string(limit)});
  }
  if (!r.ok()) return r.status();
  Json dead = Json::array();
  for (const Entry& e : EntriesOf(*r)) {
    // The record's own "error" (err) stays: a decoding failure has its own.
    AppendJobs(e, limit, "decode_error", DeadLetter, &dead);
  }
  return Json{
      {"queue", keys.name}, {"dead", std::move(dead)}, {"total", *total}};
}

Result<Json> ShardRequeueDead(RedisClient& c, const QueueKeys& keys,
                              int64_t limit) {
  if (Status s = EnsureQueue(c, keys, RedisTimeoutMs()); !s.ok()) return s;
  Result<int64_t> n = CallInChunks(c, keys, "yard_requeue_dead", {}, limit);
  if (!n.ok()) return n.status();
  return Json{{"queue", keys.name}, {"requeued", *n}};
}

// Counted and deleted in one MULTI: the count is exactly what went.
Result<int64_t> DeleteDeadLetters(RedisClient& c, const QueueKeys& keys) {
  const std::vector<std::vector<std::string>> transaction = {
      {"MULTI"}, {"XLEN", keys.dead}, {"DEL", keys.dead}};
  for (const std::vector<std::string>& command : transaction) {
    if (Result<RedisReply> r = Call(c, command); !r.ok()) {
      return r.status();
    }
  }
  Result<RedisReply> r = Call(c, {"EXEC"});
  if (!r.ok()) return r.status();
  if (r->elements.empty()) return Status::Internal("EXEC: empty reply");
  return r->elements[0].integer;
}

Result<Json> ShardPurge(RedisClient& c, const QueueKeys& keys,
                        bool dead_letters) {
  Result<int64_t> n = 0;
  if (dead_letters) {
    n = DeleteDeadLetters(c, keys);
  } else {
    if (Status s = EnsureQueue(c, keys, RedisTimeoutMs()); !s.ok()) return s;
    n = CallInChunks(c, keys, "yard_purge", {kRedisGroup}, kNoLimit);
  }
  if (!n.ok()) return n.status();
  return Json{{"queue", keys.name}, {"purged", *n}};
}

Result<Json> Purge(const QueueConnection& q, bool dead_letters) {
  return OverShards(q, [dead_letters](const QueueShard& s, const Json&) {
    return ShardPurge(*s.client, s.keys, dead_letters);
  });
}

}  // namespace

Result<QueueConnection> ConnectQueue(const std::string& redis_url,
                                     const std::string& queue) {
  Result<RedisTarget> target = ParseRedisTarget(redis_url);
  if (!target.ok()) {
    return Status::InvalidArgument("redis URL: " + target.status().message());
  }
  if (Status s = ValidateQueueName(queue); !s.ok()) {
    return Status::InvalidArgument("queue name: " + s.message());
  }
  QueueConnection out;
  RedisTarget registry_target = *target;
  auto registry = ConnectRegistry(registry_target, RedisTimeoutMs());
  if (!registry.ok()) return Unreachable(redis_url, registry.status());
  out.registry = std::move(registry).value();
  Result<int> shards = ReadShardCount(*out.registry, queue, RedisTimeoutMs());
  if (!shards.ok()) return shards.status();
  for (QueueKeys& keys : ShardKeys(queue, *shards)) {
    // (Any key with the shard's hash tag names its slot: its prefix.)
    auto client = ConnectSlot(*target, keys.prefix, redis_url);
    if (!client.ok()) return client.status();
    out.shards.push_back({static_cast<int>(out.shards.size()), std::move(keys),
                          std::move(client).value()});
  }
  return out;
}

// Every verb runs on every shard; the limits are for all of them.

Result<Json> InspectJobs(const QueueConnection& q, size_t limit) {
  return OverShards(q, [limit](const QueueShard& s, const Json& so_far) {
    const auto listed = static_cast<size_t>(SoFar(so_far, "jobs"));
    return ShardJobs(*s.client, s.keys, limit - listed);
  });
}

Result<Json> ListDead(const QueueConnection& q, size_t limit) {
  return OverShards(q, [limit](const QueueShard& s, const Json& so_far) {
    const auto listed = static_cast<size_t>(SoFar(so_far, "dead"));
    return ShardDead(*s.client, s.keys, limit - listed);
  });
}

Result<Json> RequeueDead(const QueueConnection& q, int64_t limit) {
  const int64_t most = limit > 0 ? limit : kNoLimit;
  return OverShards(q, [most](const QueueShard& s, const Json& so_far) {
    return ShardRequeueDead(*s.client, s.keys,
                            most - SoFar(so_far, "requeued"));
  });
}

Result<Json> PurgeWaiting(const QueueConnection& q) { return Purge(q, false); }

Result<Json> PurgeDead(const QueueConnection& q) { return Purge(q, true); }

}  // namespace yard::admin
