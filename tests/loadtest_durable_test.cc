// `yard loadtest --redis local` end to end: durable mode on a redis-server
// the load tester starts, with its chaos options. Label: redis.
#include <gtest/gtest.h>

#include <algorithm>
#include <chrono>
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

}  // namespace
}  // namespace yard
