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
                          "redis://user:p%zzw@h:6379",
                          "redis://user:pw%4@h:6379",
                          "redis://user:pw@",
                          "redis://user:pw@h",
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

TEST(RedisUrlTest, ParsesCredentials) {
  auto pw = ParseRedisUrl("redis://:s3cret@127.0.0.1:6379/2");
  ASSERT_TRUE(pw.ok()) << pw.status().ToString();
  EXPECT_EQ(pw->auth.user, "");
  EXPECT_EQ(pw->auth.password, "s3cret");
  EXPECT_EQ(pw->host, "127.0.0.1");
  EXPECT_EQ(pw->db, 2);

  auto acl = ParseRedisUrl("redis://yard:p%40ss%2Fw%3Ard@[::1]:7000");
  ASSERT_TRUE(acl.ok()) << acl.status().ToString();
  EXPECT_EQ(acl->auth.user, "yard");
  EXPECT_EQ(acl->auth.password, "p@ss/w:rd");
  EXPECT_EQ(acl->host, "::1");
  EXPECT_EQ(acl->port, 7000);

  // Everything up to the last '@' is the user part: raw '@', '/' and ':'
  // in a password survive.
  auto raw = ParseRedisUrl("redis://yard:a@b/c:d@h:1/3");
  ASSERT_TRUE(raw.ok()) << raw.status().ToString();
  EXPECT_EQ(raw->auth.password, "a@b/c:d");
  EXPECT_EQ(raw->host, "h");
  EXPECT_EQ(raw->db, 3);

  auto user_only = ParseRedisUrl("redis://yard@h:1");
  ASSERT_TRUE(user_only.ok()) << user_only.status().ToString();
  EXPECT_EQ(user_only->auth.user, "yard");
  EXPECT_TRUE(user_only->auth.password.empty());
  EXPECT_FALSE(user_only->auth.empty());

  auto none = ParseRedisUrl("redis://h:1");
  ASSERT_TRUE(none.ok());
  EXPECT_TRUE(none->auth.empty());
}

TEST(RedisUrlTest, ErrorsNeverHoldThePassword) {
  for (const char* url :
       {"redis://u:hunter2@h", "redis://u:hunter2@h:0",
        "redis://u:hunter2%zz@h:1", "redis://:hunter2@h:1/x"}) {
    auto r = ParseRedisUrl(url);
    ASSERT_FALSE(r.ok()) << url;
    EXPECT_EQ(r.status().message().find("hunter2"), std::string::npos)
        << r.status().message();
  }
}

TEST(RedisUrlTest, Redacts) {
  EXPECT_EQ(RedactRedisUrl("redis://yard:pw@h:6379/1"),
            "redis://yard:***@h:6379/1");
  EXPECT_EQ(RedactRedisUrl("redis://:pw@h:6379"), "redis://:***@h:6379");
  EXPECT_EQ(RedactRedisUrl("redis://yard:a@b:c@h:1"), "redis://yard:***@h:1");
  EXPECT_EQ(RedactRedisUrl("sentinel://:pw@h:1,k:2/m"),
            "sentinel://:***@h:1,k:2/m");
  EXPECT_EQ(RedactRedisUrl("cluster://u:pw@h:1,k:2"),
            "cluster://u:***@h:1,k:2");
  // Nothing to hide.
  EXPECT_EQ(RedactRedisUrl("redis://h:6379/1"), "redis://h:6379/1");
  EXPECT_EQ(RedactRedisUrl("redis://yard@h:6379"), "redis://yard@h:6379");
  EXPECT_EQ(RedactRedisUrl("local"), "local");
  // Even without a scheme.
  EXPECT_EQ(RedactRedisUrl("u:pw@h:1"), "u:***@h:1");
}

TEST(RedisUrlTest, PercentEncodeRoundTrips) {
  const std::string password = "p@ss:w/rd%?# \x01";
  const std::string url = "redis://u:" + PercentEncode(password) + "@h:1";
  auto a = ParseRedisUrl(url);
  ASSERT_TRUE(a.ok()) << a.status().ToString();
  EXPECT_EQ(a->auth.password, password);
  EXPECT_EQ(PercentEncode("Az09-._~"), "Az09-._~");
}

}  // namespace
}  // namespace yard
