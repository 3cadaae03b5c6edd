// admin::Overview, the monitors' picture of a running cluster, against real
// `yard` processes: a memory-mode broker asked over ZeroMQ, and a durable
// one found through the registry of a real redis-server. Percentiles of
// bucket counts are checked on their own first.
#include "admin/overview.h"

#include <gtest/gtest.h>

#include <memory>
#include <string>
#include <vector>

#include "common/latency_histogram.h"
#include "testing/redis_server.h"
#include "tests/cluster.h"

namespace yard::admin {
namespace {

TEST(LatencyPercentilesTest, InterpolatesInsideTheBucketAQuantileFallsIn) {
  std::vector<uint64_t> b(LatencyHistogram::kBuckets, 0);
  EXPECT_TRUE(LatencyPercentiles(b).is_null());
  EXPECT_TRUE(LatencyPercentiles({1, 2}).is_null());  // not our layout
  // 100 values in (1 ms, 2.5 ms]: p50 halfway, p99 near the top.
  b[4] = 100;
  auto p = LatencyPercentiles(b);
  EXPECT_DOUBLE_EQ(p["p50"].get<double>(), 1.75);
  EXPECT_NEAR(p["p99"].get<double>(), 2.485, 1e-9);
  // One slow value in 10: p50 stays low, p99 is in the slow bucket.
  b[4] = 90;
  b[12] = 10;  // (500 ms, 1 s]
  p = LatencyPercentiles(b);
  EXPECT_LT(p["p50"].get<double>(), 2.5);
  EXPECT_GT(p["p99"].get<double>(), 500.0);
  EXPECT_LE(p["p99"].get<double>(), 1000.0);
  // Above every bound: the last bound, never more.
  std::vector<uint64_t> over(LatencyHistogram::kBuckets, 0);
  over.back() = 3;
  EXPECT_DOUBLE_EQ(LatencyPercentiles(over)["p50"].get<double>(), 300000.0);
}

TEST(OverviewTest, NothingToWatchIsAnError) {
  EXPECT_FALSE(Overview::Create(OverviewOptions()).ok());
}

TEST(OverviewTest, MemoryBrokersWorkersRatesAndLatency) {
  Cluster c;
  auto broker = c.StartBroker({"--heartbeat-ms", "200"});
  ASSERT_TRUE(broker);
  ASSERT_TRUE(c.StartWorker(broker->backend, 3,
                            {"--name", "w-overview", "--heartbeat-ms", "200"}));
  // A second endpoint where nothing listens: down, with a reason.
  OverviewOptions o;
  o.brokers = {broker->frontend, "tcp://127.0.0.1:1"};
  o.timeout_ms = 1500;
  auto ov = Overview::Create(std::move(o));
  ASSERT_TRUE(ov.ok()) << ov.status().ToString();
  auto first = (*ov)->Snapshot();
  ASSERT_EQ(first["brokers"].size(), 2u) << first.dump();
  EXPECT_EQ(first["interval_s"].get<double>(), 0.0);
  PushRun run = c.RunPush({"--connect", broker->frontend, "--task", "echo",
                           "--count", "300", "--size", "32"},
                          Millis(30000));
  ExpectPushSucceeded(run, 300);
  auto s = (*ov)->Snapshot();
  const auto& up = s["brokers"][0];
  EXPECT_EQ(up["endpoint"], broker->frontend);
  EXPECT_TRUE(up["up"].get<bool>()) << s.dump();
  EXPECT_EQ(up["counters"]["completed"], 300) << s.dump();
  EXPECT_EQ(up["workers"], 1);
  EXPECT_GT(up["rates"]["completed"].get<double>(), 0.0) << s.dump();
  ASSERT_TRUE(up["latency_ms"].is_object()) << s.dump();
  EXPECT_GT(up["latency_ms"]["p99"].get<double>(), 0.0);
  const auto& down = s["brokers"][1];
  EXPECT_FALSE(down["up"].get<bool>());
  EXPECT_TRUE(down["error"].is_string());
  ASSERT_EQ(s["workers"].size(), 1u);
  EXPECT_EQ(s["workers"][0]["name"], "w-overview");
  EXPECT_EQ(s["workers"][0]["capacity"], 3);
  EXPECT_EQ(s["workers"][0]["broker"], broker->frontend);
  EXPECT_EQ(s["totals"]["brokers"], 2);
  EXPECT_EQ(s["totals"]["brokers_up"], 1);
  EXPECT_EQ(s["totals"]["workers"], 1);
  EXPECT_TRUE(s["totals"]["dead"].is_null());
  EXPECT_TRUE(s["queue"].is_null());
  // Nothing ran since: the rates fall back to 0.
  auto quiet = (*ov)->Snapshot();
  EXPECT_EQ(quiet["totals"]["rates"]["completed"].get<double>(), 0.0);
  EXPECT_TRUE(quiet["totals"]["latency_ms"].is_null());
}

TEST(OverviewTest, DurableBrokersComeFromTheRegistry) {
  auto redis = RedisServer::Create();
  ASSERT_TRUE(redis.ok()) << redis.status().ToString();
  Cluster c;
  auto broker =
      c.StartBroker({"--redis", (*redis)->url(), "--heartbeat-ms", "200"});
  ASSERT_TRUE(broker);
  ASSERT_TRUE(c.StartWorker(broker->backend, 2, {"--heartbeat-ms", "200"}));
  PushRun run = c.RunPush({"--connect", broker->frontend, "--task", "fail",
                           "--count", "5", "--max-attempts", "1"},
                          Millis(30000));
  ASSERT_TRUE(run.exit) << run.Describe();
  OverviewOptions o;
  o.redis_url = (*redis)->url();
  auto ov = Overview::Create(std::move(o));
  ASSERT_TRUE(ov.ok()) << ov.status().ToString();
  nlohmann::ordered_json s;
  // The registry record is written every heartbeat: wait for it.
  ASSERT_TRUE(PollUntil(
      [&] {
        s = (*ov)->Snapshot();
        return s["totals"]["brokers_up"] == 1;
      },
      Millis(10000)))
      << s.dump();
  EXPECT_EQ(s["brokers"][0]["endpoint"], broker->frontend);
  ASSERT_TRUE(s["queue"].is_object()) << s.dump();
  EXPECT_EQ(s["totals"]["dead"], 5) << s.dump();
  EXPECT_EQ(s["queue"]["dead"], 5);
  EXPECT_EQ(s["totals"]["workers"], 1);
}

}  // namespace
}  // namespace yard::admin
