#include "common/job_id.h"

#include <sys/random.h>

#include <array>
#include <cerrno>
#include <cstdio>
#include <cstdlib>

namespace yard {

// Ids come from the kernel's CSPRNG (getrandom), so that nobody who sees
// some ids can guess others (a predictable id lets a stranger name, and so
// cancel or answer for, someone else's job). Read in blocks: one system call
// per 256 ids.
JobId JobId::Random() {
  struct Pool {
    std::array<uint64_t, 512> words;
    size_t next = 512;
  };
  thread_local Pool pool;
  if (pool.next + 2 > pool.words.size()) {
    auto* at = reinterpret_cast<char*>(pool.words.data());
    size_t want = sizeof(pool.words);
    while (want > 0) {
      ssize_t got = getrandom(at, want, 0);
      if (got < 0) {
        if (errno == EINTR) continue;
        // Only before the kernel's pool is initialised at boot, or on a
        // kernel without getrandom (Linux < 3.17): nothing to fall back on.
        std::perror("getrandom");
        std::abort();
      }
      at += got;
      want -= static_cast<size_t>(got);
    }
    pool.next = 0;
  }
  JobId id{pool.words[pool.next], pool.words[pool.next + 1]};
  pool.next += 2;
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
