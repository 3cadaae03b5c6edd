// RedisFixture: each test gets a fresh redis-server (testing/redis_server.h)
// and an admin connection of its own to it, for the tests that drive the
// durable queue in-process and check what it wrote in Redis.
#ifndef YARD_TESTING_REDIS_FIXTURE_H_
#define YARD_TESTING_REDIS_FIXTURE_H_

#include <gtest/gtest.h>

#include <memory>

#include "redis/redis_client.h"
#include "testing/redis_server.h"

namespace yard {

class RedisFixture : public ::testing::Test {
 protected:
  void SetUp() override {
    auto server = RedisServer::Create();
    ASSERT_TRUE(server.ok()) << server.status().ToString();
    server_ = std::move(server).value();
    auto admin = RedisClient::Connect(server_->address(), 5000);
    ASSERT_TRUE(admin.ok()) << admin.status().ToString();
    admin_ = std::move(admin).value();
  }

  std::unique_ptr<RedisServer> server_;
  std::unique_ptr<RedisClient> admin_;
};

}  // namespace yard

#endif  // YARD_TESTING_REDIS_FIXTURE_H_
