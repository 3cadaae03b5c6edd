// AuditLog: one JSON line per security-relevant event (a refused handshake,
// a message refused for its sender's role; later admin actions), written
// through spdlog with a fixed prefix so that log shippers can pick them out:
//
//   ... warn [broker 4242] audit {"event":"handshake_refused","key":"rq:...",
//       "reason":"unknown_key","domain":"backend","suppressed":3}
//
// Lines are rate-limited per (event, key): at most one per interval; the
// next line that goes out carries "suppressed": the count held back since.
// Counting every event is the caller's job (counters are exact, the log is
// not).
//
// Thread-safety: none; one owner thread (the broker's loop).
#ifndef YARD_COMMON_AUDIT_H_
#define YARD_COMMON_AUDIT_H_

#include <cstdint>
#include <nlohmann/json.hpp>
#include <string>
#include <string_view>

#include "common/rate_limit.h"

namespace yard {

inline constexpr char kAuditPrefix[] = "audit ";

class AuditLog {
 public:
  explicit AuditLog(int64_t interval_ms = 1000) : limit_(interval_ms) {}

  // Writes {"event": event, "key": key, ...fields} unless a line for the
  // same event and key went out within the interval. True when written.
  bool Write(std::string_view event, std::string_view key,
             nlohmann::json fields, int64_t now_ms);

  // The line Write would log (without the logger's own prefix), for tests
  // and for callers that write elsewhere.
  static std::string Format(std::string_view event, std::string_view key,
                            nlohmann::json fields, uint64_t suppressed);

 private:
  KeyedRateLimit limit_;
};

}  // namespace yard

#endif  // YARD_COMMON_AUDIT_H_
