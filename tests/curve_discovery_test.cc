// CURVE with discovery: a durable CURVE broker publishes its public key in
// its registry record, and a worker and a producer given only their own
// secret key (no --broker-key) take it from there. Label: redis.
#include <gtest/gtest.h>

#include <filesystem>

#include "security/curve_keys.h"
#include "testing/redis_server.h"
#include "tests/cluster.h"

namespace yard {
namespace {

TEST(CurveDiscoveryTest, ClientsTakeEachBrokersKeyFromTheRegistry) {
  Cluster c;
  auto redis = RedisServer::Create();
  ASSERT_TRUE(redis.ok()) << redis.status().ToString();
  const std::string keys = c.dir() + "/keys";
  std::filesystem::create_directories(keys);
  for (const char* name : {"broker", "producer", "worker"}) {
    auto pair = GenerateKeyPair();
    ASSERT_TRUE(pair.ok());
    ASSERT_TRUE(WriteKeyPair(keys + "/" + name, *pair, false).ok());
  }
  const std::string url = (*redis)->url();
  auto broker = c.StartBroker({"--redis", url, "--heartbeat-ms", "200",
                               "--curve-secret", keys + "/broker.secret",
                               "--producer-keys", keys + "/producer.public",
                               "--worker-keys", keys + "/worker.public"});
  ASSERT_TRUE(broker);
  // StartWorker takes --connect: a discovering worker is started raw.
  ASSERT_TRUE(c.Start("worker", {"worker", "--discover", url, "--concurrency",
                                 "2", "--heartbeat-ms", "200", "--curve-secret",
                                 keys + "/worker.secret"}));
  PushRun run = c.RunPush(
      {"--discover", url, "--task", "echo", "--count", "5000", "--size", "64",
       "--timeout", "20", "--curve-secret", keys + "/producer.secret"},
      Millis(30000));
  ExpectPushSucceeded(run, 5000);
}

}  // namespace
}  // namespace yard
