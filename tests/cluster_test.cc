// End-to-end runs of real `yard` processes: broker, workers and push on
// 127.0.0.1. Each test bounds every wait; the Cluster kills every child at
// the end and prints their stderr when the test failed.
#include "tests/cluster.h"

#include <gtest/gtest.h>

#include <chrono>
#include <csignal>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include "common/job_id.h"

namespace yard {
namespace {

using std::chrono::steady_clock;

constexpr Millis kPushBound{60000};  // the test's bound on one push run
constexpr Millis kExitBound{15000};  // on a process exiting after a signal

// 20,000 echo jobs through one broker and two workers: every job completes,
// and the throughput reported is the jobs over the run's time.
TEST(ClusterTest, EchoTwentyThousandJobs) {
  Cluster c;
  auto broker = c.StartBroker();
  ASSERT_TRUE(broker);
  Process* w1 = c.StartWorker(broker->backend, 2);
  Process* w2 = c.StartWorker(broker->backend, 2);
  ASSERT_TRUE(w1 && w2);

  const auto started = steady_clock::now();
  PushRun run =
      c.RunPush({"--connect", broker->frontend, "--task", "echo", "--count",
                 "20000", "--size", "64", "--timeout", "45"},
                kPushBound);
  const double wall_s =
      std::chrono::duration<double>(steady_clock::now() - started).count();
  ExpectPushSucceeded(run, 20000);
  ASSERT_TRUE(run.report.is_object() && run.report["jobs_per_s"].is_number() &&
              run.report["elapsed_s"].is_number())
      << run.Describe();
  // The run's time (first submit to last answer) lies within the test's
  // measure of the push process, and is at least the slowest job's latency;
  // the rate is the answers over it.
  const double elapsed_s = run.report["elapsed_s"].get<double>();
  EXPECT_GT(elapsed_s, 0.0) << run.Describe();
  EXPECT_LE(elapsed_s, wall_s) << run.Describe();
  EXPECT_GE(elapsed_s * 1e6 + 1000,
            run.report["latency_us"]["max"].get<double>())
      << run.Describe();
  EXPECT_NEAR(run.report["jobs_per_s"].get<double>(), 20000 / elapsed_s,
              1e-6 * 20000 / elapsed_s)
      << run.Describe();

  EXPECT_TRUE(broker->process->Running());
  EXPECT_TRUE(w1->Running());
  EXPECT_TRUE(w2->Running());
}

// A worker SIGKILLed while it holds jobs: the broker notices its silence
// (3 heartbeats of 200 ms), requeues its jobs, and the other worker finishes
// them. Nothing is lost.
TEST(ClusterTest, WorkerKilledMidRunLosesNothing) {
  Cluster c;
  auto broker = c.StartBroker({"--heartbeat-ms", "200"});
  ASSERT_TRUE(broker);
  Process* victim = c.StartWorker(
      broker->backend, 2, {"--heartbeat-ms", "200", "--name", "victim"});
  Process* survivor = c.StartWorker(
      broker->backend, 2, {"--heartbeat-ms", "200", "--name", "survivor"});
  ASSERT_TRUE(victim && survivor);

  // 20,000 jobs of 1 ms on 4 slots: at least 5 s of work. The victim is
  // killed once a quarter is done, while the broker counts jobs in its
  // hands.
  Process* push = c.StartPush({"--connect", broker->frontend, "--task", "sleep",
                               "--count", "20000", "--payload", "1",
                               "--timeout", "45", "--heartbeat-ms", "200"});
  ASSERT_TRUE(push);
  nlohmann::json stats, held;
  ASSERT_TRUE(PollUntil(
      [&] {
        stats = BrokerStats(broker->frontend);
        held = WorkerNamed(stats["workers"], "victim");
        return held.is_object() && held["outstanding"].get<int64_t>() > 0 &&
               stats["counters"]["completed"].get<int64_t>() >= 5000;
      },
      Millis(30000)))
      << "the victim held no job: " << stats.dump();
  ASSERT_TRUE(push->Running()) << "push finished before the kill; "
                               << c.FinishPush(push, Millis(1000)).Describe();
  ASSERT_TRUE(victim->Signal(SIGKILL));
  auto victim_exit = victim->Wait(kExitBound);
  ASSERT_TRUE(victim_exit);
  EXPECT_TRUE(victim_exit->KilledBy(SIGKILL)) << victim_exit->ToString();

  PushRun run = c.FinishPush(push, kPushBound);
  ExpectPushSucceeded(run, 20000);
  // The jobs it held when it died went back to the queue and ran elsewhere.
  stats = BrokerStats(broker->frontend);
  ASSERT_TRUE(stats.is_object());
  EXPECT_EQ(stats["counters"]["workers_expired"], 1) << stats.dump();
  EXPECT_GT(stats["counters"]["redispatched"].get<int64_t>(), 0)
      << stats.dump();
  EXPECT_TRUE(WorkerNamed(stats["workers"], "victim").is_null())
      << stats.dump();
  EXPECT_TRUE(broker->process->Running());
  EXPECT_TRUE(survivor->Running());
}

// SIGTERM to a worker that is running jobs: it stops taking work, finishes
// the jobs it runs, returns their results and exits 0; push loses nothing
// (no other worker exists, so the drained worker ran them). Then SIGTERM to
// the idle broker: exit 0.
TEST(ClusterTest, WorkerSigtermFinishesRunningJobs) {
  Cluster c;
  auto broker = c.StartBroker({"--heartbeat-ms", "200"});
  ASSERT_TRUE(broker);
  Process* worker =
      c.StartWorker(broker->backend, 4, {"--heartbeat-ms", "200"});
  ASSERT_TRUE(worker);

  // Four jobs of 2 s on four slots: all running at once. SIGTERM once the
  // broker has dispatched all four to the worker.
  Process* push = c.StartPush({"--connect", broker->frontend, "--task", "sleep",
                               "--count", "4", "--payload", "2000", "--timeout",
                               "30", "--heartbeat-ms", "200"});
  ASSERT_TRUE(push);
  nlohmann::json stats;
  ASSERT_TRUE(PollUntil(
      [&] {
        stats = BrokerStats(broker->frontend);
        return stats.is_object() && stats["workers"].size() == 1 &&
               stats["workers"][0]["outstanding"] == 4;
      },
      Millis(30000)))
      << stats.dump();
  ASSERT_TRUE(push->Running());
  ASSERT_TRUE(worker->Signal(SIGTERM));
  auto worker_exit = worker->Wait(kExitBound);
  ASSERT_TRUE(worker_exit) << "worker did not exit within "
                           << kExitBound.count() << " ms of SIGTERM";
  EXPECT_TRUE(worker_exit->ExitedWith(0)) << worker_exit->ToString();
  // It drained with the four jobs in hand, and (no other worker exists) ran
  // them to the end: push gets all four results.
  EXPECT_NE(worker->Stderr().find("draining: 4 jobs in hand"),
            std::string::npos)
      << worker->Stderr();

  PushRun run = c.FinishPush(push, Millis(40000));
  ExpectPushSucceeded(run, 4);

  ASSERT_TRUE(broker->process->Signal(SIGTERM));
  auto broker_exit = broker->process->Wait(kExitBound);
  ASSERT_TRUE(broker_exit) << "broker did not exit within "
                           << kExitBound.count() << " ms of SIGTERM";
  EXPECT_TRUE(broker_exit->ExitedWith(0)) << broker_exit->ToString();
}

// An idle broker with a connected worker drains and exits 0 on SIGTERM; the
// worker survives the broker leaving and itself exits 0 on SIGTERM.
TEST(ClusterTest, IdleBrokerAndWorkerExitZeroOnSigterm) {
  Cluster c;
  auto broker = c.StartBroker({"--heartbeat-ms", "200"});
  ASSERT_TRUE(broker);
  Process* worker =
      c.StartWorker(broker->backend, 2, {"--heartbeat-ms", "200"});
  ASSERT_TRUE(worker);
  PushRun run = c.RunPush({"--connect", broker->frontend, "--task", "echo",
                           "--count", "200", "--size", "16", "--timeout", "30"},
                          Millis(40000));
  ExpectPushSucceeded(run, 200);

  ASSERT_TRUE(broker->process->Signal(SIGTERM));
  auto broker_exit = broker->process->Wait(kExitBound);
  ASSERT_TRUE(broker_exit) << "broker did not exit within "
                           << kExitBound.count() << " ms of SIGTERM";
  EXPECT_TRUE(broker_exit->ExitedWith(0)) << broker_exit->ToString();

  EXPECT_TRUE(worker->Running()) << "worker died when the broker left";
  ASSERT_TRUE(worker->Signal(SIGTERM));
  auto worker_exit = worker->Wait(kExitBound);
  ASSERT_TRUE(worker_exit) << "worker did not exit within "
                           << kExitBound.count() << " ms of SIGTERM";
  EXPECT_TRUE(worker_exit->ExitedWith(0)) << worker_exit->ToString();
}

// Jobs of the `fail` task are reported as failed, not lost, and push
// exits 1 (unless --allow-failures), saying why they failed.
TEST(ClusterTest, FailTaskCountsAsFailedNotLost) {
  Cluster c;
  auto broker = c.StartBroker();
  ASSERT_TRUE(broker);
  ASSERT_TRUE(c.StartWorker(broker->backend, 2));
  PushRun run = c.RunPush({"--connect", broker->frontend, "--task", "fail",
                           "--count", "300", "--size", "8", "--timeout", "30"},
                          Millis(40000));
  ASSERT_TRUE(run.exit) << run.Describe();
  EXPECT_TRUE(run.exit->ExitedWith(1)) << run.Describe();
  EXPECT_EQ(run.Count("submitted"), 300) << run.Describe();
  EXPECT_EQ(run.Count("failed"), 300) << run.Describe();
  EXPECT_EQ(run.Count("completed"), 0) << run.Describe();
  EXPECT_EQ(run.Count("lost"), 0) << run.Describe();
  // Why they failed: counted by kind, the first few with their messages.
  const auto& failures = run.report["failures"];
  EXPECT_EQ(failures["by_kind"], nlohmann::json({{"Failed", 300}}))
      << run.Describe();
  ASSERT_EQ(failures["examples"].size(), 5u) << run.Describe();
  EXPECT_NE(
      failures["examples"][0]["error"].get<std::string>().find("always fails"),
      std::string::npos)
      << run.Describe();

  PushRun allowed =
      c.RunPush({"--connect", broker->frontend, "--task", "fail", "--count",
                 "10", "--timeout", "30", "--allow-failures", "--print-ids"},
                Millis(40000));
  ASSERT_TRUE(allowed.exit) << allowed.Describe();
  EXPECT_TRUE(allowed.exit->ExitedWith(0)) << allowed.Describe();
  EXPECT_EQ(allowed.Count("failed"), 10) << allowed.Describe();
  EXPECT_EQ(allowed.report["ids"].size(), 10u) << allowed.Describe();
}

// --print-ids writes each id to a pipe while the jobs still run (a script
// looks them up with `yard result` meanwhile), not only when push exits.
TEST(ClusterTest, PrintedIdsReachAPipeBeforePushEnds) {
  Cluster c;
  auto broker = c.StartBroker();
  ASSERT_TRUE(broker);
  ASSERT_TRUE(c.StartWorker(broker->backend, 1));
  Process* push =
      c.Start("push", {"push", "--connect", broker->frontend, "--task", "hang",
                       "--count", "1", "--print-ids", "--timeout", "60"});
  ASSERT_NE(push, nullptr);
  const std::optional<std::string> id = push->ReadLine(Millis(10000));
  ASSERT_TRUE(id) << c.Describe();
  EXPECT_TRUE(JobId::Parse(*id).has_value()) << *id;
  EXPECT_TRUE(push->Running()) << "the hang job cannot have finished";
  push->Kill();
}

// Open loop (--rate) counts latency from each job's intended send time: 20
// jobs of 50 ms each, one in flight at a time, cannot keep up with 100/s, so
// the last one is sent ~800 ms after it was due and its latency shows that,
// where submit-to-result would say ~50 ms (coordinated omission).
TEST(ClusterTest, RateLatencyCountsFromIntendedSendTime) {
  Cluster c;
  auto broker = c.StartBroker();
  ASSERT_TRUE(broker);
  ASSERT_TRUE(c.StartWorker(broker->backend, 1));
  PushRun run = c.RunPush(
      {"--connect", broker->frontend, "--task", "sleep", "--payload", "50",
       "--count", "20", "--rate", "100", "--window", "1", "--timeout", "30"},
      Millis(40000));
  ASSERT_TRUE(run.exit) << run.Describe();
  EXPECT_TRUE(run.exit->ExitedWith(0)) << run.Describe();
  EXPECT_EQ(run.Count("completed"), 20) << run.Describe();
  // Job i runs no earlier than 50 ms * i, and was due at 10 ms * i: the
  // last is at least 19 * 40 ms + 50 ms late by construction.
  const auto max_us = run.report["latency_us"]["max"].get<int64_t>();
  EXPECT_GE(max_us, 19 * 40'000 + 50'000) << run.Describe();
}

// With no worker at all, nothing can complete: push reports the jobs lost
// and exits 1 once its --timeout is up.
TEST(ClusterTest, NoWorkerMeansLostAndExitOne) {
  Cluster c;
  auto broker = c.StartBroker();
  ASSERT_TRUE(broker);
  PushRun run = c.RunPush({"--connect", broker->frontend, "--task", "echo",
                           "--count", "10", "--size", "8", "--timeout", "2"},
                          Millis(20000));
  ASSERT_TRUE(run.exit) << run.Describe();
  EXPECT_TRUE(run.exit->ExitedWith(1)) << run.Describe();
  EXPECT_EQ(run.Count("submitted"), 10) << run.Describe();
  EXPECT_EQ(run.Count("completed"), 0) << run.Describe();
  EXPECT_EQ(run.Count("lost"), 10) << run.Describe();
}

}  // namespace
}  // namespace yard

