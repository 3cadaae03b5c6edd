// Logging: one spdlog logger to stderr, set up once per process. Components
// call spdlog's free functions (spdlog::info, ...) after InitLogging, and
// LogJob for a line about one job.
//
// Two formats (`--log-format text|json` on every subcommand):
//   text  2026-01-02T03:04:05.678 info [broker 4242] job <id> trace <tid>: ...
//   json  one object per line, keys in this order:
//         {"time":"2026-01-02T03:04:05.678Z","level":"info",
//          "component":"broker","message":"...","job_id":"<32 hex>",
//          "trace_id":"<32 hex>"}  (a job sent without a trace context
//          is its own trace: trace_id is then its job id)
//         time is RFC 3339 UTC with milliseconds; level is spdlog's name
//         (trace, debug, info, warning, error, critical); job_id and
//         trace_id appear only on lines about a job (trace_id only when the
//         job has a trace context). Bytes that are not UTF-8 become U+FFFD.
// The flag, its values and these keys are a contract: log shippers parse
// them.
//
// Thread-safety: InitLogging once, before other threads log; LogJob and
// JobLogScope from any thread (the job is per thread).
#ifndef YARD_COMMON_LOGGING_H_
#define YARD_COMMON_LOGGING_H_

#include <spdlog/spdlog.h>

#include <atomic>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <utility>

#include "common/job_id.h"

namespace yard {

enum class LogFormat { kText, kJson };

// "text" or "json"; nullopt for anything else.
std::optional<LogFormat> ParseLogFormat(std::string_view name);

// The formatter InitLogging gives its logger (for tests and other sinks).
std::unique_ptr<spdlog::formatter> MakeLogFormatter(LogFormat format);

// level: trace|debug|info|warn|error|off. `name` tags each line
// ("broker", "worker"), so interleaved logs from a local cluster stay readable.
void InitLogging(std::string_view name, std::string_view level,
                 LogFormat format = LogFormat::kText);

// While one lives, the lines this thread logs are about this job: text
// puts "job <id> trace <trace-id>: " before the message, json adds job_id
// and trace_id. `traceparent` (common/trace_context.h) may be empty: the
// job is then its own trace (the trace id is the job id); malformed: the
// line has no trace id. Both views must outlive it.
class JobLogScope {
 public:
  JobLogScope(const JobId& id, std::string_view traceparent);
  ~JobLogScope();
  JobLogScope(const JobLogScope&) = delete;
  JobLogScope& operator=(const JobLogScope&) = delete;

  // The innermost scope of this thread, or null.
  static const JobLogScope* Current();
  std::string_view job_id() const { return job_id_; }
  std::string_view trace_id() const { return trace_id_; }  // may be empty

 private:
  std::string job_id_;
  std::string_view trace_id_;
  const JobLogScope* outer_;
};

namespace logging_internal {
// The level InitLogging gave the default logger (trace until it runs). Jobs
// log twice or three times each on the hot path, and spdlog::should_log is
// three calls into libspdlog (its registry's instance, the default logger,
// the level): about 45 instructions, 1-2% of a job's cost in the broker.
// A level lowered later through spdlog alone is not seen by LogJob.
inline std::atomic<int> job_log_floor{spdlog::level::trace};
}  // namespace logging_internal

// The line LogJob writes once its level passes the cached floor (spdlog's
// own check follows); out of line, so that LogJob itself is small enough to
// be inlined at every call.
template <typename... Args>
[[gnu::noinline]] void LogJobLine(spdlog::level::level_enum level,
                                  const JobId& id, std::string_view traceparent,
                                  spdlog::format_string_t<Args...> fmt,
                                  Args&&... args) {
  if (!spdlog::should_log(level)) return;
  JobLogScope scope(id, traceparent);
  spdlog::log(level, fmt, std::forward<Args>(args)...);
}

// Logs one line about one job; costs one load when the level is off.
template <typename... Args>
inline void LogJob(spdlog::level::level_enum level, const JobId& id,
                   std::string_view traceparent,
                   spdlog::format_string_t<Args...> fmt, Args&&... args) {
  if (level < logging_internal::job_log_floor.load(std::memory_order_relaxed))
    return;
  LogJobLine(level, id, traceparent, fmt, std::forward<Args>(args)...);
}

}  // namespace yard

#endif  // YARD_COMMON_LOGGING_H_
