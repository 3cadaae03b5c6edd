#include "common/histogram.h"

#include <algorithm>
#include <bit>
#include <cmath>

namespace yard {
namespace {
constexpr uint64_t kSub = uint64_t{1} << Histogram::kSubBits;
constexpr size_t kBuckets = (64 - Histogram::kSubBits + 1) * kSub;
}  // namespace

Histogram::Histogram() : counts_(kBuckets, 0) {}

size_t Histogram::BucketIndex(uint64_t v) {
  if (v < kSub) return static_cast<size_t>(v);
  int msb = 63 - std::countl_zero(v);
  int shift = msb - kSubBits;
  return static_cast<size_t>((shift + 1) * kSub + ((v >> shift) - kSub));
}

uint64_t Histogram::BucketLow(size_t index) {
  if (index < kSub) return index;
  uint64_t shift = index / kSub - 1;
  return (kSub + index % kSub) << shift;
}

uint64_t Histogram::BucketWidth(size_t index) {
  if (index < kSub) return 1;
  return uint64_t{1} << (index / kSub - 1);
}

void Histogram::RecordN(uint64_t value, uint64_t n) {
  if (n == 0) return;
  counts_[BucketIndex(value)] += n;
  count_ += n;
  min_ = std::min(min_, value);
  max_ = std::max(max_, value);
  sum_ += static_cast<long double>(value) * n;
}

void Histogram::Merge(const Histogram& other) {
  for (size_t i = 0; i < kBuckets; ++i) counts_[i] += other.counts_[i];
  count_ += other.count_;
  min_ = std::min(min_, other.min_);
  max_ = std::max(max_, other.max_);
  sum_ += other.sum_;
}

void Histogram::Reset() { *this = Histogram(); }

double Histogram::mean() const {
  return count_ ? static_cast<double>(sum_ / count_) : 0.0;
}

uint64_t Histogram::Percentile(double q) const {
  if (count_ == 0) return 0;
  q = std::clamp(q, 0.0, 1.0);
  uint64_t rank =
      static_cast<uint64_t>(std::ceil(q * static_cast<double>(count_)));
  rank = std::max<uint64_t>(rank, 1);
  uint64_t seen = 0;
  for (size_t i = 0; i < kBuckets; ++i) {
    seen += counts_[i];
    if (seen >= rank) {
      uint64_t mid = BucketLow(i) + BucketWidth(i) / 2;
      return std::clamp(mid, min_, max_);
    }
  }
  return max_;
}

}  // namespace yard
