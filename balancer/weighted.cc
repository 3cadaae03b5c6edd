// Weighted by capacity: a random candidate with credit, each with
// probability proportional to its concurrency (0 counts as 1), so a worker
// with 8 threads gets 4x the batches of one with 2 whatever their load.
//
// Cost: O(1) expected past kExactBelow candidates, by rejection sampling: a
// uniform candidate is kept with probability weight / max_weight_, so each
// draw is kept with probability (share with credit) x (mean / max weight);
// after kProbes misses (few have credit, or very uneven capacities) an exact
// O(n) pick: two passes, sum the weights then find a uniform draw. Small
// lists always take the exact pick.
//
// max_weight_ is the largest capacity seen at the last exact pick, over all
// candidates (with or without credit, so credit changing does not stale
// it). While it bounds every candidate's weight the draw is exact; a worker
// heavier than it (one just joined) is under-picked until a probe meets it,
// which triggers an exact pick and a fresh bound: about n / kProbes picks at
// worst. A bound too high (the heavy worker left) only costs probes, and is
// lowered at the next exact pick.
#include <algorithm>
#include <random>

#include "balancer/balancer.h"

namespace yard {
namespace {

class Weighted final : public Balancer {
 public:
  explicit Weighted(uint64_t seed) : gen_(seed) {}

  size_t Pick(std::span<const WorkerSlot> c, uint64_t /*affinity*/) override {
    const size_t n = c.size();
    if (n >= kExactBelow && max_weight_ > 0) {
      std::uniform_int_distribution<size_t> any(0, n - 1);
      std::uniform_int_distribution<uint64_t> level(1, max_weight_);
      for (int probe = 0; probe < kProbes; ++probe) {
        const size_t i = any(gen_);
        const uint64_t w = Weight(c[i]);
        if (w == 0) continue;
        if (w > max_weight_) break;  // a stale bound: pick exactly
        if (level(gen_) <= w) return i;
      }
    }
    return Exact(c);
  }
  const char* name() const override { return "weighted"; }

 private:
  static constexpr size_t kExactBelow = 32;
  static constexpr int kProbes = 16;

  // Two passes; refreshes max_weight_. kWait if none has credit.
  size_t Exact(std::span<const WorkerSlot> c) {
    uint64_t total = 0, most = 0;
    for (const WorkerSlot& w : c) {
      total += Weight(w);
      most = std::max<uint64_t>(most, Capacity(w));
    }
    max_weight_ = most;
    if (total == 0) return kWait;
    uint64_t x = std::uniform_int_distribution<uint64_t>(0, total - 1)(gen_);
    size_t last = kWait;
    for (size_t i = 0; i < c.size(); ++i) {
      const uint64_t w = Weight(c[i]);
      if (w == 0) continue;
      if (x < w) return i;
      x -= w;
      last = i;
    }
    return last;  // not reached
  }

  static uint64_t Capacity(const WorkerSlot& w) {
    return w.capacity ? w.capacity : 1;
  }
  // 0 without credit.
  static uint64_t Weight(const WorkerSlot& w) {
    return w.credit ? Capacity(w) : 0;
  }

  std::mt19937_64 gen_;
  uint64_t max_weight_ = 0;  // 0: unknown yet
};

}  // namespace

std::unique_ptr<Balancer> NewWeighted(uint64_t seed) {
  return std::make_unique<Weighted>(seed);
}

}  // namespace yard
