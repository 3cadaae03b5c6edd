// Affinity: consistent hashing on a job's affinity key, so jobs with the
// same key go to the same worker while it lives, at every broker.
//
// Rendezvous (highest random weight) hashing: each candidate scores
// Mix(affinity ^ id) and the highest score over ALL candidates wins, with or
// without credit. If the winner has no credit the job waits (kWait) rather
// than go elsewhere: moving it would break "same key, same worker".
//
// Why rendezvous rather than a ring: it is stateless and exact. The winner
// depends only on the key and the set of ids offered, not on their order,
// on earlier picks, or on which broker asks. Removing a worker moves exactly
// the keys it won (each goes to its runner-up); adding one moves exactly the
// keys it now wins, 1/(n+1) of them on average, all to it. A ring would be
// O(log n) per pick but needs virtual nodes for an even spread and a cached
// membership kept in step with the caller's candidate list (which changes
// with placement and liveness). One pass of a multiply-xorshift per
// candidate (about 1.5 ns each: 1.5 us at 1,000 workers, balancer_bench) is
// simpler than keeping that cache right. Cost: O(n), integer only.
//
// Unweighted: capacity does not bias the owner. Weighted rendezvous
// (-w / ln u) needs a floating-point log per candidate, and libm's log is
// not guaranteed to round alike on every host, which could let two brokers
// disagree on a key's owner. Worker capacity still shapes how many of a
// key's jobs run at once (its credit).
//
// Jobs without a key (affinity == 0) go to least-outstanding.
#include "balancer/balancer.h"

namespace yard {
namespace {

// splitmix64's finalizer: a bijection on 64 bits with full avalanche, so
// scores for one key are independent across ids.
uint64_t Mix(uint64_t z) {
  z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
  z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
  return z ^ (z >> 31);
}

class Affinity final : public Balancer {
 public:
  explicit Affinity(uint64_t seed) : unkeyed_(NewLeastOutstanding(seed)) {}

  size_t Pick(std::span<const WorkerSlot> c, uint64_t affinity) override {
    if (affinity == 0) return unkeyed_->Pick(c, 0);
    if (c.empty()) return kWait;
    size_t best = 0;
    uint64_t best_score = Mix(affinity ^ c[0].id);
    for (size_t i = 1; i < c.size(); ++i) {
      const uint64_t s = Mix(affinity ^ c[i].id);
      // Ties only between equal ids (one name twice): the first wins.
      if (s > best_score) {
        best = i;
        best_score = s;
      }
    }
    return c[best].credit > 0 ? best : kWait;
  }
  const char* name() const override { return "affinity"; }

 private:
  std::unique_ptr<Balancer> unkeyed_;
};

}  // namespace

std::unique_ptr<Balancer> NewAffinity(uint64_t seed) {
  return std::make_unique<Affinity>(seed);
}

}  // namespace yard
