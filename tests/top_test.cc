// `yard top --once --json` (the real binary) against a real broker and
// worker on 127.0.0.1: the snapshot names the broker and counts the jobs a
// real `yard push` ran; with no broker answering it exits 1 with a message.
// The live view in a real terminal: tests/top_tmux_test.sh.
#include <gtest/gtest.h>

#include <string>

#include "tests/cluster.h"

namespace yard {
namespace {

// `yard top <args> --once --json`, to its end.
PushRun RunTopOnce(Cluster& c, std::vector<std::string> args) {
  args.insert(args.begin(), "top");
  for (const char* a : {"--once", "--json", "--interval-ms", "300"}) {
    args.emplace_back(a);
  }
  return c.FinishPush(c.Start("top", std::move(args)), Millis(20000));
}

TEST(TopTest, OnceJsonShowsTheBrokerItsWorkerAndTheJobsDone) {
  Cluster c;
  auto broker = c.StartBroker({"--heartbeat-ms", "200"});
  ASSERT_TRUE(broker);
  ASSERT_TRUE(
      c.StartWorker(broker->backend, 2,
                    {"--name", "top-test-worker", "--heartbeat-ms", "200"}));
  ExpectPushSucceeded(c.RunPush({"--connect", broker->frontend, "--task",
                                 "echo", "--count", "37", "--size", "16"},
                                Millis(30000)),
                      37);
  const PushRun top = RunTopOnce(c, {"--connect", broker->frontend});
  ASSERT_TRUE(top.exit && top.exit->ExitedWith(0)) << top.Describe();
  const nlohmann::json& s = top.report;
  ASSERT_TRUE(s.is_object()) << top.Describe();
  ASSERT_EQ(s["brokers"].size(), 1u) << s.dump();
  const nlohmann::json& b = s["brokers"][0];
  EXPECT_EQ(b["endpoint"], broker->frontend) << s.dump();
  EXPECT_EQ(b["up"], true) << s.dump();
  EXPECT_GE(b["workers"].get<int64_t>(), 1) << s.dump();
  EXPECT_EQ(b["counters"]["completed"], 37) << s.dump();
  // Two samples: the second has an interval.
  EXPECT_GT(s["interval_s"].get<double>(), 0) << s.dump();
  bool named = false;
  for (const nlohmann::json& w : s["workers"]) {
    named = named || w["name"] == "top-test-worker";
  }
  EXPECT_TRUE(named) << s.dump();
}

TEST(TopTest, OnceExitsOneWithAMessageWhenNoBrokerAnswers) {
  Cluster c;
  // Nothing listens on port 1.
  const PushRun top =
      RunTopOnce(c, {"--connect", "tcp://127.0.0.1:1", "--timeout-ms", "300"});
  ASSERT_TRUE(top.exit && top.exit->ExitedWith(1)) << top.Describe();
  EXPECT_EQ(top.report["brokers"][0]["up"], false) << top.Describe();
  EXPECT_NE(c.Describe().find("no broker answered: tcp://127.0.0.1:1"),
            std::string::npos)
      << c.Describe();
}

TEST(TopTest, TheLiveViewNeedsATerminal) {
  Cluster c;
  Process* top = c.Start("top", {"top", "--connect", "tcp://127.0.0.1:1"});
  ASSERT_NE(top, nullptr);
  const std::optional<ExitInfo> exit = top->Wait(Millis(10000));
  ASSERT_TRUE(exit && exit->ExitedWith(2)) << c.Describe();
  EXPECT_NE(top->StderrTail(1000).find("use --once or --json"),
            std::string::npos)
      << c.Describe();
}

}  // namespace
}  // namespace yard
