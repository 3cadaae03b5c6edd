#include "common/logging.h"

#include <gtest/gtest.h>
#include <spdlog/sinks/ostream_sink.h>

#include <nlohmann/json.hpp>
#include <regex>
#include <sstream>
#include <string>
#include <vector>

namespace yard {
namespace {

constexpr char kTraceParent[] =
    "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";

// Logs through a formatter of `format` into a string, one call per line.
std::vector<std::string> LogLines(LogFormat format) {
  std::ostringstream out;
  auto sink = std::make_shared<spdlog::sinks::ostream_sink_st>(out);
  spdlog::logger logger("tester", sink);
  logger.set_formatter(MakeLogFormatter(format));
  logger.set_level(spdlog::level::debug);
  logger.info("plain \"quoted\" line\nwith a newline and \\ backslash");
  logger.warn("invalid UTF-8: \xff\xfe and a control \x01");
  {
    JobLogScope job(JobId{1, 2}, kTraceParent);
    logger.debug("started");
    JobLogScope untraced(JobId{3, 4}, "not a traceparent");
    logger.debug("inner");
  }
  logger.info("after");
  std::vector<std::string> lines;
  std::istringstream in(out.str());
  for (std::string line; std::getline(in, line);) lines.push_back(line);
  return lines;
}

TEST(LoggingTest, JsonLinesParseWithTheContractKeys) {
  const std::vector<std::string> lines = LogLines(LogFormat::kJson);
  ASSERT_EQ(lines.size(), 5u);
  std::vector<nlohmann::json> parsed;
  for (const std::string& line : lines) {
    parsed.push_back(nlohmann::json::parse(line));  // throws if not JSON
    const nlohmann::json& j = parsed.back();
    EXPECT_TRUE(std::regex_match(
        j.at("time").get<std::string>(),
        std::regex(R"(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z)")))
        << line;
    EXPECT_EQ(j.at("component"), "tester");
  }
  EXPECT_EQ(parsed[0]["level"], "info");
  EXPECT_EQ(parsed[0]["message"],
            "plain \"quoted\" line\nwith a newline and \\ backslash");
  EXPECT_FALSE(parsed[0].contains("job_id"));
  EXPECT_EQ(parsed[1]["level"], "warning");
  EXPECT_EQ(parsed[1]["message"],
            "invalid UTF-8: \xEF\xBF\xBD\xEF\xBF\xBD and a control \x01");
  EXPECT_EQ(parsed[2]["job_id"], JobId({1, 2}).ToString());
  EXPECT_EQ(parsed[2]["trace_id"], "4bf92f3577b34da6a3ce929d0e0e4736");
  EXPECT_EQ(parsed[3]["job_id"], JobId({3, 4}).ToString());
  EXPECT_FALSE(parsed[3].contains("trace_id"));
  EXPECT_FALSE(parsed[4].contains("job_id"));
  // The keys come in the documented order.
  const auto ordered = nlohmann::ordered_json::parse(lines[2]);
  std::vector<std::string> keys;
  for (const auto& [key, value] : ordered.items()) keys.push_back(key);
  EXPECT_EQ(keys, (std::vector<std::string>{"time", "level", "component",
                                            "message", "job_id", "trace_id"}));
}

TEST(LoggingTest, TextLinesNameTheJobAndTrace) {
  const std::vector<std::string> lines = LogLines(LogFormat::kText);
  ASSERT_GE(lines.size(), 5u);  // the first message has a newline in it
  const std::string& started = lines[lines.size() - 3];
  EXPECT_NE(started.find("job " + JobId({1, 2}).ToString() +
                         " trace 4bf92f3577b34da6a3ce929d0e0e4736: started"),
            std::string::npos)
      << started;
  EXPECT_EQ(lines.back().find("job "), std::string::npos) << lines.back();
}

TEST(LoggingTest, ParsesOnlyTheTwoFormatNames) {
  EXPECT_EQ(ParseLogFormat("text"), LogFormat::kText);
  EXPECT_EQ(ParseLogFormat("json"), LogFormat::kJson);
  EXPECT_EQ(ParseLogFormat("JSON"), std::nullopt);
  EXPECT_EQ(ParseLogFormat(""), std::nullopt);
}

}  // namespace
}  // namespace yard
