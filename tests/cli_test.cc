// The `yard` command-line contract: --help exits 0; a bad flag, a bad flag
// value or a malformed endpoint exits 2 with exactly one line on stderr.
#include <gtest/gtest.h>
#include <stdio.h>

#include <algorithm>
#include <cstdio>
#include <regex>
#include <string>
#include <vector>

#include "balancer/balancer.h"
#include "queue/job_queue.h"
#include "tests/cluster.h"

namespace yard {
namespace {

constexpr Millis kCliTimeout{10000};

struct CliRun {
  std::optional<ExitInfo> exit;
  std::string out;
  std::string err;
  std::string Describe() const {
    return (exit ? exit->ToString() : std::string("still running (killed)")) +
           "; stdout: '" + out + "'; stderr: '" + err + "'";
  }
};

CliRun RunYard(Cluster& c, std::vector<std::string> args) {
  CliRun run;
  Process* p = c.Start("cli", std::move(args));
  if (p == nullptr) return run;
  auto out = p->ReadAll(kCliTimeout);
  run.exit = p->Wait(out ? Millis(5000) : Millis(100));
  if (!run.exit) p->Kill();
  run.out = out.value_or("");
  run.err = p->Stderr();
  return run;
}

// Exit 2 and exactly one non-empty line on stderr.
void ExpectUsageError(Cluster& c, std::vector<std::string> args) {
  std::string cmd;
  for (const auto& a : args) cmd += a + " ";
  SCOPED_TRACE("yard " + cmd);
  CliRun run = RunYard(c, std::move(args));
  ASSERT_TRUE(run.exit) << "did not exit within " << kCliTimeout.count()
                        << " ms: " << run.Describe();
  EXPECT_TRUE(run.exit->ExitedWith(2)) << run.Describe();
  EXPECT_EQ(std::count(run.err.begin(), run.err.end(), '\n'), 1)
      << run.Describe();
  EXPECT_TRUE(!run.err.empty() && run.err.back() == '\n') << run.Describe();
  EXPECT_GT(run.err.size(), 1u) << "empty error line: " << run.Describe();
}

TEST(CliTest, HelpExitsZero) {
  Cluster c;
  const std::vector<std::pair<std::string, std::string>> cmds = {
      {"broker", "--frontend"},
      {"worker", "--concurrency"},
      {"push", "--task"}};
  for (const auto& [cmd, flag] : cmds) {
    SCOPED_TRACE("yard " + cmd + " --help");
    CliRun run = RunYard(c, {cmd, "--help"});
    ASSERT_TRUE(run.exit) << run.Describe();
    EXPECT_TRUE(run.exit->ExitedWith(0)) << run.Describe();
    EXPECT_NE(run.out.find(flag), std::string::npos)
        << "help does not mention " << flag << ": " << run.Describe();
  }
  CliRun top = RunYard(c, {"--help"});
  ASSERT_TRUE(top.exit) << top.Describe();
  EXPECT_TRUE(top.exit->ExitedWith(0)) << top.Describe();
}

// HEAD of the source checkout, from git; empty when that is not possible.
std::string GitHead() {
  const std::string cmd = std::string("git -C '") + YARD_SOURCE_DIR +
                          "' rev-parse HEAD 2>/dev/null";
  std::string out;
  if (FILE* f = ::popen(cmd.c_str(), "r")) {
    char buf[128];
    while (std::fgets(buf, sizeof buf, f)) out += buf;
    ::pclose(f);
  }
  while (!out.empty() && (out.back() == '\n' || out.back() == ' ')) {
    out.pop_back();
  }
  return out;
}

// The CMake project's version and the commit of the checkout it was built
// from (asked of git here, so a stale or invented line fails).
TEST(CliTest, VersionNamesTheProjectVersionAndCommit) {
  Cluster c;
  for (const char* flag : {"--version", "version"}) {
    SCOPED_TRACE(flag);
    CliRun run = RunYard(c, {flag});
    ASSERT_TRUE(run.exit) << run.Describe();
    EXPECT_TRUE(run.exit->ExitedWith(0)) << run.Describe();
    std::smatch m;
    ASSERT_TRUE(std::regex_match(
        run.out, m,
        std::regex(
            R"(yard (\S+) \(commit ([0-9a-f]{12}(-dirty)?|unknown)\)\n)")))
        << run.Describe();
    EXPECT_EQ(m[1].str(), YARD_PROJECT_VERSION);
    const std::string head = GitHead();
    if (!head.empty()) {
      EXPECT_EQ(m[2].str().substr(0, 12), head.substr(0, 12)) << run.out;
    }
  }
}

TEST(CliTest, UnknownFlagExitsTwo) {
  Cluster c;
  ExpectUsageError(c, {"broker", "--no-such-flag"});
  ExpectUsageError(c, {"worker", "--no-such-flag"});
  ExpectUsageError(c, {"push", "--no-such-flag"});
  ExpectUsageError(c, {"no-such-command"});
}

TEST(CliTest, MalformedEndpointExitsTwo) {
  Cluster c;
  ExpectUsageError(c, {"broker", "--frontend", "nonsense", "--backend",
                       "tcp://127.0.0.1:*"});
  ExpectUsageError(c, {"broker", "--frontend", "tcp://127.0.0.1:*", "--backend",
                       "tcp://127.0.0.1"});
  ExpectUsageError(c,
                   {"worker", "--connect", "nonsense", "--concurrency", "1"});
  ExpectUsageError(c, {"push", "--connect", "nonsense", "--task", "echo",
                       "--count", "1", "--size", "8", "--timeout", "5"});
}

// Bad values for well-formed flags. A real broker is there so that a command
// that wrongly accepted the value would run (and fail the test by not
// exiting 2) rather than fail for another reason.
TEST(CliTest, BadValuesExitTwo) {
  Cluster c;
  auto broker = c.StartBroker();
  ASSERT_TRUE(broker);
  ExpectUsageError(
      c, {"worker", "--connect", broker->backend, "--concurrency", "0"});
  ExpectUsageError(
      c, {"worker", "--connect", broker->backend, "--concurrency", "many"});
  ExpectUsageError(c, {"push", "--connect", broker->frontend, "--task", "echo",
                       "--count", "lots", "--size", "8", "--timeout", "5"});
  ExpectUsageError(c, {"broker", "--frontend", "tcp://127.0.0.1:*", "--backend",
                       "tcp://127.0.0.1:*", "--heartbeat-ms", "often"});
  EXPECT_TRUE(broker->process->Running());
}

// Nothing listens on port 1: the push says so within --connect-timeout
// instead of waiting out --timeout and reporting every job lost.
TEST(CliTest, PushWithNoBrokerSaysSoAndExitsTwo) {
  Cluster c;
  CliRun run = RunYard(
      c, {"push", "--connect", "tcp://127.0.0.1:1", "--task", "echo", "--count",
          "10", "--connect-timeout", "1", "--timeout", "60"});
  ASSERT_TRUE(run.exit) << run.Describe();
  EXPECT_TRUE(run.exit->ExitedWith(2)) << run.Describe();
  EXPECT_NE(run.err.find("no broker answered at tcp://127.0.0.1:1"),
            std::string::npos)
      << run.Describe();
  ExpectUsageError(c, {"push", "--connect", "tcp://127.0.0.1:1", "--task",
                       "echo", "--count", "1", "--connect-timeout", "0"});
}

// The help is made from the code: every balancer, the durable default.
TEST(CliTest, BrokerHelpListsEveryBalancerAndTheDurableMaxQueue) {
  Cluster c;
  CliRun run = RunYard(c, {"broker", "--help"});
  ASSERT_TRUE(run.exit) << run.Describe();
  for (const std::string& name : BalancerNames()) {
    EXPECT_NE(run.out.find(name + ": "), std::string::npos) << name;
  }
  EXPECT_NE(run.out.find("jobs in Redis, " +
                         std::to_string(RedisQueueOptions{}.capacity)),
            std::string::npos)
      << run.out;
}

}  // namespace
}  // namespace yard
