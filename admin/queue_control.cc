// The operator's controls of a queue (P ctl, queue/redis_layout.h): pause,
// resume and the rate limit, stored on every shard. Brokers read them
// within kControlEveryMs (queue/redis_queue_control.cc).
#include <algorithm>
#include <cmath>
#include <string>

#include "admin/queue_admin.h"
#include "admin/redis_reads.h"

namespace yard::admin {
namespace {

constexpr double kMinShardRate = 0.001;
// Holders of one lock key at most (each is a member of a sorted set).
constexpr int64_t kMaxKeyConcurrency = 100000;

}  // namespace

Result<Json> PauseQueue(const QueueConnection& q, bool paused) {
  for (const QueueShard& s : q.shards) {
    Result<RedisReply> r =
        paused ? Call(*s.client, {"HSET", s.keys.control, "paused", "1"})
               : Call(*s.client, {"HDEL", s.keys.control, "paused"});
    if (!r.ok()) return r.status();
  }
  return Json{{"queue", q.shards.front().keys.name}, {"paused", paused}};
}

Result<Json> LimitQueue(const QueueConnection& q, double rate, int64_t burst) {
  if (!(rate >= 0) || !std::isfinite(rate)) {
    return Status::InvalidArgument("--rate must be a number >= 0");
  }
  if (burst < 0) return Status::InvalidArgument("--burst must be >= 0");
  // Each of K shards gets 1/K of the rate and of the burst. The rate is
  // stored with six decimals: a smaller one would read back as 0, no limit.
  const auto k = static_cast<double>(q.shards.size());
  const double shard_rate = rate / k;
  if (rate > 0 && shard_rate < kMinShardRate) {
    return Status::InvalidArgument("--rate must be 0 or at least " +
                                   std::to_string(kMinShardRate * k) +
                                   " jobs/s for this queue");
  }
  const int64_t whole_burst = burst > 0 ? burst : DefaultBurst(rate);
  const auto shard_burst = std::max<int64_t>(
      1, static_cast<int64_t>(std::ceil(static_cast<double>(whole_burst) / k)));
  for (const QueueShard& s : q.shards) {
    Result<RedisReply> r =
        rate > 0 ? Call(*s.client, {"HSET", s.keys.control, "rate",
                                    std::to_string(shard_rate), "burst",
                                    std::to_string(shard_burst)})
                 : Call(*s.client, {"HDEL", s.keys.control, "rate", "burst"});
    if (!r.ok()) return r.status();
  }
  Json out = {{"queue", q.shards.front().keys.name}, {"rate", rate}};
  out["burst"] = rate > 0 ? Json(whole_burst) : Json(nullptr);
  return out;
}

Result<Json> SetKeyConcurrency(const QueueConnection& q, const std::string& key,
                               int64_t n) {
  if (n < 1 || n > kMaxKeyConcurrency) {
    return Status::InvalidArgument("--per-key must be 1 to " +
                                   std::to_string(kMaxKeyConcurrency));
  }
  const std::string field = key.empty() ? "kc" : "kc:" + key;
  for (const QueueShard& s : q.shards) {
    Result<RedisReply> r =
        n > 1 ? Call(*s.client,
                     {"HSET", s.keys.control, field, std::to_string(n)})
              : Call(*s.client, {"HDEL", s.keys.control, field});
    if (!r.ok()) return r.status();
  }
  Json out = {{"queue", q.shards.front().keys.name}, {"per_key", n}};
  out["key"] = key.empty() ? Json(nullptr) : Json(key);
  return out;
}

Result<Json> RecordCancels(const QueueConnection& q,
                           std::span<const JobId> ids) {
  std::vector<bool> requested(ids.size(), false);
  for (const QueueShard& s : q.shards) {
    std::vector<std::string> args = s.keys.Fcall("yard_cancel");
    // An admin, with no connection to send a copy of the result to.
    for (std::string a :
         {std::to_string(kMaxCancels), std::to_string(kCancelTtlMs),
          std::string("1"), std::string(), std::string(), std::string()}) {
      args.push_back(std::move(a));
    }
    for (const JobId& id : ids) args.push_back(id.ToString());
    Result<RedisReply> r = Call(*s.client, std::move(args));
    if (!r.ok()) return r.status();
    for (size_t i = 0; i < ids.size() && i < r->elements.size(); ++i) {
      if (r->elements[i].str == "REQUESTED") requested[i] = true;
    }
  }
  Json jobs = Json::object();
  for (size_t i = 0; i < ids.size(); ++i) {
    jobs[ids[i].ToString()] = requested[i] ? "requested" : "full";
  }
  return Json{{"queue", q.shards.front().keys.name}, {"jobs", std::move(jobs)}};
}

Result<Json> ReadControl(const QueueConnection& q) {
  bool paused = false;
  double rate = 0;
  int64_t burst = 0;
  Json per_key = {{"default", 1}, {"keys", Json::object()}};
  for (const QueueShard& s : q.shards) {
    Result<RedisReply> r = Call(*s.client, {"HGETALL", s.keys.control});
    if (!r.ok()) return r.status();
    const QueueControl c = ParseQueueControl(*r);
    paused = paused || c.paused;
    rate += c.rate;
    burst += c.rate > 0 ? (c.burst > 0 ? c.burst : DefaultBurst(c.rate)) : 0;
    // Every shard holds the same numbers (SetKeyConcurrency).
    for (const auto& [field, value] : PairsOf(*r)) {
      if (field == "kc") {
        per_key["default"] = ToInt(value);
      } else if (field.starts_with("kc:")) {
        per_key["keys"][field.substr(3)] = ToInt(value);
      }
    }
  }
  Json out = {{"paused", paused}, {"key_concurrency", std::move(per_key)}};
  out["rate_limit"] =
      rate > 0 ? Json{{"rate", rate}, {"burst", burst}} : Json(nullptr);
  return out;
}

}  // namespace yard::admin
