// `yard queue ...` and `yard result` against a real redis-server: the test
// writes the durable queue's records directly (queue/redis_layout.h), runs
// the real yard binary and checks its JSON, its exit code and what it changed
// in Redis.
#include <gtest/gtest.h>
#include <stdlib.h>

#include <algorithm>
#include <chrono>
#include <csignal>
#include <filesystem>
#include <memory>
#include <nlohmann/json.hpp>
#include <optional>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include "queue/redis_layout.h"
#include "redis/redis_cluster.h"
#include "redis/redis_target.h"
#include "schemas/codec.h"
#include "testing/process.h"
#include "testing/redis_cluster.h"
#include "testing/redis_fixture.h"
#include "testing/redis_server.h"

namespace yard {
namespace {

using Json = nlohmann::json;
using std::chrono::milliseconds;

// hiredis writes with write(2); the broker ignores SIGPIPE (common/signals).
const bool kSigpipeIgnored = [] {
  std::signal(SIGPIPE, SIG_IGN);
  return true;
}();

struct YardRun {
  std::optional<ExitInfo> exit;  // nullopt: did not exit in time (killed)
  std::string out;
  std::string err;
  Json json;  // stdout parsed; discarded when it is not JSON

  bool ExitedWith(int code) const { return exit && exit->ExitedWith(code); }
  std::string Describe() const {
    return (exit ? exit->ToString() : std::string("killed: still running")) +
           "; stdout: '" + out + "'; stderr: '" + err + "'";
  }
};

class CliQueueTest : public RedisFixture {
 protected:
  void SetUp() override {
    char dir[] = "/tmp/cli_queue_test.XXXXXX";
    ASSERT_NE(::mkdtemp(dir), nullptr);
    dir_ = dir;
    RedisFixture::SetUp();
    if (HasFatalFailure()) return;
    at_ = admin_.get();
    url_ = server_->url();
    Status s = EnsureQueue(*admin_, keys_);
    ASSERT_TRUE(s.ok()) << s.ToString();
  }

  // Makes queue "default" a queue of `shards` shards on the test's server
  // (as a broker with --redis-shards would: the count in the "{yard}" slot,
  // each shard set up). The helpers that write go to shard 0 (UseShard).
  void ShardQueue(int shards) {
    Redis({"SET", ShardCountKey("default"), std::to_string(shards)});
    shards_ = ShardKeys("default", shards);
    for (const QueueKeys& keys : shards_) {
      Status s = EnsureQueue(*admin_, keys);
      ASSERT_TRUE(s.ok()) << s.ToString();
    }
    UseShard(0);
  }
  // The helpers that write records (AddJob, AddDead, ...) write to shard k
  // of shards_ from now on, through `at` (the shard's primary in a cluster).
  void UseShard(size_t k, RedisClient* at = nullptr) {
    keys_ = shards_.at(k);
    at_ = at ? at : admin_.get();
  }

  void TearDown() override {
    std::error_code ignored;
    std::filesystem::remove_all(dir_, ignored);
  }

  // Runs one command; a failure is a test failure and a nil reply.
  RedisReply Redis(std::vector<std::string> args) {
    const std::string what = args.front();
    Result<RedisReply> r = RedisCall(*at_, std::move(args));
    EXPECT_TRUE(r.ok()) << what << ": " << r.status().ToString();
    return r.ok() ? std::move(r).value() : RedisReply{};
  }
  int64_t RedisInt(std::vector<std::string> args) {
    return Redis(std::move(args)).integer;
  }

  using FieldList = std::vector<std::pair<std::string, std::string>>;

  // A Job blob: what a record holds, packed, in field p.
  std::string JobBlob(const JobId& id, std::string_view task,
                      std::string_view payload = "", int priority = 1,
                      std::string_view lock_key = "",
                      uint16_t max_attempts = 3) {
    JobSpec spec;
    spec.id = id;
    spec.task = task;
    spec.payload = AsBytes(payload);
    spec.priority = static_cast<uint8_t>(priority);
    spec.max_attempts = max_attempts;
    spec.lock_key = lock_key;
    return std::string(AsString(writer_.EncodeJob(spec)));
  }
  // Field p of a record holding `blobs`.
  static std::string Packed(const std::vector<std::string>& blobs) {
    std::string p;
    for (const std::string& blob : blobs) PackJob(blob, &p);
    return p;
  }
  // Blobs of jobs `ids` (task `task`, max attempts 5, payloads "1", "12",
  // ...): a producer's batch, as one record carries it.
  std::vector<std::string> BatchBlobs(const std::vector<JobId>& ids,
                                      std::string_view task, int priority) {
    std::vector<std::string> blobs;
    for (size_t i = 0; i < ids.size(); ++i) {
      const std::string payload = std::string("123456789").substr(0, i + 1);
      blobs.push_back(JobBlob(ids[i], task, payload, priority, "", 5));
    }
    return blobs;
  }

  // A ready job (entry of stream s:<priority>) with the record fields of
  // queue/redis_layout.h; returns the entry id.
  std::string AddJob(int priority, const JobId& id, std::string_view task,
                     std::string_view payload, std::string_view lock_key = "") {
    return AddRecord(priority, id.ToString(),
                     Packed({JobBlob(id, task, payload, priority, lock_key)}),
                     std::string(lock_key));
  }
  std::string AddRecord(int priority, const std::string& j,
                        const std::string& p, const std::string& k = "") {
    return XAdd(keys_.stream[priority], Record(j, "1", "0", k, p));
  }
  // A ready record of several jobs (m is '' in batches); returns its id.
  std::string AddBatch(int priority, const std::vector<JobId>& ids,
                       std::string_view task) {
    return XAdd(keys_.stream[priority],
                Record(ids.front().ToString(), "0", "0", "",
                       Packed(BatchBlobs(ids, task, priority)), ids.size()));
  }

  // A dead letter as yard_fail buries it: the record, then q, why, err, t.
  void AddDead(int priority, const JobId& id, std::string_view task,
               const std::string& err) {
    AddDeadRecord(
        priority,
        Record(id.ToString(), "3", "1", "", Packed({JobBlob(id, task)})),
        "failed", err);
  }
  // A whole batch dead-lettered (as a reaped record with no attempts left).
  void AddDeadBatch(int priority, const std::vector<JobId>& ids,
                    std::string_view task, const std::string& err) {
    AddDeadRecord(priority,
                  Record(ids.front().ToString(), "0", "2", "",
                         Packed(BatchBlobs(ids, task, priority)), ids.size()),
                  "lease-expired", err);
  }
  void AddDeadRecord(int priority, FieldList fields, const std::string& why,
                     const std::string& err) {
    fields.insert(fields.end(), {{"q", std::to_string(priority)},
                                 {"why", why},
                                 {"err", err},
                                 {"t", "1234"}});
    XAdd(keys_.dead, fields);
  }

