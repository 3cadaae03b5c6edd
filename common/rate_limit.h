// KeyedRateLimit: lets one event per key through per interval, so a peer
// that retries a refused handshake ten times a second writes one log line a
// second, not ten. Counts what it held back per key, so the next line can
// say how many were suppressed.
//
// Memory is bounded: past kMaxKeys distinct keys in one interval the table
// is cleared (a flood of fresh keys then logs at most kMaxKeys lines per
// interval).
//
//   KeyedRateLimit limit(1000);
//   uint64_t suppressed = 0;
//   if (limit.Allow(key, MonoMillis(), &suppressed)) spdlog::warn(...);
//
// Thread-safety: none; one owner thread.
#ifndef YARD_COMMON_RATE_LIMIT_H_
#define YARD_COMMON_RATE_LIMIT_H_

#include <cstdint>
#include <string>
#include <string_view>
#include <unordered_map>

namespace yard {

class KeyedRateLimit {
 public:
  static constexpr size_t kMaxKeys = 4096;

  explicit KeyedRateLimit(int64_t interval_ms = 1000)
      : interval_ms_(interval_ms) {}

  // True when `key` had no event let through within the interval before
  // now_ms; *suppressed gets the events held back since the last one.
  bool Allow(std::string_view key, int64_t now_ms, uint64_t* suppressed) {
    *suppressed = 0;
    auto it = entries_.find(std::string(key));
    if (it == entries_.end()) {
      if (entries_.size() >= kMaxKeys) entries_.clear();
      entries_.emplace(std::string(key), Entry{now_ms, 0});
      return true;
    }
    Entry& e = it->second;
    if (now_ms - e.last_ms < interval_ms_) {
      ++e.held;
      return false;
    }
    *suppressed = e.held;
    e = Entry{now_ms, 0};
    return true;
  }

 private:
  struct Entry {
    int64_t last_ms = 0;
    uint64_t held = 0;
  };
  int64_t interval_ms_;
  std::unordered_map<std::string, Entry> entries_;
};

}  // namespace yard

#endif  // YARD_COMMON_RATE_LIMIT_H_
