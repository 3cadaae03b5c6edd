// Run timeouts end to end, durable mode: two real `yard` brokers on one real
// redis-server. The broker that dispatched a job holds its lease; on a run
// timeout it fails the attempt through the queue (retry or dead letter), the
// job runs again wherever it is claimed, and the old attempt's late result
// is refused.
#include <gtest/gtest.h>

#include <chrono>
#include <iostream>
#include <map>
#include <memory>
#include <string>

#include "queue/redis_layout.h"
#include "testing/redis_fixture.h"
#include "tests/cluster.h"
#include "tests/silent_worker.h"

namespace yard {
namespace {

constexpr Millis kPushBound{90000};

// The fixture's redis-server (server_) outlives the cluster: base members
// are destroyed after the derived ones.
class RunTimeoutDurableTest : public RedisFixture {
 protected:
  void SetUp() override {
    ASSERT_NO_FATAL_FAILURE(RedisFixture::SetUp());
    for (auto* b : {&b1_, &b2_}) {
      *b = cluster_.StartBroker({"--redis", server_->url(), "--lease-ms",
                                 "3000", "--heartbeat-ms", "200",
                                 "--run-timeout-ms", "2000"});
      ASSERT_TRUE(*b);
    }
  }
  void TearDown() override {
    if (HasFailure()) {
      std::cerr << "---- redis.log tail ----\n" << server_->LogTail() << "\n";
    }
  }
  std::string Frontends() const { return b1_->frontend + "," + b2_->frontend; }
  std::string Backends() const { return b1_->backend + "," + b2_->backend; }

  // The dead letters of queue "default": each entry's fields by name.
  std::vector<std::map<std::string, std::string>> DeadLetters() const {
    std::vector<std::map<std::string, std::string>> out;
    auto r = server_->Call({"XRANGE", QueueKeys("default").dead, "-", "+"});
    if (!r.ok()) return out;
    for (const RedisReply& e : r->elements) {
      if (e.elements.size() != 2) continue;
      std::map<std::string, std::string> fields;
      const auto& kv = e.elements[1].elements;
      for (size_t i = 0; i + 1 < kv.size(); i += 2) {
        fields[kv[i].str] = kv[i + 1].str;
      }
      out.push_back(std::move(fields));
    }
    return out;
  }

  Cluster cluster_;
  std::optional<BrokerHandle> b1_, b2_;
};

TEST_F(RunTimeoutDurableTest, ASilentWorkerLosesNoJobAndIsQuarantined) {
  SilentWorker silent(b1_->backend, "silent");
  ASSERT_TRUE(silent.connected());
  ASSERT_TRUE(SilentWorker::Registered(b1_->frontend, "silent"));
  ASSERT_TRUE(cluster_.StartWorker(
      Backends(), 2, {"--heartbeat-ms", "200", "--name", "honest"}));
  PushRun run = cluster_.RunPush(
      {"--connect", Frontends(), "--task", "echo", "--count", "2000",
       "--max-attempts", "3", "--heartbeat-ms", "200", "--timeout", "60"},
      kPushBound);
  ExpectPushSucceeded(run, 2000);
  EXPECT_GT(silent.dispatched(), 0u) << "the silent worker got no job";
  EXPECT_GT(silent.cancelled(), 0u) << "no Cancel reached the silent worker";
  const nlohmann::json stats = BrokerStats(b1_->frontend);
  EXPECT_EQ(stats["workers_quarantined"], 1) << stats.dump();
  EXPECT_EQ(WorkerNamed(stats["workers"], "silent")["quarantined"], true)
      << stats.dump();
  EXPECT_GT(stats["counters"]["timed_out"].get<int64_t>(), 0) << stats.dump();
  EXPECT_TRUE(DeadLetters().empty());
}

TEST_F(RunTimeoutDurableTest, AHungHandlerIsDeadLetteredTimedOut) {
  ASSERT_TRUE(cluster_.StartWorker(
      Backends(), 1, {"--heartbeat-ms", "200", "--name", "hang"}));
  PushRun run =
      cluster_.RunPush({"--connect", Frontends(), "--task", "hang", "--count",
                        "1", "--max-attempts", "2", "--run-timeout-ms", "500",
                        "--heartbeat-ms", "200", "--timeout", "30"},
                       kPushBound);
  ASSERT_TRUE(run.exit) << run.Describe();
  EXPECT_EQ(run.Count("failed"), 1) << run.Describe();
  EXPECT_EQ(run.Count("lost"), 0) << run.Describe();
  std::vector<std::map<std::string, std::string>> dead;
  ASSERT_TRUE(PollUntil(
      [&] {
        dead = DeadLetters();
        return !dead.empty();
      },
      Millis(10000)));
  ASSERT_EQ(dead.size(), 1u);
  EXPECT_EQ(dead[0]["err"], "timed out");
  EXPECT_EQ(dead[0]["a"], "2") << "attempts made";
  // The worker answered each cancelled attempt; both answers were refused
  // (late), wherever the attempt ran.
  int64_t late = 0, timed_out = 0;
  EXPECT_TRUE(PollUntil(
      [&] {
        late = timed_out = 0;
        for (const auto* b : {&b1_, &b2_}) {
          nlohmann::json s = BrokerStats((*b)->frontend);
          late += s["counters"]["results_late"].get<int64_t>();
          timed_out += s["counters"]["timed_out"].get<int64_t>();
        }
        return late == 2;
      },
      Millis(10000)))
      << late;
  EXPECT_EQ(timed_out, 2);
}

}  // namespace
}  // namespace yard
