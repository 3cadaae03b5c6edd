#include "common/histogram.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <random>
#include <vector>

namespace yard {
namespace {

uint64_t ExactPercentile(std::vector<uint64_t> v, double q) {
  std::sort(v.begin(), v.end());
  size_t rank = static_cast<size_t>(std::ceil(q * v.size()));
  rank = std::max<size_t>(rank, 1);
  return v[rank - 1];
}

TEST(HistogramTest, BucketsTileTheNumberLine) {
  for (uint64_t v : {0ull, 1ull, 127ull, 128ull, 129ull, 255ull, 256ull,
                     1000ull, 123456789ull, (1ull << 63) + 12345}) {
    size_t i = Histogram::BucketIndex(v);
    EXPECT_LE(Histogram::BucketLow(i), v) << v;
    EXPECT_GT(Histogram::BucketLow(i) + Histogram::BucketWidth(i), v - 0) << v;
  }
  EXPECT_EQ(Histogram::BucketIndex(1000), 506u);
  EXPECT_EQ(Histogram::BucketLow(506), 1000u);
}

TEST(HistogramTest, PercentilesWithinStatedErrorOnRandomData) {
  std::mt19937_64 gen(42);
  std::lognormal_distribution<double> dist(6.0, 1.5);  // ~400us median
  std::vector<uint64_t> values;
  Histogram h;
  for (int i = 0; i < 200000; ++i) {
    uint64_t v = static_cast<uint64_t>(dist(gen));
    values.push_back(v);
    h.Record(v);
  }
  for (double q : {0.0, 0.5, 0.9, 0.99, 0.999, 1.0}) {
    double exact = static_cast<double>(ExactPercentile(values, q));
    double got = static_cast<double>(h.Percentile(q));
    EXPECT_LE(std::abs(got - exact), exact * Histogram::kMaxRelativeError + 1)
        << "q=" << q;
  }
  EXPECT_EQ(h.max(), *std::max_element(values.begin(), values.end()));
  EXPECT_EQ(h.min(), *std::min_element(values.begin(), values.end()));
}

TEST(HistogramTest, MergeEqualsUnion) {
  std::mt19937_64 gen(7);
  std::uniform_int_distribution<uint64_t> dist(0, 5'000'000);
  Histogram a, b, all;
  for (int i = 0; i < 50000; ++i) {
    uint64_t v = dist(gen);
    (i % 3 ? a : b).Record(v);
    all.Record(v);
  }
  a.Merge(b);
  EXPECT_EQ(a.count(), all.count());
  for (double q : {0.1, 0.5, 0.99, 0.9999}) {
    EXPECT_EQ(a.Percentile(q), all.Percentile(q));
  }
  EXPECT_EQ(a.max(), all.max());
  EXPECT_DOUBLE_EQ(a.mean(), all.mean());
}

TEST(HistogramTest, EmptyIsZero) {
  Histogram h;
  EXPECT_EQ(h.Percentile(0.99), 0u);
  EXPECT_EQ(h.count(), 0u);
  EXPECT_EQ(h.min(), 0u);
}

}  // namespace
}  // namespace yard
