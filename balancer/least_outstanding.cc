// Power of two choices: sample two candidates with credit, keep the less
// loaded one (outstanding / capacity). With many workers this is within a
// small constant of the best pick; with one or two it is exact.
//
// Cost: up to kProbes random draws find two candidates with credit, O(1)
// while most have some; when the probes come back short (few have credit)
// two linear passes pick two of those that have, uniformly, as before.
#include <random>

#include "balancer/balancer.h"

namespace yard {
namespace {

class LeastOutstanding final : public Balancer {
 public:
  explicit LeastOutstanding(uint64_t seed) : gen_(seed) {}

  size_t Pick(std::span<const WorkerSlot> c, uint64_t /*affinity*/) override {
    const size_t n = c.size();
    if (n <= 2) {  // exact: the less loaded of those with credit
      size_t best = kWait;
      for (size_t i = 0; i < n; ++i) {
        if (c[i].credit > 0 && (best == kWait || Less(c[i], c[best]))) {
          best = i;
        }
      }
      return best;
    }
    std::uniform_int_distribution<size_t> d(0, n - 1);
    size_t a = kWait;
    for (int probe = 0; probe < kProbes; ++probe) {
      const size_t i = d(gen_);
      if (c[i].credit == 0 || i == a) continue;
      if (a == kWait) {
        a = i;
      } else {
        return Less(c[i], c[a]) ? i : a;
      }
    }
    return Scan(c);
  }
  const char* name() const override { return "least-outstanding"; }

 private:
  // Random draws before falling back to a scan: with half the candidates
  // out of credit, 8 draws find two with credit 96% of the time.
  static constexpr int kProbes = 8;

  // Two distinct candidates with credit, uniformly, by rank; kWait if none.
  size_t Scan(std::span<const WorkerSlot> c) {
    size_t m = 0;
    for (const WorkerSlot& w : c) m += w.credit > 0;
    if (m == 0) return kWait;
    size_t ra = 0, rb = 0;
    if (m > 1) {
      std::uniform_int_distribution<size_t> d(0, m - 1);
      ra = d(gen_);
      rb = d(gen_);
      if (ra == rb) rb = (rb + 1) % m;
    }
    size_t a = kWait, b = kWait;
    for (size_t i = 0, rank = 0; i < c.size(); ++i) {
      if (c[i].credit == 0) continue;
      if (rank == ra) a = i;
      if (rank == rb) b = i;
      ++rank;
    }
    return Less(c[b], c[a]) ? b : a;
  }

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
