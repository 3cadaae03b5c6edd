// Trace context and JSON logs end to end, memory mode: a real `yard broker`
// and `yard worker` logging at debug level with --log-format json, and
// `yard push`. The job's trace id must show on the broker's lines (received,
// dispatched, the worker's result) and the worker's (started, finished), and
// come back in the results; every line must be a JSON object.
#include <gtest/gtest.h>

#include <csignal>
#include <regex>
#include <set>
#include <sstream>
#include <string>
#include <vector>

#include "tests/cluster.h"

namespace yard {
namespace {

constexpr char kTraceParent[] =
    "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01";
constexpr char kTraceId[] = "0af7651916cd43dd8448eb211c80319c";
constexpr int kJobs = 10;
const std::vector<std::string> kJsonDebug = {"--log-level", "debug",
                                             "--log-format", "json"};

// Stops `p` (SIGTERM, drained) and parses each line of its stderr; a line
// that is not a JSON object with the contract's keys fails the test.
std::vector<nlohmann::json> StopAndReadJsonLog(Process* p) {
  p->Signal(SIGTERM);
  EXPECT_TRUE(p->Wait(Millis(20000))) << p->CommandLine();
  std::vector<nlohmann::json> lines;
  std::istringstream in(p->Stderr());
  for (std::string line; std::getline(in, line);) {
    nlohmann::json j = nlohmann::json::parse(line, nullptr, false);
    EXPECT_TRUE(j.is_object()) << line;
    if (!j.is_object()) continue;
    for (const char* key : {"time", "level", "component", "message"}) {
      EXPECT_TRUE(j.contains(key)) << key << " missing: " << line;
    }
    lines.push_back(std::move(j));
  }
  return lines;
}

// The lines whose message starts with `prefix`.
std::vector<nlohmann::json> Starting(const std::vector<nlohmann::json>& lines,
                                     const std::string& prefix) {
  std::vector<nlohmann::json> out;
  for (const nlohmann::json& j : lines) {
    const std::string message = j.value("message", "");
    if (message.rfind(prefix, 0) == 0) out.push_back(j);
  }
  return out;
}

// How many of `lines` carry a job id and the trace id `trace_id`.
int WithTrace(const std::vector<nlohmann::json>& lines,
              const std::string& trace_id) {
  int n = 0;
  for (const nlohmann::json& j : lines) {
    n += j.contains("job_id") && j.value("trace_id", "") == trace_id;
  }
  return n;
}

TEST(TraceTest, AGivenTraceParentReachesBrokerWorkerAndResults) {
  Cluster c;
  auto broker = c.StartBroker(kJsonDebug);
  ASSERT_TRUE(broker);
  Process* worker = c.StartWorker(broker->backend, 2, kJsonDebug);
  ASSERT_TRUE(worker);
  PushRun run =
      c.RunPush({"--connect", broker->frontend, "--task", "echo", "--count",
                 std::to_string(kJobs), "--traceparent", kTraceParent},
                Millis(30000));
  ExpectPushSucceeded(run, kJobs);
  EXPECT_EQ(run.report.value("trace_id", ""), kTraceId) << run.Describe();
  // Each result came back from a worker's attempt, in the same trace.
  EXPECT_EQ(run.Count("traced"), kJobs) << run.Describe();

  const auto worker_log = StopAndReadJsonLog(worker);
  const auto broker_log = StopAndReadJsonLog(broker->process);
  EXPECT_EQ(WithTrace(Starting(broker_log, "received"), kTraceId), kJobs);
  EXPECT_EQ(WithTrace(Starting(broker_log, "dispatched"), kTraceId), kJobs);
  // The broker reads this one from the worker's result.
  EXPECT_EQ(WithTrace(Starting(broker_log, "result from worker"), kTraceId),
            kJobs);
  EXPECT_EQ(WithTrace(Starting(worker_log, "started"), kTraceId), kJobs);
  EXPECT_EQ(WithTrace(Starting(worker_log, "finished"), kTraceId), kJobs);
  for (const nlohmann::json& j : broker_log) {
    EXPECT_EQ(j["component"], "broker");
  }
}

// A job sent without a trace context is its own trace: its id is the
// trace id on every line about it.
TEST(TraceTest, AJobWithoutATraceParentIsItsOwnTrace) {
  Cluster c;
  auto broker = c.StartBroker();
  ASSERT_TRUE(broker);
  Process* worker = c.StartWorker(broker->backend, 2, kJsonDebug);
  ASSERT_TRUE(worker);
  PushRun run = c.RunPush({"--connect", broker->frontend, "--task", "echo",
                           "--count", std::to_string(kJobs)},
                          Millis(30000));
  ExpectPushSucceeded(run, kJobs);
  EXPECT_FALSE(run.report.contains("trace_id")) << run.Describe();

  const auto started = Starting(StopAndReadJsonLog(worker), "started");
  ASSERT_EQ(started.size(), static_cast<size_t>(kJobs));
  std::set<std::string> traces, jobs;
  for (const nlohmann::json& j : started) {
    const std::string trace = j.value("trace_id", "");
    EXPECT_TRUE(std::regex_match(trace, std::regex("[0-9a-f]{32}")))
        << j.dump();
    EXPECT_NE(trace, std::string(32, '0'));
    EXPECT_EQ(trace, j.value("job_id", "")) << j.dump();
    traces.insert(trace);
    jobs.insert(j.value("job_id", ""));
  }
  EXPECT_EQ(traces.size(), static_cast<size_t>(kJobs));
  EXPECT_EQ(jobs.size(), static_cast<size_t>(kJobs));
}

TEST(TraceTest, PushRefusesAMalformedTraceParent) {
  Cluster c;
  PushRun run = c.RunPush(
      {"--connect", "tcp://127.0.0.1:1", "--task", "echo", "--count", "1",
       "--traceparent", "00-0af7651916cd43dd8448eb211c80319c-b7ad"},
      Millis(10000));
  ASSERT_TRUE(run.exit) << run.Describe();
  EXPECT_TRUE(run.exit->ExitedWith(2)) << run.Describe();
}

}  // namespace
}  // namespace yard
