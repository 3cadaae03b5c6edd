#include "balancer/balancer.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <string>
#include <string_view>
#include <vector>

namespace yard {
namespace {

constexpr size_t kWait = Balancer::kWait;

// prefix + i, appended (GCC 12 warns -Wrestrict on "literal" + std::string).
std::string Name(std::string_view prefix, uint64_t i) {
  std::string s(prefix);
  s += std::to_string(i);
  return s;
}

// n workers named w0..w(n-1), each with credit, no load, capacity 1.
std::vector<WorkerSlot> Fleet(size_t n, uint32_t credit = 1000) {
  std::vector<WorkerSlot> w(n);
  for (size_t i = 0; i < n; ++i) {
    w[i] = WorkerSlot{credit, 0, 1, WorkerKey(Name("w", i))};
  }
  return w;
}

TEST(StableHashTest, IsFixedAndNeverZero) {
  // Brokers on different hosts must agree: pin the values. FNV-1a 64 of the
  // bytes, then fmix64, each computed apart (FNV-1a 64 of "" is its offset
  // basis 0xcbf29ce484222325, of "a" 0xaf63dc4c8601ec8c).
  EXPECT_EQ(StableHash(""), 0xefd01f60ba992926ULL);
  EXPECT_EQ(StableHash("a"), 0x82a2a958a9bece5bULL);
  EXPECT_EQ(StableHash("w1"), 0x57091b151a24ecfaULL);
  EXPECT_EQ(StableHash("w2"), 0x2f6b1b8301abf7a5ULL);
  EXPECT_EQ(StableHash("user-7"), 0x05f45893168beb5fULL);
  EXPECT_EQ(WorkerKey("worker-1"), 0x47e73c9b4c3c6e74ULL);
  EXPECT_EQ(WorkerKey("worker-a"), StableHash("worker-a"));
  // The bytes count, not the C string: an embedded NUL changes the hash.
  EXPECT_NE(StableHash(std::string_view("a\0b", 3)), StableHash("a"));
  // 0 means "no key": an empty affinity key; a key never hashes to it.
  EXPECT_EQ(AffinityHash(""), 0u);
  EXPECT_EQ(AffinityHash("user-7"), 0x05f45893168beb5fULL);
}

TEST(BalancerTest, LeastOutstandingPrefersTheIdleWorker) {
  auto b = NewLeastOutstanding(1);
  std::vector<WorkerSlot> two = {{10, 8, 4}, {10, 1, 4}};
  for (int i = 0; i < 100; ++i) EXPECT_EQ(b->Pick(two, 0), 1u);
  // Capacity matters: 8 of 16 is less loaded than 3 of 4.
  std::vector<WorkerSlot> weighted = {{10, 3, 4}, {10, 8, 16}};
  EXPECT_EQ(b->Pick(weighted, 0), 1u);
  // ... but only among those with credit.
  std::vector<WorkerSlot> busy = {{10, 8, 4}, {0, 1, 4}};
  EXPECT_EQ(b->Pick(busy, 0), 0u);
}

TEST(BalancerTest, LeastOutstandingSpreadsLoadEvenly) {
  auto b = NewLeastOutstanding(7);
  std::vector<WorkerSlot> w = Fleet(10);
  for (int i = 0; i < 10000; ++i) w[b->Pick(w, 0)].outstanding++;
  uint32_t lo = UINT32_MAX, hi = 0;
  for (const auto& s : w) {
    lo = std::min(lo, s.outstanding);
    hi = std::max(hi, s.outstanding);
  }
  // Two choices keep the spread tiny (a random pick would be ~+-100).
  EXPECT_LE(hi - lo, 5u);
}

TEST(BalancerTest, LeastOutstandingSpreadsOverTheFewWithCredit) {
  // 3 of 100 have credit: the probes mostly miss and the scan decides.
  auto b = NewLeastOutstanding(9);
  std::vector<WorkerSlot> w = Fleet(100, 0);
  for (size_t i : {5u, 50u, 95u}) w[i].credit = 1000;
  for (int i = 0; i < 3000; ++i) {
    const size_t p = b->Pick(w, 0);
    ASSERT_TRUE(p == 5 || p == 50 || p == 95) << p;
    w[p].outstanding++;
  }
  for (size_t i : {5u, 50u, 95u}) EXPECT_NEAR(w[i].outstanding, 1000, 5);
}

TEST(BalancerTest, RoundRobinCycles) {
  auto b = NewRoundRobin();
  std::vector<WorkerSlot> w = Fleet(3);
  std::vector<size_t> picks;
  for (int i = 0; i < 6; ++i) picks.push_back(b->Pick(w, 0));
  EXPECT_EQ(picks, (std::vector<size_t>{0, 1, 2, 0, 1, 2}));
}

TEST(BalancerTest, RoundRobinSkipsThoseWithoutCredit) {
  auto b = NewRoundRobin();
  std::vector<WorkerSlot> w = Fleet(4);
  w[1].credit = 0;
  std::vector<size_t> picks;
  for (int i = 0; i < 6; ++i) picks.push_back(b->Pick(w, 0));
  EXPECT_EQ(picks, (std::vector<size_t>{0, 2, 3, 0, 2, 3}));
  // Even spread over many rounds.
  std::vector<int> n(4);
  for (int i = 0; i < 3000; ++i) n[b->Pick(w, 0)]++;
  EXPECT_EQ(n, (std::vector<int>{1000, 0, 1000, 1000}));
}

TEST(BalancerTest, WeightedFollowsCapacity) {
  auto b = NewWeighted(3);
  // Capacities 1, 2 and 7: a tenth, a fifth and seven tenths of the picks,
  // whatever the load.
  std::vector<WorkerSlot> w = {{10, 0, 1}, {10, 50, 2}, {10, 0, 7}};
  std::vector<int> picks(3);
  const int n = 100000;
  for (int i = 0; i < n; ++i) picks[b->Pick(w, 0)]++;
  EXPECT_NEAR(picks[0], n * 0.1, n * 0.01);
  EXPECT_NEAR(picks[1], n * 0.2, n * 0.01);
  EXPECT_NEAR(picks[2], n * 0.7, n * 0.01);
  // Capacity 0 counts as 1; a single candidate is always picked.
  std::vector<WorkerSlot> one = {{1, 0, 0}};
  EXPECT_EQ(b->Pick(one, 0), 0u);
}

TEST(BalancerTest, WeightedFollowsCapacityAmongThoseWithCredit) {
  auto b = NewWeighted(4);
  // The capacity-7 worker has no credit: the others share 1:3.
  std::vector<WorkerSlot> w = {{10, 0, 1}, {0, 0, 7}, {10, 0, 3}};
  std::vector<int> picks(3);
  const int n = 100000;
  for (int i = 0; i < n; ++i) picks[b->Pick(w, 0)]++;
  EXPECT_EQ(picks[1], 0);
  EXPECT_NEAR(picks[0], n * 0.25, n * 0.01);
  EXPECT_NEAR(picks[2], n * 0.75, n * 0.01);
}

TEST(BalancerTest, WeightedFollowsCapacityInALargeFleet) {
  // 200 candidates (the sampled path): capacities 1, 2, 4, 8 in turn, every
  // fifth without credit. Each capacity class gets its share of the weight.
  auto b = NewWeighted(5);
  std::vector<WorkerSlot> w = Fleet(200);
  double total = 0;
  std::vector<double> expect(9);
  for (size_t i = 0; i < w.size(); ++i) {
    w[i].capacity = 1u << (i % 4);
    if (i % 5 == 4) w[i].credit = 0;
    if (w[i].credit) {
      total += w[i].capacity;
      expect[w[i].capacity] += w[i].capacity;
    }
  }
  std::vector<int> picks(9);
  const int n = 200000;
  for (int i = 0; i < n; ++i) {
    const size_t p = b->Pick(w, 0);
    ASSERT_GT(w[p].credit, 0u);
    picks[w[p].capacity]++;
  }
  for (uint32_t cap : {1u, 2u, 4u, 8u}) {
    EXPECT_NEAR(picks[cap], n * expect[cap] / total, n * 0.01) << cap;
  }
}

TEST(BalancerTest, WeightedCatchesUpWithAHeavierNewcomer) {
  auto b = NewWeighted(6);
  std::vector<WorkerSlot> w = Fleet(100);
  for (int i = 0; i < 100; ++i) b->Pick(w, 0);  // learns "at most 1"
  w.push_back(WorkerSlot{1000, 0, 100, WorkerKey("big")});
  int big = 0;
  const int n = 20000;
  for (int i = 0; i < n; ++i) big += b->Pick(w, 0) == 100;
  EXPECT_NEAR(big, n / 2, n * 0.02);
}

// Every strategy, every fleet shape: never a slot without credit; kWait
// exactly when none has credit.
TEST(BalancerTest, EveryStrategyPicksOnlySlotsWithCredit) {
  for (const std::string& name : BalancerNames()) {
    auto made = NewBalancer(name, 11);
    ASSERT_TRUE(made.ok());
    Balancer& b = **made;
    EXPECT_EQ(b.Pick({}, 0), kWait) << name;
    EXPECT_EQ(b.Pick({}, 42), kWait) << name;
    for (size_t n : {1u, 2u, 3u, 10u, 100u}) {
      std::vector<WorkerSlot> none = Fleet(n, 0);
      EXPECT_EQ(b.Pick(none, 0), kWait) << name << " n=" << n;
      EXPECT_EQ(b.Pick(none, 42), kWait) << name << " n=" << n;
      // Every other slot has credit; vary the load.
      std::vector<WorkerSlot> half = Fleet(n);
      for (size_t i = 0; i < n; ++i) {
        if (i % 2 == 1) half[i].credit = 0;
        half[i].outstanding = static_cast<uint32_t>(i % 5);
      }
      for (uint64_t k = 0; k < 500; ++k) {
        const uint64_t affinity =
            k % 3 == 0 ? 0 : StableHash(std::to_string(k));
        const size_t p = b.Pick(half, affinity);
        if (p == kWait) {
          // Only affinity may wait while some slot has credit.
          EXPECT_EQ(name, "affinity");
          EXPECT_NE(affinity, 0u);
          continue;
        }
        ASSERT_LT(p, n) << name;
        EXPECT_GT(half[p].credit, 0u) << name << " n=" << n << " p=" << p;
      }
    }
  }
}

TEST(AffinityTest, SameKeySameWorkerAtEveryBroker) {
  // Two brokers: different seeds, and they list the workers in different
  // orders.
  auto a = NewAffinity(1), b = NewAffinity(2);
  std::vector<WorkerSlot> w = Fleet(10);
  std::vector<WorkerSlot> reversed(w.rbegin(), w.rend());
  for (int k = 0; k < 1000; ++k) {
    const uint64_t key = AffinityHash(Name("user-", k));
    const size_t p = a->Pick(w, key);
    ASSERT_NE(p, kWait);
    EXPECT_EQ(a->Pick(w, key), p);
    EXPECT_EQ(b->Pick(w, key), p);
    EXPECT_EQ(reversed[b->Pick(reversed, key)].id, w[p].id);
    // Load and credit (while it has some) do not matter.
    w[p].outstanding += 50;
    w[p].credit = 1;
    EXPECT_EQ(a->Pick(w, key), p);
  }
}

TEST(AffinityTest, SpreadsKeysEvenly) {
  auto b = NewAffinity(1);
  const std::vector<WorkerSlot> w = Fleet(10);
  std::vector<int> n(10);
  const int keys = 100000;
  for (int k = 0; k < keys; ++k) {
    n[b->Pick(w, AffinityHash(Name("key-", k)))]++;
  }
  for (int c : n) EXPECT_NEAR(c, keys / 10, keys / 10 * 0.15);
}

// The owner of each key among the given workers (by id).
std::vector<uint64_t> Owners(Balancer& b, const std::vector<WorkerSlot>& w,
                             int keys) {
  std::vector<uint64_t> owner(keys);
  for (int k = 0; k < keys; ++k) {
    owner[k] = w[b.Pick(w, AffinityHash(Name("key-", k)))].id;
  }
  return owner;
}

TEST(AffinityTest, RemovingAWorkerMovesOnlyItsKeys) {
  auto b = NewAffinity(1);
  std::vector<WorkerSlot> w = Fleet(10);
  const int keys = 50000;
  const std::vector<uint64_t> before = Owners(*b, w, keys);
  const uint64_t gone = w[3].id;
  w.erase(w.begin() + 3);
  const std::vector<uint64_t> after = Owners(*b, w, keys);
  int moved = 0;
  for (int k = 0; k < keys; ++k) {
    if (before[k] == gone) {
      EXPECT_NE(after[k], gone);
      ++moved;
    } else {
      EXPECT_EQ(after[k], before[k]) << "key " << k;
    }
  }
  EXPECT_NEAR(moved, keys / 10, keys / 10 * 0.15);
}

TEST(AffinityTest, AddingAWorkerMovesAFewKeysAllToIt) {
  auto b = NewAffinity(1);
  std::vector<WorkerSlot> w = Fleet(10);
  const int keys = 50000;
  const std::vector<uint64_t> before = Owners(*b, w, keys);
  w.insert(w.begin() + 4, WorkerSlot{1000, 0, 1, WorkerKey("w10")});
  const std::vector<uint64_t> after = Owners(*b, w, keys);
  int moved = 0;
  for (int k = 0; k < keys; ++k) {
    if (after[k] != before[k]) {
      EXPECT_EQ(after[k], WorkerKey("w10")) << "key " << k;
      ++moved;
    }
  }
  EXPECT_LE(moved, keys / 11.0 + keys * 0.01);
  EXPECT_GE(moved, keys / 11.0 - keys * 0.01);
}

TEST(AffinityTest, WaitsForTheKeysWorker) {
  auto b = NewAffinity(1);
  std::vector<WorkerSlot> w = Fleet(10);
  const uint64_t key = AffinityHash("user-7");
  const size_t p = b->Pick(w, key);
  ASSERT_NE(p, kWait);
  w[p].credit = 0;
  EXPECT_EQ(b->Pick(w, key), kWait);  // others have credit: still waits
  w[p].credit = 1;
  EXPECT_EQ(b->Pick(w, key), p);
  // Without a key: least-outstanding among those with credit.
  w[p].credit = 0;
  for (int i = 0; i < 100; ++i) {
    const size_t q = b->Pick(w, 0);
    ASSERT_NE(q, kWait);
    EXPECT_NE(q, p);
  }
}

TEST(BalancerTest, FactoryKnowsEveryNameAndRejectsOthers) {
  for (const std::string& name : BalancerNames()) {
    auto b = NewBalancer(name, 1);
    ASSERT_TRUE(b.ok()) << name;
    EXPECT_EQ((*b)->name(), name);
  }
  EXPECT_NE(
      std::find(BalancerNames().begin(), BalancerNames().end(), "affinity"),
      BalancerNames().end());
  auto bad = NewBalancer("random-ish", 1);
  ASSERT_FALSE(bad.ok());
  EXPECT_NE(bad.status().message().find("weighted"), std::string::npos);
}

}  // namespace
}  // namespace yard
