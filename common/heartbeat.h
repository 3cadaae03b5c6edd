// Heartbeat constants shared by brokers, workers and producers (after the
// Majordomo protocol, RFC 7): any inbound message counts as a heartbeat; a
// peer silent for kHeartbeatLiveness intervals is dead. Processes take the
// interval as a flag so tests can run with short intervals; liveness is fixed.
#ifndef YARD_COMMON_HEARTBEAT_H_
#define YARD_COMMON_HEARTBEAT_H_

#include <cstdint>

namespace yard {

inline constexpr int64_t kDefaultHeartbeatIntervalMs = 1000;
inline constexpr int kHeartbeatLiveness = 3;

// How long a peer may stay silent before it is declared dead.
inline constexpr int64_t ExpiryMs(int64_t interval_ms) {
  return interval_ms * kHeartbeatLiveness;
}

}  // namespace yard

#endif  // YARD_COMMON_HEARTBEAT_H_
