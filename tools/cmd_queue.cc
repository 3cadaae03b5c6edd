// yard queue stats|inspect|dead|requeue-dead|purge --redis URL [--queue NAME]
// [--json]: what a durable (Redis) queue holds, and the operator's repairs.
//
// Reads go straight to the keys of queue/redis_layout.h and change nothing
// (a queue no broker has set up yet reads as empty). Changes go through the
// queue's Functions (yard_requeue_dead, yard_purge), which are atomic with
// respect to the brokers, in chunks so that no call blocks Redis for long.
//
// A sharded queue (queue/redis_layout.h: shard count in {yard}:shards:Q)
// is read and changed shard by shard, each on the primary serving its slot,
// and the answers are added up: counts sum, lists concatenate (each line
// says its "shard"; --limit is for all shards together), and stats lists
// each shard's own numbers under "shards". The registry (brokers, workers)
// is read in the "{yard}" slot.
//
// A record (stream entry) holds one or more jobs. stats, inspect and dead
// count and list jobs; requeue-dead and purge --dead count dead letters
// (records), purge counts jobs (what yard_purge reports).
#include <algorithm>
#include <charconv>
#include <csignal>
#include <cstdio>
#include <functional>
#include <iostream>
#include <limits>
#include <map>
#include <optional>
#include <set>
#include <string>
#include <string_view>
#include <system_error>
#include <unordered_map>
#include <vector>

#include "common/logging.h"
#include "redis/redis_target.h"
#include "registry/registry.h"
#include "tools/cli.h"

