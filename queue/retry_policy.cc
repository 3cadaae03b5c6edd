#include "queue/retry_policy.h"

#include <algorithm>

namespace yard {

Status RetryPolicy::Validate() const {
  if (base_ms < 1 || max_ms < base_ms) {
    return Status::InvalidArgument(
        "retry backoff: need 1 <= base ms <= max ms");
  }
  if (max_expiries < 1) {
    return Status::InvalidArgument("max expiries must be at least 1");
  }
  return Status::OK();
}

int64_t RetryPolicy::Backoff(uint16_t attempt, uint64_t random) const {
  // Doubling stops at 2^20 * base: past that max_ms holds anyway, and the
  // shift stays far from overflow.
  const int doublings = std::clamp<int>(attempt - 1, 0, 20);
  const int64_t backoff = std::min(base_ms << doublings, max_ms);
  const auto jitter =
      static_cast<int64_t>(random % static_cast<uint64_t>(backoff / 2 + 1));
  return backoff + jitter;
}

std::optional<int64_t> RetryPolicy::RetryAt(uint16_t attempt,
                                            uint16_t max_attempts,
                                            int64_t now_unix_ms,
                                            uint64_t random) const {
  if (attempt >= std::max<uint16_t>(1, max_attempts)) return std::nullopt;
  return now_unix_ms + Backoff(attempt, random);
}

std::string RetryPolicy::WorkerDeathsReason() const {
  return "its worker died " + std::to_string(max_worker_deaths) +
         " times while running it; not run again";
}

}  // namespace yard
