// `yard loadtest --redis local` end to end: durable mode on a redis-server
// the load tester starts, with its chaos options. Label: redis.
#include <gtest/gtest.h>

#include <algorithm>
#include <chrono>
#include <regex>
#include <string>
#include <vector>

#include "tests/loadtest_fixture.h"

namespace yard {
namespace {

using LoadtestDurableTest = LoadtestFixture;
using std::chrono::seconds;

// Durable mode on a redis-server the load tester starts: a broker SIGKILLed
// and restarted, Redis SIGKILLed and restarted from its AOF, workers killed:
// every job accounted for, none lost. appendfsync always: under everysec a
// Redis busy with a slow fsync may answer before it writes (up to 2 s), and
// a SIGKILL then loses acknowledged jobs, which this test must not allow.
TEST_F(LoadtestDurableTest, DurableChaosLosesNothing) {
  LoadtestRun run = Run({"--redis",
                         "local",
                         "--redis-fsync",
                         "always",
                         "--brokers",
                         "2",
                         "--duration",
                         "4",
                         "--rate",
                         "4000",
                         "--kill-broker-at",
                         "1",
                         "--broker-down",
                         "0.5",
                         "--restart-redis-at",
                         "2",
                         "--kill-worker-every",
                         "1.5",
                         "--heartbeat-ms",
                         "200",
                         "--broker-arg=--lease-ms=2000"},
                        seconds(120));
  ASSERT_TRUE(run.exit && run.report.is_object()) << run.Describe();
  EXPECT_TRUE(run.exit->ExitedWith(0)) << run.Describe();
  EXPECT_EQ(run.report["config"]["mode"], "durable");
  EXPECT_EQ(run.Total("lost"), 0) << run.Describe();
  EXPECT_EQ(run.Total("completed"), run.Total("submitted")) << run.Describe();
  std::vector<std::string> seen;
  for (const auto& e : run.report["events"]) {
    EXPECT_TRUE(e["ok"].get<bool>()) << e.dump();
    seen.push_back(e["event"]);
  }
  for (const char* want :
       {"kill-broker", "restart-broker", "restart-redis", "kill-worker"}) {
    EXPECT_NE(std::find(seen.begin(), seen.end(), want), seen.end())
        << want << "\n"
        << run.Describe();
  }
}

// Issue 5: 3 brokers x 4 workers that find each other through the Redis
// registry; one broker SIGKILLed for good and one added mid-run; 100,000
// jobs, none lost. The jobs the dead broker held come back through the
// registry (its record expires, the leader requeues what it held), as the
// leader's log says, not through lease expiry. The killed broker is
// usually the leader: a survivor takes the lead 1/2 to 2/3 of a lease
// (24 s) after the kill (2 s in), so by 18 s into the run, before it ends
// (20 s of jobs at 5,000/s); lease expiry would take 2/3 of a lease or
// more. The added broker takes a share of the work.
TEST_F(LoadtestDurableTest, DiscoveryFollowsBrokersDyingAndJoining) {
  LoadtestRun run = Run({"--redis",
                         "local",
                         "--discover",
                         "--brokers",
                         "3",
                         "--workers",
                         "4",
                         "--concurrency",
                         "2",
                         "--jobs",
                         "100000",
                         "--rate",
                         "5000",
                         "--kill-broker-at",
                         "2",
                         "--broker-stays-down",
                         "--add-broker-at",
                         "4",
                         "--timeout",
                         "60",
                         "--broker-arg=--lease-ms=24000"},
                        seconds(150));
  ASSERT_TRUE(run.exit && run.report.is_object()) << run.Describe();
  EXPECT_TRUE(run.exit->ExitedWith(0)) << run.Describe();
  EXPECT_EQ(run.Total("submitted"), 100000) << run.Describe();
  EXPECT_EQ(run.Total("completed"), 100000) << run.Describe();
  EXPECT_EQ(run.Total("lost"), 0) << run.Describe();
  std::vector<std::string> seen;
  for (const auto& e : run.report["events"]) {
    EXPECT_TRUE(e["ok"].get<bool>()) << e.dump();
    seen.push_back(e["event"]);
  }
  EXPECT_EQ(seen, (std::vector<std::string>{"kill-broker", "add-broker"}))
      << run.Describe();
  // Three brokers are registered at the end (two first ones and the added
  // one; the killed one's record expired), and each of them did work.
  const auto& brokers = run.report["brokers"];
  ASSERT_EQ(brokers.size(), 3u) << run.Describe();
  const std::string added = run.report["events"][1]["detail"];
  int with_work = 0;
  bool added_worked = false;
  for (const auto& b : brokers) {
    const bool worked = std::stoll(b["dispatched"].get<std::string>()) > 0;
    with_work += worked ? 1 : 0;
    if (added.find(b["frontend"].get<std::string>()) != std::string::npos) {
      added_worked = worked;
    }
  }
  EXPECT_EQ(with_work, 3) << brokers.dump();
  EXPECT_TRUE(added_worked) << added << "\n" << brokers.dump();
  // The killed broker (its consumer name holds its pid) held records, and
  // a leader requeued them when its registry record ran out.
  const std::vector<std::string> killed = run.KilledPids("kill-broker");
  ASSERT_EQ(killed.size(), 1u) << run.Describe();
  const std::regex requeued("broker [^ ]*-" + killed[0] +
                            "-[^ ]* is gone from the registry: ([0-9]+) of "
                            "its records requeued now");
  int64_t records = 0;
  const std::vector<std::string> log = ClusterLog("broker");
  for (const std::string& line : log) {
    std::smatch m;
    if (std::regex_search(line, m, requeued)) records += std::stoll(m[1]);
    EXPECT_EQ(line.find("expired leases:"), std::string::npos) << line;
  }
  EXPECT_GT(records, 0) << ::testing::PrintToString(log);
}

}  // namespace
}  // namespace yard