namespace yard {

namespace cli {

// Every blocking call to Redis (connect, each command) waits this long.
constexpr int64_t kRedisTimeoutMs = 5000;

void AddQueueFlags(CLI::App& app, QueueFlags* flags) {
  app.add_option("--redis", flags->redis_url,
                 "Redis holding the queue: redis://HOST:PORT[/DB], "
                 "sentinel://HOST:PORT[,HOST:PORT...]/MASTER[/DB] or "
                 "cluster://HOST:PORT[,HOST:PORT...]")
      ->required();
  app.add_option("--queue", flags->queue, "queue name")->capture_default_str();
  app.add_flag("--json", flags->json, "print one JSON object instead of text");
}

namespace {

// A failed connect to Redis at `url`, said as such.
Status Unreachable(const std::string& url, const Status& status) {
  return Status::Unavailable("cannot reach Redis at " + url + ": " +
                             status.message());
}

// A connection to the primary serving `slot_key`'s slot (a Cluster; any
// other target has one server for every key).
Result<std::unique_ptr<RedisClient>> ConnectSlot(const RedisTarget& target,
                                                 const std::string& slot_key,
                                                 const std::string& url) {
  RedisTarget t = target;
  t.key = slot_key;
  auto client = ConnectRedisTarget(t, kRedisTimeoutMs);
  if (!client.ok()) return Unreachable(url, client.status());
  return client;
}

}  // namespace

Result<QueueConnection> ConnectQueue(const QueueFlags& flags) {
  Result<RedisTarget> target = ParseRedisTarget(flags.redis_url);
  if (!target.ok()) {
    return Status::InvalidArgument("--redis: " + target.status().message());
  }
  if (Status s = ValidateQueueName(flags.queue); !s.ok()) {
    return Status::InvalidArgument("--queue: " + s.message());
  }
  // hiredis writes with write(2): a server that hangs up must not kill us.
  std::signal(SIGPIPE, SIG_IGN);
  QueueConnection out;
  RedisTarget registry_target = *target;
  auto registry = ConnectRegistry(registry_target, kRedisTimeoutMs);
  if (!registry.ok()) return Unreachable(flags.redis_url, registry.status());
  out.registry = std::move(registry).value();
  Result<int> shards =
      ReadShardCount(*out.registry, flags.queue, kRedisTimeoutMs);
  if (!shards.ok()) return shards.status();
  for (QueueKeys& keys : ShardKeys(flags.queue, *shards)) {
    // (Any key with the shard's hash tag names its slot: its prefix.)
    auto client = ConnectSlot(*target, keys.prefix, flags.redis_url);
    if (!client.ok()) return client.status();
    out.shards.push_back({static_cast<int>(out.shards.size()), std::move(keys),
                          std::move(client).value()});
  }
  return out;
}

std::string DumpJson(const nlohmann::ordered_json& j) {
  return j.dump(-1, ' ', false,
                nlohmann::ordered_json::error_handler_t::replace);
}

int RuntimeError(const std::string& command, const Status& status) {
  std::cerr << command << ": error: " << status.message() << "\n";
  return 1;
}

}  // namespace cli

namespace {

using Json = nlohmann::ordered_json;
using ReplyType = RedisReply::Type;

// Jobs one Functions call handles at most (per stream for yard_purge).
constexpr int64_t kChunk = 1000;
// A limit that is no limit.
constexpr int64_t kNoLimit = std::numeric_limits<int64_t>::max();
constexpr size_t kDefaultListLimit = 20;

// ---- Replies ----

// Field -> value; integers (XINFO) as their decimal text.
using Fields = std::unordered_map<std::string, std::string>;

struct Entry {
  std::string id;  // the stream entry id
  Fields fields;
};

std::string TextOf(const RedisReply& r) {
  return r.type == ReplyType::kInteger ? std::to_string(r.integer) : r.str;
}

// A flat [field, value, ...] array (stream entries, HGETALL, XINFO).
Fields PairsOf(const RedisReply& flat) {
  Fields out;
  for (size_t i = 0; i + 1 < flat.elements.size(); i += 2) {
    out[TextOf(flat.elements[i])] = TextOf(flat.elements[i + 1]);
  }
  return out;
}

// A missing field reads as empty, as the Functions library treats it.
const std::string& Field(const Fields& f, const std::string& name) {
  static const std::string kEmpty;
  auto it = f.find(name);
  return it == f.end() ? kEmpty : it->second;
}

// Record fields are decimal text; anything else counts as 0.
int64_t ToInt(std::string_view s) {
  int64_t v = 0;
  std::from_chars(s.data(), s.data() + s.size(), v);
  return v;
}

// XRANGE's [[id, [field, value, ...]], ...].
std::vector<Entry> EntriesOf(const RedisReply& xrange) {
  std::vector<Entry> out;
  for (const RedisReply& e : xrange.elements) {
    if (e.elements.size() == 2) {
      out.push_back({e.elements[0].str, PairsOf(e.elements[1])});
    }
  }
  return out;
}

// ---- Commands to Redis ----

// A stream or consumer group that does not exist: a queue that no broker
// has set up yet, which is empty rather than an error.
bool IsMissingStream(const Status& s) {
  const std::string& m = s.message();
  // (RedisClient puts "redis: " before the server's words.)
  return m.find("NOGROUP ") != std::string::npos ||
         m.find("ERR no such key") != std::string::npos;
}

// RedisCall, with a missing stream or group answered as nil.
Result<RedisReply> CallOrNil(RedisClient& c, std::vector<std::string> args) {
  Result<RedisReply> r = RedisCall(c, std::move(args), cli::kRedisTimeoutMs);
  if (!r.ok() && IsMissingStream(r.status())) return RedisReply{};
  return r;
}

Result<RedisReply> Call(RedisClient& c, std::vector<std::string> args) {
  return RedisCall(c, std::move(args), cli::kRedisTimeoutMs);
}

Result<int64_t> CallInt(RedisClient& c, std::vector<std::string> args) {
  const std::string command = args.front();
  Result<RedisReply> r = Call(c, std::move(args));
  if (!r.ok()) return r.status();
  if (r->type != ReplyType::kInteger) {
    return Status::Internal(command + ": expected an integer reply");
  }
  return r->integer;
}

// Which of `entries` (consecutive, from one XRANGE) are leased.
Result<std::set<std::string>> LeasedAmong(RedisClient& c,
                                          const std::string& stream,
                                          const std::vector<Entry>& entries) {
  std::set<std::string> out;
  if (entries.empty()) return out;
  // Entries leave a stream with XACK and XDEL together, so the PEL has no
  // ids in this range that the stream lacks: entries.size() is enough.
  Result<RedisReply> r =
      CallOrNil(c, {"XPENDING", stream, kRedisGroup, entries.front().id,
                    entries.back().id, std::to_string(entries.size())});
  if (!r.ok()) return r.status();
  for (const RedisReply& pending : r->elements) {
    if (!pending.elements.empty()) out.insert(pending.elements[0].str);
  }
  return out;
}

// Calls a Functions-library operation (its arguments after the key prefix
// are `args`, then a count) in chunks until it reports 0, or until `limit`
// (kNoLimit: none) is reached. Returns the sum of what the calls reported.
Result<int64_t> CallInChunks(RedisClient& c, const QueueKeys& keys,
                             std::string_view function,
                             const std::vector<std::string>& args,
                             int64_t limit) {
  int64_t total = 0;
  while (total < limit) {
    const int64_t chunk = std::min(kChunk, limit - total);
    std::vector<std::string> command = keys.Fcall(function);
    command.insert(command.end(), args.begin(), args.end());
    command.push_back(std::to_string(chunk));
    Result<int64_t> n = CallInt(c, std::move(command));
    if (!n.ok()) return n.status();
    if (*n == 0) break;
    total += *n;
  }
  return total;
}

// ---- Shards ----

// Adds one shard's answer to the answers so far: integers add up, lists
// concatenate, objects add up key by key, and anything else (the queue's
// name, a leader) keeps the first value that is not null.
void AddUp(Json* sum, const Json& one) {
  if (sum->is_null()) {
    *sum = one;
  } else if (sum->is_object() && one.is_object()) {
    for (const auto& [key, value] : one.items()) AddUp(&(*sum)[key], value);
  } else if (sum->is_array() && one.is_array()) {
    sum->insert(sum->end(), one.begin(), one.end());
  } else if (sum->is_number_integer() && one.is_number_integer()) {
    *sum = sum->get<int64_t>() + one.get<int64_t>();
  }
}

// A subcommand's work on one shard, given what the shards before it
// answered (added up; {} for the first).
using ShardRun =
    std::function<Result<Json>(const cli::QueueShard&, const Json& so_far)>;

// Runs `run` on every shard in order and adds the answers up. Each line of
// a shard's lists gets "shard": the shard's index.
Result<Json> OverShards(const cli::QueueConnection& q, const ShardRun& run) {
  Json sum = Json::object();
  for (const cli::QueueShard& shard : q.shards) {
    Result<Json> one = run(shard, sum);
    if (!one.ok()) return one.status();
    for (Json& value : *one) {
      if (!value.is_array()) continue;
      for (Json& line : value) line["shard"] = shard.index;
    }
    AddUp(&sum, *one);
  }
  return sum;
}

// What the shards so far answered under `key`: a list's length or a count.
int64_t SoFar(const Json& so_far, const char* key) {
  if (!so_far.contains(key)) return 0;
  const Json& value = so_far[key];
  return value.is_array() ? static_cast<int64_t>(value.size())
                          : value.get<int64_t>();
}

// ---- Records and their jobs ----

// How many jobs a record holds, as the Functions library counts them
// (jobs_in): field n, 1 when it is missing or not a number.
int64_t JobsIn(const Fields& f) { return RecordJobCount(Field(f, "n")); }

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

// Reads all of `stream` in pages of kChunk entries, oldest first, and hands
// each page to `page`. A full scan: acceptable for an operator's command,
// never done by the brokers.
Status ForEachPage(
    RedisClient& c, const std::string& stream,
    const std::function<Status(const std::vector<Entry>&)>& page) {
  std::string start = "-";
  for (;;) {
    Result<RedisReply> r = Call(
        c, {"XRANGE", stream, start, "+", "COUNT", std::to_string(kChunk)});
    if (!r.ok()) return r.status();
    const std::vector<Entry> entries = EntriesOf(*r);
    if (entries.empty()) return Status::OK();
    if (Status s = page(entries); !s.ok()) return s;
    if (r->elements.size() < static_cast<size_t>(kChunk)) return Status::OK();
    start = "(" + entries.back().id;
  }
}

// The jobs in all of `stream`'s records (the sum of their n).
Result<int64_t> JobsInStream(RedisClient& c, const std::string& stream) {
  int64_t jobs = 0;
  Status s = ForEachPage(c, stream, [&](const std::vector<Entry>& entries) {
    for (const Entry& e : entries) jobs += JobsIn(e.fields);
    return Status::OK();
  });
  if (!s.ok()) return s;
  return jobs;
}

// ---- stats ----

std::string StringOr(const Json& v, const char* fallback) {
  return v.is_string() ? v.get<std::string>() : fallback;
}

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

// What one shard holds (the keys of Stats up to "leader"); its consumers go
// to `consumers`.
Result<Json> ShardStats(RedisClient& c, const QueueKeys& keys,
                        std::map<std::string, Consumer>* consumers) {
  Json priorities = Json::object();
  StreamCounts total;
  for (int p = 0; p < kRedisPriorities; ++p) {
    Result<StreamCounts> level = CountStream(c, keys.stream[p]);
    if (!level.ok()) return level.status();
    if (Status s = AddConsumers(c, keys.stream[p], consumers); !s.ok()) {
      return s;
    }
    priorities[std::to_string(p)] = {{"ready", level->ready_jobs},
                                     {"running", level->running_jobs}};
    total.ready_jobs += level->ready_jobs;
    total.running_jobs += level->running_jobs;
    total.ready_records += level->ready_records;
    total.running_records += level->running_records;
  }
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
      {"ready", total.ready_jobs},
      {"running", total.running_jobs},
      {"delayed", *delayed},
      {"dead", *dead},
      {"queued", queued},
      {"records",
       {{"ready", total.ready_records}, {"running", total.running_records}}},
      {"priorities", std::move(priorities)},
      {"counters", std::move(*counters)},
      {"leader", leader->is_nil() ? Json(nullptr) : Json(leader->str)}};
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
    for (const RegisteredWorker& w : b.workers) {
      Json& row = workers[w.name];
      if (row.is_null()) {
        row = {{"name", w.name},           {"capacity", w.capacity},
               {"tags", w.tags},           {"taints", w.taints},
               {"brokers", Json::array()}, {"outstanding", 0}};
      }
      row["brokers"].push_back(b.id);
      row["outstanding"] = row["outstanding"].get<int64_t>() + w.outstanding;
    }
  }
  Json worker_list = Json::array();
  for (auto& [name, row] : workers) worker_list.push_back(std::move(row));
  (*out)["brokers"] = std::move(live);
  (*out)["workers"] = std::move(worker_list);
  return Status::OK();
}

