// The handlers every `yard worker` runs: echo, sleep, sha256 and fail. They
// exist for load tests and for checking a deployment end to end.
#include <openssl/evp.h>

#include <charconv>
#include <chrono>
#include <stdexcept>
#include <string>
#include <thread>

#include "worker/worker.h"

namespace yard {
namespace {

// Longest sleep a job may ask for (one hour), so a typo cannot park a slot
// for days.
constexpr int64_t kMaxSleepMs = 3600 * 1000;

std::string Quote(std::string_view text) {
  constexpr size_t kMax = 32;
  std::string out = "'" + std::string(text.substr(0, kMax));
  if (text.size() > kMax) out += "...";
  return out + "'";
}

std::string_view Trim(std::string_view s) {
  while (!s.empty() && (s.front() == ' ' || s.front() == '\t' ||
                        s.front() == '\n' || s.front() == '\r')) {
    s.remove_prefix(1);
  }
  while (!s.empty() && (s.back() == ' ' || s.back() == '\t' ||
                        s.back() == '\n' || s.back() == '\r')) {
    s.remove_suffix(1);
  }
  return s;
}

std::string Echo(const JobContext& ctx) {
  return std::string(AsString(ctx.payload));
}

// Payload: milliseconds as decimal text ("250"); surrounding whitespace is
// allowed. Returns an empty output.
std::string Sleep(const JobContext& ctx) {
  std::string_view text = Trim(AsString(ctx.payload));
  int64_t ms = -1;
  auto [end, ec] = std::from_chars(text.data(), text.data() + text.size(), ms);
  if (text.empty() || ec != std::errc() || end != text.data() + text.size() ||
      ms < 0 || ms > kMaxSleepMs) {
    throw std::invalid_argument(
        "sleep: payload must be a whole number of milliseconds "
        "from 0 to " +
        std::to_string(kMaxSleepMs) + ", got " + Quote(AsString(ctx.payload)));
  }
  std::this_thread::sleep_for(std::chrono::milliseconds(ms));
  return std::string();
}

// Lowercase hex SHA-256 of the payload.
std::string Sha256(const JobContext& ctx) {
  unsigned char digest[EVP_MAX_MD_SIZE];
  unsigned int length = 0;
  if (EVP_Digest(ctx.payload.data(), ctx.payload.size(), digest, &length,
                 EVP_sha256(), nullptr) != 1) {
    throw std::runtime_error("sha256: OpenSSL EVP_Digest failed");
  }
  static constexpr char kHex[] = "0123456789abcdef";
  std::string out(static_cast<size_t>(length) * 2, '\0');
  for (unsigned int i = 0; i < length; ++i) {
    out[2 * i] = kHex[digest[i] >> 4];
    out[2 * i + 1] = kHex[digest[i] & 0xf];
  }
  return out;
}

std::string Fail(const JobContext&) {
  throw std::runtime_error("fail: this task always fails");
}

}  // namespace

void RegisterBuiltinHandlers(Worker& worker) {
  worker.Register("echo", Echo);
  worker.Register("sleep", Sleep);
  worker.Register("sha256", Sha256);
  worker.Register("fail", Fail);
}

}  // namespace yard
