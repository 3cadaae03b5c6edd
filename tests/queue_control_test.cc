// The operator's controls of a durable queue, end to end: real `yard`
// brokers on a real redis-server, real workers, `yard push`, and the real
// `yard queue pause|resume|limit|concurrency` and `yard queue stats`; plus
// the brokers'
// cap on dead letters (--max-dead).
#include <gtest/gtest.h>

#include <algorithm>
#include <chrono>
#include <nlohmann/json.hpp>
#include <string>
#include <thread>
#include <vector>

#include "queue/redis_layout.h"
#include "testing/process.h"
#include "testing/redis_server.h"
#include "tests/cluster.h"

namespace yard {
namespace {

using Json = nlohmann::json;
using std::chrono::milliseconds;

class QueueControlTest : public ::testing::Test {
 protected:
  void SetUp() override {
    auto server = RedisServer::Create();
    ASSERT_TRUE(server.ok()) << server.status().ToString();
    redis_ = std::move(server).value();
  }

  // `yard queue <args> --redis URL --json`, which must exit 0 with JSON.
  Json Queue(std::vector<std::string> args) {
    args.insert(args.begin(), "queue");
    for (const char* a : {"--redis", "", "--json"}) args.push_back(a);
    args[args.size() - 2] = redis_->url();
    Process* p = cluster_.Start("queue", args);
    if (p == nullptr) return nullptr;
    std::optional<std::string> out = p->ReadAll(milliseconds(15000));
    std::optional<ExitInfo> exit = p->Wait(milliseconds(5000));
    EXPECT_TRUE(out && exit && exit->ExitedWith(0))
        << "yard " << args[0] << " " << args[1] << ": " << out.value_or("")
        << " " << p->Stderr();
    return Json::parse(out.value_or(""), nullptr, false);
  }

  int64_t Counter(const Json& stats, const char* name) {
    const Json& c = stats["counters"];
    return c.contains(name) ? c[name].get<int64_t>() : 0;
  }

  std::optional<BrokerHandle> StartBroker(std::vector<std::string> extra = {}) {
    std::vector<std::string> args = {"--redis", redis_->url(), "--heartbeat-ms",
                                     "200"};
    args.insert(args.end(), extra.begin(), extra.end());
    return cluster_.StartBroker(args);
  }