  // The record fields (queue/redis_layout.h): one job (max attempts 3), or
  // n > 1 jobs (m '': each Job says).
  static FieldList Record(const std::string& j, const std::string& a,
                          const std::string& x, const std::string& k,
                          const std::string& p, size_t n = 1) {
    return {{"n", std::to_string(n)},
            {"j", j},
            {"a", a},
            {"x", x},
            {"m", n == 1 ? "3" : ""},
            {"k", k},
            {"b", "broker-a"},
            {"r", "route"},
            {"p", p}};
  }
  // Returns the entry id.
  std::string XAdd(const std::string& stream, const FieldList& fields) {
    std::vector<std::string> command = {"XADD", stream, "*"};
    for (const auto& [field, value] : fields) {
      command.push_back(field);
      command.push_back(value);
    }
    return Redis(std::move(command)).str;
  }

  // A delayed job (the packed record's content does not matter to yard).
  void AddDelayed(const JobId& id, int64_t due_ms) {
    Redis({"ZADD", keys_.delayed, std::to_string(due_ms), id.ToString()});
    Redis({"HSET", keys_.delayed_jobs, id.ToString(), "packed"});
  }

  // Leases the oldest ready entries of a stream to `consumer` (a broker's
  // claim): they are running from then on.
  void Claim(int priority, int count, const std::string& consumer) {
    RedisReply r =
        Redis({"XREADGROUP", "GROUP", kRedisGroup, consumer, "COUNT",
               std::to_string(count), "STREAMS", keys_.stream[priority], ">"});
    ASSERT_EQ(r.elements.size(), 1u);
    ASSERT_EQ(r.elements[0].elements[1].elements.size(), size_t(count));
  }

  YardRun Yard(std::vector<std::string> args) {
    args.insert(args.begin(), YARD_BIN);
    const std::string err_path =
        dir_ + "/yard-" + std::to_string(++runs_) + ".stderr";
    YardRun run;
    auto p = Process::Spawn(std::move(args), err_path);
    EXPECT_TRUE(p.ok()) << p.status().ToString();
    if (!p.ok()) return run;
    auto out = (*p)->ReadAll(milliseconds(15000));
    run.exit = (*p)->Wait(out ? milliseconds(5000) : milliseconds(100));
    if (!run.exit) (*p)->Kill();
    run.out = out.value_or("");
    run.err = (*p)->Stderr();
    run.json = Json::parse(run.out, nullptr, /*allow_exceptions=*/false);
    return run;
  }
  // `yard queue <sub> --redis URL --json <extra...>`, expected to succeed.
  Json Queue(const std::string& sub, std::vector<std::string> extra = {}) {
    std::vector<std::string> args = {"queue", sub, "--redis", url_, "--json"};
    args.insert(args.end(), extra.begin(), extra.end());
    YardRun run = Yard(args);
    EXPECT_TRUE(run.ExitedWith(0)) << run.Describe();
    EXPECT_TRUE(run.json.is_object()) << run.Describe();
    return run.json;
  }

  // The result bucket of now, minus `age` buckets.
  static int64_t Bucket(int64_t age = 0) {
    const int64_t now = std::chrono::duration_cast<std::chrono::seconds>(
                            std::chrono::system_clock::now().time_since_epoch())
                            .count();
    return now / kResultBucketSeconds - age;
  }
  // Stores `blob` as the result of `id`, as a broker does: a field of the
  // bucket's HASH for the id, the bucket's number listed in resb.
  void StoreBlob(const JobId& id, const std::string& blob, int64_t bucket) {
    Redis({"HSET", keys_.ResultKey(bucket, id), id.ToString(), blob});
    const std::string number = std::to_string(bucket);
    Redis({"ZADD", keys_.result_buckets, number, number});
  }
  void StoreResult(const JobId& id, wire::ResultStatus status,
                   std::string_view output, std::string_view error = "",
                   uint16_t attempt = 1, uint64_t duration_us = 1,
                   int64_t bucket = Bucket()) {
    const std::string blob(AsString(writer_.EncodeResult(
        id, status, AsBytes(output), error, attempt, duration_us)));
    StoreBlob(id, blob, bucket);
  }
  // `yard result ID --redis URL <extra...>`.
  YardRun ResultOf(const JobId& id, std::vector<std::string> extra = {}) {
    std::vector<std::string> args = {"result", id.ToString(), "--redis", url_};
    args.insert(args.end(), extra.begin(), extra.end());
    return Yard(std::move(args));
  }

  // Exit 2 and exactly one line on stderr.
  YardRun ExpectUsageError(std::vector<std::string> args) {
    std::string cmd;
    for (const auto& a : args) cmd += a + " ";
    SCOPED_TRACE("yard " + cmd);
    YardRun run = Yard(std::move(args));
    EXPECT_TRUE(run.ExitedWith(2)) << run.Describe();
    EXPECT_EQ(std::count(run.err.begin(), run.err.end(), '\n'), 1)
        << run.Describe();
    EXPECT_GT(run.err.size(), 1u) << run.Describe();
    return run;
  }

