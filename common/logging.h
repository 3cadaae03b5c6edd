// Logging: one spdlog logger to stderr, set up once per process. Components
// call spdlog's free functions (spdlog::info, ...) after InitLogging.
#ifndef YARD_COMMON_LOGGING_H_
#define YARD_COMMON_LOGGING_H_

#include <string_view>

namespace yard {

// level: trace|debug|info|warn|error|off. `name` tags each line
// ("broker", "worker"), so interleaved logs from a local cluster stay readable.
void InitLogging(std::string_view name, std::string_view level);

}  // namespace yard

#endif  // YARD_COMMON_LOGGING_H_
