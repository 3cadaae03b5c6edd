// Clocks. Monotonic time for timeouts, liveness and latency; wall-clock
// milliseconds since the Unix epoch for values that cross processes (job
// deadlines, not-before times).
#ifndef YARD_COMMON_CLOCK_H_
#define YARD_COMMON_CLOCK_H_

#include <chrono>
#include <cstdint>

namespace yard {

inline int64_t MonoMicros() {
  return std::chrono::duration_cast<std::chrono::microseconds>(
             std::chrono::steady_clock::now().time_since_epoch())
      .count();
}
inline int64_t MonoMillis() { return MonoMicros() / 1000; }
inline int64_t UnixMillis() {
  return std::chrono::duration_cast<std::chrono::milliseconds>(
             std::chrono::system_clock::now().time_since_epoch())
      .count();
}

}  // namespace yard

#endif  // YARD_COMMON_CLOCK_H_
