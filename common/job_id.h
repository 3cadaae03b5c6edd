// JobId: the 128-bit identifier a producer gives each job. Random (from the
// kernel's CSPRNG, so ids cannot be guessed), so producers need no
// coordination; a retried submit reuses the id, which is what makes retries
// harmless. Printed as 32 lowercase hex digits (hi then lo).
#ifndef YARD_COMMON_JOB_ID_H_
#define YARD_COMMON_JOB_ID_H_

#include <cstdint>
#include <functional>
#include <optional>
#include <string>
#include <string_view>

namespace yard {

struct JobId {
  uint64_t hi = 0;
  uint64_t lo = 0;

  static JobId Random();
  static std::optional<JobId> Parse(std::string_view hex);
  std::string ToString() const;
  bool IsZero() const { return hi == 0 && lo == 0; }
  friend bool operator==(const JobId&, const JobId&) = default;
};

struct JobIdHash {
  size_t operator()(const JobId& id) const {
    // Ids are random already; mixing the halves is enough.
    return static_cast<size_t>(id.lo ^ (id.hi * 0x9E3779B97F4A7C15ULL));
  }
};

}  // namespace yard

#endif  // YARD_COMMON_JOB_ID_H_
