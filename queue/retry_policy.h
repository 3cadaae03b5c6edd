// RetryPolicy: when a job that did not finish runs again, and when it is
// given up (a dead letter in durable mode, a Failed result in any mode).
//
// An attempt is one delivery of a job to a worker; `attempt` counts them
// from 1. An attempt can end four ways without a result:
//   - the handler failed: the job runs again after Backoff(attempt) while
//     attempt < the job's max_attempts (RetryAt), else it is dead;
//   - its worker died (went silent) while running it: the job goes back to
//     the front of the queue, and after max_worker_deaths such deaths it is
//     dead (a poison job that crashes every worker it meets) -- counted by
//     the broker that saw the deaths;
//   - its broker died and its lease expired (durable mode): another broker
//     reclaims it, and after max_expiries expiries it is dead -- counted in
//     Redis by the queue's Functions, so every broker sees the same count;
//   - its worker left gracefully: the job goes back to the queue, no count.
//
// The broker consults the policy for the first two and hands max_expiries
// to its durable queue; nothing else decides whether a job runs again.
//
// Thread-safety: a value; const methods are safe from any thread.
#ifndef YARD_QUEUE_RETRY_POLICY_H_
#define YARD_QUEUE_RETRY_POLICY_H_

#include <cstdint>
#include <optional>
#include <string>

#include "common/status.h"

namespace yard {

struct RetryPolicy {
  // Backoff before attempt n+1: base_ms * 2^(n-1), at most max_ms, plus up
  // to half of that again at random (jitter, so that jobs failed together
  // do not come back together).
  int64_t base_ms = 100;
  int64_t max_ms = 30000;
  // Worker deaths while running one job before it is dead; 0: no limit.
  uint32_t max_worker_deaths = 3;
  // Expired leases of one job (durable mode) before it is dead; >= 1.
  int max_expiries = 5;

  // InvalidArgument, naming the field, for values that make no sense.
  Status Validate() const;

  // The delay before the attempt after `attempt` (1-based); `random` is any
  // 64-bit random number (the jitter).
  int64_t Backoff(uint16_t attempt, uint64_t random) const;

  // A failed `attempt` of a job allowed `max_attempts` (0 or 1: one): when
  // it runs again (Unix ms), or nullopt when it is out of attempts.
  std::optional<int64_t> RetryAt(uint16_t attempt, uint16_t max_attempts,
                                 int64_t now_unix_ms, uint64_t random) const;

  // Whether a job whose worker died `deaths` times while running it is
  // given up, and the reason its result carries then.
  bool OutOfWorkerDeaths(uint32_t deaths) const {
    return max_worker_deaths > 0 && deaths >= max_worker_deaths;
  }
  std::string WorkerDeathsReason() const;
};

}  // namespace yard

#endif  // YARD_QUEUE_RETRY_POLICY_H_
