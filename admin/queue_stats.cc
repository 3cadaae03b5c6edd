// QueueStats: the queue's jobs counted by state and priority, its counters,
// the brokers as consumers of its streams, and the cluster as the registry
// knows it.
#include <algorithm>
#include <limits>
#include <map>
#include <set>
#include <string>
#include <utility>
#include <vector>

#include "admin/queue_admin.h"
#include "admin/redis_reads.h"
#include "registry/registry.h"

namespace yard::admin {
namespace {

struct Consumer {
  int64_t pending = 0;
  int64_t idle_ms = std::numeric_limits<int64_t>::max();
};

// Adds the group's consumers on `stream` (the brokers) to `out`, by name:
// pending summed over the streams, idle the least of them.
Status AddConsumers(RedisClient& c, const std::string& stream,
                    std::map<std::string, Consumer>* out) {
  Result<RedisReply> r =
      CallOrNil(c, {"XINFO", "CONSUMERS", stream, kRedisGroup});
  if (!r.ok()) return r.status();
  for (const RedisReply& each : r->elements) {
    Fields f = PairsOf(each);
    // The Functions' own consumers (__reaper, __purge) lease nothing between
    // two calls: they are not brokers.
    if (f["name"].starts_with("__")) continue;
    Consumer& consumer = (*out)[f["name"]];
    consumer.pending += ToInt(f["pending"]);
    consumer.idle_ms = std::min(consumer.idle_ms, ToInt(f["idle"]));
  }
  return Status::OK();
}

Result<Json> Counters(RedisClient& c, const QueueKeys& keys) {
  Json out;
  for (const char* name :
       {"submitted", "completed", "retried", "dead", "reaped", "promoted",
        "requeued_dead", "undecodable", "queued"}) {
    out[name] = 0;
  }
  Result<RedisReply> r = Call(c, {"HGETALL", keys.stats});
  if (!r.ok()) return r.status();
  for (const auto& [name, value] : PairsOf(*r)) out[name] = ToInt(value);
  return out;
}

// Jobs and records (stream entries) of one ready stream, by whether the
// group has leased them to a broker.
struct StreamCounts {
  int64_t ready_jobs = 0, running_jobs = 0;
  int64_t ready_records = 0, running_records = 0;

