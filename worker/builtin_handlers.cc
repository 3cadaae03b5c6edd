// The handlers every `yard worker` runs: echo, sleep, sha256, fail, hang and
// progress.
// They exist for load tests and for checking a deployment end to end. And the
// misbehaving ones the isolate pool's tests run in child processes.
#include "worker/builtin_handlers.h"

#include <openssl/evp.h>
#include <signal.h>
#include <sys/resource.h>

#include <charconv>
#include <chrono>
#include <cstring>
#include <memory>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

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

// The payload as a whole number from 0 to max (decimal text, surrounding
// whitespace allowed); `fallback` when it is empty and fallback >= 0.
int64_t NumberPayload(const JobContext& ctx, const char* what, const char* unit,
                      int64_t max, int64_t fallback = -1) {
  std::string_view text = Trim(AsString(ctx.payload));
  if (text.empty() && fallback >= 0) return fallback;
  int64_t n = -1;
  auto [end, ec] = std::from_chars(text.data(), text.data() + text.size(), n);
  if (text.empty() || ec != std::errc() || end != text.data() + text.size() ||
      n < 0 || n > max) {
    throw std::invalid_argument(std::string(what) +
                                ": payload must be a whole number of " + unit +
                                " from 0 to " + std::to_string(max) + ", got " +
                                Quote(AsString(ctx.payload)));
  }
  return n;
}

// Payload: milliseconds as decimal text ("250"). Returns an empty output.
std::string Sleep(const JobContext& ctx) {
  const int64_t ms = NumberPayload(ctx, "sleep", "milliseconds", kMaxSleepMs);
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

// Burns CPU (checking the clock) for the payload's milliseconds.
std::string Spin(const JobContext& ctx) {
  const int64_t ms =
      NumberPayload(ctx, "spin", "milliseconds", kMaxSleepMs, kMaxSleepMs);
  const auto end =
      std::chrono::steady_clock::now() + std::chrono::milliseconds(ms);
  volatile uint64_t sink = 0;
  while (std::chrono::steady_clock::now() < end) {
    for (int i = 0; i < 100000; ++i) sink = sink + static_cast<uint64_t>(i);
  }
  return std::to_string(sink);
}

std::string Alloc(const JobContext& ctx) {
  constexpr int64_t kStepMiB = 16;
  constexpr int64_t kMaxMiB = int64_t{1} << 20;
  rlimit as{};
  if (getrlimit(RLIMIT_AS, &as) != 0 || as.rlim_cur == RLIM_INFINITY) {
    throw std::runtime_error(
        "alloc: refusing to run without an address-space limit");
  }
  const int64_t want = NumberPayload(ctx, "alloc", "MiB", kMaxMiB, kMaxMiB);
  std::vector<std::unique_ptr<char[]>> blocks;
  for (int64_t held = 0; held < want; held += kStepMiB) {
    auto block = std::make_unique<char[]>(kStepMiB << 20);  // throws bad_alloc
    std::memset(block.get(), 1, kStepMiB << 20);
    blocks.push_back(std::move(block));
  }
  return std::to_string(want) + " MiB";
}

std::string Segv(const JobContext&) {
  signal(SIGSEGV, SIG_DFL);
  raise(SIGSEGV);
  throw std::runtime_error("segv: still alive after SIGSEGV");
}

// Runs until the job is cancelled (a broker took it back past its run
// timeout), polling the flag every 10 ms; at most kMaxSleepMs.
std::string Hang(const JobContext& ctx) {
  for (int64_t waited = 0; waited < kMaxSleepMs && !ctx.Cancelled();
       waited += 10) {
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
  return std::string();
}

// Payload: steps as decimal text (default 5, at most 1000). Each step takes
// 150 ms (longer than kProgressIntervalMs, so every report goes out) and
// reports "step I of N"; stops early when cancelled. Output: "done".
std::string ProgressSteps(const JobContext& ctx) {
  const int64_t steps = NumberPayload(ctx, "progress", "steps", 1000, 5);
  for (int64_t i = 1; i <= steps && !ctx.Cancelled(); ++i) {
    std::this_thread::sleep_for(std::chrono::milliseconds(150));
    ctx.Progress(steps ? double(i) / double(steps) : 1.0,
                 "step " + std::to_string(i) + " of " + std::to_string(steps));
  }
  return "done";
}

}  // namespace

NamedHandlers BuiltinHandlers() {
  return {{"echo", Echo}, {"sleep", Sleep}, {"sha256", Sha256},
          {"fail", Fail}, {"hang", Hang},   {"progress", ProgressSteps}};
}

NamedHandlers MisbehavingHandlers() {
  return {{"spin", Spin}, {"alloc", Alloc}, {"segv", Segv}};
}

void RegisterBuiltinHandlers(Worker& worker) {
  for (auto& [task, handler] : BuiltinHandlers()) {
    worker.Register(task, std::move(handler));
  }
}

}  // namespace yard
