// ShardedQueue over in-memory shards: where pushes go, how claims are
// shared, and that finishing a job reaches the shard that handed it out.
// Cancel (and the duplicate drop at claim, which cancels) runs against
// real Redis shards, whose rules a memory queue does not follow:
// tests/sharded_queue_redis_test.cc. (A live slot migration:
// tests/redis_cluster_test.cc.)
#include "queue/sharded_queue.h"

#include <gtest/gtest.h>

#include <map>
#include <memory>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "schemas/codec.h"

namespace yard {
namespace {

// A shard whose store can be made unavailable (it then refuses pushes, as a
// Redis shard whose primary is unreachable does). It cannot stand in for a
// Redis shard's Cancel: a memory queue cancels jobs a Redis shard does not
// (those still in Redis).
class Switchable final : public DurableQueue {
 public:
  Switchable() : q_(NewMemoryQueue(MemoryQueueOptions{})) {}
  bool up = true;
  size_t pushes = 0;

  void Push(std::span<const NewJob> jobs, PushCallback done) override {
    ++pushes;
    if (!up) {
      std::vector<PushOutcome> out(jobs.size(), PushOutcome::kAccepted);
      done(Status::Unavailable("down"), out);
      return;
    }
    q_->Push(jobs, std::move(done));
  }
  void Claim(size_t max, ClaimCallback done) override {
    q_->Claim(max, std::move(done));
  }
  void Complete(const JobId& id, Bytes r) override { q_->Complete(id, r); }
  void Fail(const JobId& id, int64_t at, Bytes r) override {
    q_->Fail(id, at, r);
  }
  void Release(std::span<const JobId> ids) override { q_->Release(ids); }
  size_t Cancel(std::span<const JobId>, std::vector<JobId>*) override {
    ADD_FAILURE() << "Cancel on a memory shard: test it on Redis shards "
                     "(tests/sharded_queue_redis_test.cc)";
    return 0;
  }
  std::optional<std::string_view> WaitingRoute(const JobId& id) const override {
    return q_->WaitingRoute(id);
  }
  bool HasReady(int64_t now) override { return q_->HasReady(now); }
  void DrainWaiting(const std::function<void(const ClaimedJob&)>& f) override {
    q_->DrainWaiting(f);
  }
  QueueStats Stats() const override { return q_->Stats(); }
  bool available() const override { return up; }
  // An in-process store: nothing to poll, tick, forward or advertise.
  void SetResultSink(ResultSink) override {}
  // Cancels recorded in the store and stored progress are Redis's: tested
  // in tests/redis_queue_test.cc.
  void SetCancelSink(CancelSink) override {}
  void RequestCancel(std::span<const JobId> ids, const Canceller&,
                     CancelCallback done) override {
    std::vector<CancelAnswer> out(ids.size(), CancelAnswer::kUnavailable);
    done(out);
  }
  std::string_view OwnerKey(const JobId&) const override { return {}; }
  void StoreProgress(const JobId&, float, std::string_view) override {}
  void Want(size_t) override {}
  int PollItems(zmq_pollitem_t*, int) override { return 0; }
  void OnPollEvents(const zmq_pollitem_t*, int) override {}
  void Tick(int64_t) override {}
  void BeginDrain() override {}
  bool Drained() const override {
    const QueueStats s = Stats();
    return s.ready + s.delayed + s.leased == 0;
  }
  void DescribeStats(nlohmann::json*) const override {}
  void Advertise(const nlohmann::json&) override {}

 private:
  std::unique_ptr<JobQueue> q_;
};

class ShardedQueueTest : public ::testing::Test {
 protected:
  void Make(size_t shards, ShardedQueueOptions options = {}) {
    std::vector<std::unique_ptr<DurableQueue>> qs;
    for (size_t k = 0; k < shards; ++k) {
      auto s = std::make_unique<Switchable>();
      shards_.push_back(s.get());
      qs.push_back(std::move(s));
    }
    q_ = NewShardedQueue(std::move(qs), options);
  }