namespace yard {
namespace {

// A broker whose queue is tiny answers Busy; push retries with the same ids
// after the retry-after and every job still completes once.
TEST(ClusterTest, FullQueueMeansBusyRetriesNotLoss) {
  Cluster c;
  auto broker = c.StartBroker({"--max-queue", "20"});
  ASSERT_TRUE(broker);
  ASSERT_TRUE(c.StartWorker(broker->backend, 2, {"--prefetch", "0"}));
  PushRun run =
      c.RunPush({"--connect", broker->frontend, "--task", "sleep", "--payload",
                 "1", "--count", "400", "--window", "200", "--timeout", "45"},
                kPushBound);
  ExpectPushSucceeded(run, 400);
  EXPECT_GT(run.Count("busy"), 0) << run.Describe();
  EXPECT_EQ(run.Count("duplicates"), 0) << run.Describe();
}

// Two brokers, one worker serving both, push spread over both; one broker is
// SIGKILLed mid-run. Its jobs are resent by the producer to the other broker
// (memory mode: at-least-once), and none is lost.
TEST(ClusterTest, BrokerKilledMidRunLosesNothing) {
  Cluster c;
  auto b1 = c.StartBroker({"--heartbeat-ms", "200"});
  auto b2 = c.StartBroker({"--heartbeat-ms", "200"});
  ASSERT_TRUE(b1 && b2);
  ASSERT_TRUE(c.StartWorker(b1->backend + "," + b2->backend, 2,
                            {"--heartbeat-ms", "200"}));
  Process* push =
      c.StartPush({"--connect", b1->frontend + "," + b2->frontend, "--task",
                   "sleep", "--payload", "1", "--count", "6000", "--window",
                   "200", "--heartbeat-ms", "200", "--timeout", "50"});
  ASSERT_TRUE(push);
  // Killed a part of the way in, while it holds jobs it accepted.
  nlohmann::json stats;
  ASSERT_TRUE(PollUntil(
      [&] {
        stats = BrokerStats(b1->frontend);
        return stats.is_object() && stats["counters"]["completed"] >= 1000 &&
               stats["queue"]["ready"].get<int64_t>() +
                       stats["queue"]["running"].get<int64_t>() >
                   0;
      },
      Millis(30000)))
      << stats.dump();
  ASSERT_TRUE(push->Running()) << "push ended before the kill";
  b1->process->Signal(SIGKILL);
  PushRun run = c.FinishPush(push, kPushBound);
  ExpectPushSucceeded(run, 6000);
  EXPECT_GT(run.Count("resent"), 0) << run.Describe();
  EXPECT_TRUE(b2->process->Running());
}

}  // namespace
}  // namespace yard
