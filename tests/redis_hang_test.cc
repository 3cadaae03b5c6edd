// A Redis that hangs under load: a real `yard broker --redis`, a real
// worker and `yard push` with 30,000 jobs, and the redis-server SIGSTOPped
// for 10 s mid-run (it keeps its sockets open and answers nothing). The
// broker must notice within its command deadline (--redis-timeout-ms): it
// says "redis down" in its stats and log, answers submits Unavailable, and
// keeps its loop turning (stats answered, no worker presumed dead). After
// SIGCONT everything completes: nothing lost, and the jobs run twice are at
// most those in flight when Redis hung (the producer's window).
#include <gtest/gtest.h>

#include <chrono>
#include <cstdint>
#include <iostream>
#include <memory>
#include <nlohmann/json.hpp>
#include <string>
#include <thread>

#include "common/clock.h"
#include "queue/redis_layout.h"
#include "testing/redis_server.h"
#include "tests/cluster.h"

namespace yard {
namespace {

constexpr int64_t kJobs = 30000;
constexpr int64_t kWindow = 1000;  // the producer's jobs in flight
constexpr int64_t kRedisTimeoutMs = 500;
constexpr Millis kPause{10000};
constexpr Millis kPushBound{180000};
constexpr Millis kProgressBound{60000};
constexpr Millis kSettleBound{30000};

// The broker's durable-queue view, "" when the stats did not answer.
std::string RedisState(const nlohmann::json& stats) {
  if (!stats.is_object() || !stats.contains("durable")) return "";
  return stats["durable"].value("redis", "");
}

int64_t Counter(const nlohmann::json& stats, const char* name) {
  if (!stats.is_object() || !stats.contains("counters")) return -1;
  return stats["counters"].value(name, int64_t{-1});
}

size_t Occurrences(const std::string& text, const std::string& word) {
  size_t n = 0;
  for (size_t at = text.find(word); at != std::string::npos;
       at = text.find(word, at + word.size())) {
    ++n;
  }
  return n;
}

class RedisHangTest : public ::testing::Test {
 protected:
  void SetUp() override {
    auto server = RedisServer::Create();
    ASSERT_TRUE(server.ok()) << server.status().ToString();
    redis_ = std::move(server).value();
    // The lease outlasts the pause, so no lease expires while Redis is
    // stopped: every run beyond one per job comes from a resend.
    broker_ =
        cluster_.StartBroker({"--redis", redis_->url(), "--redis-timeout-ms",
                              std::to_string(kRedisTimeoutMs), "--lease-ms",
                              "30000", "--heartbeat-ms", "200"});
    ASSERT_TRUE(broker_);
    worker_ = cluster_.StartWorker(broker_->backend, 4,
                                   {"--heartbeat-ms", "200", "--name", "w1"});
    ASSERT_TRUE(worker_);
  }

  void TearDown() override {
    if (redis_ == nullptr) return;
    redis_->Resume();  // never leave it stopped
    if (HasFailure()) {
      std::cerr << "---- redis.log tail ----\n" << redis_->LogTail() << "\n";
    }
  }

  // Jobs the queue counted completed (every run), -1 when Redis is silent.
  int64_t RedisCompleted() {
    auto r = redis_->Call({"HGET", keys_.stats, "completed"}, 1000);
    if (!r.ok()) return -1;
    if (r->is_nil()) return 0;
    return std::stoll(r->str);
  }

  // Entries still in the ready streams (waiting or leased).
  int64_t RedisHeld() {
    int64_t n = 0;
    for (const std::string& s : keys_.stream) {
      auto r = redis_->Call({"XLEN", s}, 1000);
      if (!r.ok()) return -1;
      n += r->integer;
    }
    return n;
  }

  std::unique_ptr<RedisServer> redis_;
  Cluster cluster_;
  std::optional<BrokerHandle> broker_;
  Process* worker_ = nullptr;
  const QueueKeys keys_{"default"};
};

TEST_F(RedisHangTest, PausedRedisIsDownThenEverythingCompletes) {
  Process* push = cluster_.StartPush(
      {"--connect", broker_->frontend, "--task", "echo", "--count",
       std::to_string(kJobs), "--size", "64", "--window",
       std::to_string(kWindow), "--ack-timeout-ms", "5000", "--heartbeat-ms",
       "200", "--timeout", "170"});
  ASSERT_TRUE(push);
  // Mid-run: some done, the producer still pushing.
  ASSERT_TRUE(PollUntil(
      [&] { return RedisCompleted() >= kJobs / 10 || !push->Running(); },
      kProgressBound));
  ASSERT_TRUE(push->Running()) << "push ended before the pause";

  const int64_t paused_at = MonoMillis();
  redis_->Pause();
  // The broker notices, and its loop answers stats all the while.
  bool saw_down = false;
  int64_t unanswered = 0;
  int64_t down_after_ms = -1;
  for (int polls = 0; polls < 1000; ++polls) {
    if (MonoMillis() - paused_at >= kPause.count()) break;
    nlohmann::json s = BrokerStats(broker_->frontend, Millis(2000));
    const std::string state = RedisState(s);
    if (state.empty()) ++unanswered;
    if (state == "down" && !saw_down) {
      saw_down = true;
      down_after_ms = MonoMillis() - paused_at;
    }
    std::this_thread::sleep_for(Millis(200));
  }
  redis_->Resume();
  std::cout << "[ redis down ] seen " << down_after_ms
            << " ms after the pause; " << unanswered
            << " stats requests unanswered during it" << std::endl;
  EXPECT_TRUE(saw_down) << "stats never said redis down during the pause";
  EXPECT_EQ(unanswered, 0) << "the broker's loop stalled during the pause";

  PushRun run = cluster_.FinishPush(push, kPushBound);
  ExpectPushSucceeded(run, kJobs);
  EXPECT_GT(run.Count("unavailable"), 0)
      << "the producer never heard Unavailable: " << run.Describe();

  // Copies resent after a lost acknowledgement may still run: let them.
  int64_t held = -1;
  PollUntil(
      [&] {
        held = RedisHeld();
        return held == 0;
      },
      kSettleBound);
  EXPECT_EQ(held, 0) << "jobs still in Redis";
  const int64_t runs = RedisCompleted();
  std::cout << "[ duplicates ] producer saw " << run.Count("duplicates")
            << ", Redis counted " << runs << " runs of " << kJobs
            << " jobs; unavailable " << run.Count("unavailable") << ", resent "
            << run.Count("resent") << std::endl;
  RecordProperty("runs", std::to_string(runs));
  RecordProperty("unavailable", std::to_string(run.Count("unavailable")));
  EXPECT_GE(runs, kJobs);
  // A job runs twice only when Redis queued it but its acknowledgement was
  // lost with the dropped connection: at most what the producer had in
  // flight at the drop.
  EXPECT_LE(runs - kJobs, kWindow);
  EXPECT_LE(run.Count("duplicates"), kWindow);

  nlohmann::json stats = BrokerStats(broker_->frontend);
  EXPECT_EQ(RedisState(stats), "up") << stats.dump();
  EXPECT_EQ(Counter(stats, "workers_expired"), 0)
      << "a worker was presumed dead: " << stats.dump();
  EXPECT_GT(Counter(stats, "unavailable"), 0) << stats.dump();
  EXPECT_TRUE(worker_->Running());
  const std::string log = broker_->process->Stderr();
  EXPECT_EQ(Occurrences(log, "redis down"), 1u) << log;
  EXPECT_GE(Occurrences(log, "redis up"), 1u) << log;
}

}  // namespace
}  // namespace yard
