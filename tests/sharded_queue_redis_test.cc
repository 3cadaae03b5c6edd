// ShardedQueue over real Redis shards (a durable queue of two shards on one
// real redis-server, as NewRedisQueue makes it for a broker): what it does
// with a job waiting in two shards, where Cancel and the duplicate drop at
// claim meet a Redis shard's own rules. A Redis shard cancels only jobs it
// has claimed from Redis and not handed out; a job still in Redis cannot be
// cancelled. (Routing and claim shares: queue/sharded_queue_test.cc.)
#include <gtest/gtest.h>

#include <csignal>
#include <functional>
#include <memory>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>
#include <zmq.hpp>

#include "common/clock.h"
#include "queue/job_queue.h"
#include "queue/queue_events.h"
#include "queue/redis_layout.h"
#include "schemas/codec.h"
#include "testing/redis_fixture.h"

namespace yard {
namespace {

const bool kSigpipeIgnored = [] {  // hiredis writes with write(2)
  std::signal(SIGPIPE, SIG_IGN);
  return true;
}();

constexpr int kShards = 2;
constexpr int64_t kWaitMs = 20000;  // a bound; waits end when done

class ShardedQueueRedisTest : public RedisFixture {
 protected:
  void SetUp() override {
    RedisFixture::SetUp();
    if (HasFatalFailure()) return;
    RedisQueueOptions o;
    o.url = server_->url();
    o.consumer = "b1";
    o.shards = kShards;
    auto q = NewRedisQueue(o);
    ASSERT_TRUE(q.ok()) << q.status().ToString();
    q_ = std::move(q).value();
  }

  // Turns the queue's loop (no claims of the test's: the shards claim ahead
  // into their buffers as much as Want allows) until `until()` or kWaitMs.
  bool Pump(const std::function<bool()>& until) {
    const int64_t deadline = MonoMillis() + kWaitMs;
    std::vector<zmq_pollitem_t> items(kMaxQueuePollItems);
    while (!until()) {
      if (MonoMillis() >= deadline) return false;
      const int n = q_->PollItems(items.data(), kMaxQueuePollItems);
      zmq_poll(items.data(), n, 10);
      q_->OnPollEvents(items.data(), n);
      q_->Tick(MonoMillis());
    }
    return true;
  }

  // Pushes one job (a record of its own) and waits for the answer.
  void Push(const JobId& id) {
    JobSpec spec;
    spec.id = id;
    spec.task = "echo";
    Bytes b = writer_.EncodeJob(spec);
    auto blob = std::make_shared<std::string>(
        reinterpret_cast<const char*>(b.data()), b.size());
    NewJob j;
    j.id = id;
    j.blob.owner = blob;
    j.blob.bytes = {reinterpret_cast<const uint8_t*>(blob->data()),
                    blob->size()};
    j.route = "producer";
    bool done = false;
    Status status;
    q_->Push({&j, 1}, [&](Status s, std::span<const PushOutcome>) {
      status = s;
      done = true;
    });
    ASSERT_TRUE(Pump([&] { return done; }));
    ASSERT_TRUE(status.ok()) << status.ToString();
  }

  // Records (here: jobs) each shard holds in Redis, waiting or leased.
  std::vector<int64_t> InRedis() {
    std::vector<int64_t> n;
    for (const QueueKeys& keys : ShardKeys("default", kShards)) {
      int64_t records = 0;
      for (const std::string& stream : keys.stream) {
        auto r = RedisCall(*admin_, {"XLEN", stream});
        EXPECT_TRUE(r.ok()) << r.status().ToString();
        records += r.ok() ? r->integer : 0;
      }
      n.push_back(records);
    }
    return n;
  }

  // The shards take the jobs from Redis into their buffers (claimed there,
  // not handed out).
  void TakeIntoBuffers(uint64_t jobs) {
    q_->Want(64);
    ASSERT_TRUE(Pump([&] { return q_->Stats().ready == jobs; }))
        << q_->Stats().ready << " of " << jobs << " buffered";
  }

  std::vector<JobId> Claim(size_t max) {
    std::vector<JobId> ids;
    q_->Claim(max, [&](std::span<const ClaimedJob> jobs) {
      for (const ClaimedJob& j : jobs) ids.push_back(j.id);
    });
    return ids;
  }

  int64_t Counter(const char* name) {
    nlohmann::json j;
    q_->DescribeStats(&j);
    return j["durable"]["counters"].value(name, int64_t{-1});
  }

