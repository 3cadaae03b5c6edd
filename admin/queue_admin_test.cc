// The queue administration library (admin/queue_admin.h) against a real
// redis-server holding what brokers put there: the durable queue
// (queue/queue_events.h) pushes, leases, fails and finishes jobs, and the test
// checks each verb's answer and what it changed.
#include "admin/queue_admin.h"

#include <gtest/gtest.h>

#include <chrono>
#include <csignal>
#include <functional>
#include <memory>
#include <nlohmann/json.hpp>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include "common/clock.h"
#include "queue/job_queue.h"
#include "queue/queue_events.h"
#include "queue/redis_layout.h"
#include "registry/registry.h"
#include "testing/queue_driver.h"
#include "testing/redis_fixture.h"
#include "testing/redis_server.h"

namespace yard {
namespace {

using admin::Json;

// hiredis writes with write(2) (admin/queue_admin.h).
const bool kSigpipeIgnored = [] {
  std::signal(SIGPIPE, SIG_IGN);
  return true;
}();

constexpr int64_t kHourMs = 3'600'000;

class QueueAdminTest : public RedisFixture {
 protected:
  std::unique_ptr<TestBroker> StartBroker(const std::string& name,
                                          int shards = 0) {
    return StartTestBroker(server_->url(), name, shards);
  }

  // A JobResult blob (kept alive until the test ends).
  Bytes ResultBlob(const JobId& id, wire::ResultStatus status,
                   std::string_view output, std::string_view error) {
    results_.emplace_back(AsString(
        writer_.EncodeResult(id, status, AsBytes(output), error, 1, 42)));
    return AsBytes(results_.back());
  }

  // Runs one command; a failure is a test failure and a nil reply.
  RedisReply Redis(std::vector<std::string> args) {
    auto r = RedisCall(*admin_, std::move(args));
    EXPECT_TRUE(r.ok()) << r.status().ToString();
    return r.ok() ? std::move(r).value() : RedisReply{};
  }
  int64_t RedisInt(std::vector<std::string> args) {
    return Redis(std::move(args)).integer;
  }

  admin::QueueConnection Connect() {
    auto q = admin::ConnectQueue(server_->url(), "default");
    EXPECT_TRUE(q.ok()) << q.status().ToString();
    return q.ok() ? std::move(q).value() : admin::QueueConnection{};
  }

  // The queue "default" as two brokers leave it:
  //   broker-a (gone) leased the record {leased_[0], leased_[1]}
  //     (priority 1), failed delayed_ (retry in an hour) and dead_ (no
  //     attempts left: a dead letter), and finished finished_ (binary
  //     output, its result stored);
  //   broker-b (registered, with one worker "w1") accepted ready_[0]
  //     (priority 0) and the record {ready_[1], ready_[2]} (priority 2),
  //     and claims nothing.
  void Fill() {
    auto a = StartBroker("broker-a");
    ASSERT_NE(a, nullptr);
    a->want = 64;
    PushJobs(*a, {leased_[0], leased_[1]});
    PushJobs(*a, {delayed_});
    PushJobs(*a, {dead_});
    PushJobs(*a, {finished_});
    ASSERT_TRUE(PumpQueue(*a, [&] { return a->claimed.size() == 5; }));
    fail_at_ms_ = UnixMillis() + kHourMs;
    a->queue->Fail(
        delayed_.id, fail_at_ms_,
        ResultBlob(delayed_.id, wire::ResultStatus::Failed, "", "later"));
    a->queue->Fail(
        dead_.id, 0,
        ResultBlob(dead_.id, wire::ResultStatus::Failed, "", "boom"));
    a->queue->Complete(finished_.id,
                       ResultBlob(finished_.id, wire::ResultStatus::Ok,
                                  std::string("\xff\x00z", 3), ""));
    const QueueKeys keys("default");
    ASSERT_TRUE(PumpQueue(*a, [&] {
      return RedisInt({"ZCARD", keys.delayed}) == 1 &&
             RedisInt({"XLEN", keys.dead}) == 1 &&
             RedisInt({"XLEN", keys.stream[0]}) == 0;
    }));
    // Gone, so that its claims (one may be blocked in Redis) take no more.
    a.reset();

    auto b = StartBroker("broker-b");
    ASSERT_NE(b, nullptr);
    PushJobs(*b, {ready_[0]});
    PushJobs(*b, {ready_[1], ready_[2]});
    nlohmann::json worker = {{"name", "w1"},
                             {"capacity", 4},
                             {"outstanding", 2},
                             {"tags", nlohmann::json::array({"gpu"})},
                             {"taints", nlohmann::json::array()}};
    b->queue->Advertise({{"frontend", "tcp://127.0.0.1:5555"},
                         {"backend", "tcp://127.0.0.1:5556"},
                         {"draining", false},
                         {"workers", nlohmann::json::array({worker})}});
    ASSERT_TRUE(PumpQueue(*b, [&] {
      auto r = RedisCall(*admin_, {"GET", RegistryKey("broker-b")});
      return r.ok() && r->str.find("w1") != std::string::npos;
    }));
    broker_b_ = std::move(b);
  }