  void Add(const StreamCounts& o) {
    ready_jobs += o.ready_jobs;
    running_jobs += o.running_jobs;
    ready_records += o.ready_records;
    running_records += o.running_records;
  }
};

// Jobs are counted by summing n over every entry, and "running" means "in
// the group's PEL" (XPENDING over each page's id range): a full scan of the
// stream, which an admin command can afford and a broker never does.
Result<StreamCounts> CountStream(RedisClient& c, const std::string& stream) {
  StreamCounts out;
  Status s =
      ForEachPage(c, stream, [&](const std::vector<Entry>& entries) -> Status {
        Result<std::set<std::string>> leased = LeasedAmong(c, stream, entries);
        if (!leased.ok()) return leased.status();
        for (const Entry& e : entries) {
          if (leased->count(e.id) > 0) {
            out.running_jobs += JobsIn(e.fields);
            ++out.running_records;
          } else {
            out.ready_jobs += JobsIn(e.fields);
            ++out.ready_records;
          }
        }
        return Status::OK();
      });
  if (!s.ok()) return s;
  return out;
}

// The ready streams of one shard: their counts by priority ("priorities")
// and in total; their consumers go to `consumers`.
Result<StreamCounts> CountStreams(RedisClient& c, const QueueKeys& keys,
                                  Json* priorities,
                                  std::map<std::string, Consumer>* consumers) {
  StreamCounts total;
  for (int p = 0; p < kRedisPriorities; ++p) {
    Result<StreamCounts> level = CountStream(c, keys.stream[p]);
    if (!level.ok()) return level.status();
    if (Status s = AddConsumers(c, keys.stream[p], consumers); !s.ok()) {
      return s;
    }
    (*priorities)[std::to_string(p)] = {{"ready", level->ready_jobs},
                                        {"running", level->running_jobs}};
    total.Add(*level);
  }
  return total;
}

// What one shard holds (the keys of QueueStats up to "leader"); its
// consumers go to `consumers`.
Result<Json> ShardStats(RedisClient& c, const QueueKeys& keys,
                        std::map<std::string, Consumer>* consumers) {
  Json priorities = Json::object();
  Result<StreamCounts> total = CountStreams(c, keys, &priorities, consumers);
  if (!total.ok()) return total.status();
  // Delayed records always hold one job each.
  Result<int64_t> delayed = CallInt(c, {"ZCARD", keys.delayed});
  if (!delayed.ok()) return delayed.status();
  Result<int64_t> dead = JobsInStream(c, keys.dead);
  if (!dead.ok()) return dead.status();
  Result<Json> counters = Counters(c, keys);
  if (!counters.ok()) return counters.status();
  Result<RedisReply> leader = Call(c, {"GET", keys.leader});
  if (!leader.ok()) return leader.status();
  const int64_t queued = (*counters)["queued"].get<int64_t>();
  return Json{
      {"queue", keys.name},
      {"ready", total->ready_jobs},
      {"running", total->running_jobs},
      {"delayed", *delayed},
      {"dead", *dead},
      {"queued", queued},
      {"records",
       {{"ready", total->ready_records}, {"running", total->running_records}}},
      {"priorities", std::move(priorities)},
      {"counters", std::move(*counters)},
      {"leader", leader->is_nil() ? Json(nullptr) : Json(leader->str)}};
}

// Adds broker `b`'s workers to `workers` (by name: a worker connected to
// several brokers is one row, its outstanding jobs summed).
void AddWorkers(const BrokerRecord& b, std::map<std::string, Json>* workers) {
  for (const RegisteredWorker& w : b.workers) {
    Json& row = (*workers)[w.name];
    if (row.is_null()) {
      row = {{"name", w.name},           {"capacity", w.capacity},
             {"tags", w.tags},           {"taints", w.taints},
             {"brokers", Json::array()}, {"outstanding", 0}};
    }
    row["brokers"].push_back(b.id);
    row["outstanding"] = row["outstanding"].get<int64_t>() + w.outstanding;
  }
}

// The cluster as the registry knows it (registry/registry.h): live brokers (of
// every queue) and the workers connected to them, each worker once. Adds
// "brokers" and "workers" to `out`.
Status AddRegistry(RedisClient& registry_slot, Json* out) {
  Result<std::vector<BrokerRecord>> registry = ReadRegistry(registry_slot);
  if (!registry.ok()) return registry.status();
  Json live = Json::array();
  std::map<std::string, Json> workers;
  for (const BrokerRecord& b : *registry) {
    live.push_back({{"id", b.id},
                    {"queue", b.queue},
                    {"frontend", b.frontend},
                    {"backend", b.backend},
                    {"draining", b.draining},
                    {"held", b.held},
                    {"counters", b.counters}});
    AddWorkers(b, &workers);
  }
  Json worker_list = Json::array();
  for (auto& [name, row] : workers) worker_list.push_back(std::move(row));
  (*out)["brokers"] = std::move(live);
  (*out)["workers"] = std::move(worker_list);
  return Status::OK();
}

}  // namespace

// Every shard's ShardStats added up ("leader": the first shard's that has
// one; each shard elects its own); the brokers as consumers (by name: a
// broker uses one name on every shard); the registry; and "shards", each
// shard's own numbers.
Result<Json> QueueStats(const QueueConnection& q) {
  std::map<std::string, Consumer> consumers;
  Json each = Json::array();
  Result<Json> out =
      OverShards(q, [&](const QueueShard& shard, const Json&) -> Result<Json> {
        Result<Json> one = ShardStats(*shard.client, shard.keys, &consumers);
        if (!one.ok()) return one;
        Json row = {{"shard", shard.index}, {"tag", shard.keys.tag}};
        for (const char* key :
             {"ready", "running", "delayed", "dead", "queued", "leader"}) {
          row[key] = (*one)[key];
        }
        each.push_back(std::move(row));
        return one;
      });
  if (!out.ok()) return out;
  Json brokers = Json::array();
  for (const auto& [name, consumer] : consumers) {
    brokers.push_back({{"name", name},
                       {"pending", consumer.pending},
                       {"idle_ms", consumer.idle_ms}});
  }
  (*out)["consumers"] = std::move(brokers);
  Result<Json> control = ReadControl(q);
  if (!control.ok()) return control.status();
  out->update(*control);
  if (Status s = AddRegistry(*q.registry, &*out); !s.ok()) return s;
  (*out)["shards"] = std::move(each);
  return out;
}

}  // namespace yard::admin
