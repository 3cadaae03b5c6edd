#include "common/job_id.h"

#include <random>

namespace yard {

JobId JobId::Random() {
  thread_local std::mt19937_64 gen([] {
    std::random_device rd;
    std::seed_seq seq{rd(), rd(), rd(), rd(), rd(), rd(), rd(), rd()};
    return std::mt19937_64(seq);
  }());
  JobId id{gen(), gen()};
  if (id.IsZero()) id.lo = 1;  // zero means "no id" on the wire
  return id;
}

std::string JobId::ToString() const {
  static constexpr char kHex[] = "0123456789abcdef";
  std::string s(32, '0');
  for (int i = 0; i < 16; ++i) {
    s[15 - i] = kHex[(hi >> (4 * i)) & 0xf];
    s[31 - i] = kHex[(lo >> (4 * i)) & 0xf];
  }
  return s;
}

std::optional<JobId> JobId::Parse(std::string_view hex) {
  if (hex.size() != 32) return std::nullopt;
  JobId id;
  for (size_t i = 0; i < 32; ++i) {
    char c = hex[i];
    uint64_t v;
    if (c >= '0' && c <= '9') {
      v = c - '0';
    } else if (c >= 'a' && c <= 'f') {
      v = c - 'a' + 10;
    } else if (c >= 'A' && c <= 'F') {
      v = c - 'A' + 10;
    } else {
      return std::nullopt;
    }
    uint64_t& half = i < 16 ? id.hi : id.lo;
    half = (half << 4) | v;
  }
  return id;
}

}  // namespace yard
