#include "balancer/balancer.h"

#include <gtest/gtest.h>

#include <string>
#include <vector>

namespace yard {
namespace {

TEST(BalancerTest, LeastOutstandingPrefersTheIdleWorker) {
  auto b = NewLeastOutstanding(1);
  std::vector<WorkerSlot> two = {{10, 8, 4}, {10, 1, 4}};
  for (int i = 0; i < 100; ++i) EXPECT_EQ(b->Pick(two), 1u);
  // Capacity matters: 8 of 16 is less loaded than 3 of 4.
  std::vector<WorkerSlot> weighted = {{10, 3, 4}, {10, 8, 16}};
  EXPECT_EQ(b->Pick(weighted), 1u);
}

TEST(BalancerTest, LeastOutstandingSpreadsLoadEvenly) {
  auto b = NewLeastOutstanding(7);
  std::vector<WorkerSlot> w(10, WorkerSlot{1000, 0, 1});
  for (int i = 0; i < 10000; ++i) w[b->Pick(w)].outstanding++;
  uint32_t lo = UINT32_MAX, hi = 0;
  for (const auto& s : w) {
    lo = std::min(lo, s.outstanding);
    hi = std::max(hi, s.outstanding);
  }
  // Two choices keep the spread tiny (a random pick would be ~+-100).
  EXPECT_LE(hi - lo, 5u);
}

TEST(BalancerTest, RoundRobinCycles) {
  auto b = NewRoundRobin();
  std::vector<WorkerSlot> w(3);
  std::vector<size_t> picks;
  for (int i = 0; i < 6; ++i) picks.push_back(b->Pick(w));
  EXPECT_EQ(picks, (std::vector<size_t>{0, 1, 2, 0, 1, 2}));
}

TEST(BalancerTest, WeightedFollowsCapacity) {
  auto b = NewWeighted(3);
  // Capacities 1, 2 and 7: a tenth, a fifth and seven tenths of the picks,
  // whatever the load.
  std::vector<WorkerSlot> w = {{10, 0, 1}, {10, 50, 2}, {10, 0, 7}};
  std::vector<int> picks(3);
  const int n = 100000;
  for (int i = 0; i < n; ++i) picks[b->Pick(w)]++;
  EXPECT_NEAR(picks[0], n * 0.1, n * 0.01);
  EXPECT_NEAR(picks[1], n * 0.2, n * 0.01);
  EXPECT_NEAR(picks[2], n * 0.7, n * 0.01);
  // Capacity 0 counts as 1; a single candidate is always picked.
  std::vector<WorkerSlot> one = {{1, 0, 0}};
  EXPECT_EQ(b->Pick(one), 0u);
}

TEST(BalancerTest, FactoryKnowsEveryNameAndRejectsOthers) {
  for (const std::string& name : BalancerNames()) {
    auto b = NewBalancer(name, 1);
    ASSERT_TRUE(b.ok()) << name;
    EXPECT_EQ((*b)->name(), name);
  }
  auto bad = NewBalancer("random-ish", 1);
  ASSERT_FALSE(bad.ok());
  EXPECT_NE(bad.status().message().find("weighted"), std::string::npos);
}

}  // namespace
}  // namespace yard
