// Histogram: a log-linear histogram of non-negative integer values (latency
// in microseconds), after HdrHistogram. Values below 2^kSubBits are counted
// exactly; above, every power of two is split into 2^kSubBits equal buckets,
// so a reported percentile is within kMaxRelativeError of the true value.
// Two histograms merge by adding their counts, so per-producer histograms
// combine into exactly the histogram of the union.
//
//   value 1000 (binary 1111101000, msb at bit 9):
//     shift = 9 - 7 = 2, top bits = 1000 >> 2 = 250,
//     index = (2 + 1) * 128 + (250 - 128) = 506, bucket [1000, 1004).
//
// Thread-safety: none; one writer, or merge per-thread copies.
#ifndef YARD_COMMON_HISTOGRAM_H_
#define YARD_COMMON_HISTOGRAM_H_

#include <cstddef>
#include <cstdint>
#include <vector>

namespace yard {

class Histogram {
 public:
  static constexpr int kSubBits = 7;
  static constexpr double kMaxRelativeError = 1.0 / (1 << kSubBits);

  Histogram();

  void Record(uint64_t value) { RecordN(value, 1); }
  void RecordN(uint64_t value, uint64_t n);
  void Merge(const Histogram& other);
  void Reset();

  uint64_t count() const { return count_; }
  uint64_t min() const { return count_ ? min_ : 0; }
  uint64_t max() const { return max_; }
  double mean() const;
  // The value at quantile q in [0, 1]: the midpoint of the bucket holding the
  // ceil(q * count)-th smallest value, clamped to [min, max]. 0 when empty.
  uint64_t Percentile(double q) const;

  // Exposed for tests.
  static size_t BucketIndex(uint64_t value);
  static uint64_t BucketLow(size_t index);
  static uint64_t BucketWidth(size_t index);

 private:
  std::vector<uint64_t> counts_;
  uint64_t count_ = 0;
  uint64_t min_ = UINT64_MAX;
  uint64_t max_ = 0;
  long double sum_ = 0;
};

}  // namespace yard

#endif  // YARD_COMMON_HISTOGRAM_H_