  std::unique_ptr<DurableQueue> q_;
  Writer writer_;
};

// A resend that went to the other shard: the broker runs one copy, drops
// the other at claim time (acked in its shard), and nothing is left in
// Redis once the first finishes.
TEST_F(ShardedQueueRedisTest, ASecondCopyInAnotherShardIsDroppedAtClaim) {
  const JobId id = JobId::Random();
  Push(id);
  Push(id);  // the resend: the next shard
  ASSERT_EQ(InRedis(), (std::vector<int64_t>{1, 1}));
  TakeIntoBuffers(2);
  std::vector<JobId> got = Claim(10);
  ASSERT_EQ(got, std::vector<JobId>{id});
  EXPECT_EQ(Counter("duplicates_dropped"), 1);
  EXPECT_EQ(q_->Stats().ready, 0u);
  ASSERT_TRUE(Pump([&] {
    auto n = InRedis();
    return n[0] + n[1] == 1;  // the copy is gone from its shard
  }));
  q_->Complete(got[0], {});
  ASSERT_TRUE(Pump([&] { return InRedis() == std::vector<int64_t>{0, 0}; }));
  EXPECT_TRUE(Claim(10).empty());
  EXPECT_TRUE(Pump([&] { return q_->Drained(); }));  // its writes answered
}

// Cancel asks every shard; the id is reported once, and both copies leave
// Redis. A job still in Redis (not claimed here yet) is not cancellable.
TEST_F(ShardedQueueRedisTest, CancelReportsACopiedIdOnce) {
  const JobId id = JobId::Random();
  Push(id);
  Push(id);
  ASSERT_EQ(InRedis(), (std::vector<int64_t>{1, 1}));
  std::vector<JobId> removed;
  EXPECT_EQ(q_->Cancel(std::span<const JobId>(&id, 1), &removed), 0u);
  EXPECT_TRUE(removed.empty());
  EXPECT_FALSE(q_->WaitingRoute(id));
  TakeIntoBuffers(2);
  // Claimed here and accepted here: its producer is known, so a broker can
  // check who asks before it cancels.
  EXPECT_EQ(q_->WaitingRoute(id), "producer");
  EXPECT_EQ(q_->Cancel(std::span<const JobId>(&id, 1), &removed), 1u);
  EXPECT_EQ(removed, std::vector<JobId>{id});
  EXPECT_EQ(q_->Stats().ready, 0u);
  ASSERT_TRUE(Pump([&] { return InRedis() == std::vector<int64_t>{0, 0}; }));
  EXPECT_TRUE(Claim(10).empty());
}

// A producer's or admin's cancel of a job waiting here in two shards: one
// Cancelled result, stored for `yard result` (a dropped copy would leave
// nothing to find), and both copies leave Redis.
TEST_F(ShardedQueueRedisTest, CancelWaitingStoresTheCancelledResultOnce) {
  const JobId id = JobId::Random();
  Push(id);
  Push(id);
  Bytes r = writer_.EncodeResult(id, wire::ResultStatus::Cancelled, {},
                                 "cancelled before it started", 0, 0);
  const std::string result(reinterpret_cast<const char*>(r.data()), r.size());
  const Bytes blob = {reinterpret_cast<const uint8_t*>(result.data()),
                      result.size()};
  EXPECT_FALSE(q_->CancelWaiting(id, blob));  // still only in Redis
  TakeIntoBuffers(2);
  EXPECT_TRUE(q_->CancelWaiting(id, blob));
  EXPECT_FALSE(q_->CancelWaiting(id, blob));
  EXPECT_FALSE(q_->WaitingRoute(id));
  ASSERT_TRUE(Pump([&] { return InRedis() == std::vector<int64_t>{0, 0}; }));
  int stored = 0;
  for (const QueueKeys& keys : ShardKeys("default", kShards)) {
    auto found = FindResult(*admin_, keys, id, 2000);
    if (!found.ok()) continue;
    ++stored;
    const auto* res = VerifiedRoot<wire::JobResult>(*found);
    ASSERT_NE(res, nullptr);
    EXPECT_EQ(res->status(), wire::ResultStatus::Cancelled);
  }
  EXPECT_EQ(stored, 1);
  EXPECT_TRUE(Claim(10).empty());
}

}  // namespace
}  // namespace yard
