// Power of two choices: sample two candidates, keep the less loaded one
// (outstanding / capacity). With many workers this is within a small
// constant of the best pick while costing O(1); with one or two it is exact.
#include <random>

#include "balancer/balancer.h"

namespace yard {
namespace {

class LeastOutstanding final : public Balancer {
 public:
  explicit LeastOutstanding(uint64_t seed) : gen_(seed) {}

  size_t Pick(std::span<const WorkerSlot> c) override {
    if (c.size() == 1) return 0;
    if (c.size() == 2) return Less(c[1], c[0]) ? 1 : 0;
    std::uniform_int_distribution<size_t> d(0, c.size() - 1);
    size_t a = d(gen_), b = d(gen_);
    if (a == b) b = (b + 1) % c.size();
    return Less(c[b], c[a]) ? b : a;
  }
  const char* name() const override { return "least-outstanding"; }

 private:
  // a less loaded than b: compare outstanding/capacity without division.
  static bool Less(const WorkerSlot& a, const WorkerSlot& b) {
    uint64_t ca = a.capacity ? a.capacity : 1, cb = b.capacity ? b.capacity : 1;
    return uint64_t{a.outstanding} * cb < uint64_t{b.outstanding} * ca;
  }
  std::mt19937_64 gen_;
};

}  // namespace

std::unique_ptr<Balancer> NewLeastOutstanding(uint64_t seed) {
  return std::make_unique<LeastOutstanding>(seed);
}

}  // namespace yard
