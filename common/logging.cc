#include "common/logging.h"

#include <spdlog/pattern_formatter.h>
#include <spdlog/sinks/stdout_color_sinks.h>

#include <chrono>
#include <cstdio>
#include <ctime>
#include <memory>
#include <nlohmann/json.hpp>
#include <string>

#include "common/trace_context.h"

namespace yard {
namespace {

thread_local const JobLogScope* current_job = nullptr;

// %J in the text pattern: "job <id> trace <trace-id>: ", or nothing.
class JobFlag : public spdlog::custom_flag_formatter {
 public:
  void format(const spdlog::details::log_msg&, const std::tm&,
              spdlog::memory_buf_t& dest) override {
    const JobLogScope* job = current_job;
    if (job == nullptr) return;
    Append("job ", dest);
    Append(job->job_id(), dest);
    if (!job->trace_id().empty()) {
      Append(" trace ", dest);
      Append(job->trace_id(), dest);
    }
    Append(": ", dest);
  }
  std::unique_ptr<custom_flag_formatter> clone() const override {
    return std::make_unique<JobFlag>();
  }

 private:
  static void Append(std::string_view s, spdlog::memory_buf_t& dest) {
    dest.append(s.data(), s.data() + s.size());
  }
};

// RFC 3339, UTC, milliseconds: 2026-01-02T03:04:05.678Z.
std::string Rfc3339(spdlog::log_clock::time_point t) {
  const auto since = t.time_since_epoch();
  const auto secs = std::chrono::duration_cast<std::chrono::seconds>(since);
  const auto ms =
      std::chrono::duration_cast<std::chrono::milliseconds>(since - secs);
  const std::time_t tt = static_cast<std::time_t>(secs.count());
  std::tm tm{};
  gmtime_r(&tt, &tm);
  char buf[40];
  const size_t n = std::strftime(buf, sizeof(buf), "%Y-%m-%dT%H:%M:%S", &tm);
  std::snprintf(buf + n, sizeof(buf) - n, ".%03dZ",
                static_cast<int>(ms.count()));
  return buf;
}

class JsonFormatter : public spdlog::formatter {
 public:
  void format(const spdlog::details::log_msg& msg,
              spdlog::memory_buf_t& dest) override {
    nlohmann::ordered_json line;
    line["time"] = Rfc3339(msg.time);
    const auto level = spdlog::level::to_string_view(msg.level);
    line["level"] = std::string_view(level.data(), level.size());
    line["component"] =
        std::string_view(msg.logger_name.data(), msg.logger_name.size());
    line["message"] = std::string_view(msg.payload.data(), msg.payload.size());
    if (const JobLogScope* job = current_job) {
      line["job_id"] = job->job_id();
      if (!job->trace_id().empty()) line["trace_id"] = job->trace_id();
    }
    const std::string text =
        line.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace);
    dest.append(text.data(), text.data() + text.size());
    dest.push_back('\n');
  }
  std::unique_ptr<formatter> clone() const override {
    return std::make_unique<JsonFormatter>();
  }
};

}  // namespace

std::optional<LogFormat> ParseLogFormat(std::string_view name) {
  if (name == "text") return LogFormat::kText;
  if (name == "json") return LogFormat::kJson;
  return std::nullopt;
}

std::unique_ptr<spdlog::formatter> MakeLogFormatter(LogFormat format) {
  if (format == LogFormat::kJson) return std::make_unique<JsonFormatter>();
  auto text = std::make_unique<spdlog::pattern_formatter>();
  text->add_flag<JobFlag>('J').set_pattern(
      "%Y-%m-%dT%H:%M:%S.%e %^%l%$ [%n %P] %J%v");
  return text;
}

void InitLogging(std::string_view name, std::string_view level,
                 LogFormat format) {
  auto logger = spdlog::stderr_color_mt(std::string(name));
  logger->set_formatter(MakeLogFormatter(format));
  logger->set_level(spdlog::level::from_str(std::string(level)));
  logger->flush_on(spdlog::level::warn);
  spdlog::set_default_logger(logger);
  logging_internal::job_log_floor.store(logger->level(),
                                        std::memory_order_relaxed);
}

JobLogScope::JobLogScope(const JobId& id, std::string_view traceparent)
    : job_id_(id.ToString()),
      // A job sent without a trace context is its own trace
      // (common/trace_context.h, JobTraceParent): its id.
      trace_id_(traceparent.empty() ? std::string_view(job_id_)
                                    : TraceIdOf(traceparent)),
      outer_(current_job) {
  current_job = this;
}

JobLogScope::~JobLogScope() { current_job = outer_; }

const JobLogScope* JobLogScope::Current() { return current_job; }

}  // namespace yard
