#include <gtest/gtest.h>

#include <string>
#include <vector>

#include "common/clock.h"
#include "queue/job_queue.h"

namespace yard {
namespace {

class MemoryQueueTest : public ::testing::Test {
 protected:
  void SetUp() override { Make(100); }
  void Make(size_t capacity) {
    MemoryQueueOptions o;
    o.capacity = capacity;
    o.starvation_limit = 4;
    q_ = NewMemoryQueue(o);
  }
  NewJob Job(uint64_t n, uint8_t priority = 1, int64_t not_before = 0) {
    NewJob j;
    j.id = JobId{0, n};
    j.priority = priority;
    j.not_before_ms = not_before;
    j.route = "producer";
    return j;
  }
  std::vector<PushOutcome> Push(std::vector<NewJob> jobs) {
    std::vector<PushOutcome> out;
    q_->Push(jobs, [&](Status s, std::span<const PushOutcome> o) {
      EXPECT_TRUE(s.ok());
      out.assign(o.begin(), o.end());
    });
    return out;
  }
  std::vector<uint64_t> Claim(size_t max,
                              std::vector<uint16_t>* attempts = nullptr) {
    std::vector<uint64_t> ids;
    q_->Claim(max, [&](std::span<const ClaimedJob> jobs) {
      for (const auto& j : jobs) {
        ids.push_back(j.id.lo);
        EXPECT_EQ(j.route, "producer");
        if (attempts) attempts->push_back(j.attempt);
      }
    });
    return ids;
  }
  std::unique_ptr<JobQueue> q_;
};

TEST_F(MemoryQueueTest, FifoWithinAPriority) {
  Push({Job(1), Job(2), Job(3)});
  EXPECT_EQ(Claim(2), (std::vector<uint64_t>{1, 2}));
  EXPECT_EQ(Claim(5), (std::vector<uint64_t>{3}));
  EXPECT_TRUE(Claim(5).empty());
  EXPECT_EQ(q_->Stats().leased, 3u);
}

TEST_F(MemoryQueueTest, RefusesWhenFullAndDedupesKnownIds) {
  Make(2);
  auto out = Push({Job(1), Job(1), Job(2), Job(3)});
  EXPECT_EQ(out, (std::vector<PushOutcome>{
                     PushOutcome::kAccepted, PushOutcome::kDuplicate,
                     PushOutcome::kAccepted, PushOutcome::kBusy}));
  // Leased jobs still count: the bound covers everything held.
  Claim(2);
  EXPECT_EQ(Push({Job(3)}), (std::vector<PushOutcome>{PushOutcome::kBusy}));
  JobId done{0, 1};
  q_->Complete(done, {});
  EXPECT_EQ(Push({Job(3)}), (std::vector<PushOutcome>{PushOutcome::kAccepted}));
  // A resubmit of a leased job is a duplicate, not a second copy.
  EXPECT_EQ(Push({Job(2)}),
            (std::vector<PushOutcome>{PushOutcome::kDuplicate}));
}

TEST_F(MemoryQueueTest, ReleaseGoesToTheFrontAndCountsAttempts) {
  Push({Job(1), Job(2)});
  EXPECT_EQ(Claim(1), (std::vector<uint64_t>{1}));
  JobId one{0, 1};
  q_->Release({&one, 1});
  std::vector<uint16_t> attempts;
  EXPECT_EQ(Claim(2, &attempts), (std::vector<uint64_t>{1, 2}));
  EXPECT_EQ(attempts, (std::vector<uint16_t>{2, 1}));
}

TEST_F(MemoryQueueTest, HigherPriorityFirstWithoutStarvingLow) {
  std::vector<NewJob> jobs;
  jobs.push_back(Job(100, 0));
  for (uint64_t i = 1; i <= 20; ++i) jobs.push_back(Job(i, 2));
  Push(jobs);
  auto ids = Claim(21);
  ASSERT_EQ(ids.size(), 21u);
  EXPECT_EQ(ids[0], 1u);
  // starvation_limit 4: the low job comes after at most 5 high ones.
  auto pos = std::find(ids.begin(), ids.end(), 100u) - ids.begin();
  EXPECT_LE(pos, 5);
  EXPECT_GE(pos, 4);
}

TEST_F(MemoryQueueTest, DelayedJobsWaitForTheirTime) {
  int64_t now = UnixMillis();
  Push({Job(1, 1, now + 60000), Job(2, 1, now - 1)});
  EXPECT_EQ(Claim(5), (std::vector<uint64_t>{2}));
  EXPECT_EQ(q_->Stats().delayed, 1u);
  EXPECT_FALSE(q_->HasReady(now));
  EXPECT_TRUE(q_->HasReady(now + 60001));
}

TEST_F(MemoryQueueTest, FailRetriesLaterOrDrops) {
  Push({Job(1), Job(2)});
  Claim(2);
  int64_t now = UnixMillis();
  JobId one{0, 1}, two{0, 2};
  q_->Fail(one, now - 1, {});  // due already
  q_->Fail(two, 0, {});        // give up
  std::vector<uint16_t> attempts;
  EXPECT_EQ(Claim(5, &attempts), (std::vector<uint64_t>{1}));
  EXPECT_EQ(attempts, (std::vector<uint16_t>{2}));
  EXPECT_EQ(q_->Stats().leased, 1u);
  EXPECT_EQ(q_->Stats().ready + q_->Stats().delayed, 0u);
}

TEST_F(MemoryQueueTest, CancelRemovesOnlyWaitingJobs) {
  Push({Job(1), Job(2)});
  Claim(1);
  std::vector<JobId> ids = {{0, 1}, {0, 2}}, removed;
  EXPECT_EQ(q_->Cancel(ids, &removed), 1u);
  ASSERT_EQ(removed.size(), 1u);
  EXPECT_EQ(removed[0].lo, 2u);
  EXPECT_TRUE(Claim(5).empty());
}

TEST_F(MemoryQueueTest, WaitingRouteNamesTheProducerOfCancellableJobsOnly) {
  NewJob other = Job(3);
  other.route = "someone else";
  Push({Job(1), Job(2), other});
  Claim(1);  // job 1 runs: not cancellable
  EXPECT_FALSE(q_->WaitingRoute({0, 1}));
  EXPECT_EQ(q_->WaitingRoute({0, 2}), "producer");
  EXPECT_EQ(q_->WaitingRoute({0, 3}), "someone else");
  EXPECT_FALSE(q_->WaitingRoute({0, 99}));
  const JobId two{0, 2};
  q_->Cancel({&two, 1}, nullptr);
  EXPECT_FALSE(q_->WaitingRoute(two));
}

}  // namespace
}  // namespace yard