// Every shard's ShardStats added up ("leader": the first shard's that has
// one; each shard elects its own); the brokers as consumers (by name: a
// broker uses one name on every shard); the registry; and "shards", each
// shard's own numbers.
Result<Json> Stats(const cli::QueueConnection& q) {
  std::map<std::string, Consumer> consumers;
  Json each = Json::array();
  Result<Json> out = OverShards(
      q, [&](const cli::QueueShard& shard, const Json&) -> Result<Json> {
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
  if (Status s = AddRegistry(*q.registry, &*out); !s.ok()) return s;
  (*out)["shards"] = std::move(each);
  return out;
}

void PrintStats(const Json& j) {
  std::printf("queue %s\n", j["queue"].get<std::string>().c_str());
  std::printf("  %-12s %10s %10s\n", "", "ready", "running");
  for (int p = kRedisPriorities - 1; p >= 0; --p) {
    const Json& row = j["priorities"][std::to_string(p)];
    std::printf("  priority %-3d %10lld %10lld\n", p,
                static_cast<long long>(row["ready"].get<int64_t>()),
                static_cast<long long>(row["running"].get<int64_t>()));
  }
  std::printf("  %-12s %10lld %10lld\n", "total",
              static_cast<long long>(j["ready"].get<int64_t>()),
              static_cast<long long>(j["running"].get<int64_t>()));
  std::printf("  %-12s %10lld %10lld\n", "(records)",
              static_cast<long long>(j["records"]["ready"].get<int64_t>()),
              static_cast<long long>(j["records"]["running"].get<int64_t>()));
  std::printf("delayed %lld  dead %lld  queued %lld  leader %s\n",
              static_cast<long long>(j["delayed"].get<int64_t>()),
              static_cast<long long>(j["dead"].get<int64_t>()),
              static_cast<long long>(j["queued"].get<int64_t>()),
              j["leader"].is_null() ? "(none)"
                                    : j["leader"].get<std::string>().c_str());
  std::printf("counters:");
  for (const auto& [name, value] : j["counters"].items()) {
    std::printf(" %s=%lld", name.c_str(),
                static_cast<long long>(value.get<int64_t>()));
  }
  std::printf("\nbrokers (consumers): %zu\n", j["consumers"].size());
  for (const Json& b : j["consumers"]) {
    std::printf("  %-40s pending %-8lld idle %lld ms\n",
                b["name"].get<std::string>().c_str(),
                static_cast<long long>(b["pending"].get<int64_t>()),
                static_cast<long long>(b["idle_ms"].get<int64_t>()));
  }
  std::printf("brokers (registry, every queue): %zu\n", j["brokers"].size());
  for (const Json& b : j["brokers"]) {
    std::printf("  %-28s queue %-12s %s%s\n",
                b["id"].get<std::string>().c_str(),
                b["queue"].get<std::string>().c_str(),
                b["frontend"].get<std::string>().c_str(),
                b["draining"].get<bool>() ? " (draining)" : "");
  }
  std::printf("workers: %zu\n", j["workers"].size());
  for (const Json& w : j["workers"]) {
    std::printf("  %-28s capacity %-4lld brokers %zu  running %lld\n",
                w["name"].get<std::string>().c_str(),
                static_cast<long long>(w["capacity"].get<int64_t>()),
                w["brokers"].size(),
                static_cast<long long>(w["outstanding"].get<int64_t>()));
  }
  if (j["shards"].size() < 2) return;
  std::printf("shards: %zu\n", j["shards"].size());
  for (const Json& shard : j["shards"]) {
    std::printf(
        "  shard %-3d {%s}  ready %lld  running %lld  delayed %lld  dead %lld"
        "  leader %s\n",
        shard["shard"].get<int>(), shard["tag"].get<std::string>().c_str(),
        static_cast<long long>(shard["ready"].get<int64_t>()),
        static_cast<long long>(shard["running"].get<int64_t>()),
        static_cast<long long>(shard["delayed"].get<int64_t>()),
        static_cast<long long>(shard["dead"].get<int64_t>()),
        StringOr(shard["leader"], "(none)").c_str());
  }
}

// ---- inspect ----

Result<Json> Inspect(RedisClient& c, const QueueKeys& keys, size_t limit) {
  Json jobs = Json::array();
  for (int p = kRedisPriorities - 1; p >= 0 && jobs.size() < limit; --p) {
    Result<RedisReply> r = Call(c, {"XRANGE", keys.stream[p], "-", "+", "COUNT",
                                    std::to_string(limit - jobs.size())});
    if (!r.ok()) return r.status();
    // Each record gives at least one line, so `limit` records are enough.
    const std::vector<Entry> entries = EntriesOf(*r);
    auto leased = LeasedAmong(c, keys.stream[p], entries);
    if (!leased.ok()) return leased.status();
    const auto line = [&](const Entry& e,
                          const std::optional<JobSummary>& job) {
      return ReadyJob(e, job, p, leased->count(e.id) > 0);
    };
    for (const Entry& e : entries) AppendJobs(e, limit, "error", line, &jobs);
  }
  if (jobs.size() < limit) {
    // Delayed records are packed (cmsgpack) in dlyh: only id and due time.
    Result<RedisReply> r =
        Call(c, {"ZRANGE", keys.delayed, "0",
                 std::to_string(limit - jobs.size() - 1), "WITHSCORES"});
    if (!r.ok()) return r.status();
    for (size_t i = 0; i + 1 < r->elements.size(); i += 2) {
      jobs.push_back({{"id", r->elements[i].str},
                      {"state", "delayed"},
                      {"due_ms", ToInt(r->elements[i + 1].str)}});
    }
  }
  return Json{{"queue", keys.name}, {"jobs", std::move(jobs)}};
}

void PrintJobs(const Json& j) {
  std::printf("%-32s %-8s %3s %7s %-16s %9s %-12s %s\n", "ID", "STATE", "PRI",
              "ATTEMPT", "TASK", "BYTES", "LOCK", "BROKER");
  for (const Json& job : j["jobs"]) {
    const std::string id = StringOr(job["id"], "?");
    if (job["state"] == "delayed") {
      std::printf("%-32s %-8s due at %lld ms\n", id.c_str(), "delayed",
                  static_cast<long long>(job["due_ms"].get<int64_t>()));
      continue;
    }
    const std::string attempt =
        std::to_string(job["attempt"].get<int64_t>()) + "/" +
        std::to_string(job["max_attempts"].get<int64_t>());
    const std::string bytes =
        job["payload_bytes"].is_null() ? "-" : job["payload_bytes"].dump();
    std::printf("%-32s %-8s %3d %7s %-16s %9s %-12s %s\n", id.c_str(),
                StringOr(job["state"], "?").c_str(), job["priority"].get<int>(),
                attempt.c_str(), StringOr(job["task"], "(undecodable)").c_str(),
                bytes.c_str(), StringOr(job["lock_key"], "-").c_str(),
                StringOr(job["broker"], "-").c_str());
  }
  if (j["jobs"].empty()) std::printf("(no jobs)\n");
}

// ---- dead ----

// One line per dead job; `limit` (may be 0) and `total` count jobs, not
// records.
Result<Json> Dead(RedisClient& c, const QueueKeys& keys, size_t limit) {
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

void PrintDead(const Json& j) {
  std::printf("%-32s %-13s %3s %8s %-16s %s\n", "ID", "WHY", "PRI", "ATTEMPTS",
              "TASK", "ERROR");
  for (const Json& d : j["dead"]) {
    std::printf("%-32s %-13s %3lld %8lld %-16s %s\n",
                StringOr(d["id"], "?").c_str(), StringOr(d["why"], "?").c_str(),
                static_cast<long long>(d["priority"].get<int64_t>()),
                static_cast<long long>(d["attempts"].get<int64_t>()),
                StringOr(d["task"], "(undecodable)").c_str(),
                StringOr(d["error"], "").c_str());
  }
  std::printf("%zu of %lld dead jobs shown\n", j["dead"].size(),
              static_cast<long long>(j["total"].get<int64_t>()));
}

// ---- requeue-dead, purge ----

Result<Json> RequeueDead(RedisClient& c, const QueueKeys& keys, int64_t limit) {
  if (Status s = EnsureQueue(c, keys, cli::kRedisTimeoutMs); !s.ok()) return s;
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

Result<Json> Purge(RedisClient& c, const QueueKeys& keys, bool dead_letters) {
  Result<int64_t> n = 0;
  if (dead_letters) {
    n = DeleteDeadLetters(c, keys);
  } else {
    if (Status s = EnsureQueue(c, keys, cli::kRedisTimeoutMs); !s.ok()) {
      return s;
    }
    n = CallInChunks(c, keys, "yard_purge", {kRedisGroup}, kNoLimit);
  }
  if (!n.ok()) return n.status();
  return Json{{"queue", keys.name}, {"purged", *n}};
}

// Prints "<key> <n> <what> in queue <name>": "purged 3 waiting jobs ...".
void PrintCount(const Json& j, const char* key, const char* what) {
  std::printf("%s %lld %s in queue %s\n", key,
              static_cast<long long>(j[key].get<int64_t>()), what,
              j["queue"].get<std::string>().c_str());
}

}  // namespace

int RunQueue(int argc, char** argv) {
  CLI::App app{"Inspect and administer a durable (Redis) queue.", argv[0]};
  app.require_subcommand(1);
  cli::QueueFlags flags;
  size_t inspect_limit = kDefaultListLimit, dead_limit = kDefaultListLimit;
  int64_t requeue_limit = 0;  // all
  bool purge_dead = false;

  CLI::App* stats = app.add_subcommand(
      "stats", "Ready, running, delayed and dead jobs; counters; brokers");
  CLI::App* inspect = app.add_subcommand(
      "inspect",
      "List jobs: ready and running (highest priority first), "
      "then delayed");
  inspect->add_option("--limit", inspect_limit, "jobs listed at most")
      ->capture_default_str()
      ->check(CLI::PositiveNumber);
  CLI::App* dead = app.add_subcommand("dead", "List dead letters");
  dead->add_option("--limit", dead_limit, "dead jobs listed at most")
      ->capture_default_str()
      ->check(CLI::PositiveNumber);
  CLI::App* requeue = app.add_subcommand(
      "requeue-dead",
      "Move dead letters back to their ready streams (attempts start over)");
  requeue
      ->add_option("--limit", requeue_limit,
                   "dead letters moved at most (default: all)")
      ->check(CLI::PositiveNumber);
  CLI::App* purge = app.add_subcommand(
      "purge", "Delete waiting jobs (ready and delayed), never running ones");
  purge->add_flag("--dead", purge_dead, "delete the dead letters instead");
  for (CLI::App* sub : {stats, inspect, dead, requeue, purge}) {
    cli::AddQueueFlags(*sub, &flags);
  }
  int code = 0;
  if (!cli::Parse(app, argc, argv, &code)) return code;
  // Library warnings go to stderr, never into the JSON on stdout.
  InitLogging("queue", "warn");
  const std::string name = app.get_name();

  Result<cli::QueueConnection> connection = cli::ConnectQueue(flags);
  if (!connection.ok()) {
    return cli::UsageError(name, connection.status().message());
  }
  const cli::QueueConnection& q = *connection;

  // Every subcommand runs on every shard; the limits are for all of them.
  Result<Json> out = Status::Internal("no subcommand");
  std::function<void(const Json&)> print;
  if (stats->parsed()) {
    out = Stats(q);
    print = PrintStats;
  } else if (inspect->parsed()) {
    out = OverShards(q, [&](const cli::QueueShard& s, const Json& so_far) {
      const auto listed = static_cast<size_t>(SoFar(so_far, "jobs"));
      return Inspect(*s.client, s.keys, inspect_limit - listed);
    });
    print = PrintJobs;
  } else if (dead->parsed()) {
    out = OverShards(q, [&](const cli::QueueShard& s, const Json& so_far) {
      const auto listed = static_cast<size_t>(SoFar(so_far, "dead"));
      return Dead(*s.client, s.keys, dead_limit - listed);
    });
    print = PrintDead;
  } else if (requeue->parsed()) {
    const int64_t most = requeue_limit > 0 ? requeue_limit : kNoLimit;
    out = OverShards(q, [&](const cli::QueueShard& s, const Json& so_far) {
      return RequeueDead(*s.client, s.keys, most - SoFar(so_far, "requeued"));
    });
    print = [](const Json& j) { PrintCount(j, "requeued", "dead letters"); };
  } else if (purge->parsed()) {
    out = OverShards(q, [&](const cli::QueueShard& s, const Json&) {
      return Purge(*s.client, s.keys, purge_dead);
    });
    print = [purge_dead](const Json& j) {
      PrintCount(j, "purged", purge_dead ? "dead letters" : "waiting jobs");
    };
  }
  if (!out.ok()) return cli::RuntimeError(name, out.status());
  if (flags.json) {
    std::cout << cli::DumpJson(*out) << std::endl;
  } else {
    print(*out);
    std::fflush(stdout);
  }
  return 0;
}

}  // namespace yard
