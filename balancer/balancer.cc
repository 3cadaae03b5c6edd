// The factory: a strategy by name (the broker's --balancer flag).
#include "balancer/balancer.h"

namespace yard {

const std::vector<std::string>& BalancerNames() {
  static const std::vector<std::string> kNames = {"least-outstanding",
                                                  "round-robin", "weighted"};
  return kNames;
}

Result<std::unique_ptr<Balancer>> NewBalancer(const std::string& name,
                                              uint64_t seed) {
  if (name == "least-outstanding") return NewLeastOutstanding(seed);
  if (name == "round-robin") return NewRoundRobin();
  if (name == "weighted") return NewWeighted(seed);
  std::string known;
  for (const std::string& n : BalancerNames()) {
    known += (known.empty() ? "" : ", ") + n;
  }
  return Status::InvalidArgument("unknown balancer '" + name + "' (" + known +
                                 ")");
}

}  // namespace yard
