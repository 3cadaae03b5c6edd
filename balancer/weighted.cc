// Weighted by capacity: a random candidate, each with probability
// proportional to its concurrency, so a worker with 8 threads gets 4x the
// batches of one with 2 whatever their current load. O(candidates) per pick
// (a prefix sum); for load-aware picks use least-outstanding.
#include <random>

#include "balancer/balancer.h"

namespace yard {
namespace {

class Weighted final : public Balancer {
 public:
  explicit Weighted(uint64_t seed) : gen_(seed) {}

  size_t Pick(std::span<const WorkerSlot> c) override {
    uint64_t total = 0;
    for (const WorkerSlot& w : c) total += Weight(w);
    uint64_t x = std::uniform_int_distribution<uint64_t>(0, total - 1)(gen_);
    for (size_t i = 0; i < c.size(); ++i) {
      const uint64_t w = Weight(c[i]);
      if (x < w) return i;
      x -= w;
    }
    return c.size() - 1;  // not reached
  }
  const char* name() const override { return "weighted"; }

 private:
  static uint64_t Weight(const WorkerSlot& w) {
    return w.capacity ? w.capacity : 1;
  }
  std::mt19937_64 gen_;
};

}  // namespace

std::unique_ptr<Balancer> NewWeighted(uint64_t seed) {
  return std::make_unique<Weighted>(seed);
}

}  // namespace yard