  std::unique_ptr<RedisServer> redis_;
  Cluster cluster_;
};

// Paused: submits are accepted (queued in Redis) but no job reaches a
// worker; resumed: every job completes.
TEST_F(QueueControlTest, APausedQueueAcceptsJobsAndRunsThemOnResume) {
  auto broker = StartBroker();
  ASSERT_TRUE(broker);
  ASSERT_TRUE(cluster_.StartWorker(broker->backend, 2));
  Json paused = Queue({"pause"});
  EXPECT_EQ(paused["paused"], true);
  // The broker reads the controls every 250 ms.
  std::this_thread::sleep_for(milliseconds(1000));
  Process* push =
      cluster_.StartPush({"--connect", broker->frontend, "--task", "echo",
                          "--count", "300", "--timeout", "60"});
  ASSERT_NE(push, nullptr);
  Json stats;
  ASSERT_TRUE(PollUntil(
      [&] {
        stats = Queue({"stats"});
        return stats.is_object() && stats["queued"] == 300;
      },
      milliseconds(20000)))
      << stats.dump();
  EXPECT_EQ(stats["paused"], true);
  // Given time to run (echo takes microseconds), none did.
  std::this_thread::sleep_for(milliseconds(1500));
  stats = Queue({"stats"});
  EXPECT_EQ(Counter(stats, "completed"), 0) << stats.dump();
  EXPECT_EQ(stats["queued"], 300) << stats.dump();

  EXPECT_EQ(Queue({"resume"})["paused"], false);
  ExpectPushSucceeded(cluster_.FinishPush(push, milliseconds(60000)), 300);
  EXPECT_EQ(Queue({"stats"})["paused"], false);
}

// At most N jobs with one lock key run at once, all brokers together: two
// brokers, two workers with room for 8, 30 sleep jobs on one key, N = 3.
// The key's holders in Redis, sampled (atomically) throughout, reach 3 and
// never pass it; every job completes.
TEST_F(QueueControlTest, ConcurrencyPerLockKeyHoldsForTwoBrokers) {
  auto a = StartBroker();
  auto b = StartBroker();
  ASSERT_TRUE(a && b);
  const std::string backends = a->backend + "," + b->backend;
  ASSERT_TRUE(cluster_.StartWorker(backends, 4));
  ASSERT_TRUE(cluster_.StartWorker(backends, 4));
  Json set = Queue({"concurrency", "--per-key", "3", "--key", "acct"});
  EXPECT_EQ(set["per_key"], 3);
  EXPECT_EQ(set["key"], "acct");
  EXPECT_EQ(Queue({"stats"})["key_concurrency"]["keys"]["acct"], 3);
  constexpr int kJobs = 30;
  Process* push = cluster_.StartPush(
      {"--connect", a->frontend + "," + b->frontend, "--task", "sleep",
       "--payload", "150", "--count", std::to_string(kJobs), "--lock-key",
       "acct", "--max-batch", "1", "--timeout", "60"});
  ASSERT_NE(push, nullptr);
  const QueueKeys keys("default");
  const std::string count_holders =
      "return redis.call('EXISTS', KEYS[1]) + redis.call('ZCARD', KEYS[2])";
  int64_t most = 0, samples = 0, completed = 0;
  const auto deadline = std::chrono::steady_clock::now() + milliseconds(60000);
  while (completed < kJobs && std::chrono::steady_clock::now() < deadline) {
    Result<RedisReply> n =
        redis_->Call({"EVAL", count_holders, "2", keys.prefix + "mx:acct",
                      keys.prefix + "mxz:acct"});
    ASSERT_TRUE(n.ok()) << n.status().ToString();
    most = std::max(most, n->integer);
    if (++samples % 20 == 0) {
      Result<RedisReply> c = redis_->Call({"HGET", keys.stats, "completed"});
      ASSERT_TRUE(c.ok()) << c.status().ToString();
      completed = c->is_nil() ? 0 : std::stoll(c->str);
    }
  }
  ExpectPushSucceeded(cluster_.FinishPush(push, milliseconds(30000)), kJobs);
  RecordProperty("holder_samples", std::to_string(samples));
  EXPECT_EQ(most, 3) << samples << " samples";
}

// One token bucket in Redis for every broker: two brokers together hand
// out no more than the rate (plus one burst), and both take part.
TEST_F(QueueControlTest, TheRateLimitHoldsForTwoBrokersTogether) {
  auto a = StartBroker();
  auto b = StartBroker();
  ASSERT_TRUE(a && b);
  ASSERT_TRUE(cluster_.StartWorker(a->backend + "," + b->backend, 4));
  constexpr double kRate = 200;
  constexpr int64_t kBurst = 20, kJobs = 1000;
  Json limit = Queue({"limit", "--rate", "200", "--burst", "20"});
  EXPECT_EQ(limit["rate"], kRate);
  EXPECT_EQ(limit["burst"], kBurst);
  std::this_thread::sleep_for(milliseconds(1000));
  // Small batches: a broker claims whole records (a producer's batch), so
  // with one big record one broker would hold every job.
  PushRun run = cluster_.RunPush(
      {"--connect", a->frontend + "," + b->frontend, "--task", "echo",
       "--count", std::to_string(kJobs), "--max-batch", "8", "--timeout", "60"},
      milliseconds(70000));
  ExpectPushSucceeded(run, kJobs);
  // The push's elapsed time starts at its first submit, so it also counts
  // the burst's jobs: (kJobs - kBurst) / kRate seconds at the least.
  const double rate = run.report["jobs_per_s"].get<double>();
  const double most = kJobs / ((kJobs - kBurst) / kRate);
  RecordProperty("jobs_per_s", std::to_string(rate));
  EXPECT_LE(rate, most * 1.10) << run.Describe();
  // Far below the limit would mean tokens are lost between the brokers.
  EXPECT_GE(rate, kRate * 0.5) << run.Describe();
  for (const auto& broker : {*a, *b}) {
    const Json s = BrokerStats(broker.frontend);
    EXPECT_GT(s["counters"]["dispatched"].get<int64_t>(), 0) << s.dump();
    EXPECT_EQ(s["durable"]["rate_limit"], kRate) << s.dump();
  }
  Json stats = Queue({"stats"});
  EXPECT_EQ(stats["rate_limit"]["rate"], kRate) << stats.dump();

  // rate 0 lifts it.
  EXPECT_TRUE(Queue({"limit", "--rate", "0"})["burst"].is_null());
  EXPECT_TRUE(Queue({"stats"})["rate_limit"].is_null());
}

// A rate too small to store is refused, not stored as 0 (which reads as no
// limit at all).
TEST_F(QueueControlTest, ARateTooSmallToStoreIsRefused) {
  Process* p = cluster_.Start("queue", {"queue", "limit", "--rate", "0.0000001",
                                        "--redis", redis_->url(), "--json"});
  ASSERT_NE(p, nullptr);
  p->ReadAll(milliseconds(15000));
  std::optional<ExitInfo> exit = p->Wait(milliseconds(5000));
  ASSERT_TRUE(exit);
  EXPECT_FALSE(exit->ExitedWith(0)) << p->Stderr();
  EXPECT_NE(p->Stderr().find("--rate must be 0 or at least"), std::string::npos)
      << p->Stderr();
  EXPECT_TRUE(Queue({"stats"})["rate_limit"].is_null());
}

// --max-dead: the leader trims the oldest dead letters and counts them.
TEST_F(QueueControlTest, DeadLettersAreCappedAndTheTrimmedCounted) {
  auto broker = StartBroker({"--max-dead", "5"});
  ASSERT_TRUE(broker);
  ASSERT_TRUE(cluster_.StartWorker(broker->backend, 2));
  PushRun run = cluster_.RunPush({"--connect", broker->frontend, "--task",
                                  "fail", "--count", "20", "--timeout", "30"},
                                 milliseconds(40000));
  ASSERT_TRUE(run.exit) << run.Describe();
  EXPECT_EQ(run.Count("failed"), 20) << run.Describe();
  Json stats;
  EXPECT_TRUE(PollUntil(
      [&] {
        stats = Queue({"stats"});
        return stats.is_object() && Counter(stats, "dead_trimmed") == 15;
      },
      milliseconds(15000)))
      << stats.dump();
  EXPECT_EQ(stats["dead"], 5) << stats.dump();
  EXPECT_EQ(Counter(stats, "dead"), 20) << stats.dump();
}

}  // namespace
}  // namespace yard
