#include "queue/retry_policy.h"

#include <gtest/gtest.h>

namespace yard {
namespace {

TEST(RetryPolicyTest, BackoffDoublesUpToTheCapWithJitterOfAtMostHalf) {
  RetryPolicy p;
  p.base_ms = 100;
  p.max_ms = 1000;
  // random 0: no jitter.
  EXPECT_EQ(p.Backoff(1, 0), 100);
  EXPECT_EQ(p.Backoff(2, 0), 200);
  EXPECT_EQ(p.Backoff(4, 0), 800);
  EXPECT_EQ(p.Backoff(5, 0), 1000);      // capped
  EXPECT_EQ(p.Backoff(60000, 0), 1000);  // no overflow on huge attempts
  // The jitter adds random % (backoff / 2 + 1): at most half again.
  EXPECT_EQ(p.Backoff(1, 50), 150);
  EXPECT_EQ(p.Backoff(1, 51), 100);  // 51 % 51 == 0
  EXPECT_EQ(p.Backoff(5, 500), 1500);
  for (uint64_t r = 0; r < 2000; r += 7) {
    const int64_t b = p.Backoff(3, r);
    EXPECT_GE(b, 400);
    EXPECT_LE(b, 600);
  }
}

TEST(RetryPolicyTest, RetriesWhileAttemptsRemain) {
  RetryPolicy p;
  p.base_ms = 10;
  EXPECT_EQ(p.RetryAt(1, 3, 1000, 0), 1010);
  EXPECT_EQ(p.RetryAt(2, 3, 1000, 0), 1020);
  EXPECT_EQ(p.RetryAt(3, 3, 1000, 0), std::nullopt);
  // max_attempts 0 and 1 both mean one attempt.
  EXPECT_EQ(p.RetryAt(1, 1, 1000, 0), std::nullopt);
  EXPECT_EQ(p.RetryAt(1, 0, 1000, 0), std::nullopt);
}

TEST(RetryPolicyTest, WorkerDeaths) {
  RetryPolicy p;
  p.max_worker_deaths = 2;
  EXPECT_FALSE(p.OutOfWorkerDeaths(1));
  EXPECT_TRUE(p.OutOfWorkerDeaths(2));
  EXPECT_NE(p.WorkerDeathsReason().find("died 2 times"), std::string::npos);
  p.max_worker_deaths = 0;  // no limit
  EXPECT_FALSE(p.OutOfWorkerDeaths(1000000));
}

TEST(RetryPolicyTest, Validate) {
  RetryPolicy p;
  EXPECT_TRUE(p.Validate().ok());
  p.base_ms = 0;
  EXPECT_FALSE(p.Validate().ok());
  p.base_ms = 100;
  p.max_ms = 50;
  EXPECT_FALSE(p.Validate().ok());
  p.max_ms = 100;
  p.max_expiries = 0;
  EXPECT_FALSE(p.Validate().ok());
}

}  // namespace
}  // namespace yard