  std::string dir_;
  RedisClient* at_ = nullptr;      // where Redis() sends: admin_ or a shard's
  std::string url_;                // --redis: server_'s, or a cluster's
  QueueKeys keys_{"default"};      // where the helpers write
  std::vector<QueueKeys> shards_;  // ShardQueue
  Writer writer_;
  int runs_ = 0;
};

// Counts are in jobs: a record of several jobs counts as all of them.
TEST_F(CliQueueTest, StatsCountsEveryState) {
  const auto first_claim = std::chrono::steady_clock::now();
  for (int i = 0; i < 3; ++i) AddJob(1, JobId::Random(), "echo", "x");
  AddJob(2, JobId::Random(), "echo", "x");
  Claim(1, 1, "broker-a");
  // Priority 0: a batch of 2 (claimed, so running), then a batch of 3.
  AddBatch(0, {JobId::Random(), JobId::Random()}, "sum");
  AddBatch(0, {JobId::Random(), JobId::Random(), JobId::Random()}, "sum");
  Claim(0, 1, "broker-a");
  AddDelayed(JobId::Random(), 4102444800000);
  AddDead(1, JobId::Random(), "echo", "boom");
  AddDead(0, JobId::Random(), "echo", "boom");
  AddDeadBatch(0, {JobId::Random(), JobId::Random(), JobId::Random()}, "sum",
               "");
  Redis({"HSET", keys_.stats, "submitted", "12", "completed", "2", "queued",
         "10"});
  Redis({"SET", keys_.leader, "token-1"});
  // A broker's registry record (registry/registry.h) with two workers, one of
  // which another broker (whose record expired) also listed.
  Redis({"SET", "{yard}:broker:broker-a",
         R"({"id":"broker-a","queue":"default","frontend":"tcp://h:1",)"
         R"("backend":"tcp://h:2","draining":false,"held":{"ready":1},)"
         R"("workers":[{"name":"w1","capacity":4,"outstanding":3,)"
         R"("tags":["gpu"],"taints":[]},{"name":"w2","capacity":2,)"
         R"("outstanding":0,"tags":[],"taints":[]}]})",
         "PX", "60000"});
  // Records that are not what the layout says are skipped, not trusted.
  Redis({"SET", "{yard}:broker:broker-bad", R"({"queue":5})", "PX", "60000"});
  Redis({"SET", "{yard}:broker:broker-odd",
         R"({"workers":[{"name":"w9","capacity":"lots"}]})", "PX", "60000"});
  Redis({"SET", "{yard}:broker:broker-text", "not json", "PX", "60000"});
  Redis({"SADD", "{yard}:brokers", "broker-a", "broker-gone", "broker-bad",
         "broker-odd", "broker-text"});

  Json j = Queue("stats");
  const int64_t since_first_claim_ms =
      std::chrono::duration_cast<std::chrono::milliseconds>(
          std::chrono::steady_clock::now() - first_claim)
          .count();
  ASSERT_EQ(j["brokers"].size(), 1u) << j.dump();
  EXPECT_EQ(j["brokers"][0]["id"], "broker-a");
  EXPECT_EQ(j["brokers"][0]["frontend"], "tcp://h:1");
  ASSERT_EQ(j["workers"].size(), 2u) << j.dump();
  EXPECT_EQ(j["workers"][0]["name"], "w1");
  EXPECT_EQ(j["workers"][0]["outstanding"], 3);
  EXPECT_EQ(j["workers"][0]["tags"], Json::array({"gpu"}));
  EXPECT_EQ(j["workers"][0]["brokers"], Json::array({"broker-a"}));
  // The expired broker's id left the index.
  EXPECT_EQ(Redis({"SISMEMBER", "{yard}:brokers", "broker-gone"}).integer, 0);
  EXPECT_EQ(j["queue"], "default");
  EXPECT_EQ(j["ready"], 6);    // 2 + 1 singles, a batch of 3
  EXPECT_EQ(j["running"], 3);  // 1 single, a batch of 2
  EXPECT_EQ(j["delayed"], 1);
  EXPECT_EQ(j["dead"], 5);  // 2 singles, a batch of 3
  EXPECT_EQ(j["queued"], 10);
  EXPECT_EQ(j["records"], (Json{{"ready", 4}, {"running", 2}}));
  EXPECT_EQ(j["priorities"]["2"], (Json{{"ready", 1}, {"running", 0}}));
  EXPECT_EQ(j["priorities"]["1"], (Json{{"ready", 2}, {"running", 1}}));
  EXPECT_EQ(j["priorities"]["0"], (Json{{"ready", 3}, {"running", 2}}));
  EXPECT_EQ(j["counters"]["submitted"], 12);
  EXPECT_EQ(j["counters"]["completed"], 2);
  EXPECT_EQ(j["counters"]["queued"], 10);
  EXPECT_EQ(j["counters"]["requeued_dead"], 0);  // missing: 0
  EXPECT_EQ(j["counters"]["undecodable"], 0);
  EXPECT_EQ(j["leader"], "token-1");
  ASSERT_EQ(j["consumers"].size(), 1u) << j.dump();
  EXPECT_EQ(j["consumers"][0]["name"], "broker-a");
  EXPECT_EQ(j["consumers"][0]["pending"], 2);  // leased records
  // Idle since its last claim, which the test made (1 ms for rounding).
  const int64_t idle_ms = j["consumers"][0]["idle_ms"].get<int64_t>();
  EXPECT_GE(idle_ms, 0);
  EXPECT_LE(idle_ms, since_first_claim_ms + 1) << j.dump();

  YardRun text = Yard({"queue", "stats", "--redis", server_->url()});
  EXPECT_TRUE(text.ExitedWith(0)) << text.Describe();
  EXPECT_NE(text.out.find("priority 1"), std::string::npos) << text.out;
  EXPECT_NE(text.out.find("queued 10"), std::string::npos) << text.out;
  EXPECT_NE(text.out.find("broker-a"), std::string::npos) << text.out;
}

// More entries than one page of the full scan (1000): every job is counted,
// none twice.
TEST_F(CliQueueTest, StatsCountsStreamsLongerThanOnePage) {
  const std::string packed = Packed({JobBlob(JobId::Random(), "echo")});
  for (int i = 0; i < 1100; ++i) {
    AddRecord(1, JobId::Random().ToString(), packed);
  }
  Claim(1, 1050, "broker-a");
  AddBatch(1, {JobId::Random(), JobId::Random()}, "sum");

  Json j = Queue("stats");
  EXPECT_EQ(j["ready"], 52);
  EXPECT_EQ(j["running"], 1050);
  EXPECT_EQ(j["records"], (Json{{"ready", 51}, {"running", 1050}}));
}

// A queue no broker has set up reads as empty, and reading creates nothing.
TEST_F(CliQueueTest, StatsOfAQueueNeverSetUpIsEmpty) {
  Json j = Queue("stats", {"--queue", "never-used"});
  EXPECT_EQ(j["queue"], "never-used");
  EXPECT_EQ(j["ready"], 0);
  EXPECT_EQ(j["running"], 0);
  EXPECT_EQ(j["dead"], 0);
  EXPECT_EQ(j["queued"], 0);
  EXPECT_EQ(j["records"], (Json{{"ready", 0}, {"running", 0}}));
  EXPECT_TRUE(j["leader"].is_null());
  EXPECT_EQ(j["consumers"], Json::array());
  EXPECT_EQ(j["counters"]["submitted"], 0);
  EXPECT_EQ(RedisInt({"EXISTS", QueueKeys("never-used").stream[0]}), 0);

  Json jobs = Queue("inspect", {"--queue", "never-used"});
  EXPECT_EQ(jobs["jobs"], Json::array());

  // The flags may come before the subcommand's name too.
  YardRun before = Yard(
      {"queue", "--redis", url_, "--queue", "never-used", "--json", "stats"});
  EXPECT_TRUE(before.ExitedWith(0)) << before.Describe();
  EXPECT_EQ(before.json["queue"], "never-used") << before.Describe();
}

TEST_F(CliQueueTest, InspectListsHighestPriorityFirstWithState) {
  const JobId low = JobId::Random(), high = JobId::Random(),
              leased = JobId::Random(), waiting = JobId::Random(),
              delayed = JobId::Random();
  AddJob(0, low, "low-task", "1");
  AddJob(2, high, "high-task", "12345", "account-7");
  const std::string leased_record = AddJob(1, leased, "mid-task", "12");
  AddJob(1, waiting, "mid-task", "");
  const std::vector<JobId> batch = {JobId::Random(), JobId::Random(),
                                    JobId::Random()};
  const std::string batch_record = AddBatch(1, batch, "batch-task");
  const JobId broken = JobId::Random(), bad_job = JobId::Random();
  AddRecord(1, broken.ToString(), "not a flatbuffer");  // broken framing
  AddRecord(1, bad_job.ToString(), Packed({"not a flatbuffer either"}));
  Claim(1, 1, "broker-a");
  AddDelayed(delayed, 4102444800000);

  Json j = Queue("inspect");
  EXPECT_EQ(j["queue"], "default");
  const Json& jobs = j["jobs"];
  ASSERT_EQ(jobs.size(), 10u) << j.dump();
  EXPECT_EQ(jobs[0]["id"], high.ToString());
  EXPECT_EQ(jobs[0]["priority"], 2);
  EXPECT_EQ(jobs[0]["state"], "ready");
  EXPECT_EQ(jobs[0]["task"], "high-task");
  EXPECT_EQ(jobs[0]["payload_bytes"], 5);
  EXPECT_EQ(jobs[0]["lock_key"], "account-7");
  EXPECT_EQ(jobs[0]["attempt"], 1);
  EXPECT_EQ(jobs[0]["max_attempts"], 3);
  EXPECT_EQ(jobs[0]["broker"], "broker-a");
  EXPECT_EQ(jobs[1]["id"], leased.ToString());
  EXPECT_EQ(jobs[1]["state"], "running");
  EXPECT_EQ(jobs[1]["record"], leased_record);
  EXPECT_TRUE(jobs[1]["lock_key"].is_null());
  EXPECT_EQ(jobs[2]["id"], waiting.ToString());
  EXPECT_EQ(jobs[2]["state"], "ready");
  EXPECT_EQ(jobs[2]["payload_bytes"], 0);
  // One record, three jobs: each with its own id, task, size and attempts.
  for (size_t i = 0; i < batch.size(); ++i) {
    const Json& job = jobs[3 + i];
    EXPECT_EQ(job["id"], batch[i].ToString()) << i;
    EXPECT_EQ(job["record"], batch_record) << i;
    EXPECT_EQ(job["state"], "ready") << i;
    EXPECT_EQ(job["priority"], 1) << i;
    EXPECT_EQ(job["task"], "batch-task") << i;
    EXPECT_EQ(job["payload_bytes"], i + 1) << i;
    EXPECT_EQ(job["attempt"], 0) << i;
    EXPECT_EQ(job["max_attempts"], 5) << i;  // the Job's, not field m
    EXPECT_FALSE(job.contains("error")) << job.dump();
  }
  // Undecodable records: listed once each, under their field j.
  EXPECT_EQ(jobs[6]["id"], broken.ToString());
  EXPECT_EQ(jobs[7]["id"], bad_job.ToString());
  for (const Json& job : {jobs[6], jobs[7]}) {
    EXPECT_TRUE(job["task"].is_null()) << job.dump();
    EXPECT_TRUE(job["payload_bytes"].is_null()) << job.dump();
    EXPECT_TRUE(job["error"].is_string()) << job.dump();
    EXPECT_TRUE(job["record"].is_string()) << job.dump();
  }
  EXPECT_EQ(jobs[8]["id"], low.ToString());
  EXPECT_EQ(jobs[8]["priority"], 0);
  EXPECT_EQ(jobs[9]["id"], delayed.ToString());
  EXPECT_EQ(jobs[9]["state"], "delayed");
  EXPECT_EQ(jobs[9]["due_ms"], 4102444800000);

  Json limited = Queue("inspect", {"--limit", "2"});
  ASSERT_EQ(limited["jobs"].size(), 2u) << limited.dump();
  EXPECT_EQ(limited["jobs"][0]["id"], high.ToString());
  EXPECT_EQ(limited["jobs"][1]["id"], leased.ToString());

  // --limit counts jobs: it can stop inside a record.
  limited = Queue("inspect", {"--limit", "5"});
  ASSERT_EQ(limited["jobs"].size(), 5u) << limited.dump();
  EXPECT_EQ(limited["jobs"][3]["id"], batch[0].ToString());
  EXPECT_EQ(limited["jobs"][4]["id"], batch[1].ToString());
}

TEST_F(CliQueueTest, DeadListsLettersAndTotal) {
  const JobId first = JobId::Random(), broken = JobId::Random();
  const std::vector<JobId> batch = {JobId::Random(), JobId::Random(),
                                    JobId::Random()};
  AddDead(2, first, "sha256", "handler threw");
  AddDead(1, JobId::Random(), "echo", "boom");
  AddDeadBatch(0, batch, "sum", "lease expired 2 times");
  AddDeadRecord(1, Record(broken.ToString(), "0", "0", "", "garbage"),
                "undecodable", "field p is not a list of jobs");

  Json j = Queue("dead", {"--limit", "2"});
  EXPECT_EQ(j["queue"], "default");
  EXPECT_EQ(j["total"], 6);  // jobs: 2 singles, a batch of 3, 1 undecodable
  ASSERT_EQ(j["dead"].size(), 2u) << j.dump();
  const Json& d = j["dead"][0];
  EXPECT_EQ(d["id"], first.ToString());
  EXPECT_EQ(d["why"], "failed");
  EXPECT_EQ(d["error"], "handler threw");
  EXPECT_EQ(d["attempts"], 3);
  EXPECT_EQ(d["expired_leases"], 1);
  EXPECT_EQ(d["priority"], 2);
  EXPECT_EQ(d["task"], "sha256");
  EXPECT_EQ(d["dead_at_ms"], 1234);

  // --limit counts jobs: 3 stops inside the batch.
  j = Queue("dead", {"--limit", "3"});
  ASSERT_EQ(j["dead"].size(), 3u) << j.dump();
  EXPECT_EQ(j["dead"][2]["id"], batch[0].ToString());

  j = Queue("dead");
  ASSERT_EQ(j["dead"].size(), 6u) << j.dump();
  EXPECT_EQ(j["total"], 6);
  for (size_t i = 0; i < batch.size(); ++i) {
    const Json& job = j["dead"][2 + i];
    EXPECT_EQ(job["id"], batch[i].ToString()) << i;
    EXPECT_EQ(job["record"], j["dead"][2]["record"]) << i;
    EXPECT_EQ(job["task"], "sum") << i;
    EXPECT_EQ(job["why"], "lease-expired") << i;
    EXPECT_EQ(job["error"], "lease expired 2 times") << i;
    EXPECT_EQ(job["priority"], 0) << i;
    EXPECT_EQ(job["expired_leases"], 2) << i;
  }
  EXPECT_NE(j["dead"][1]["record"], j["dead"][2]["record"]);
  // An undecodable dead letter: once, its own error kept.
  const Json& bad = j["dead"][5];
  EXPECT_EQ(bad["id"], broken.ToString());
  EXPECT_TRUE(bad["task"].is_null()) << bad.dump();
  EXPECT_EQ(bad["error"], "field p is not a list of jobs");
  EXPECT_TRUE(bad["decode_error"].is_string()) << bad.dump();

  YardRun text = Yard({"queue", "dead", "--redis", server_->url()});
  EXPECT_TRUE(text.ExitedWith(0)) << text.Describe();
  EXPECT_NE(text.out.find(batch[2].ToString()), std::string::npos) << text.out;
  EXPECT_NE(text.out.find("6 of 6"), std::string::npos) << text.out;
}

// requeue-dead counts dead letters (records); the counter counts jobs.
TEST_F(CliQueueTest, RequeueDeadMovesLettersBackUpToTheLimit) {
  AddDead(2, JobId::Random(), "echo", "boom");
  AddDead(1, JobId::Random(), "echo", "boom");
  AddDeadBatch(1, {JobId::Random(), JobId::Random(), JobId::Random()}, "sum",
               "boom");

  EXPECT_EQ(Queue("requeue-dead", {"--limit", "2"})["requeued"], 2);
  EXPECT_EQ(RedisInt({"XLEN", keys_.dead}), 1);
  EXPECT_EQ(RedisInt({"XLEN", keys_.stream[2]}), 1);
  EXPECT_EQ(RedisInt({"XLEN", keys_.stream[1]}), 1);

  EXPECT_EQ(Queue("requeue-dead")["requeued"], 1);
  EXPECT_EQ(RedisInt({"XLEN", keys_.dead}), 0);
  EXPECT_EQ(RedisInt({"XLEN", keys_.stream[1]}), 2);
  EXPECT_EQ(Queue("requeue-dead")["requeued"], 0);

  // Back with fresh attempt counts, and counted.
  RedisReply entry = Redis({"XRANGE", keys_.stream[2], "-", "+"});
  ASSERT_EQ(entry.elements.size(), 1u);
  EXPECT_EQ(entry.elements[0].elements[1].elements[3].str, "0");  // a
  EXPECT_EQ(Redis({"HGET", keys_.stats, "requeued_dead"}).str, "5");
  Json stats = Queue("stats");
  EXPECT_EQ(stats["ready"], 5);
  EXPECT_EQ(stats["dead"], 0);
  EXPECT_EQ(Queue("inspect")["jobs"].size(), 5u);
}

TEST_F(CliQueueTest, PurgeRemovesWaitingJobsButNotRunningOnes) {
  AddJob(1, JobId::Random(), "echo", "x");
  AddJob(1, JobId::Random(), "echo", "x");
  AddBatch(1, {JobId::Random(), JobId::Random(), JobId::Random()}, "sum");
  AddJob(2, JobId::Random(), "echo", "x");
  Claim(2, 1, "broker-a");
  AddDelayed(JobId::Random(), 4102444800000);
  AddDead(1, JobId::Random(), "echo", "boom");

  Json j = Queue("purge");
  EXPECT_EQ(j["queue"], "default");
  EXPECT_EQ(j["purged"], 6);  // jobs: two ready, a ready batch of 3, delayed
  EXPECT_EQ(RedisInt({"XLEN", keys_.stream[1]}), 0);
  EXPECT_EQ(RedisInt({"XLEN", keys_.stream[2]}), 1);  // the running one
  EXPECT_EQ(
      Redis({"XPENDING", keys_.stream[2], kRedisGroup}).elements[0].integer, 1);
  EXPECT_EQ(RedisInt({"ZCARD", keys_.delayed}), 0);
  EXPECT_EQ(RedisInt({"HLEN", keys_.delayed_jobs}), 0);
  EXPECT_EQ(RedisInt({"XLEN", keys_.dead}), 1);  // dead letters stay

  // A repair leaves one audit line on stderr, the JSON on stdout clean.
  YardRun purge = Yard({"queue", "purge", "--dead", "--redis", url_, "--json"});
  ASSERT_TRUE(purge.ExitedWith(0)) << purge.Describe();
  EXPECT_EQ(purge.json["purged"], 1);
  EXPECT_NE(purge.err.find("audit {\"event\":\"admin_purge\""),
            std::string::npos)
      << purge.Describe();
  EXPECT_NE(purge.err.find("\"purged\":1"), std::string::npos)
      << purge.Describe();
  EXPECT_EQ(RedisInt({"EXISTS", keys_.dead}), 0);
  EXPECT_EQ(RedisInt({"XLEN", keys_.stream[2]}), 1);
}

TEST_F(CliQueueTest, ResultPrintsTheStoredResult) {
  const JobId text = JobId::Random(), binary = JobId::Random();
  StoreResult(text, wire::ResultStatus::Ok, "hello", "", 2, 1500);
  // An older bucket (finished minutes ago) is searched too.
  StoreResult(binary, wire::ResultStatus::Failed,
              std::string("\xff\x00\x01", 3), "boom", 3, 7, Bucket(3));

  YardRun run = ResultOf(text, {"--json"});
  ASSERT_TRUE(run.ExitedWith(0)) << run.Describe();
  EXPECT_EQ(run.json["id"], text.ToString());
  EXPECT_EQ(run.json["status"], "Ok");
  EXPECT_EQ(run.json["output"], "hello");
  EXPECT_TRUE(run.json["error"].is_null()) << run.out;
  EXPECT_EQ(run.json["attempt"], 2);
  EXPECT_EQ(run.json["duration_us"], 1500);

  run = ResultOf(binary, {"--json"});
  ASSERT_TRUE(run.ExitedWith(0)) << run.Describe();
  EXPECT_EQ(run.json["status"], "Failed");
  EXPECT_EQ(run.json["output_base64"], "/wAB");
  EXPECT_FALSE(run.json.contains("output")) << run.out;
  EXPECT_EQ(run.json["error"], "boom");

  run = ResultOf(text);
  ASSERT_TRUE(run.ExitedWith(0)) << run.Describe();
  EXPECT_NE(run.out.find("hello"), std::string::npos) << run.Describe();
}

TEST_F(CliQueueTest, ResultMissingOrUnreadableExitsOne) {
  const JobId id = JobId::Random();
  YardRun run = ResultOf(id, {"--json"});
  EXPECT_TRUE(run.ExitedWith(1)) << run.Describe();
  EXPECT_NE(run.err.find("no result for " + id.ToString()), std::string::npos)
      << run.Describe();
  EXPECT_EQ(run.json, (Json{{"found", false}, {"id", id.ToString()}}))
      << run.Describe();
  run = ResultOf(id);
  EXPECT_TRUE(run.ExitedWith(1)) << run.Describe();
  EXPECT_TRUE(run.out.empty()) << run.Describe();

  // Results are per queue: the one stored under "default" is not in "other".
  StoreResult(id, wire::ResultStatus::Ok, "x");
  EXPECT_TRUE(ResultOf(id).ExitedWith(0));
  run = ResultOf(id, {"--queue", "other"});
  EXPECT_TRUE(run.ExitedWith(1)) << run.Describe();

  StoreBlob(id, "not a flatbuffer", Bucket());
  run = ResultOf(id);
  EXPECT_TRUE(run.ExitedWith(1)) << run.Describe();
  EXPECT_NE(run.err.find("not a valid"), std::string::npos) << run.Describe();
}

// ---- Sharded queues: every shard is read and changed, the answers add up.

// A record of the old one-shard layout ({jq:default}) that a sharded queue
// does not use: the tools must not count it.
TEST_F(CliQueueTest, StatsOfAShardedQueueAddUpEveryShard) {
  AddJob(1, JobId::Random(), "stale", "x");  // {jq:default}, not a shard
  ShardQueue(3);
  // Shard 0: two ready jobs at priority 1, one of them leased.
  AddJob(1, JobId::Random(), "echo", "x");
  AddJob(1, JobId::Random(), "echo", "x");
  Claim(1, 1, "broker-a");
  Redis({"HSET", keys_.stats, "submitted", "5", "queued", "2"});
  // Shard 1: a leased batch of 3 at priority 0, a delayed job, a dead job,
  // and the only leader.
  UseShard(1);
  AddBatch(0, {JobId::Random(), JobId::Random(), JobId::Random()}, "sum");
  Claim(0, 1, "broker-a");
  AddDelayed(JobId::Random(), 4102444800000);
  AddDead(1, JobId::Random(), "echo", "boom");
  Redis(
      {"HSET", keys_.stats, "submitted", "4", "completed", "1", "queued", "3"});
  Redis({"SET", keys_.leader, "token-1"});
  // Shard 2: a ready job at priority 2, a dead batch of 3, another broker.
  UseShard(2);
  AddJob(2, JobId::Random(), "echo", "x");
  AddDeadBatch(0, {JobId::Random(), JobId::Random(), JobId::Random()}, "sum",
               "");
  Claim(2, 1, "broker-b");
  AddJob(2, JobId::Random(), "echo", "x");
  Redis({"HSET", keys_.stats, "submitted", "2", "queued", "1"});
  // The registry is in the "{yard}" slot (the same server here).
  Redis({"SET", "{yard}:broker:broker-a",
         R"({"id":"broker-a","queue":"default","frontend":"tcp://h:1",)"
         R"("backend":"tcp://h:2","draining":false,"held":{},"workers":[]})",
         "PX", "60000"});
  Redis({"SADD", "{yard}:brokers", "broker-a"});

  Json j = Queue("stats");
  EXPECT_EQ(j["queue"], "default");
  // The sums over the shards (ready: shard 0's and 2's; running: one in
  // shard 0, a batch of 3 in shard 1, one in shard 2; dead: one in shard 1,
  // a batch of 3 in shard 2).
  const Json sums = {{"ready", 2},
                     {"running", 5},
                     {"delayed", 1},
                     {"dead", 4},
                     {"queued", 6},
                     {"records", {{"ready", 2}, {"running", 3}}},
                     {"priorities",
                      {{"0", {{"ready", 0}, {"running", 3}}},
                       {"1", {{"ready", 1}, {"running", 1}}},
                       {"2", {{"ready", 1}, {"running", 1}}}}}};
  for (const auto& [key, value] : sums.items()) {
    EXPECT_EQ(j[key], value) << key;
  }
  EXPECT_EQ(j["counters"]["submitted"], 11);
  EXPECT_EQ(j["counters"]["completed"], 1);
  EXPECT_EQ(j["counters"]["queued"], 6);
  EXPECT_EQ(j["counters"]["dead"], 0);
  EXPECT_EQ(j["leader"], "token-1");
  // One row per broker, whichever shards it leases from.
  ASSERT_EQ(j["consumers"].size(), 2u) << j.dump();
  EXPECT_EQ(j["consumers"][0]["name"], "broker-a");
  EXPECT_EQ(j["consumers"][0]["pending"], 2);  // one record in shards 0, 1
  EXPECT_EQ(j["consumers"][1]["name"], "broker-b");
  EXPECT_EQ(j["consumers"][1]["pending"], 1);
  ASSERT_EQ(j["brokers"].size(), 1u) << j.dump();
  EXPECT_EQ(j["brokers"][0]["id"], "broker-a");
  EXPECT_EQ(j["workers"], Json::array());
  // Each shard's own numbers.
  ASSERT_EQ(j["shards"].size(), 3u) << j.dump();
  for (size_t k = 0; k < 3; ++k) {
    EXPECT_EQ(j["shards"][k]["shard"], k);
    EXPECT_EQ(j["shards"][k]["tag"], shards_[k].tag);
  }
  EXPECT_EQ(j["shards"][0]["ready"], 1);
  EXPECT_EQ(j["shards"][0]["running"], 1);
  EXPECT_TRUE(j["shards"][0]["leader"].is_null()) << j.dump();
  EXPECT_EQ(j["shards"][1]["running"], 3);
  EXPECT_EQ(j["shards"][1]["delayed"], 1);
  EXPECT_EQ(j["shards"][1]["leader"], "token-1");
  EXPECT_EQ(j["shards"][2]["dead"], 3);
  EXPECT_EQ(j["shards"][2]["queued"], 1);

  YardRun text = Yard({"queue", "stats", "--redis", url_});
  EXPECT_TRUE(text.ExitedWith(0)) << text.Describe();
  EXPECT_NE(text.out.find("queued 6  leader token-1"), std::string::npos)
      << text.out;
  EXPECT_NE(text.out.find("shards: 3"), std::string::npos) << text.out;
  EXPECT_NE(text.out.find(shards_[2].tag), std::string::npos) << text.out;
}

// The lists concatenate shard by shard, --limit for all of them; each line
// says its shard.
TEST_F(CliQueueTest, InspectAndDeadOfAShardedQueueListEveryShard) {
  ShardQueue(3);
  const JobId first = JobId::Random(), second = JobId::Random(),
              dead_single = JobId::Random();
  const std::vector<JobId> dead_batch = {JobId::Random(), JobId::Random(),
                                         JobId::Random()};
  AddJob(0, first, "low", "1");
  AddDead(1, dead_single, "echo", "boom");
  UseShard(2);
  AddJob(2, second, "high", "12");
  AddDeadBatch(0, dead_batch, "sum", "expired");

  Json j = Queue("inspect");
  ASSERT_EQ(j["jobs"].size(), 2u) << j.dump();
  EXPECT_EQ(j["jobs"][0]["id"], first.ToString());
  EXPECT_EQ(j["jobs"][0]["shard"], 0);
  EXPECT_EQ(j["jobs"][1]["id"], second.ToString());
  EXPECT_EQ(j["jobs"][1]["task"], "high");
  EXPECT_EQ(j["jobs"][1]["shard"], 2);
  j = Queue("inspect", {"--limit", "1"});
  ASSERT_EQ(j["jobs"].size(), 1u) << j.dump();
  EXPECT_EQ(j["jobs"][0]["id"], first.ToString());

  j = Queue("dead", {"--limit", "3"});
  EXPECT_EQ(j["total"], 4);
  ASSERT_EQ(j["dead"].size(), 3u) << j.dump();
  EXPECT_EQ(j["dead"][0]["id"], dead_single.ToString());
  EXPECT_EQ(j["dead"][0]["shard"], 0);
  EXPECT_EQ(j["dead"][1]["id"], dead_batch[0].ToString());
  EXPECT_EQ(j["dead"][1]["shard"], 2);
  EXPECT_EQ(j["dead"][2]["id"], dead_batch[1].ToString());
  // A limit reached in shard 0 still counts every shard's dead jobs.
  j = Queue("dead", {"--limit", "1"});
  EXPECT_EQ(j["total"], 4);
  ASSERT_EQ(j["dead"].size(), 1u) << j.dump();

  YardRun text = Yard({"queue", "dead", "--redis", url_});
  EXPECT_TRUE(text.ExitedWith(0)) << text.Describe();
  EXPECT_NE(text.out.find(dead_batch[2].ToString()), std::string::npos)
      << text.out;
  EXPECT_NE(text.out.find("4 of 4"), std::string::npos) << text.out;
}

TEST_F(CliQueueTest, RequeueAndPurgeOfAShardedQueueActOnEveryShard) {
  ShardQueue(3);
  AddDead(2, JobId::Random(), "echo", "boom");
  AddDead(1, JobId::Random(), "echo", "boom");
  UseShard(1);
  AddDead(1, JobId::Random(), "echo", "boom");
  AddDelayed(JobId::Random(), 4102444800000);
  UseShard(2);
  AddDeadBatch(0, {JobId::Random(), JobId::Random(), JobId::Random()}, "sum",
               "boom");
  const auto dead_in = [&](size_t k) {
    return RedisInt({"XLEN", shards_[k].dead});
  };

  // --limit is for all shards: shard 0's two, then shard 1's one.
  EXPECT_EQ(Queue("requeue-dead", {"--limit", "3"})["requeued"], 3);
  EXPECT_EQ(dead_in(0), 0);
  EXPECT_EQ(dead_in(1), 0);
  EXPECT_EQ(dead_in(2), 1);
  EXPECT_EQ(Queue("requeue-dead")["requeued"], 1);
  EXPECT_EQ(dead_in(2), 0);
  EXPECT_EQ(RedisInt({"XLEN", shards_[2].stream[0]}), 1);
  Json stats = Queue("stats");
  EXPECT_EQ(stats["ready"], 6);  // 2 + 1 singles, a batch of 3
  EXPECT_EQ(stats["dead"], 0);
  EXPECT_EQ(stats["counters"]["requeued_dead"], 6);

  AddDead(1, JobId::Random(), "echo", "again");
  UseShard(0);
  AddDead(1, JobId::Random(), "echo", "again");
  Json j = Queue("purge");
  EXPECT_EQ(j["queue"], "default");
  EXPECT_EQ(j["purged"], 7);  // 6 ready, shard 1's delayed job
  for (size_t k = 0; k < 3; ++k) {
    for (int p = 0; p < kRedisPriorities; ++p) {
      EXPECT_EQ(RedisInt({"XLEN", shards_[k].stream[p]}), 0) << k << " " << p;
    }
  }
  EXPECT_EQ(RedisInt({"ZCARD", shards_[1].delayed}), 0);
  YardRun text = Yard({"queue", "purge", "--dead", "--redis", url_});
  EXPECT_TRUE(text.ExitedWith(0)) << text.Describe();
  EXPECT_NE(text.out.find("purged 2 dead letters in queue default"),
            std::string::npos)
      << text.Describe();
  EXPECT_EQ(dead_in(0) + dead_in(2), 0);
}

TEST_F(CliQueueTest, ResultOfAShardedQueueIsFoundInAnyShard) {
  const JobId in_shard_2 = JobId::Random(), unsharded = JobId::Random();
  StoreResult(unsharded, wire::ResultStatus::Ok, "old layout");
  ShardQueue(3);
  UseShard(2);
  StoreResult(in_shard_2, wire::ResultStatus::Ok, "from shard 2", "", 2);

  YardRun run = ResultOf(in_shard_2, {"--json"});
  ASSERT_TRUE(run.ExitedWith(0)) << run.Describe();
  EXPECT_EQ(run.json["id"], in_shard_2.ToString());
  EXPECT_EQ(run.json["output"], "from shard 2");
  EXPECT_EQ(run.json["attempt"], 2);
  // The one-shard layout is not one of the shards.
  run = ResultOf(unsharded);
  EXPECT_TRUE(run.ExitedWith(1)) << run.Describe();
  EXPECT_NE(run.err.find("no result for"), std::string::npos) << run.Describe();
  // A stored count that is not one is refused.
  Redis({"SET", ShardCountKey("default"), "many"});
  ExpectUsageError({"result", in_shard_2.ToString(), "--redis", url_});
  ExpectUsageError({"queue", "stats", "--redis", url_});
}

// The real broker with --redis-shards: what it stores, the tools find.
TEST_F(CliQueueTest, StatsReadWhatAShardedBrokerWrote) {
  auto yard = [&](const std::string& name, std::vector<std::string> args) {
    args.insert(args.begin(), YARD_BIN);
    auto p = Process::Spawn(std::move(args), dir_ + "/" + name + ".stderr");
    EXPECT_TRUE(p.ok()) << p.status().ToString();
    return p.ok() ? std::move(p).value() : nullptr;
  };
  auto broker = yard(
      "broker", {"broker", "--frontend", "tcp://127.0.0.1:*", "--backend",
                 "tcp://127.0.0.1:*", "--redis", url_, "--redis-shards", "3"});
  ASSERT_TRUE(broker);
  const std::optional<std::string> ready =
      broker->ReadLine(milliseconds(10000));
  ASSERT_TRUE(ready) << broker->Stderr();
  // "yard broker ready frontend=EP backend=EP"
  const size_t f = ready->find("frontend="), b = ready->find(" backend=");
  ASSERT_TRUE(f != std::string::npos && b != std::string::npos) << *ready;
  const std::string frontend = ready->substr(f + 9, b - f - 9);
  const std::string backend = ready->substr(b + 9);
  auto worker =
      yard("worker", {"worker", "--connect", backend, "--concurrency", "4"});
  ASSERT_TRUE(worker);
  auto push =
      yard("push", {"push", "--connect", frontend, "--task", "echo", "--count",
                    "300", "--size", "8", "--json", "--print-ids"});
  ASSERT_TRUE(push);
  const std::optional<std::string> report = push->ReadAll(milliseconds(30000));
  ASSERT_TRUE(report) << push->Stderr();
  const std::optional<ExitInfo> pushed = push->Wait(milliseconds(5000));
  ASSERT_TRUE(pushed && pushed->ExitedWith(0)) << *report << push->Stderr();
  // Each id push printed has a result to look up, in whichever shard.
  const Json ids = Json::parse(*report, nullptr, false)["ids"];
  ASSERT_EQ(ids.size(), 300u) << *report;
  YardRun result =
      ResultOf(*JobId::Parse(ids[299].get<std::string>()), {"--json"});
  EXPECT_TRUE(result.ExitedWith(0)) << result.Describe();
  EXPECT_EQ(result.json["found"], true) << result.Describe();
  EXPECT_EQ(result.json["status"], "Ok") << result.Describe();

  // The producer hears a result before the broker's counters reach Redis
  // (the next write batch): wait for them a little.
  Json j;
  for (int i = 0; i < 50; ++i) {
    j = Queue("stats");
    if (j["counters"]["completed"] == 300) break;
    std::this_thread::sleep_for(milliseconds(100));
  }
  EXPECT_EQ(j["counters"]["submitted"], 300) << j.dump();
  EXPECT_EQ(j["counters"]["completed"], 300) << j.dump();
  EXPECT_EQ(j["ready"], 0);
  ASSERT_EQ(j["shards"].size(), 3u) << j.dump();
  // One broker, one consumer name on all three shards.
  EXPECT_EQ(j["consumers"].size(), 1u) << j.dump();
  ASSERT_EQ(j["brokers"].size(), 1u) << j.dump();
  EXPECT_EQ(j["brokers"][0]["frontend"], frontend);
  // Not the one-shard layout.
  EXPECT_EQ(RedisInt({"EXISTS", QueueKeys("default").stats}), 0);
}

// On a Redis Cluster each shard is read on the primary serving its slot,
// the registry and the shard count in the "{yard}" slot.
TEST_F(CliQueueTest, StatsAndResultOfAShardedQueueOnACluster) {
  auto cluster = RedisCluster::Create(3);
  ASSERT_TRUE(cluster.ok()) << cluster.status().ToString();
  Result<RedisTarget> target = ParseRedisTarget((*cluster)->url());
  ASSERT_TRUE(target.ok()) << target.status().ToString();
  // A connection to the primary serving `key`'s slot.
  auto connect = [&](const std::string& key) -> std::unique_ptr<RedisClient> {
    RedisTarget t = *target;
    t.key = key;
    auto c = ConnectRedisTarget(t, 5000);
    EXPECT_TRUE(c.ok()) << c.status().ToString();
    return c.ok() ? std::move(c).value() : nullptr;
  };
  std::unique_ptr<RedisClient> registry = connect("{yard}");
  ASSERT_TRUE(registry);
  ASSERT_TRUE(
      RedisCall(*registry, {"SET", ShardCountKey("default"), "3"}).ok());
  ASSERT_TRUE(RedisCall(*registry, {"SET", "{yard}:broker:broker-a",
                                    R"({"id":"broker-a","queue":"default",)"
                                    R"("frontend":"tcp://h:1","workers":[]})",
                                    "PX", "60000"})
                  .ok());
  ASSERT_TRUE(
      RedisCall(*registry, {"SADD", "{yard}:brokers", "broker-a"}).ok());
  shards_ = ShardKeys("default", 3);
  std::vector<std::unique_ptr<RedisClient>> at;
  std::vector<size_t> owners;
  for (size_t k = 0; k < 3; ++k) {
    at.push_back(connect(shards_[k].prefix));
    ASSERT_TRUE(at.back());
    ASSERT_TRUE(EnsureQueue(*at.back(), shards_[k]).ok());
    auto owner = (*cluster)->Owner(KeySlot(shards_[k].tag));
    ASSERT_TRUE(owner.ok()) << owner.status().ToString();
    owners.push_back(*owner);
    UseShard(k, at.back().get());
    for (size_t i = 0; i <= k; ++i) AddJob(1, JobId::Random(), "echo", "x");
  }
  // The shards are on three different primaries.
  EXPECT_EQ(std::set<size_t>(owners.begin(), owners.end()).size(), 3u);
  const JobId id = JobId::Random();
  StoreResult(id, wire::ResultStatus::Ok, "from the cluster");  // shard 2
  url_ = (*cluster)->url();

  Json j = Queue("stats");
  EXPECT_EQ(j["ready"], 6);  // 1 + 2 + 3
  ASSERT_EQ(j["shards"].size(), 3u) << j.dump();
  EXPECT_EQ(j["shards"][2]["ready"], 3);
  ASSERT_EQ(j["brokers"].size(), 1u) << j.dump();
  EXPECT_EQ(j["brokers"][0]["id"], "broker-a");
  YardRun run = ResultOf(id, {"--json"});
  ASSERT_TRUE(run.ExitedWith(0)) << run.Describe();
  EXPECT_EQ(run.json["output"], "from the cluster");
}

TEST_F(CliQueueTest, BadFlagsExitTwo) {
  const std::string url = server_->url();
  ExpectUsageError({"result", "not-a-job-id", "--redis", url});
  ExpectUsageError({"result", std::string(31, 'a'), "--redis", url});
  ExpectUsageError({"result", JobId::Random().ToString()});  // no --redis
  ExpectUsageError({"queue", "stats"});                      // no --redis
  ExpectUsageError({"queue", "--redis", url});               // no subcommand
  ExpectUsageError({"queue", "nonsense", "--redis", url});
  ExpectUsageError({"queue", "stats", "--redis", "localhost:6379"});
  ExpectUsageError({"queue", "stats", "--redis", url, "--queue", "a b"});
  ExpectUsageError({"queue", "inspect", "--redis", url, "--limit", "0"});
  ExpectUsageError({"queue", "requeue-dead", "--redis", url, "--limit", "x"});
  ExpectUsageError({"queue", "stats", "--redis", url, "--dead"});
}

TEST_F(CliQueueTest, UnreachableRedisExitsTwo) {
  Result<uint16_t> port = PickFreeLoopbackPort();
  ASSERT_TRUE(port.ok()) << port.status().ToString();
  const std::string url = "redis://127.0.0.1:" + std::to_string(*port);
  for (std::vector<std::string> args :
       {std::vector<std::string>{"queue", "stats", "--redis", url},
        std::vector<std::string>{"queue", "purge", "--redis", url},
        std::vector<std::string>{"result", JobId::Random().ToString(),
                                 "--redis", url}}) {
    YardRun run = ExpectUsageError(args);
    EXPECT_NE(run.err.find("cannot reach Redis at " + url), std::string::npos)
        << run.Describe();
  }
}

TEST_F(CliQueueTest, HelpExitsZero) {
  for (const auto& [args, flag] :
       std::vector<std::pair<std::vector<std::string>, std::string>>{
           {{"queue", "--help"}, "requeue-dead"},
           {{"queue", "purge", "--help"}, "--dead"},
           {{"queue", "inspect", "--help"}, "--limit"},
           {{"result", "--help"}, "JOB_ID"}}) {
    YardRun run = Yard(args);
    EXPECT_TRUE(run.ExitedWith(0)) << run.Describe();
    EXPECT_NE(run.out.find(flag), std::string::npos) << run.Describe();
  }
}

}  // namespace
}  // namespace yard
