#include "broker/producer_quotas.h"

#include <gtest/gtest.h>

#include <string>

namespace yard {
namespace {

TEST(ProducerQuotasTest, NoLimitsAdmitEverything) {
  ProducerQuotas q({});
  EXPECT_FALSE(q.enabled());
  EXPECT_EQ(q.Admit("p", 1000000, 0).admitted, 1000000u);
  EXPECT_EQ(q.tracked(), 0u);
}

TEST(ProducerQuotasTest, BurstThenRate) {
  ProducerQuotas q({.rate = 100, .burst = 10});
  // A new producer may send its burst at once, then 100 per second.
  Admission a = q.Admit("p", 25, 0);
  EXPECT_EQ(a.admitted, 10u);
  EXPECT_TRUE(a.by_rate);
  EXPECT_EQ(a.retry_after_ms, 10u);                 // one job's token at 100/s
  EXPECT_EQ(q.Admit("p", 25, 50).admitted, 5u);     // 50 ms: 5 tokens
  EXPECT_EQ(q.Admit("p", 25, 1050).admitted, 10u);  // full again, capped
  // Over a simulated second of 1 ms steps it gets 100, not more.
  size_t got = 0;
  for (int64_t t = 2000; t < 3000; ++t) got += q.Admit("p", 1, t).admitted;
  EXPECT_GE(got, 99u);
  EXPECT_LE(got, 110u);  // its burst of 10 plus the rate
}

TEST(ProducerQuotasTest, ProducersHaveBucketsOfTheirOwn) {
  ProducerQuotas q({.rate = 10, .burst = 5});
  EXPECT_EQ(q.Admit("flood", 1000, 0).admitted, 5u);
  EXPECT_EQ(q.Admit("flood", 1000, 1).admitted, 0u);
  EXPECT_EQ(q.Admit("calm", 3, 1).admitted, 3u);
}

TEST(ProducerQuotasTest, MaxQueuedCountsUnfinishedJobs) {
  ProducerQuotas q({.max_queued = 10});
  Admission a = q.Admit("p", 8, 0);
  EXPECT_EQ(a.admitted, 8u);
  q.Queued("p", 8);
  a = q.Admit("p", 8, 0);
  EXPECT_EQ(a.admitted, 2u);
  EXPECT_FALSE(a.by_rate);
  q.Queued("p", 2);
  EXPECT_EQ(q.Admit("p", 1, 0).admitted, 0u);
  q.Finished("p", 5);
  EXPECT_EQ(q.queued("p"), 5u);
  EXPECT_EQ(q.Admit("p", 8, 0).admitted, 5u);
  q.Finished("p", 100);  // never below zero
  EXPECT_EQ(q.queued("p"), 0u);
}

TEST(ProducerQuotasTest, IdleProducersAreForgottenWhenTheTableIsFull) {
  ProducerQuotas q({.rate = 1000, .burst = 1, .max_queued = 5});
  for (size_t i = 0; i < ProducerQuotas::kMaxProducers; ++i) {
    q.Admit(std::to_string(i), 1, 0);
  }
  q.Queued("0", 1);  // this one has a job queued: kept
  EXPECT_EQ(q.tracked(), ProducerQuotas::kMaxProducers);
  q.Admit("newcomer", 1, 10);  // 10 ms later all buckets are full again
  EXPECT_EQ(q.tracked(), 2u);
  EXPECT_EQ(q.queued("0"), 1u);
}

TEST(ProducerQuotasTest, ValidatesOptions) {
  EXPECT_TRUE(QuotaOptions{}.Validate().ok());
  EXPECT_FALSE((QuotaOptions{.rate = -1}).Validate().ok());
  EXPECT_FALSE((QuotaOptions{.rate = 10, .burst = 0.5}).Validate().ok());
}

}  // namespace
}  // namespace yard
