// Balancer: picks which worker gets the next batch of jobs.
//
// The broker offers every live worker allowed to take the job (placement,
// balancer/placement.h, already applied), with or without credit; a strategy
// returns one that has credit, or kWait. Strategies are one file each;
// callers get one from a factory (NewBalancer, chosen per queue).
//
//   least-outstanding  two random choices, the less loaded (default)
//   round-robin        the next one with credit, in turn
//   weighted           random, in proportion to capacity
//   affinity           rendezvous hashing on the job's affinity key
//
// Cost per Pick with n candidates: least-outstanding, round-robin and
// weighted are O(1) expected while most candidates have credit (bounded
// random probes or a short scan), O(n) when few do; affinity is O(n) (one
// pass of integer hashing, no allocation).
//
// Thread-safety: not thread-safe; owned by one broker loop. StableHash and
// WorkerKey are pure functions, safe anywhere.
#ifndef YARD_BALANCER_BALANCER_H_
#define YARD_BALANCER_BALANCER_H_

#include <cstddef>
#include <cstdint>
#include <memory>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "common/status.h"

namespace yard {

struct WorkerSlot {
  uint32_t credit = 0;       // jobs it may still be sent now
  uint32_t outstanding = 0;  // jobs it holds now
  uint32_t capacity = 1;     // its concurrency (0 counts as 1)
  uint64_t id = 0;           // stable identity: WorkerKey(name); the same at
                             // every broker
};

// A stable 64-bit hash: FNV-1a 64 then MurmurHash3's fmix64 finalizer, the
// same on every host and build (part of the contract between brokers: do not
// change it). Never returns 0.
uint64_t StableHash(std::string_view s);
inline uint64_t WorkerKey(std::string_view worker_name) {
  return StableHash(worker_name);
}
// A job's affinity key as Pick takes it: 0 (none) for an empty key.
inline uint64_t AffinityHash(std::string_view key) {
  return key.empty() ? 0 : StableHash(key);
}

class Balancer {
 public:
  static constexpr size_t kWait = SIZE_MAX;
  virtual ~Balancer() = default;
  // candidates: every live worker allowed to take the job (placement already
  // applied), with or without credit. affinity: AffinityHash(job's affinity
  // key), 0 for none; only "affinity" reads it.
  // Returns the index of a candidate with credit > 0, or kWait: the job must
  // wait (no candidate has credit, or -- affinity -- the key's worker has
  // none now). Empty candidates -> kWait.
  virtual size_t Pick(std::span<const WorkerSlot> candidates,
                      uint64_t affinity) = 0;
  virtual const char* name() const = 0;
};

// Least outstanding jobs per unit of capacity, among two random choices
// (the default: near-best balance at O(1) cost).
std::unique_ptr<Balancer> NewLeastOutstanding(uint64_t seed);
std::unique_ptr<Balancer> NewRoundRobin();
// Random, in proportion to each worker's capacity (its concurrency).
std::unique_ptr<Balancer> NewWeighted(uint64_t seed);
// Consistent hashing on the affinity key (rendezvous hashing over
// WorkerSlot::id, unweighted); least-outstanding for jobs without a key.
// seed only drives that fallback: every broker maps a key to the same worker.
std::unique_ptr<Balancer> NewAffinity(uint64_t seed);

// The names NewBalancer accepts.
const std::vector<std::string>& BalancerNames();
// "NAME: what it does; ..." for each of BalancerNames(), for --help.
std::string BalancerSummaries();
// One of BalancerNames(); InvalidArgument (listing them) otherwise.
Result<std::unique_ptr<Balancer>> NewBalancer(const std::string& name,
                                              uint64_t seed);

}  // namespace yard

#endif  // YARD_BALANCER_BALANCER_H_