  NewJob Job(uint64_t n, std::string_view idempotency_key = {},
             std::string_view lock_key = {}) {
    JobSpec spec;
    spec.id = JobId{7, n};
    spec.task = "echo";
    spec.idempotency_key = idempotency_key;
    spec.lock_key = lock_key;
    Bytes b = writer_.EncodeJob(spec);
    auto blob = std::make_shared<std::string>(
        reinterpret_cast<const char*>(b.data()), b.size());
    NewJob j;
    j.id = spec.id;
    j.blob.bytes = {reinterpret_cast<const uint8_t*>(blob->data()),
                    blob->size()};
    j.blob.owner = blob;
    j.route = "producer";
    return j;
  }

  Status Push(const std::vector<NewJob>& jobs,
              std::vector<PushOutcome>* out = nullptr) {
    Status status = Status::Internal("no answer");
    int answers = 0;
    q_->Push(jobs, [&](Status s, std::span<const PushOutcome> o) {
      ++answers;
      status = s;
      if (out) out->assign(o.begin(), o.end());
    });
    EXPECT_EQ(answers, 1);
    return status;
  }

  std::vector<JobId> Claim(size_t max) {
    std::vector<JobId> ids;
    int calls = 0;
    q_->Claim(max, [&](std::span<const ClaimedJob> jobs) {
      ++calls;
      for (const ClaimedJob& j : jobs) ids.push_back(j.id);
    });
    EXPECT_LE(calls, 1);  // one answer, however many shards gave jobs
    return ids;
  }

  std::vector<uint64_t> Held() const {  // jobs in each shard
    std::vector<uint64_t> n;
    for (const Switchable* s : shards_) {
      QueueStats st = s->Stats();
      n.push_back(st.ready + st.delayed + st.leased);
    }
    return n;
  }

