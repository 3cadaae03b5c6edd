#include "broker/worker_table.h"

#include <gtest/gtest.h>

#include <string>
#include <vector>

namespace yard {
namespace {

std::vector<std::string> ExpireAt(WorkerTable& t, int64_t now) {
  std::vector<std::string> dead;
  t.Expire(now, [&](const WorkerInfo& w) { dead.push_back(w.identity); });
  return dead;
}

TEST(WorkerTableTest, SecondWorkerDiesWhileTheFirstKeepsBeating) {
  WorkerTable t(300);
  t.Upsert("first", 0);
  t.Upsert("second", 10);
  // The first keeps beating; the second falls silent.
  for (int64_t now = 100; now <= 1000; now += 100) {
    t.Touch(t.Find("first"), now);
    auto dead = ExpireAt(t, now);
    if (now < 310) {
      EXPECT_TRUE(dead.empty()) << now;
    } else if (now == 400) {
      EXPECT_EQ(dead, (std::vector<std::string>{"second"}));
    } else {
      EXPECT_TRUE(dead.empty()) << now;
    }
  }
  EXPECT_NE(t.Find("first"), nullptr);
  EXPECT_EQ(t.Find("second"), nullptr);
  EXPECT_EQ(t.size(), 1u);
}

TEST(WorkerTableTest, FirstWorkerDiesWhileTheSecondKeepsBeating) {
  WorkerTable t(300);
  t.Upsert("first", 0);
  t.Upsert("second", 0);
  for (int64_t now = 100; now <= 500; now += 100) {
    t.Touch(t.Find("second"), now);
    auto dead = ExpireAt(t, now);
    if (now == 300) {
      EXPECT_EQ(dead, (std::vector<std::string>{"first"}));
    }
  }
  EXPECT_EQ(t.Find("first"), nullptr);
  EXPECT_NE(t.Find("second"), nullptr);
}

TEST(WorkerTableTest, ListStaysOrderedByExpiry) {
  WorkerTable t(1000);
  for (int i = 0; i < 10; ++i) t.Upsert("w" + std::to_string(i), i);
  t.Touch(t.Find("w0"), 50);
  t.Touch(t.Find("w5"), 60);
  int64_t last = -1;
  for (const auto& w : t.workers()) {
    EXPECT_GE(w.expiry_ms, last);
    last = w.expiry_ms;
  }
  EXPECT_EQ(t.workers().back().identity, "w5");
}

TEST(WorkerTableTest, SerialsAreNeverReused) {
  WorkerTable t(100);
  uint64_t a = t.Upsert("a", 0)->serial;
  t.Remove("a");
  uint64_t b = t.Upsert("a", 0)->serial;
  EXPECT_NE(a, b);
  EXPECT_EQ(t.FindSerial(a), nullptr);
  EXPECT_NE(t.FindSerial(b), nullptr);
}

TEST(WorkerTableTest, CreditSaturatesInsteadOfWrapping) {
  EXPECT_EQ(SaturatingAdd(0, 10), 10u);
  EXPECT_EQ(SaturatingAdd(5, 10), 15u);
  EXPECT_EQ(SaturatingAdd(0, UINT32_MAX), kMaxWorkerCredit);
  EXPECT_EQ(SaturatingAdd(kMaxWorkerCredit - 1, 1), kMaxWorkerCredit);
  EXPECT_EQ(SaturatingAdd(kMaxWorkerCredit - 1, 2), kMaxWorkerCredit);
  EXPECT_EQ(SaturatingAdd(kMaxWorkerCredit, UINT32_MAX), kMaxWorkerCredit);
  // Repeated grants of 2^31 would wrap a plain uint32_t to 0.
  uint32_t credit = 0;
  for (int i = 0; i < 4; ++i) credit = SaturatingAdd(credit, 1u << 31);
  EXPECT_EQ(credit, kMaxWorkerCredit);
}

}  // namespace
}  // namespace yard
