// Run timeouts end to end, memory mode: real `yard` brokers, workers and
// pushes on 127.0.0.1, beside a worker that heartbeats but never answers
// (tests/silent_worker.h) or a handler that runs until it is cancelled.
// Nothing a live-but-stuck worker holds may be lost.
#include <gtest/gtest.h>

#include <chrono>
#include <string>

#include "tests/cluster.h"
#include "tests/silent_worker.h"

namespace yard {
namespace {

constexpr Millis kPushBound{90000};

int64_t Counter(const nlohmann::json& stats, const char* name) {
  const auto& c = stats["counters"][name];
  return c.is_number() ? c.get<int64_t>() : -1;
}

// One honest `yard worker` beside one silent worker: every job completes
// (the silent worker's attempts time out and run again elsewhere), and the
// silent worker is quarantined.
TEST(RunTimeoutTest, ASilentWorkerLosesNoJobAndIsQuarantined) {
  Cluster cluster;
  auto broker = cluster.StartBroker({"--run-timeout-ms", "2000"});
  ASSERT_TRUE(broker);
  SilentWorker silent(broker->backend, "silent");
  ASSERT_TRUE(silent.connected());
  ASSERT_TRUE(SilentWorker::Registered(broker->frontend, "silent"));
  ASSERT_TRUE(cluster.StartWorker(broker->backend, 2, {"--name", "honest"}));
  PushRun run = cluster.RunPush(
      {"--connect", broker->frontend, "--task", "echo", "--count", "2000",
       "--max-attempts", "3", "--timeout", "60"},
      kPushBound);
  ExpectPushSucceeded(run, 2000);
  EXPECT_GT(silent.dispatched(), 0u) << "the silent worker got no job";
  EXPECT_GT(silent.cancelled(), 0u) << "no Cancel reached the silent worker";
  const nlohmann::json stats = BrokerStats(broker->frontend);
  ASSERT_TRUE(stats.is_object());
  EXPECT_EQ(stats["workers_quarantined"], 1) << stats.dump();
  EXPECT_EQ(WorkerNamed(stats["workers"], "silent")["quarantined"], true)
      << stats.dump();
  EXPECT_EQ(WorkerNamed(stats["workers"], "honest")["quarantined"], false)
      << stats.dump();
  EXPECT_GT(Counter(stats, "timed_out"), 0) << stats.dump();
  EXPECT_EQ(Counter(stats, "quarantines"), 1) << stats.dump();
}

// A handler that runs until it is cancelled: each attempt times out, the
// worker hears Cancel and answers (late, ignored), and after its last
// attempt the job fails "timed out".
TEST(RunTimeoutTest, AHungHandlerIsCancelledRetriedThenFails) {
  Cluster cluster;
  auto broker = cluster.StartBroker({"--run-timeout-ms", "60000"});
  ASSERT_TRUE(broker);
  ASSERT_TRUE(cluster.StartWorker(broker->backend, 1, {"--name", "hanging"}));
  // The job's own run timeout wins over the broker's.
  PushRun run = cluster.RunPush(
      {"--connect", broker->frontend, "--task", "hang", "--count", "1",
       "--max-attempts", "2", "--run-timeout-ms", "500", "--timeout", "30"},
      kPushBound);
  ASSERT_TRUE(run.exit) << run.Describe();
  EXPECT_EQ(run.Count("failed"), 1) << run.Describe();
  EXPECT_EQ(run.Count("lost"), 0) << run.Describe();
  EXPECT_EQ(run.Count("completed"), 0) << run.Describe();
  nlohmann::json stats;
  // Both attempts were taken back; the worker answered both once cancelled.
  EXPECT_TRUE(PollUntil(
      [&] {
        stats = BrokerStats(broker->frontend);
        return Counter(stats, "results_late") == 2;
      },
      Millis(10000)))
      << stats.dump();
  EXPECT_EQ(Counter(stats, "timed_out"), 2) << stats.dump();
  EXPECT_EQ(Counter(stats, "retried"), 1) << stats.dump();
  EXPECT_EQ(Counter(stats, "failed"), 1) << stats.dump();
  const nlohmann::json w = WorkerNamed(stats["workers"], "hanging");
  EXPECT_EQ(w["outstanding"], 0) << stats.dump();
  EXPECT_EQ(w["quarantined"], false) << stats.dump();
}

}  // namespace
}  // namespace yard
