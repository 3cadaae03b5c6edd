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

namespace {

// Every strategy NewBalancer knows, with a few words for --help.
struct Strategy {
  const char* name;
  const char* summary;
};
constexpr Strategy kStrategies[] = {
    {"least-outstanding", "fewest jobs in flight per unit of capacity"},
    {"round-robin", "each worker in turn"},
    {"weighted", "at random, in proportion to capacity"},
    {"affinity", "jobs with one affinity key go to one worker"},
};

}  // namespace

const std::vector<std::string>& BalancerNames() {
  static const std::vector<std::string> kNames = [] {
    std::vector<std::string> names;
    for (const Strategy& s : kStrategies) names.emplace_back(s.name);
    return names;
  }();
  return kNames;
}

std::string BalancerSummaries() {
  std::string text;
  for (const Strategy& s : kStrategies) {
    text += (text.empty() ? "" : "; ") + std::string(s.name) + ": " + s.summary;
  }
  return text;
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
