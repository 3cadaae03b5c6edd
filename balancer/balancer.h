// Balancer: picks which worker gets the next batch of jobs.
//
// The broker offers only workers that have credit; a strategy chooses among
// them. Strategies are one file each; callers get one from a factory.
//
// Thread-safety: not thread-safe; owned by one broker loop.
#ifndef YARD_BALANCER_BALANCER_H_
#define YARD_BALANCER_BALANCER_H_

#include <cstdint>
#include <memory>
#include <span>
#include <string>
#include <vector>

#include "common/status.h"

namespace yard {

struct WorkerSlot {
  uint32_t credit = 0;       // jobs it may still be sent
  uint32_t outstanding = 0;  // jobs it holds now
  uint32_t capacity = 1;     // its concurrency
};

class Balancer {
 public:
  virtual ~Balancer() = default;
  // REQUIRES: !candidates.empty(). Returns an index into candidates.
  virtual size_t Pick(std::span<const WorkerSlot> candidates) = 0;
  virtual const char* name() const = 0;
};

// Least outstanding jobs per unit of capacity, among two random choices
// (the default: near-best balance at O(1) cost).
std::unique_ptr<Balancer> NewLeastOutstanding(uint64_t seed);
std::unique_ptr<Balancer> NewRoundRobin();
// Random, in proportion to each worker's capacity (its concurrency).
std::unique_ptr<Balancer> NewWeighted(uint64_t seed);

// The names NewBalancer accepts.
const std::vector<std::string>& BalancerNames();
// One of BalancerNames(); InvalidArgument (listing them) otherwise.
Result<std::unique_ptr<Balancer>> NewBalancer(const std::string& name,
                                              uint64_t seed);

}  // namespace yard

#endif  // YARD_BALANCER_BALANCER_H_