  Writer writer_;
  std::vector<std::string> results_;
  std::unique_ptr<TestBroker> broker_b_;

  TestJob leased_[2];
  TestJob delayed_{.priority = 2};
  TestJob dead_{.max_attempts = 1, .task = "fail"};
  TestJob finished_{.priority = 0};
  TestJob ready_[3] = {{.priority = 0}, {.priority = 2}, {.priority = 2}};
  int64_t fail_at_ms_ = 0;
};

// The ids of a list's lines, in order.
std::vector<std::string> Ids(const Json& lines) {
  std::vector<std::string> out;
  for (const Json& line : lines) out.push_back(line["id"].get<std::string>());
  return out;
}

TEST_F(QueueAdminTest, StatsCountEveryStateByPriority) {
  ASSERT_NO_FATAL_FAILURE(Fill());
  admin::QueueConnection q = Connect();
  Result<Json> stats = admin::QueueStats(q);
  ASSERT_TRUE(stats.ok()) << stats.status().ToString();
  const Json& s = *stats;
  EXPECT_EQ(s["queue"], "default");
  EXPECT_EQ(s["ready"], 3);
  EXPECT_EQ(s["running"], 2);
  EXPECT_EQ(s["delayed"], 1);
  EXPECT_EQ(s["dead"], 1);
  EXPECT_EQ(s["records"], (Json{{"ready", 2}, {"running", 1}}));
  EXPECT_EQ(s["priorities"]["0"], (Json{{"ready", 1}, {"running", 0}}));
  EXPECT_EQ(s["priorities"]["1"], (Json{{"ready", 0}, {"running", 2}}));
  EXPECT_EQ(s["priorities"]["2"], (Json{{"ready", 2}, {"running", 0}}));
  EXPECT_EQ(s["counters"]["submitted"], 8);
  EXPECT_EQ(s["counters"]["completed"], 1);
  EXPECT_EQ(s["counters"]["dead"], 1);
  EXPECT_EQ(s["counters"]["retried"], 1);
  EXPECT_TRUE(s["leader"].is_string()) << s.dump();

  // The brokers as consumers: broker-a still holds its lease.
  int64_t pending_a = -1;
  for (const Json& c : s["consumers"]) {
    if (c["name"] == "broker-a") pending_a = c["pending"].get<int64_t>();
    EXPECT_FALSE(c["name"].get<std::string>().starts_with("__"));
  }
  EXPECT_EQ(pending_a, 1) << s["consumers"].dump();
  // The registry: broker-b (broker-a left it when it stopped) and its worker.
  ASSERT_EQ(s["brokers"].size(), 1u) << s["brokers"].dump();
  EXPECT_EQ(s["brokers"][0]["id"], "broker-b");
  EXPECT_EQ(s["brokers"][0]["frontend"], "tcp://127.0.0.1:5555");
  ASSERT_EQ(s["workers"].size(), 1u);
  EXPECT_EQ(s["workers"][0]["name"], "w1");
  EXPECT_EQ(s["workers"][0]["capacity"], 4);
  EXPECT_EQ(s["workers"][0]["outstanding"], 2);
  EXPECT_EQ(s["workers"][0]["brokers"], Json::array({"broker-b"}));
  // One shard, with the same numbers.
  ASSERT_EQ(s["shards"].size(), 1u);
  EXPECT_EQ(s["shards"][0]["shard"], 0);
  EXPECT_EQ(s["shards"][0]["tag"], "jq:default");
  EXPECT_EQ(s["shards"][0]["ready"], 3);
  EXPECT_EQ(s["shards"][0]["dead"], 1);
}

TEST_F(QueueAdminTest, InspectListsReadyAndRunningByPriorityThenDelayed) {
  ASSERT_NO_FATAL_FAILURE(Fill());
  admin::QueueConnection q = Connect();
  Result<Json> all = admin::InspectJobs(q, 20);
  ASSERT_TRUE(all.ok()) << all.status().ToString();
  const Json& jobs = (*all)["jobs"];
  EXPECT_EQ(Ids(jobs), (std::vector<std::string>{
                           ready_[1].id.ToString(), ready_[2].id.ToString(),
                           leased_[0].id.ToString(), leased_[1].id.ToString(),
                           ready_[0].id.ToString(), delayed_.id.ToString()}));
  EXPECT_EQ(jobs[0]["state"], "ready");
  EXPECT_EQ(jobs[0]["priority"], 2);
  EXPECT_EQ(jobs[0]["broker"], "broker-b");
  EXPECT_EQ(jobs[0]["record"], jobs[1]["record"]);  // one record, two jobs
  EXPECT_EQ(jobs[2]["state"], "running");
  EXPECT_EQ(jobs[2]["broker"], "broker-a");
  EXPECT_EQ(jobs[2]["task"], "echo");
  EXPECT_EQ(jobs[2]["payload_bytes"], 5);
  EXPECT_EQ(jobs[2]["max_attempts"], 3);
  EXPECT_TRUE(jobs[2]["lock_key"].is_null());
  EXPECT_EQ(jobs[4]["state"], "ready");
  EXPECT_EQ(jobs[5]["state"], "delayed");
  EXPECT_EQ(jobs[5]["due_ms"], fail_at_ms_);
  for (const Json& job : jobs) EXPECT_EQ(job["shard"], 0);

  // The limit counts jobs, a record's jobs one by one.
  Result<Json> three = admin::InspectJobs(q, 3);
  ASSERT_TRUE(three.ok()) << three.status().ToString();
  EXPECT_EQ(Ids((*three)["jobs"]),
            (std::vector<std::string>{ready_[1].id.ToString(),
                                      ready_[2].id.ToString(),
                                      leased_[0].id.ToString()}));
}

TEST_F(QueueAdminTest, DeadLettersAreListedAndRequeued) {
  ASSERT_NO_FATAL_FAILURE(Fill());
  admin::QueueConnection q = Connect();
  Result<Json> dead = admin::ListDead(q, 20);
  ASSERT_TRUE(dead.ok()) << dead.status().ToString();
  EXPECT_EQ((*dead)["total"], 1);
  ASSERT_EQ((*dead)["dead"].size(), 1u);
  const Json& d = (*dead)["dead"][0];
  EXPECT_EQ(d["id"], dead_.id.ToString());
  EXPECT_EQ(d["why"], "failed");
  EXPECT_EQ(d["error"], "boom");
  EXPECT_EQ(d["task"], "fail");
  EXPECT_EQ(d["priority"], 1);
  EXPECT_EQ(d["shard"], 0);
  EXPECT_FALSE(d.contains("decode_error"));
  // A limit of 0 still counts them.
  Result<Json> none = admin::ListDead(q, 0);
  ASSERT_TRUE(none.ok());
  EXPECT_TRUE((*none)["dead"].empty());
  EXPECT_EQ((*none)["total"], 1);

  Result<Json> requeued = admin::RequeueDead(q, 0);
  ASSERT_TRUE(requeued.ok()) << requeued.status().ToString();
  EXPECT_EQ(*requeued, (Json{{"queue", "default"}, {"requeued", 1}}));
  Result<Json> stats = admin::QueueStats(q);
  ASSERT_TRUE(stats.ok());
  EXPECT_EQ((*stats)["dead"], 0);
  EXPECT_EQ((*stats)["priorities"]["1"]["ready"], 1);  // back where it was
  Result<Json> again = admin::RequeueDead(q, 0);
  ASSERT_TRUE(again.ok());
  EXPECT_EQ((*again)["requeued"], 0);
}

TEST_F(QueueAdminTest, RequeueDeadStopsAtItsLimit) {
  ASSERT_NO_FATAL_FAILURE(Fill());
  // A second dead letter, through broker-b.
  TestJob second{.max_attempts = 1};
  broker_b_->want = 64;
  PushJobs(*broker_b_, {second});
  ASSERT_TRUE(PumpQueue(*broker_b_, [&] {
    for (const JobId& id : broker_b_->claimed) {
      if (id == second.id) return true;
    }
    return false;
  }));
  broker_b_->queue->Fail(second.id, 0, {});
  const QueueKeys keys("default");
  ASSERT_TRUE(PumpQueue(*broker_b_, [&] {
    return RedisInt({"XLEN", keys.dead}) == 2;
  }));

  admin::QueueConnection q = Connect();
  Result<Json> one = admin::RequeueDead(q, 1);
  ASSERT_TRUE(one.ok()) << one.status().ToString();
  EXPECT_EQ((*one)["requeued"], 1);
  EXPECT_EQ(RedisInt({"XLEN", keys.dead}), 1);
}

TEST_F(QueueAdminTest, PurgeDeletesWaitingJobsButNotRunningOnes) {
  ASSERT_NO_FATAL_FAILURE(Fill());
  admin::QueueConnection q = Connect();
  Result<Json> purged = admin::PurgeWaiting(q);
  ASSERT_TRUE(purged.ok()) << purged.status().ToString();
  // Three ready jobs and one delayed one; the two running ones stay.
  EXPECT_EQ(*purged, (Json{{"queue", "default"}, {"purged", 4}}));
  Result<Json> stats = admin::QueueStats(q);
  ASSERT_TRUE(stats.ok());
  EXPECT_EQ((*stats)["ready"], 0);
  EXPECT_EQ((*stats)["delayed"], 0);
  EXPECT_EQ((*stats)["running"], 2);
  EXPECT_EQ((*stats)["dead"], 1);

  Result<Json> dead = admin::PurgeDead(q);
  ASSERT_TRUE(dead.ok()) << dead.status().ToString();
  EXPECT_EQ(*dead, (Json{{"queue", "default"}, {"purged", 1}}));
  EXPECT_EQ(RedisInt({"EXISTS", QueueKeys("default").dead}), 0);
  Result<Json> again = admin::PurgeDead(q);
  ASSERT_TRUE(again.ok());
  EXPECT_EQ((*again)["purged"], 0);
}

TEST_F(QueueAdminTest, StoredResultOfAFinishedJob) {
  ASSERT_NO_FATAL_FAILURE(Fill());
  admin::QueueConnection q = Connect();
  Result<Json> r = admin::StoredResult(q, finished_.id);
  ASSERT_TRUE(r.ok()) << r.status().ToString();
  // Output that is not UTF-8 comes as base64.
  EXPECT_EQ(*r, (Json{{"id", finished_.id.ToString()},
                      {"status", "Ok"},
                      {"output_base64", "/wB6"},
                      {"error", nullptr},
                      {"attempt", 1},
                      {"duration_us", 42}}));
  // A dead letter's final failure is kept too.
  Result<Json> failed = admin::StoredResult(q, dead_.id);
  ASSERT_TRUE(failed.ok()) << failed.status().ToString();
  EXPECT_EQ((*failed)["status"], "Failed");
  EXPECT_EQ((*failed)["output"], "");
  EXPECT_EQ((*failed)["error"], "boom");

  Result<Json> unknown = admin::StoredResult(q, JobId::Random());
  EXPECT_EQ(unknown.status().code(), StatusCode::kNotFound);
}

TEST_F(QueueAdminTest, AQueueNoBrokerSetUpReadsAsEmpty) {
  auto q = admin::ConnectQueue(server_->url(), "nobody");
  ASSERT_TRUE(q.ok()) << q.status().ToString();
  Result<Json> stats = admin::QueueStats(*q);
  ASSERT_TRUE(stats.ok()) << stats.status().ToString();
  EXPECT_EQ((*stats)["queue"], "nobody");
  for (const char* key : {"ready", "running", "delayed", "dead", "queued"}) {
    EXPECT_EQ((*stats)[key], 0) << key;
  }
  EXPECT_TRUE((*stats)["leader"].is_null());
  Result<Json> jobs = admin::InspectJobs(*q, 20);
  ASSERT_TRUE(jobs.ok()) << jobs.status().ToString();
  EXPECT_TRUE((*jobs)["jobs"].empty());
  Result<Json> dead = admin::ListDead(*q, 20);
  ASSERT_TRUE(dead.ok()) << dead.status().ToString();
  EXPECT_EQ((*dead)["total"], 0);
}

TEST_F(QueueAdminTest, ConnectRefusesBadInputAndSaysWhenRedisIsUnreachable) {
  auto bad_url = admin::ConnectQueue("http://127.0.0.1:1", "default");
  EXPECT_EQ(bad_url.status().code(), StatusCode::kInvalidArgument);
  EXPECT_TRUE(bad_url.status().message().starts_with("redis URL: "))
      << bad_url.status().message();
  auto bad_name = admin::ConnectQueue(server_->url(), "no spaces");
  EXPECT_EQ(bad_name.status().code(), StatusCode::kInvalidArgument);
  EXPECT_TRUE(bad_name.status().message().starts_with("queue name: "))
      << bad_name.status().message();
  // A stored shard count that is not one.
  Redis({"SET", ShardCountKey("odd"), "0"});
  EXPECT_EQ(admin::ConnectQueue(server_->url(), "odd").status().code(),
            StatusCode::kInvalidArgument);

  const std::string url = server_->url();
  ASSERT_TRUE(server_->Stop().ok());
  auto down = admin::ConnectQueue(url, "default");
  EXPECT_EQ(down.status().code(), StatusCode::kUnavailable);
  EXPECT_TRUE(down.status().message().starts_with("cannot reach Redis at " +
                                                  url + ": "))
      << down.status().message();
}

TEST_F(QueueAdminTest, ShardedQueueAddsTheShardsUp) {
  auto b = StartBroker("broker-s", 2);
  ASSERT_NE(b, nullptr);
  // Plain batches go to the shards in turn.
  std::vector<TestJob> jobs(4);
  for (const TestJob& job : jobs) PushJobs(*b, {job});
  admin::QueueConnection q = Connect();
  ASSERT_EQ(q.shards.size(), 2u);

  Result<Json> stats = admin::QueueStats(q);
  ASSERT_TRUE(stats.ok()) << stats.status().ToString();
  EXPECT_EQ((*stats)["ready"], 4);
  EXPECT_EQ((*stats)["counters"]["submitted"], 4);
  ASSERT_EQ((*stats)["shards"].size(), 2u);
  EXPECT_EQ((*stats)["shards"][0]["ready"], 2);
  EXPECT_EQ((*stats)["shards"][1]["ready"], 2);
  EXPECT_NE((*stats)["shards"][0]["tag"], (*stats)["shards"][1]["tag"]);

  // The limit is for all shards together.
  Result<Json> listed = admin::InspectJobs(q, 3);
  ASSERT_TRUE(listed.ok()) << listed.status().ToString();
  const Json& lines = (*listed)["jobs"];
  ASSERT_EQ(lines.size(), 3u);
  EXPECT_EQ(lines[0]["shard"], 0);
  EXPECT_EQ(lines[1]["shard"], 0);
  EXPECT_EQ(lines[2]["shard"], 1);
  std::set<std::string> pushed;
  for (const TestJob& job : jobs) pushed.insert(job.id.ToString());
  for (const Json& line : lines) {
    EXPECT_EQ(pushed.count(line["id"].get<std::string>()), 1u);
  }

  Result<Json> purged = admin::PurgeWaiting(q);
  ASSERT_TRUE(purged.ok()) << purged.status().ToString();
  EXPECT_EQ((*purged)["purged"], 4);
}

}  // namespace
}  // namespace yard
