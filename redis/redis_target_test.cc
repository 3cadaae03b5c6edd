// Redis targets: redis:// and sentinel:// URLs, parsed.
#include "redis/redis_target.h"

#include <gtest/gtest.h>

#include <string>

#include "redis/redis_client.h"

namespace yard {
namespace {

TEST(ParseRedisTargetTest, DirectIsParseRedisUrl) {
  auto t = ParseRedisTarget("redis://127.0.0.1:6380/2");
  ASSERT_TRUE(t.ok()) << t.status().ToString();
  EXPECT_EQ(t->kind, RedisTarget::Kind::kDirect);
  ASSERT_EQ(t->addresses.size(), 1u);
  EXPECT_EQ(t->addresses[0].host, "127.0.0.1");
  EXPECT_EQ(t->addresses[0].port, 6380);
  EXPECT_EQ(t->db, 2);
  EXPECT_EQ(t->ToString(), "redis://127.0.0.1:6380/2");
  auto a = ResolveRedisTarget(*t, 10);  // no I/O
  ASSERT_TRUE(a.ok()) << a.status().ToString();
  EXPECT_EQ(a->port, 6380);
  EXPECT_EQ(a->db, 2);
}

TEST(ParseRedisTargetTest, Sentinel) {
  auto t = ParseRedisTarget(
      "sentinel://10.0.0.1:26379,sentinel-2.example:26380,[::1]:26381/"
      "my_master-1.a");
  ASSERT_TRUE(t.ok()) << t.status().ToString();
  EXPECT_EQ(t->kind, RedisTarget::Kind::kSentinel);
  ASSERT_EQ(t->addresses.size(), 3u);
  EXPECT_EQ(t->addresses[0].host, "10.0.0.1");
  EXPECT_EQ(t->addresses[0].port, 26379);
  EXPECT_EQ(t->addresses[1].host, "sentinel-2.example");
  EXPECT_EQ(t->addresses[2].host, "::1");
  EXPECT_EQ(t->addresses[2].port, 26381);
  EXPECT_EQ(t->master_name, "my_master-1.a");
  EXPECT_EQ(t->db, 0);
  EXPECT_EQ(t->ToString(),
            "sentinel://10.0.0.1:26379,sentinel-2.example:26380,[::1]:26381/"
            "my_master-1.a");

  auto one = ParseRedisTarget("sentinel://h:1/m/3");
  ASSERT_TRUE(one.ok()) << one.status().ToString();
  EXPECT_EQ(one->addresses.size(), 1u);
  EXPECT_EQ(one->master_name, "m");
  EXPECT_EQ(one->db, 3);
  EXPECT_EQ(one->ToString(), "sentinel://h:1/m/3");
}

TEST(ParseRedisTargetTest, BadUrlsSayWhy) {
  const std::pair<const char*, const char*> cases[] = {
      {"", "unknown scheme"},
      {"rediss://h:1", "unknown scheme"},
      {"sentinel:/h:1/m", "unknown scheme"},
      {"redis://h", "no port"},
      {"sentinel://h:26379", "no master name"},
      {"sentinel://h:26379/", "no master name"},
      {"sentinel:///m", "no sentinel address"},
      {"sentinel://h/m", "bad sentinel address 'h'"},
      {"sentinel://h:0/m", "bad sentinel address 'h:0'"},
      {"sentinel://h:1,,k:2/m", "empty sentinel address"},
      {"sentinel://h:1,/m", "empty sentinel address"},
      {"sentinel://h:99999/m", "bad sentinel address"},
      {"sentinel://user:pw@/m", "no sentinel address"},
      {"sentinel://user:p%@h:1/m", "bad percent escape"},
      {"cluster://u:pw@h:1/2", "no /DB"},
      {"cluster://u:pw@", "no seed address"},
      {"sentinel://h:1/m y", "bad master name"},
      {"sentinel://h:1/m/x", "bad db"},
      {"sentinel://h:1/m/1/2", "bad db"},
  };
  for (const auto& [url, why] : cases) {
    auto t = ParseRedisTarget(url);
    ASSERT_FALSE(t.ok()) << url;
    EXPECT_EQ(t.status().code(), StatusCode::kInvalidArgument) << url;
    EXPECT_NE(t.status().message().find(why), std::string::npos)
        << url << " -> " << t.status().message();
  }
}

TEST(ParseRedisTargetTest, CredentialsReachEveryDataNode) {
  auto direct = ParseRedisTarget("redis://yard:s3cret@h:1/4");
  ASSERT_TRUE(direct.ok()) << direct.status().ToString();
  EXPECT_EQ(direct->auth.user, "yard");
  EXPECT_EQ(direct->auth.password, "s3cret");
  EXPECT_EQ(direct->ToString(), "redis://yard:***@h:1/4");
  auto a = ResolveRedisTarget(*direct, 10);
  ASSERT_TRUE(a.ok());
  EXPECT_EQ(a->auth.user, "yard");
  EXPECT_EQ(a->auth.password, "s3cret");
  EXPECT_EQ(a->db, 4);

  // Sentinel: the credentials are the data nodes'; the Sentinels are asked
  // without.
  auto sentinel = ParseRedisTarget("sentinel://:s3cret@h:1,k:2/m/1");
  ASSERT_TRUE(sentinel.ok()) << sentinel.status().ToString();
  EXPECT_EQ(sentinel->auth.password, "s3cret");
  ASSERT_EQ(sentinel->addresses.size(), 2u);
  EXPECT_TRUE(sentinel->addresses[0].auth.empty());
  EXPECT_EQ(sentinel->master_name, "m");
  EXPECT_EQ(sentinel->ToString(), "sentinel://:***@h:1,k:2/m/1");

  auto cluster = ParseRedisTarget("cluster://ops:p%40w@h:1,k:2");
  ASSERT_TRUE(cluster.ok()) << cluster.status().ToString();
  for (const RedisAddress& seed : cluster->addresses) {
    EXPECT_EQ(seed.auth.user, "ops");
    EXPECT_EQ(seed.auth.password, "p@w");
  }
  EXPECT_EQ(cluster->ToString(), "cluster://ops:***@h:1,k:2");

  auto user_only = ParseRedisTarget("redis://yard@h:1");
  ASSERT_TRUE(user_only.ok());
  EXPECT_EQ(user_only->ToString(), "redis://yard@h:1");
}

TEST(ParseRedisTargetTest, ErrorsNeverHoldThePassword) {
  for (const char* url :
       {"sentinel://u:hunter2@h:1", "cluster://u:hunter2@h:1/3",
        "sentinel://u:hunter2@h:1/m y", "rediss://u:hunter2@h:1"}) {
    auto t = ParseRedisTarget(url);
    ASSERT_FALSE(t.ok()) << url;
    EXPECT_EQ(t.status().message().find("hunter2"), std::string::npos)
        << t.status().message();
  }
}

TEST(ParseRedisTargetTest, PasswordJoinsAUrlThatHasNone) {
  EXPECT_EQ(RedisUrlWithPassword("redis://h:1/2", "pw"), "redis://:pw@h:1/2");
  EXPECT_EQ(RedisUrlWithPassword("redis://yard@h:1", "p@w"),
            "redis://yard:p%40w@h:1");
  EXPECT_EQ(RedisUrlWithPassword("redis://yard:@h:1", "pw"),
            "redis://yard:pw@h:1");
  EXPECT_EQ(RedisUrlWithPassword("sentinel://h:1,k:2/m", "pw"),
            "sentinel://:pw@h:1,k:2/m");
  EXPECT_EQ(RedisUrlWithPassword("cluster://u@h:1,k:2", "pw"),
            "cluster://u:pw@h:1,k:2");
  // The URL's own password wins; other schemes are left alone.
  EXPECT_EQ(RedisUrlWithPassword("redis://:url@h:1", "pw"), "redis://:url@h:1");
  EXPECT_EQ(RedisUrlWithPassword("local", "pw"), "local");
  EXPECT_EQ(RedisUrlWithPassword("redis://h:1", ""), "redis://h:1");

  auto t = ParseRedisTarget(RedisUrlWithPassword("redis://u@h:1", "a b%c"));
  ASSERT_TRUE(t.ok()) << t.status().ToString();
  EXPECT_EQ(t->auth.user, "u");
  EXPECT_EQ(t->auth.password, "a b%c");
}

}  // namespace
}  // namespace yard
