// redis:// URLs: what ParseRedisUrl takes and what it refuses, and why.
#include "redis/redis_client.h"

#include <gtest/gtest.h>

#include <string>

namespace yard {
namespace {

TEST(RedisUrlTest, ParsesGoodUrls) {
  Result<RedisAddress> a = ParseRedisUrl("redis://127.0.0.1:6379");
  ASSERT_TRUE(a.ok()) << a.status().ToString();
  EXPECT_EQ(a->host, "127.0.0.1");
  EXPECT_EQ(a->port, 6379);
  EXPECT_EQ(a->db, 0);
  Result<RedisAddress> b = ParseRedisUrl("redis://redis-1.internal:7000/3");
  ASSERT_TRUE(b.ok()) << b.status().ToString();
  EXPECT_EQ(b->host, "redis-1.internal");
  EXPECT_EQ(b->port, 7000);
  EXPECT_EQ(b->db, 3);
  Result<RedisAddress> c = ParseRedisUrl("redis://[::1]:65535/0");
  ASSERT_TRUE(c.ok()) << c.status().ToString();
  EXPECT_EQ(c->host, "::1");
  EXPECT_EQ(c->port, 65535);
}

TEST(RedisUrlTest, RejectsBadUrls) {
  for (const char* url : {"",
                          "redis://",
                          "127.0.0.1:6379",
                          "rediss://h:6379",
                          "http://h:1",
                          "redis://h",
                          "redis://h:",
                          "redis://:6379",
                          "redis://h:0",
                          "redis://h:65536",
                          "redis://h:-1",
                          "redis://h:+1",
                          "redis://h:12x",
                          "redis://h:6379/",
                          "redis://h:6379/x",
                          "redis://h:6379/-1",
                          "redis://h:6379/1/2",
                          "redis://user:pw@h:6379",
                          "redis://h:6379?db=1",
                          "redis://[::1:6379",
                          "redis://[]:6379",
                          "redis://h h:1",
                          "redis://h:99999999999"}) {
    Result<RedisAddress> r = ParseRedisUrl(url);
    EXPECT_FALSE(r.ok()) << url;
    if (!r.ok()) {
      EXPECT_EQ(r.status().code(), StatusCode::kInvalidArgument) << url;
    }
  }
}

}  // namespace
}  // namespace yard