  Writer writer_;
  std::vector<Switchable*> shards_;
  std::unique_ptr<DurableQueue> q_;
};

TEST(ShardOfKeyTest, StableAndSpread) {
  EXPECT_EQ(ShardOfKey("order-17", 5), ShardOfKey("order-17", 5));
  EXPECT_EQ(ShardOfKey("anything", 1), 0u);
  std::map<size_t, int> per_shard;
  for (int i = 0; i < 3000; ++i) {
    ++per_shard[ShardOfKey("key-" + std::to_string(i), 3)];
  }
  ASSERT_EQ(per_shard.size(), 3u);
  for (const auto& [shard, n] : per_shard) {
    EXPECT_GT(n, 850) << "shard " << shard;
    EXPECT_LT(n, 1150) << "shard " << shard;
  }
}

TEST_F(ShardedQueueTest, PlainBatchesGoToOneShardEachInTurn) {
  Make(3);
  for (uint64_t b = 0; b < 6; ++b) {
    ASSERT_TRUE(Push({Job(b * 10 + 1), Job(b * 10 + 2)}).ok());
  }
  EXPECT_EQ(Held(), (std::vector<uint64_t>{4, 4, 4}));
  for (const Switchable* s : shards_) EXPECT_EQ(s->pushes, 2u);
}

TEST_F(ShardedQueueTest, KeyedJobsGoToTheShardOfTheirKey) {
  Make(4);
  // Lock key first (lock and waiters live in one shard), then the
  // idempotency key.
  std::vector<NewJob> jobs;
  std::vector<uint64_t> expect(4);
  for (uint64_t i = 0; i < 40; ++i) {
    const std::string idem = "idem-" + std::to_string(i);
    const std::string lock = i % 2 ? "lock-" + std::to_string(i % 5) : "";
    jobs.push_back(Job(i, idem, lock));
    ++expect[ShardOfKey(lock.empty() ? idem : lock, 4)];
    // The blob holds copies of the keys.
  }
  ASSERT_TRUE(Push(jobs).ok());
  EXPECT_EQ(Held(), expect);
}

TEST_F(ShardedQueueTest, ByIdWhenJobIdDedupeIsOn) {
  Make(3, {.route_by_id = true});
  std::vector<NewJob> jobs;
  std::vector<uint64_t> expect(3);
  for (uint64_t i = 0; i < 30; ++i) {
    jobs.push_back(Job(i));
    ++expect[ShardOfKey(jobs.back().id.ToString(), 3)];
  }
  ASSERT_TRUE(Push(jobs).ok());
  EXPECT_EQ(Held(), expect);
}

TEST_F(ShardedQueueTest, ADownShardIsSkippedForPlainJobsAndFailsItsKeyedOnes) {
  Make(3);
  shards_[1]->up = false;
  for (uint64_t b = 0; b < 4; ++b) ASSERT_TRUE(Push({Job(b)}).ok());
  EXPECT_EQ(Held()[1], 0u);
  EXPECT_EQ(Held()[0] + Held()[2], 4u);
  // A keyed job of the down shard: the whole batch is answered with its
  // error (the producer resends), the outcomes of the rest still filled.
  std::string key;
  for (int i = 0; key.empty(); ++i) {
    std::string k = "k" + std::to_string(i);
    if (ShardOfKey(k, 3) == 1) key = k;
  }
  std::vector<PushOutcome> out;
  Status s = Push({Job(100), Job(101, key)}, &out);
  EXPECT_EQ(s.code(), StatusCode::kUnavailable);
  EXPECT_EQ(out.size(), 2u);
  EXPECT_TRUE(q_->available());
  for (Switchable* sh : shards_) sh->up = false;
  EXPECT_FALSE(q_->available());
}

TEST_F(ShardedQueueTest, ClaimsTakeAnEqualShareFromEveryShardThenFillUp) {
  Make(3);
  // 30 jobs in shard 0, 30 in shard 1, 2 in shard 2.
  for (uint64_t i = 0; i < 30; ++i) ASSERT_TRUE(Push({Job(100 + i)}).ok());
  shards_[2]->up = false;
  for (uint64_t i = 0; i < 28; ++i) ASSERT_TRUE(Push({Job(200 + i)}).ok());
  shards_[2]->up = true;
  const std::vector<uint64_t> before = Held();
  ASSERT_EQ(before[0] + before[1] + before[2], 58u);
  ASSERT_EQ(before[2], 10u);

  std::vector<JobId> got = Claim(9);
  ASSERT_EQ(got.size(), 9u);
  for (const Switchable* s : shards_) EXPECT_EQ(s->Stats().leased, 3u);
  // Shard 2 runs dry: the others fill up.
  got = Claim(30);
  EXPECT_EQ(got.size(), 30u);
  EXPECT_EQ(shards_[2]->Stats().leased, 10u);
  EXPECT_EQ(q_->Stats().leased, 39u);
}

TEST_F(ShardedQueueTest, FinishingReachesTheShardThatHandedTheJobOut) {
  Make(3);
  for (uint64_t i = 0; i < 12; ++i) ASSERT_TRUE(Push({Job(i)}).ok());
  std::vector<JobId> got = Claim(12);
  ASSERT_EQ(got.size(), 12u);
  // Release two, fail one for good, complete the rest.
  q_->Release(std::vector<JobId>{got[0], got[1]});
  q_->Fail(got[2], 0, {});
  for (size_t i = 3; i < got.size(); ++i) q_->Complete(got[i], {});
  EXPECT_EQ(q_->Stats().leased, 0u);
  EXPECT_EQ(q_->Stats().ready, 2u);
  // The released ones come back (from their shards) and finish too.
  std::vector<JobId> again = Claim(12);
  ASSERT_EQ(again.size(), 2u);
  for (const JobId& id : again) q_->Complete(id, {});
  EXPECT_EQ(Held(), (std::vector<uint64_t>{0, 0, 0}));
  // A job not handed out here is stale, counted, and touches no shard.
  q_->Complete(JobId{9, 9}, {});
  nlohmann::json stats = nlohmann::json::object();
  q_->DescribeStats(&stats);
  EXPECT_TRUE(stats.empty());  // memory shards describe nothing
}

}  // namespace
}  // namespace yard
