// Round robin over whichever workers have credit.
#include "balancer/balancer.h"

namespace yard {
namespace {

class RoundRobin final : public Balancer {
 public:
  size_t Pick(std::span<const WorkerSlot> c) override {
    return next_++ % c.size();
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
