#include "common/trace_context.h"

#include <gtest/gtest.h>

#include <set>
#include <string>

namespace yard {
namespace {

constexpr char kExample[] =
    "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";

TEST(TraceContextTest, AcceptsTheSpecExampleAndReadsItsTraceId) {
  EXPECT_TRUE(ValidTraceParent(kExample));
  EXPECT_EQ(TraceIdOf(kExample), "4bf92f3577b34da6a3ce929d0e0e4736");
}

TEST(TraceContextTest, RefusesMalformedValues) {
  const std::string good = kExample;
  const std::string bad[] = {
      "",
      good.substr(0, 54),                                         // short
      good + "0",                                                 // 00 long
      "00-4BF92F3577B34DA6A3CE929D0E0E4736-00f067aa0ba902b7-01",  // upper
      "00-00000000000000000000000000000000-00f067aa0ba902b7-01",  // zero id
      "00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000000000-01",  // zero
      "ff-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",  // version
      "00_4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",  // separator
      "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-0g",  // flags
      "01-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01x",
      "01-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-" +
          std::string(kMaxTraceParentBytes, 'a'),  // too long
  };
  for (const std::string& tp : bad) {
    EXPECT_FALSE(ValidTraceParent(tp)) << tp;
    EXPECT_EQ(TraceIdOf(tp), "") << tp;
  }
  // A later version may carry more fields after a dash.
  EXPECT_TRUE(ValidTraceParent(
      "01-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-xyz"));
}

TEST(TraceContextTest, NewValuesAreValidAndDistinct) {
  std::set<std::string> seen;
  for (int i = 0; i < 1000; ++i) {
    std::string tp = NewTraceParent();
    ASSERT_TRUE(ValidTraceParent(tp)) << tp;
    EXPECT_EQ(tp.substr(0, 3), "00-");
    EXPECT_EQ(tp.substr(52), "-01");
    seen.insert(std::string(TraceIdOf(tp)));
  }
  EXPECT_EQ(seen.size(), 1000u);
}

TEST(TraceContextTest, ChildKeepsTraceIdAndFlagsWithANewParentId) {
  std::string child = ChildTraceParent(kExample, 0xabc);
  EXPECT_EQ(child, "00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000000abc-01");
  EXPECT_EQ(ChildTraceParent("nonsense", 0xabc), "");
  EXPECT_EQ(ChildTraceParent(kExample, 0), "");
}

}  // namespace
}  // namespace yard
