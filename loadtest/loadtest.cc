// ExecuteLoadtest and the small parts of loadtest/loadtest.h. The run is in
// loadtest/run.h, the checks of the options in loadtest/validate.cc.
#include "loadtest/loadtest.h"

#include <algorithm>
#include <chrono>
#include <random>
#include <string>
#include <thread>

#include "client/producer.h"
#include "common/clock.h"
#include "common/signals.h"
#include "loadtest/run.h"

namespace yard {

std::string TextPayload(int64_t size) {
  static constexpr char kChars[] =
      "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789";
  std::mt19937 rng(42);
  std::uniform_int_distribution<size_t> pick(0, sizeof(kChars) - 2);
  std::string s(static_cast<size_t>(size), 'x');
  for (char& c : s) c = kChars[pick(rng)];
  return s;
}

Status WaitForBrokers(const std::vector<const Producer*>& producers,
                      const std::vector<std::string>& endpoints,
                      double timeout_s) {
  const int64_t until = MonoMicros() + static_cast<int64_t>(timeout_s * 1e6);
  while (true) {
    bool all = true;
    for (const Producer* p : producers) {
      if (p->counters().live_brokers < endpoints.size()) all = false;
    }
    if (all) return Status::OK();
    if (StopRequested()) return Status::Unavailable("interrupted");
    if (MonoMicros() >= until) break;
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  std::string which;
  for (const auto& ep : endpoints) which += (which.empty() ? "" : ",") + ep;
  char seconds[32];
  std::snprintf(seconds, sizeof seconds, "%g", timeout_s);
  return Status::Unavailable(
      "no broker answered at " + which + " within " + seconds +
      " s (is a broker running there? --connect-timeout sets the wait)");
}

int64_t SeriesSpanUs(int64_t elapsed_us) {
  constexpr int64_t kMinSpanUs = 100'000;
  constexpr int64_t kPointsPerSpan = 50;
  return std::max(kMinSpanUs, elapsed_us / kPointsPerSpan);
}

int LoadtestReport::ExitCode() const {
  if (interrupted) return 130;
  return lost == 0 && problems.empty() ? 0 : 1;
}

Result<LoadtestReport> ExecuteLoadtest(const LoadtestOptions& options,
                                       std::FILE* log) {
  if (Status st = ValidateLoadtest(options); !st.ok()) return st;
  loadtest_internal::Run run(options, log);
  return run.Go();
}

}  // namespace yard
