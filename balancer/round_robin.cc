// Round robin over whichever candidates have credit: the first one with
// credit at or after the last pick's successor. O(1) while most candidates
// have credit; at worst one pass (all out of credit -> kWait).
//
// The position is an index into whatever list the caller passes, so if the
// list changes between picks the cycle simply continues from that index.
#include "balancer/balancer.h"

namespace yard {
namespace {

class RoundRobin final : public Balancer {
 public:
  size_t Pick(std::span<const WorkerSlot> c, uint64_t /*affinity*/) override {
    const size_t n = c.size();
    if (n == 0) return kWait;
    const size_t start = next_ % n;
    for (size_t k = 0; k < n; ++k) {
      size_t i = start + k;
      if (i >= n) i -= n;
      if (c[i].credit > 0) {
        next_ = i + 1;
        return i;
      }
    }
    return kWait;
  }
  const char* name() const override { return "round-robin"; }

 private:
  size_t next_ = 0;
};

}  // namespace

std::unique_ptr<Balancer> NewRoundRobin() {
  return std::make_unique<RoundRobin>();
}

}  // namespace yard
