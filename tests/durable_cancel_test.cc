// Cancel across brokers in durable mode: two real `yard` brokers on one real
// redis-server, CURVE on, the owner's jobs submitted at broker A and the
// Cancel sent to broker B, which does not hold them. B records the cancel in
// Redis (the canceller hears "requested"); A finishes each job Cancelled when
// it claims it or renews its lease, and the owner and the canceller both get
// the Cancelled result. A key that did not submit the job is refused, and
// `yard cancel --redis` (an admin's cancel) works with no broker asked.
#include <gtest/gtest.h>

#include <chrono>
#include <future>
#include <mutex>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include "client/producer.h"
#include "common/clock.h"
#include "queue/redis_layout.h"
#include "redis/redis_call.h"
#include "testing/redis_fixture.h"
#include "tests/cluster.h"
#include "tests/curve_key_files.h"

namespace yard {
namespace {

constexpr int64_t kJobTimeoutMs = 60000;
constexpr auto kWait = std::chrono::seconds(20);

struct Replies {
  std::mutex mu;
  std::vector<CancelReply> all;
  size_t Count(const JobId& id, CancelReply::Kind kind) {
    std::lock_guard<std::mutex> lock(mu);
    size_t n = 0;
    for (const CancelReply& r : all) n += r.id == id && r.kind == kind;
    return n;
  }
};

JobSpec Hang() {
  JobSpec job;
  job.id = JobId::Random();
  job.task = "hang";  // runs until it is cancelled
  job.max_attempts = 3;
  return job;
}

void ExpectCancelled(std::future<JobOutcome>& f, const char* what) {
  ASSERT_EQ(f.wait_for(kWait), std::future_status::ready) << what;
  const JobOutcome o = f.get();
  EXPECT_EQ(o.status, wire::ResultStatus::Cancelled) << what << ": " << o.error;
}

class DurableCancelTest : public RedisFixture {
 protected:
  // Brokers A and B on one Redis, with CURVE: producer keys "owner" and
  // "stranger", admin key "admin".
  void StartBrokers() {
    keys_.emplace(cluster_,
                  std::vector<std::string>{"broker", "owner", "stranger",
                                           "admin", "worker"});
    for (auto* b : {&a_, &b_}) {
      *b = cluster_.StartBroker(
          {"--redis", server_->url(), "--heartbeat-ms", "200", "--curve-secret",
           keys_->Secret("broker"), "--producer-keys",
           keys_->SetOf(b == &a_ ? "producers-a" : "producers-b",
                        {"owner", "stranger"}),
           "--worker-keys",
           keys_->SetOf(b == &a_ ? "workers-a" : "workers-b", {"worker"}),
           "--admin-keys", keys_->Public("admin")});
      ASSERT_TRUE(*b);
    }
  }

  std::unique_ptr<Producer> Connect(const std::string& key,
                                    const std::string& frontend,
                                    Replies* replies) {
    ProducerOptions opts;
    opts.brokers = {frontend};
    opts.curve = keys_->Client(key);
    opts.on_cancel = [replies](const CancelReply& r) {
      std::lock_guard<std::mutex> lock(replies->mu);
      replies->all.push_back(r);
    };
    auto created = Producer::Create(std::move(opts));
    EXPECT_TRUE(created.ok()) << created.status().ToString();
    return created.ok() ? std::move(created).value() : nullptr;
  }

  bool StartWorker(const std::string& backend) {
    return cluster_.StartWorker(backend, 4,
                                {"--heartbeat-ms", "200", "--curve-secret",
                                 keys_->Secret("worker"), "--broker-key",
                                 keys_->Public("broker")}) != nullptr;
  }

  int64_t RedisInt(std::vector<std::string> args) {
    auto r = RedisCall(*admin_, std::move(args), 2000);
    return r.ok() ? r->integer : -1;
  }

  // Jobs in Redis: ready (stream entries) and delayed.
  bool InRedis(int64_t ready, int64_t delayed) {
    const QueueKeys k("default");
    return PollUntil(
        [&] {
          int64_t n = 0;
          for (const std::string& s : k.stream) n += RedisInt({"XLEN", s});
          return n == ready && RedisInt({"ZCARD", k.delayed}) == delayed;
        },
        Millis(10000));
  }

  // `yard <args>`: its stdout once it exits with `code`.
  std::string Yard(std::vector<std::string> args, int code) {
    Process* p = cluster_.Start(args[0], args);
    if (p == nullptr) return "";
    auto out = p->ReadAll(Millis(30000));
    auto exit = p->Wait(Millis(5000));
    EXPECT_TRUE(out && exit && exit->ExitedWith(code))
        << out.value_or("") << p->Stderr();
    return out.value_or("");
  }

