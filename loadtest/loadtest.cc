// ExecuteLoadtest and the small parts of loadtest/loadtest.h. The run is in
// loadtest/run.h, the checks of the options in loadtest/validate.cc.
#include "loadtest/loadtest.h"

#include <random>
#include <string>

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
