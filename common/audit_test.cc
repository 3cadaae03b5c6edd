#include "common/audit.h"

#include <gtest/gtest.h>

#include "common/rate_limit.h"

namespace yard {
namespace {

TEST(RateLimitTest, OncePerIntervalPerKeyAndCountsWhatItHeldBack) {
  KeyedRateLimit limit(1000);
  uint64_t suppressed = 99;
  EXPECT_TRUE(limit.Allow("a", 0, &suppressed));
  EXPECT_EQ(suppressed, 0u);
  EXPECT_FALSE(limit.Allow("a", 10, &suppressed));
  EXPECT_FALSE(limit.Allow("a", 999, &suppressed));
  EXPECT_TRUE(limit.Allow("b", 999, &suppressed));  // keys are separate
  EXPECT_TRUE(limit.Allow("a", 1000, &suppressed));
  EXPECT_EQ(suppressed, 2u);
}

TEST(RateLimitTest, ManyKeysStayBounded) {
  KeyedRateLimit limit(1000);
  uint64_t suppressed = 0;
  for (size_t i = 0; i < 3 * KeyedRateLimit::kMaxKeys; ++i) {
    EXPECT_TRUE(limit.Allow(std::to_string(i), 0, &suppressed));
  }
}

TEST(AuditTest, FormatIsPrefixedJsonWithEventKeyAndFields) {
  std::string line = AuditLog::Format("handshake_refused", "KEY",
                                      {{"reason", "unknown_key"}}, 3);
  ASSERT_EQ(line.rfind(kAuditPrefix, 0), 0u) << line;
  auto j = nlohmann::json::parse(line.substr(sizeof(kAuditPrefix) - 1));
  EXPECT_EQ(j["event"], "handshake_refused");
  EXPECT_EQ(j["key"], "KEY");
  EXPECT_EQ(j["reason"], "unknown_key");
  EXPECT_EQ(j["suppressed"], 3);
}

TEST(AuditTest, WriteIsRateLimitedPerEventAndKey) {
  AuditLog audit(1000);
  EXPECT_TRUE(audit.Write("e", "k", {}, 0));
  EXPECT_FALSE(audit.Write("e", "k", {}, 500));
  EXPECT_TRUE(audit.Write("other", "k", {}, 500));
  EXPECT_TRUE(audit.Write("e", "k2", {}, 500));
  EXPECT_TRUE(audit.Write("e", "k", {}, 1000));
}

}  // namespace
}  // namespace yard