  // Brokers A and B, and producers: the owner's at A, `other_key`'s at B.
  void StartWithProducers(const std::string& other_key) {
    ASSERT_NO_FATAL_FAILURE(StartBrokers());
    owner_ = Connect("owner", a_->frontend, &owner_replies_);
    other_ = Connect(other_key, b_->frontend, &other_replies_);
    ASSERT_TRUE(owner_ && other_);
  }

  Cluster cluster_;
  std::optional<Keys> keys_;
  std::optional<BrokerHandle> a_, b_;
  // Before the producers: their I/O threads write them until closed.
  Replies owner_replies_, other_replies_;
  std::unique_ptr<Producer> owner_, other_;
};

// Waiting in Redis, delayed, and running at A: cancelled by the owner's key
// through B. Each ends Cancelled once, and `yard result` says so.
TEST_F(DurableCancelTest, TheOwnerCancelsThroughABrokerThatDoesNotHoldTheJob) {
  ASSERT_NO_FATAL_FAILURE(StartWithProducers("owner"));
  auto& owner = owner_;
  auto& canceller = other_;
  Replies& canceller_replies = other_replies_;

  // No worker anywhere: one job waits in Redis, one is delayed.
  JobSpec waiting = Hang(), delayed = Hang();
  delayed.not_before_ms = UnixMillis() + 600000;
  auto waiting_f = owner->Submit(waiting, kJobTimeoutMs);
  auto delayed_f = owner->Submit(delayed, kJobTimeoutMs);
  ASSERT_TRUE(InRedis(1, 1));
  const JobId both[] = {waiting.id, delayed.id};
  canceller->Cancel(both);
  for (const JobId& id : both) {
    EXPECT_TRUE(PollUntil(
        [&] {
          return canceller_replies.Count(id, CancelReply::Kind::kRequested) > 0;
        },
        Millis(10000)));
  }
  // Recorded, not done: nothing is cancelled until a broker claims them.
  EXPECT_EQ(waiting_f.wait_for(std::chrono::milliseconds(300)),
            std::future_status::timeout);
  // A worker at A: A claims both, finds the cancels, finishes them.
  ASSERT_TRUE(StartWorker(a_->backend));
  ExpectCancelled(waiting_f, "waiting job");
  ExpectCancelled(delayed_f, "delayed job");

  // Running at A, cancelled through B: A's lease renewal finds it.
  JobSpec running = Hang();
  auto running_f = owner->Submit(running, kJobTimeoutMs);
  ASSERT_TRUE(InRedis(1, 0));  // claimed and running (pending in the stream)
  ASSERT_EQ(running_f.wait_for(std::chrono::milliseconds(300)),
            std::future_status::timeout);
  canceller->Cancel({&running.id, 1});
  ExpectCancelled(running_f, "running job");
  // The canceller got a copy of each result: a "cancelled" answer.
  for (const JobId& id : {waiting.id, delayed.id, running.id}) {
    EXPECT_TRUE(PollUntil(
        [&] {
          return canceller_replies.Count(id, CancelReply::Kind::kCancelled) ==
                 1;
        },
        Millis(10000)))
        << id.ToString();
  }
  EXPECT_EQ(owner->counters().duplicates, 0u);
  // Stored for `yard result`; the cancel records are gone; nothing is left.
  const std::string out =
      Yard({"result", running.id.ToString(), "--redis", server_->url()}, 0);
  EXPECT_NE(out.find("Cancelled"), std::string::npos) << out;
  EXPECT_TRUE(PollUntil(
      [&] {
        return RedisInt({"HLEN", QueueKeys("default").cancels}) == 0;
      },
      Millis(10000)));
  EXPECT_TRUE(InRedis(0, 0));
}

// Another producer key, at a broker that never saw the job submitted, may
// not cancel it: a delayed job is refused at once (its record names its
// owner); a waiting one is recorded, refused where it is claimed, and runs.
TEST_F(DurableCancelTest, AnotherKeyIsRefusedAtABrokerThatNeverSawTheJob) {
  ASSERT_NO_FATAL_FAILURE(StartWithProducers("stranger"));
  auto& owner = owner_;
  auto& stranger = other_;
  Replies& stranger_replies = other_replies_;
  JobSpec delayed = Hang();
  delayed.not_before_ms = UnixMillis() + 600000;
  JobSpec waiting;
  waiting.id = JobId::Random();
  waiting.task = "echo";
  auto delayed_f = owner->Submit(delayed, kJobTimeoutMs);
  auto waiting_f = owner->Submit(waiting, kJobTimeoutMs);
  ASSERT_TRUE(InRedis(1, 1));
  const JobId both[] = {delayed.id, waiting.id};
  stranger->Cancel(both);
  EXPECT_TRUE(PollUntil(
      [&] {
        return stranger_replies.Count(delayed.id,
                                      CancelReply::Kind::kRefused) == 1 &&
               stranger_replies.Count(waiting.id,
                                      CancelReply::Kind::kRequested) > 0;
      },
      Millis(10000)));
  ASSERT_TRUE(StartWorker(a_->backend));
  ASSERT_EQ(waiting_f.wait_for(kWait), std::future_status::ready);
  EXPECT_EQ(waiting_f.get().kind, JobOutcome::Kind::kCompleted);
  EXPECT_EQ(stranger_replies.Count(waiting.id, CancelReply::Kind::kCancelled),
            0u);
  // Still delayed, untouched; its owner can cancel it.
  EXPECT_EQ(RedisInt({"ZCARD", QueueKeys("default").delayed}), 1);
  owner->Cancel({&delayed.id, 1});
  ExpectCancelled(delayed_f, "the owner's cancel");
}

// `yard cancel --redis`: an admin's cancel with no broker asked, for a job
// waiting in Redis; it prints "cancelled" once a broker has finished it.
TEST_F(DurableCancelTest, TheCliCancelsThroughRedis) {
  auto broker = cluster_.StartBroker(
      {"--redis", server_->url(), "--heartbeat-ms", "200"});
  ASSERT_TRUE(broker);
  Replies replies;
  ProducerOptions opts;
  opts.brokers = {broker->frontend};
  auto producer = Producer::Create(std::move(opts));
  ASSERT_TRUE(producer.ok());
  JobSpec job = Hang();
  auto f = (*producer)->Submit(job, kJobTimeoutMs);
  ASSERT_TRUE(InRedis(1, 0));
  Process* cli =
      cluster_.Start("cancel", {"cancel", "--redis", server_->url(),
                                "--timeout", "20", job.id.ToString()});
  ASSERT_TRUE(cli);
  ASSERT_TRUE(
      cluster_.StartWorker(broker->backend, 2, {"--heartbeat-ms", "200"}));
  ExpectCancelled(f, "cancelled through Redis");
  auto out = cli->ReadAll(Millis(30000));
  auto exit = cli->Wait(Millis(5000));
  ASSERT_TRUE(out && exit);
  EXPECT_EQ(exit->code, 0) << *out << cli->Stderr();
  EXPECT_NE(out->find(job.id.ToString() + " cancelled"), std::string::npos)
      << *out;
  EXPECT_NE(cli->Stderr().find("admin_cancel"), std::string::npos)
      << cli->Stderr();
}

// `yard result` shows a durable job's last progress report while it runs
// (status Unfinished) and after (beside its result).
TEST_F(DurableCancelTest, YardResultShowsProgress) {
  auto broker = cluster_.StartBroker(
      {"--redis", server_->url(), "--heartbeat-ms", "200"});
  ASSERT_TRUE(broker);
  ASSERT_TRUE(
      cluster_.StartWorker(broker->backend, 1, {"--heartbeat-ms", "200"}));
  ProducerOptions opts;
  opts.brokers = {broker->frontend};
  auto producer = Producer::Create(std::move(opts));
  ASSERT_TRUE(producer.ok());
  JobSpec job;
  job.id = JobId::Random();
  job.task = "progress";  // a report every 150 ms step
  const std::string steps = "20";
  job.payload = AsBytes(steps);
  auto f = (*producer)->Submit(job, kJobTimeoutMs);
  auto result = [&] {
    const std::string out = Yard(
        {"result", job.id.ToString(), "--redis", server_->url(), "--json"}, 0);
    return nlohmann::json::parse(out, nullptr, false);
  };
  // While it runs: bounded tries, each a `yard result` process.
  nlohmann::json running;
  for (int i = 0; i < 20 && f.wait_for(std::chrono::milliseconds(0)) !=
                                std::future_status::ready;
       ++i) {
    if (RedisInt({"EXISTS", QueueKeys("default").ProgressKey(job.id)}) == 1) {
      running = result();
      break;
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(100));
  }
  ASSERT_TRUE(running.is_object()) << "no progress stored while it ran";
  EXPECT_EQ(running["status"], "Unfinished") << running.dump();
  EXPECT_GT(running["progress"]["fraction"].get<double>(), 0) << running.dump();
  EXPECT_LT(running["progress"]["fraction"].get<double>(), 1) << running.dump();
  ASSERT_EQ(f.wait_for(kWait), std::future_status::ready);
  ASSERT_EQ(f.get().kind, JobOutcome::Kind::kCompleted);
  // After: the result, and the last report (written with it).
  const nlohmann::json done = result();
  EXPECT_EQ(done["status"], "Ok") << done.dump();
  EXPECT_EQ(done["progress"]["fraction"], 1.0) << done.dump();
  EXPECT_EQ(done["progress"]["message"], "step 20 of 20") << done.dump();
}

}  // namespace
}  // namespace yard
