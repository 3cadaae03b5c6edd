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
// Recording is a binary search over 18 bounds and two relaxed adds. The
// count is the sum of the buckets as read, so it always matches them; the
// sum may be a record ahead or behind, which Prometheus tolerates.
//
// Thread-safety: Record from any thread; RecordOwned from one thread only
// (not mixed with Record); Read from any thread.
#ifndef YARD_COMMON_LATENCY_HISTOGRAM_H_
#define YARD_COMMON_LATENCY_HISTOGRAM_H_

#include <algorithm>
#include <array>
#include <atomic>
#include <cstddef>
#include <cstdint>

namespace yard {

class LatencyHistogram {
 public:
  static constexpr std::array<uint64_t, 18> kBoundsUs = {
      100,     250,     500,     1000,     2500,     5000,
      10000,   25000,   50000,   100000,   250000,   500000,
      1000000, 2500000, 5000000, 10000000, 60000000, 300000000};
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

 private:
  static size_t Index(uint64_t us) {
    return static_cast<size_t>(
        std::lower_bound(kBoundsUs.begin(), kBoundsUs.end(), us) -
        kBoundsUs.begin());
  }
  static void Bump(std::atomic<uint64_t>& a, uint64_t n) {
    a.store(a.load(std::memory_order_relaxed) + n, std::memory_order_relaxed);
  }

  std::array<std::atomic<uint64_t>, kBuckets> buckets_{};
  std::atomic<uint64_t> sum_us_{0};
};

}  // namespace yard

#endif  // YARD_COMMON_LATENCY_HISTOGRAM_H_
