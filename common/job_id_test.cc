#include "common/job_id.h"

#include <gtest/gtest.h>

#include <unordered_set>

namespace yard {
namespace {

TEST(JobIdTest, RoundTripsThroughHex) {
  JobId id{0x0123456789abcdefULL, 0xfedcba9876543210ULL};
  EXPECT_EQ(id.ToString(), "0123456789abcdeffedcba9876543210");
  auto parsed = JobId::Parse(id.ToString());
  ASSERT_TRUE(parsed.has_value());
  EXPECT_EQ(*parsed, id);
}

TEST(JobIdTest, RejectsMalformedHex) {
  EXPECT_FALSE(JobId::Parse("").has_value());
  EXPECT_FALSE(JobId::Parse("0123").has_value());
  EXPECT_FALSE(JobId::Parse(std::string(31, 'a') + "g").has_value());
}

TEST(JobIdTest, RandomIdsAreDistinctAndNonZero) {
  std::unordered_set<JobId, JobIdHash> seen;
  for (int i = 0; i < 10000; ++i) {
    JobId id = JobId::Random();
    EXPECT_FALSE(id.IsZero());
    EXPECT_TRUE(seen.insert(id).second);
  }
}

}  // namespace
}  // namespace yard
