#include "client/job_map.h"

#include <gtest/gtest.h>

#include <random>
#include <unordered_map>
#include <vector>

namespace yard::internal {
namespace {

TEST(JobMapTest, InsertFindErase) {
  JobMap<int> map;
  int a = 1, b = 2;
  JobId x{1, 2}, y{3, 4};
  EXPECT_TRUE(map.Insert(x, &a));
  EXPECT_FALSE(map.Insert(x, &b));  // present: unchanged
  EXPECT_TRUE(map.Insert(y, &b));
  EXPECT_EQ(map.Find(x), &a);
  EXPECT_EQ(map.Find(y), &b);
  EXPECT_EQ(map.Find(JobId{5, 6}), nullptr);
  map.Erase(x);
  map.Erase(JobId{7, 8});  // absent: no-op
  EXPECT_EQ(map.Find(x), nullptr);
  EXPECT_EQ(map.Find(y), &b);
  EXPECT_EQ(map.size(), 1u);
}

// Random and sequential ids (long probe runs, wrap-around), checked against
// std::unordered_map after every operation batch.
TEST(JobMapTest, MatchesUnorderedMapUnderChurn) {
  for (bool sequential : {false, true}) {
    JobMap<int> map;
    std::unordered_map<JobId, int*, JobIdHash> ref;
    std::vector<int> values(1);
    std::mt19937_64 rng(7);
    std::vector<JobId> live;
    uint64_t next = 0;
    for (int round = 0; round < 200000; ++round) {
      bool insert = live.empty() || rng() % 100 < (round < 100000 ? 60 : 40);
      if (insert) {
        JobId id = sequential ? JobId{0, next++} : JobId{rng(), rng()};
        ASSERT_TRUE(map.Insert(id, &values[0]));
        ref[id] = &values[0];
        live.push_back(id);
      } else {
        size_t k = rng() % live.size();
        JobId id = live[k];
        live[k] = live.back();
        live.pop_back();
        map.Erase(id);
        ref.erase(id);
      }
      if (round % 5000 == 0) {
        ASSERT_EQ(map.size(), ref.size());
        for (const auto& [id, v] : ref) ASSERT_EQ(map.Find(id), v);
        size_t n = 0;
        map.ForEach([&](int*) { ++n; });
        ASSERT_EQ(n, ref.size());
      }
    }
    for (const JobId& id : live) ASSERT_NE(map.Find(id), nullptr);
    for (const JobId& id : live) map.Erase(id);
    EXPECT_EQ(map.size(), 0u);
  }
}

}  // namespace
}  // namespace yard::internal
