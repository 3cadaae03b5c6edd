// Cancel and progress end to end, memory mode: a real `yard broker` and
// `yard worker` on 127.0.0.1, the producer library in this process, and
// `yard cancel`. A cancelled job ends once, as Cancelled, wherever it was
// (waiting, delayed, running), and is never run again.
#include <gtest/gtest.h>

#include <chrono>
#include <future>
#include <mutex>
#include <optional>
#include <string>
#include <vector>

#include "client/producer.h"
#include "common/clock.h"
#include "tests/cluster.h"

namespace yard {
namespace {

constexpr int64_t kJobTimeoutMs = 60000;
constexpr auto kWait = std::chrono::seconds(20);

int64_t Counter(const nlohmann::json& stats, const char* name) {
  const auto& c = stats["counters"][name];
  return c.is_number() ? c.get<int64_t>() : -1;
}

// Waits for a counter of the broker's stats to reach `want`.
bool CounterReaches(const std::string& frontend, const char* name, int64_t want,
                    nlohmann::json* stats) {
  return PollUntil(
      [&] {
        *stats = BrokerStats(frontend);
        return Counter(*stats, name) >= want;
      },
      Millis(20000));
}

struct Replies {
  std::mutex mu;
  std::vector<CancelReply> all;
  size_t Count(CancelReply::Kind kind) {
    std::lock_guard<std::mutex> lock(mu);
    size_t n = 0;
    for (const CancelReply& r : all) n += r.kind == kind ? 1 : 0;
    return n;
  }
};

std::unique_ptr<Producer> MakeProducer(const std::string& frontend,
                                       Replies* replies,
                                       ProgressCallback on_progress = {}) {
  ProducerOptions opts;
  opts.brokers = {frontend};
  opts.on_cancel = [replies](const CancelReply& r) {
    std::lock_guard<std::mutex> lock(replies->mu);
    replies->all.push_back(r);
  };
  opts.on_progress = std::move(on_progress);
  auto created = Producer::Create(std::move(opts));
  EXPECT_TRUE(created.ok()) << created.status().ToString();
  return created.ok() ? std::move(created).value() : nullptr;
}

JobSpec NewJob(const char* task) {
  JobSpec job;
  job.id = JobId::Random();
  job.task = task;
  return job;
}

// A broker (no worker) and a producer connected to it.
class CancelTest : public ::testing::Test {
 protected:
  void Connect(ProgressCallback on_progress = {}) {
    broker_ = cluster_.StartBroker({"--heartbeat-ms", "200"});
    ASSERT_TRUE(broker_);
    producer_ =
        MakeProducer(broker_->frontend, &replies_, std::move(on_progress));
    ASSERT_TRUE(producer_);
  }
  Cluster cluster_;
  std::optional<BrokerHandle> broker_;
  Replies replies_;
  // Before producer_: its I/O thread writes them until it is closed.
  std::mutex mu_;
  std::vector<ProgressUpdate> seen_;
  std::unique_ptr<Producer> producer_;
};

void ExpectCancelled(std::future<JobOutcome>& f, const char* what) {
  ASSERT_EQ(f.wait_for(kWait), std::future_status::ready) << what;
  const JobOutcome o = f.get();
  EXPECT_EQ(o.kind, JobOutcome::Kind::kFailed) << what << ": " << o.error;
  EXPECT_EQ(o.status, wire::ResultStatus::Cancelled) << what << ": " << o.error;
}

// A job waiting for a worker, a delayed job and a running one: each ends
// Cancelled exactly once; the running one's worker hears Cancel and its
// answer is not a second result, and it is not retried although it may be.
TEST_F(CancelTest, WaitingDelayedAndRunningJobsEndCancelledOnce) {
  ASSERT_NO_FATAL_FAILURE(Connect());
  Cluster& cluster = cluster_;
  auto& broker = broker_;
  Replies& replies = replies_;
  auto& producer = producer_;
  // No worker yet: the job waits in the queue.
  JobSpec waiting = NewJob("echo");
  auto waiting_f = producer->Submit(waiting, kJobTimeoutMs);
  JobSpec delayed = NewJob("echo");
  delayed.not_before_ms = UnixMillis() + 600000;
  auto delayed_f = producer->Submit(delayed, kJobTimeoutMs);
  nlohmann::json stats;
  ASSERT_TRUE(CounterReaches(broker->frontend, "accepted", 2, &stats))
      << stats.dump();
  const JobId queued[] = {waiting.id, delayed.id};
  producer->Cancel(queued);
  ExpectCancelled(waiting_f, "waiting job");
  ExpectCancelled(delayed_f, "delayed job");

  // A job that runs until it is cancelled, with attempts to spare.
  ASSERT_TRUE(cluster.StartWorker(broker->backend, 1, {"--name", "w"}));
  JobSpec running = NewJob("hang");
  running.max_attempts = 3;
  auto running_f = producer->Submit(running, kJobTimeoutMs);
  ASSERT_TRUE(CounterReaches(broker->frontend, "dispatched", 1, &stats))
      << stats.dump();
  producer->Cancel({&running.id, 1});
  ExpectCancelled(running_f, "running job");
  // The worker stopped the handler and answered; that answer went nowhere.
  ASSERT_TRUE(CounterReaches(broker->frontend, "results_late", 1, &stats))
      << stats.dump();
  EXPECT_EQ(Counter(stats, "cancelled"), 3) << stats.dump();
  EXPECT_EQ(Counter(stats, "dispatched"), 1) << stats.dump();
  EXPECT_EQ(Counter(stats, "retried"), 0) << stats.dump();
  EXPECT_TRUE(PollUntil(
      [&] { return replies.Count(CancelReply::Kind::kCancelled) == 3; },
      Millis(5000)));
  // The slot came back: the worker runs the next job.
  JobSpec next = NewJob("echo");
  auto next_f = producer->Submit(next, kJobTimeoutMs);
  ASSERT_EQ(next_f.wait_for(kWait), std::future_status::ready);
  EXPECT_EQ(next_f.get().kind, JobOutcome::Kind::kCompleted);
  EXPECT_EQ(producer->counters().duplicates, 0u);
  EXPECT_EQ(producer->counters().completed, 1u);
  EXPECT_EQ(producer->counters().failed, 3u);
}

// `yard cancel` from another connection without CURVE is not the owner:
// refused (a visible line, exit 1, a counter); an id no broker holds is
// "not found".
TEST_F(CancelTest, TheCliIsRefusedForAnotherConnectionsJob) {
  ASSERT_NO_FATAL_FAILURE(Connect());
  Cluster& cluster = cluster_;
  auto& broker = broker_;
  auto& producer = producer_;
  JobSpec job = NewJob("echo");
  auto job_f = producer->Submit(job, kJobTimeoutMs);
  nlohmann::json stats;
  ASSERT_TRUE(CounterReaches(broker->frontend, "accepted", 1, &stats));
  const JobId unknown = JobId::Random();
  Process* cli = cluster.Start(
      "cancel", {"cancel", "--connect", broker->frontend, "--timeout", "10",
                 job.id.ToString(), unknown.ToString()});
  ASSERT_TRUE(cli);
  auto out = cli->ReadAll(Millis(20000));
  auto exit = cli->Wait(Millis(5000));
  ASSERT_TRUE(out && exit);
  EXPECT_EQ(exit->code, 1) << *out;
  EXPECT_NE(out->find(job.id.ToString() + " refused: "), std::string::npos)
      << *out;
  EXPECT_NE(out->find(unknown.ToString() + " not found"), std::string::npos)
      << *out;
  ASSERT_TRUE(CounterReaches(broker->frontend, "cancels_refused", 1, &stats));
  // The job is untouched: its owner cancels it.
  producer->Cancel({&job.id, 1});
  ExpectCancelled(job_f, "owner's cancel");
}

// A handler's progress reports reach the producer's callback, in order,
// before the job's result.
TEST_F(CancelTest, ProgressReachesTheProducer) {
  ASSERT_NO_FATAL_FAILURE(Connect([this](const ProgressUpdate& p) {
    std::lock_guard<std::mutex> lock(mu_);
    seen_.push_back(p);
  }));
  ASSERT_TRUE(cluster_.StartWorker(broker_->backend, 1));
  auto& broker = broker_;
  auto& producer = producer_;
  JobSpec job = NewJob("progress");
  const std::string steps = "4";
  job.payload = AsBytes(steps);
  auto f = producer->Submit(job, kJobTimeoutMs);
  ASSERT_EQ(f.wait_for(kWait), std::future_status::ready);
  const JobOutcome o = f.get();
  ASSERT_EQ(o.kind, JobOutcome::Kind::kCompleted) << o.error;
  EXPECT_EQ(o.output, "done");
  std::lock_guard<std::mutex> lock(mu_);
  const std::vector<ProgressUpdate>& seen = seen_;
  // Each step is longer than the reporting interval: all four arrive.
  ASSERT_EQ(seen.size(), 4u);
  for (size_t i = 0; i < seen.size(); ++i) {
    EXPECT_EQ(seen[i].id, job.id);
    EXPECT_EQ(seen[i].attempt, 1);
    EXPECT_FLOAT_EQ(seen[i].fraction, float(i + 1) / 4.0f);
    EXPECT_EQ(seen[i].message, "step " + std::to_string(i + 1) + " of 4");
  }
  const nlohmann::json stats = BrokerStats(broker->frontend);
  EXPECT_EQ(Counter(stats, "progress"), 4) << stats.dump();
  EXPECT_EQ(Counter(stats, "progress_refused"), 0) << stats.dump();
}

}  // namespace
}  // namespace yard
