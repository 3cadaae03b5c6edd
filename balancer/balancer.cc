// The factory (a strategy by name: the broker's --balancer flag) and
// StableHash, which every broker must compute alike.
#include "balancer/balancer.h"

namespace yard {

uint64_t StableHash(std::string_view s) {
  // FNV-1a 64: byte-at-a-time, no dependence on endianness or word size.
  uint64_t h = 0xcbf29ce484222325ULL;
  for (unsigned char c : s) {
    h ^= c;
    h *= 0x100000001b3ULL;
  }
  // FNV-1a alone mixes its last bytes poorly ("w1", "w2" differ in few
  // bits); fmix64 (MurmurHash3) spreads every input bit over the output.
  h ^= h >> 33;
  h *= 0xff51afd7ed558ccdULL;
  h ^= h >> 33;
  h *= 0xc4ceb9fe1a85ec53ULL;
  h ^= h >> 33;
  return h == 0 ? 1 : h;  // 0 means "no key"
}

const std::vector<std::string>& BalancerNames() {
  static const std::vector<std::string> kNames = {
      "least-outstanding", "round-robin", "weighted", "affinity"};
  return kNames;
}

Result<std::unique_ptr<Balancer>> NewBalancer(const std::string& name,
                                              uint64_t seed) {
  if (name == "least-outstanding") return NewLeastOutstanding(seed);
  if (name == "round-robin") return NewRoundRobin();
  if (name == "weighted") return NewWeighted(seed);
  if (name == "affinity") return NewAffinity(seed);
  std::string known;
  for (const std::string& n : BalancerNames()) {
    known += (known.empty() ? "" : ", ") + n;
  }
  return Status::InvalidArgument("unknown balancer '" + name + "' (" + known +
                                 ")");
}

}  // namespace yard
