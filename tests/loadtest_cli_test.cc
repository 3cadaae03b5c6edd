// `yard loadtest` end to end: the real binary starts its own cluster of real
// `yard` processes on 127.0.0.1, and its audit is checked against what must
// hold: a worker SIGKILLed mid-run loses nothing; a cluster with no workers
// is reported as lost jobs (exit 1), not as a success; a task that fails is
// counted as failed, not lost; bad flags and impossible shapes exit 2 with
// one line; SIGINT stops every child. Small counts, a few seconds each.
#include <gtest/gtest.h>
#include <signal.h>

#include <cctype>
#include <chrono>
#include <filesystem>
#include <nlohmann/json.hpp>
#include <regex>
#include <string>
#include <thread>
#include <vector>

#include "testing/redis_server.h"
#include "tests/loadtest_fixture.h"

namespace yard {
namespace {

using LoadtestCliTest = LoadtestFixture;
using std::chrono::milliseconds;
using std::chrono::seconds;
// The jobs a killed worker held, as its broker tells it: the broker's log
// says it presumed the worker (named host:pid) dead and, in the same loop
// turn (same timestamp), how many in-flight jobs of it went back to the
// queue. 0 when it held none (or was not seen to die).
int64_t JobsHeldWhenKilled(const std::vector<std::string>& broker_log,
                           const std::string& pid) {
  static const std::regex kBack(
      R"(\] (\d+) in-flight jobs of a departed worker go back to the queue)");
  for (size_t i = 0; i + 1 < broker_log.size(); ++i) {
    const std::string& dead = broker_log[i];
    if (dead.find(":" + pid + " is silent for ") == std::string::npos ||
        dead.find("presumed dead") == std::string::npos) {
      continue;
    }
    const std::string when = dead.substr(0, dead.find(' '));
    for (size_t j = i + 1; j < broker_log.size(); ++j) {
      const std::string& next = broker_log[j];
      if (next.rfind(when + " ", 0) != 0) break;  // a later turn
      std::smatch m;
      if (std::regex_search(next, m, kBack)) return std::stoll(m[1]);
    }
  }
  return 0;
}

TEST_F(LoadtestCliTest, WorkerKilledMidRunLosesNothing) {
  // Memory mode: a dead worker's jobs go back to the queue, so none may be
  // lost. The jobs sleep 10 ms: a killed worker is likely to hold some, and
  // the broker's log must show that one did.
  LoadtestRun run =
      Run({"--duration", "3", "--rate", "150", "--task", "sleep", "--payload",
           "10", "--workers", "2", "--concurrency", "2", "--kill-worker-every",
           "1", "--heartbeat-ms", "200"},
          seconds(60));
  ASSERT_TRUE(run.exit && run.report.is_object()) << run.Describe();
  EXPECT_TRUE(run.exit->ExitedWith(0)) << run.Describe();
  EXPECT_EQ(run.report["verdict"], "ok") << run.Describe();
  EXPECT_GT(run.Total("submitted"), 300) << run.Describe();
  EXPECT_EQ(run.Total("completed"), run.Total("submitted")) << run.Describe();
  EXPECT_EQ(run.Total("lost"), 0) << run.Describe();
  EXPECT_EQ(run.Total("failed"), 0) << run.Describe();
  int kills = 0;
  for (const auto& e : run.report["events"]) {
    if (e["event"] == "kill-worker") {
      ++kills;
      EXPECT_TRUE(e["ok"].get<bool>()) << e.dump();
    }
  }
  EXPECT_GE(kills, 2) << run.Describe();
  const std::vector<std::string> broker_log = ClusterLog("broker");
  int64_t held = 0;
  for (const std::string& pid : run.KilledPids("kill-worker")) {
    held += JobsHeldWhenKilled(broker_log, pid);
  }
  EXPECT_GT(held, 0) << "no killed worker held a job:\n"
                     << ::testing::PrintToString(broker_log);
  EXPECT_GE(run.report["series"].size(), 3u) << run.Describe();
  // Jobs held by a killed worker waited for its death to be noticed.
  EXPECT_GT(run.report["latency_us"]["max"].get<int64_t>(), 200'000)
      << run.Describe();
  EXPECT_EQ(run.report["config"]["loop"], "open");
}

// Open loop: latency counts from each job's intended send time. While the
// only broker is down for a second, the window fills and the producer stops
// sending; the jobs due meanwhile go out late. Measured from their actual
// send, they would look fast (coordinated omission); from their intended
// time, about a third of the run's jobs waited up to a second.
TEST_F(LoadtestCliTest, OpenLoopLatencyIncludesTheStall) {
  LoadtestRun run = Run(
      {"--duration", "3", "--rate", "2000", "--window", "100",
       "--kill-broker-at", "1", "--broker-down", "1", "--heartbeat-ms", "200"},
      seconds(60));
  ASSERT_TRUE(run.exit && run.report.is_object()) << run.Describe();
  EXPECT_TRUE(run.exit->ExitedWith(0)) << run.Describe();
  EXPECT_EQ(run.Total("lost"), 0) << run.Describe();
  EXPECT_GT(run.report["latency_us"]["p90"].get<int64_t>(), 250'000)
      << run.Describe();
}

TEST_F(LoadtestCliTest, NoWorkersIsReportedAsLostNotSuccess) {
  LoadtestRun run = Run({"--workers", "0", "--jobs", "300", "--job-timeout",
                         "1", "--timeout", "3"},
                        seconds(60));
  ASSERT_TRUE(run.exit && run.report.is_object()) << run.Describe();
  EXPECT_TRUE(run.exit->ExitedWith(1)) << run.Describe();
  EXPECT_EQ(run.report["verdict"], "lost") << run.Describe();
  EXPECT_EQ(run.Total("submitted"), 300) << run.Describe();
  EXPECT_EQ(run.Total("completed"), 0) << run.Describe();
  EXPECT_EQ(run.Total("lost"), 300) << run.Describe();
}

// A run that fails (here: no workers, every job lost) removes the temporary
// directory of its cluster's logs all the same, and shows their tails.
TEST_F(LoadtestCliTest, AFailedRunLeavesNoTemporaryDirectory) {
  const std::string tmp = dir_ + "/tmp";
  ASSERT_TRUE(std::filesystem::create_directory(tmp));
  auto p = Process::Spawn(
      {"/usr/bin/env", "TMPDIR=" + tmp, YARD_BIN, "loadtest", "--workers", "0",
       "--jobs", "20", "--job-timeout", "1", "--quiet"},
      dir_ + "/failed.stderr");
  ASSERT_TRUE(p.ok()) << p.status().ToString();
  LoadtestRun run = Finish(p->get(), seconds(60));
  ASSERT_TRUE(run.exit) << run.Describe();
  EXPECT_TRUE(run.exit->ExitedWith(1)) << run.Describe();
  EXPECT_NE(run.err.find("the cluster's logs, removed at exit"),
            std::string::npos)
      << run.Describe();
  std::vector<std::string> left;
  for (const auto& f : std::filesystem::directory_iterator(tmp)) {
    left.push_back(f.path().filename().string());
  }
  EXPECT_TRUE(left.empty()) << ::testing::PrintToString(left);
}

TEST_F(LoadtestCliTest, AnUnknownTaskOrACutShortRunIsNotOk) {
  LoadtestRun typo = Run({"--task", "ecoh", "--jobs", "100"}, seconds(60));
  ASSERT_TRUE(typo.exit && typo.report.is_object()) << typo.Describe();
  EXPECT_TRUE(typo.exit->ExitedWith(1)) << typo.Describe();
  EXPECT_EQ(typo.report["verdict"], "failed") << typo.Describe();
  EXPECT_NE(typo.report["problems"].dump().find("no worker knows"),
            std::string::npos)
      << typo.Describe();
  // 100,000 jobs at 1,000 jobs/s cannot be sent within 2 s.
  LoadtestRun cut = Run(
      {"--jobs", "100000", "--rate", "1000", "--timeout", "2"}, seconds(60));
  ASSERT_TRUE(cut.exit && cut.report.is_object()) << cut.Describe();
  EXPECT_TRUE(cut.exit->ExitedWith(1)) << cut.Describe();
  EXPECT_LT(cut.Total("submitted"), 100000) << cut.Describe();
  EXPECT_NE(cut.report["problems"].dump().find("time bound"), std::string::npos)
      << cut.Describe();
}

TEST_F(LoadtestCliTest, AFailingTaskIsFailedNotLost) {
  LoadtestRun run = Run({"--task", "fail", "--jobs", "500"}, seconds(60));
  ASSERT_TRUE(run.exit && run.report.is_object()) << run.Describe();
  EXPECT_TRUE(run.exit->ExitedWith(0)) << run.Describe();
  EXPECT_EQ(run.Total("failed"), 500) << run.Describe();
  EXPECT_EQ(run.Total("lost"), 0) << run.Describe();
  EXPECT_EQ(run.Total("completed"), 0) << run.Describe();
}

TEST_F(LoadtestCliTest, WritesTheTableAndAnHtmlPage) {
  const std::string html = dir_ + "/report.html";
  const std::string json = dir_ + "/report.json";
  auto p = Start({"--jobs", "2000", "--producers", "2", "--batch", "16",
                  "--html", html, "--json", json});
  LoadtestRun run = Finish(p.get(), seconds(60));
  ASSERT_TRUE(run.exit) << run.Describe();
  EXPECT_TRUE(run.exit->ExitedWith(0)) << run.Describe();
  EXPECT_NE(run.out.find("verdict: ok"), std::string::npos) << run.out;
  std::string page = ReadFileOrEmpty(html);
  EXPECT_NE(page.find("<svg"), std::string::npos);
  auto doc = nlohmann::json::parse(ReadFileOrEmpty(json), nullptr, false);
  ASSERT_TRUE(doc.is_object()) << ReadFileOrEmpty(json);
  EXPECT_EQ(doc["totals"]["completed"], 2000);
  EXPECT_EQ(doc["config"]["producers"], 2);
}

TEST_F(LoadtestCliTest, BadFlagsExitTwoWithOneLine) {
  Result<uint16_t> port = PickFreeLoopbackPort();
  ASSERT_TRUE(port.ok());
  const std::string nobody = "tcp://127.0.0.1:" + std::to_string(*port);
  const std::vector<std::vector<std::string>> cases = {
      {"--producers", "0"},
      {"--rate", "-5"},
      {"--rate", "0"},
      {"--jobs", "0"},
      {"--window", "0"},
      {"--size", "5000000"},
      {"--connect", nobody, "--connect-timeout", "1"},
      {"--connect", "tcp://10.0.0.1:5555"},
      {"--restart-redis-at", "1"},
      {"--kill-worker-every", "-1"},
      {"--no-such-flag"},
  };
  for (const auto& args : cases) {
    auto p = Start(args);
    LoadtestRun run = Finish(p.get(), seconds(30));
    std::string what = ::testing::PrintToString(args);
    ASSERT_TRUE(run.exit) << what;
    EXPECT_TRUE(run.exit->ExitedWith(2)) << what << "\n" << run.Describe();
    EXPECT_EQ(run.err.rfind("yard loadtest: error: ", 0), 0u) << what << "\n"
                                                              << run.err;
    EXPECT_EQ(std::count(run.err.begin(), run.err.end(), '\n'), 1)
        << what << "\n"
        << run.err;
  }
}

// Whether a progress line ("[   1.20s] 4242 done ...") counts some results.
bool SomeDone(const std::string& progress) {
  for (size_t at = progress.find("] "); at != std::string::npos;
       at = progress.find("] ", at + 1)) {
    size_t digits = at + 2, end = digits;
    while (end < progress.size() && std::isdigit(progress[end])) ++end;
    if (end > digits && progress[digits] != '0' &&
        progress.compare(end, 5, " done") == 0) {
      return true;
    }
  }
  return false;
}

// Every process with a file open under `dir` (the cluster's stderr files).
std::vector<std::string> ProcessesUsing(const std::string& dir) {
  std::vector<std::string> found;
  std::error_code ec;
  for (const auto& proc : std::filesystem::directory_iterator("/proc", ec)) {
    std::error_code e2;
    for (const auto& fd :
         std::filesystem::directory_iterator(proc.path() / "fd", e2)) {
      std::error_code e3;
      auto target = std::filesystem::read_symlink(fd.path(), e3);
      if (!e3 && target.string().rfind(dir, 0) == 0) {
        found.push_back(proc.path().filename().string() + " " +
                        target.string());
        break;
      }
    }
  }
  return found;
}

TEST_F(LoadtestCliTest, InterruptStopsEveryChild) {
  const std::string logs = dir_ + "/cluster";
  auto p = Start({"--duration", "60", "--rate", "2000", "--workers", "2",
                  "--logs", logs, "--json", "-", "--progress-every", "0.2"});
  ASSERT_NE(p, nullptr);
  // Wait until results come back (a progress line with some done).
  for (int i = 0; i < 300 && !SomeDone(p->Stderr()); ++i) {
    std::this_thread::sleep_for(milliseconds(100));
  }
  ASSERT_TRUE(SomeDone(p->Stderr())) << p->Stderr();
  ASSERT_GE(ProcessesUsing(logs).size(), 3u);
  ASSERT_TRUE(p->Signal(SIGINT));
  LoadtestRun run = Finish(p.get(), seconds(30));
  ASSERT_TRUE(run.exit) << run.Describe();
  EXPECT_TRUE(run.exit->ExitedWith(130)) << run.Describe();
  ASSERT_TRUE(run.report.is_object()) << run.Describe();
  EXPECT_EQ(run.report["verdict"], "interrupted");
  EXPECT_GT(run.Total("completed"), 0) << run.Describe();
  EXPECT_TRUE(ProcessesUsing(logs).empty())
      << ::testing::PrintToString(ProcessesUsing(logs));
}

}  // namespace
}  // namespace yard
