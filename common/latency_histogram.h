// LatencyHistogram: counts of durations in fixed buckets (Prometheus
// histogram layout: upper bounds in seconds, from 100 us to 5 min), plus
// their count and sum, kept in atomics so that the owner records on its hot
// path and any thread reads at scrape time without a lock.
//
//   LatencyHistogram h;
//   h.RecordOwned(1500);   // 1.5 ms, by the only writer: plain add
//   h.Record(1500);        // from any thread: fetch_add
//   auto s = h.Read();     // s.buckets[i]: values <= kBoundsUs[i] (not
//                          // cumulative); s.buckets.back(): above them all
//
// Recording is a table lookup by the value's highest set bit (the bounds
// are at least 2x apart, so a power-of-two range holds at most one of them:
// one compare settles it) and two relaxed adds. The
// count is the sum of the buckets as read, so it always matches them; the
// sum may be a record ahead or behind, which Prometheus tolerates.
//
// Thread-safety: Record from any thread; RecordOwned from one thread only
// (not mixed with Record); Read from any thread.
#ifndef YARD_COMMON_LATENCY_HISTOGRAM_H_
#define YARD_COMMON_LATENCY_HISTOGRAM_H_

#include <array>
#include <atomic>
#include <bit>
#include <cstddef>
#include <cstdint>

namespace yard {
namespace latency_internal {

inline constexpr std::array<uint64_t, 18> kBoundsUs = {
    100,     250,     500,     1000,     2500,     5000,
    10000,   25000,   50000,   100000,   250000,   500000,
    1000000, 2500000, 5000000, 10000000, 60000000, 300000000};

constexpr bool BoundsAtLeastTwiceApart() {
  for (size_t i = 1; i < kBoundsUs.size(); ++i) {
    if (kBoundsUs[i] < 2 * kBoundsUs[i - 1]) return false;
  }
  return true;
}
static_assert(BoundsAtLeastTwiceApart(), "Index needs one bound per octave");

// Per highest set bit k (values in [2^k, 2^(k+1))): how many bounds lie
// below 2^k, and the bound inside the range (0: none).
struct Range {
  uint8_t below = 0;
  uint64_t bound = 0;
};

constexpr std::array<Range, 64> MakeRanges() {
  std::array<Range, 64> r{};
  for (size_t k = 0; k < 64; ++k) {
    const uint64_t lo = uint64_t{1} << k;
    for (uint64_t b : kBoundsUs) {
      if (b < lo) ++r[k].below;
      if (b >= lo && (k == 63 || b < (lo << 1))) r[k].bound = b;
    }
  }
  return r;
}
inline constexpr std::array<Range, 64> kRanges = MakeRanges();

}  // namespace latency_internal

class LatencyHistogram {
 public:
  static constexpr const std::array<uint64_t, 18>& kBoundsUs =
      latency_internal::kBoundsUs;
  static constexpr size_t kBuckets = kBoundsUs.size() + 1;

  struct Snapshot {
    std::array<uint64_t, kBuckets> buckets{};
    uint64_t count = 0;
    uint64_t sum_us = 0;
  };

  void Record(uint64_t us) {
    buckets_[Index(us)].fetch_add(1, std::memory_order_relaxed);
    sum_us_.fetch_add(us, std::memory_order_relaxed);
  }
  void RecordOwned(uint64_t us) {
    Bump(buckets_[Index(us)], 1);
    Bump(sum_us_, us);
  }
  Snapshot Read() const {
    Snapshot s;
    for (size_t i = 0; i < kBuckets; ++i) {
      s.buckets[i] = buckets_[i].load(std::memory_order_relaxed);
      s.count += s.buckets[i];
    }
    s.sum_us = sum_us_.load(std::memory_order_relaxed);
    return s;
  }

  // The bucket of `us`: how many bounds are below it (so a value on a bound
  // counts in that bound's bucket, as Prometheus's `le` says).
  static size_t Index(uint64_t us) {
    if (us == 0) return 0;
    const latency_internal::Range& r =
        latency_internal::kRanges[63 -
                                  static_cast<size_t>(std::countl_zero(us))];
    return r.below + (r.bound != 0 && r.bound < us ? 1 : 0);
  }

 private:
  static void Bump(std::atomic<uint64_t>& a, uint64_t n) {
    a.store(a.load(std::memory_order_relaxed) + n, std::memory_order_relaxed);
  }

  std::array<std::atomic<uint64_t>, kBuckets> buckets_{};
  std::atomic<uint64_t> sum_us_{0};
};

}  // namespace yard

#endif  // YARD_COMMON_LATENCY_HISTOGRAM_H_
