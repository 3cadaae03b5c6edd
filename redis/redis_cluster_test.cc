// Redis Cluster routing, no server needed: key slots (CRC16 and hash tags),
// MOVED/ASK redirects, the slot map, and cluster:// URLs.
#include "redis/redis_cluster.h"

#include <gtest/gtest.h>

#include <string>
#include <vector>

#include "redis/redis_target.h"

namespace yard {
namespace {

// RESP replies built by hand.
using Type = RedisReply::Type;

RedisReply Int(int64_t v) {
  RedisReply r;
  r.type = Type::kInteger;
  r.integer = v;
  return r;
}
RedisReply Str(std::string s) {
  RedisReply r;
  r.type = Type::kString;
  r.str = std::move(s);
  return r;
}
RedisReply Arr(std::vector<RedisReply> e) {
  RedisReply r;
  r.type = Type::kArray;
  r.elements = std::move(e);
  return r;
}
RedisReply Range(int first, int last, std::string host, int port,
                 std::string id) {
  return Arr(
      {Int(first), Int(last),
       Arr({Str(std::move(host)), Int(port), Str(std::move(id)), Arr({})}),
       Arr({Str("10.0.0.9"), Int(9999), Str("replica")})});
}

TEST(KeySlotTest, Crc16AndTheClusterSpecVectors) {
  EXPECT_EQ(Crc16Xmodem("123456789"), 0x31C3);  // cluster spec, Appendix A
  EXPECT_EQ(Crc16Xmodem(""), 0);
  EXPECT_EQ(KeySlot("123456789"), 0x31C3 & 16383);
  EXPECT_EQ(KeySlot("foo"), 12182);
  EXPECT_EQ(KeySlot("bar"), 5061);
  EXPECT_EQ(KeySlot(""), 0);
}

TEST(KeySlotTest, HashTags) {
  // The spec's examples.
  EXPECT_EQ(KeySlot("{user1000}.following"), KeySlot("user1000"));
  EXPECT_EQ(KeySlot("{user1000}.followers"), KeySlot("user1000"));
  EXPECT_EQ(KeySlot("foo{}{bar}"), Crc16Xmodem("foo{}{bar}") & 16383);
  EXPECT_EQ(KeySlot("foo{{bar}}zap"), KeySlot("{bar"));
  EXPECT_EQ(KeySlot("foo{bar}{zap}"), KeySlot("bar"));
  // A shard's keys all share its tag.
  EXPECT_EQ(KeySlot("{jq:default:0}:s:0"), KeySlot("{jq:default:0}:dly"));
  EXPECT_EQ(KeySlot("{jq:default:0}:s:0"), KeySlot("jq:default:0"));
  EXPECT_EQ(KeySlot("no{close"), Crc16Xmodem("no{close") & 16383);
  EXPECT_EQ(KeySlot("}{x}"), KeySlot("x"));
}

TEST(RedirectTest, ParsesMovedAndAsk) {
  auto m = ParseRedisRedirect("MOVED 3999 127.0.0.1:6381");
  ASSERT_TRUE(m.has_value());
  EXPECT_EQ(m->kind, RedisRedirect::Kind::kMoved);
  EXPECT_EQ(m->slot, 3999);
  EXPECT_EQ(m->host, "127.0.0.1");
  EXPECT_EQ(m->port, 6381);

  auto a = ParseRedisRedirect("-ASK 0 10.1.2.3:7000");
  ASSERT_TRUE(a.has_value());
  EXPECT_EQ(a->kind, RedisRedirect::Kind::kAsk);
  EXPECT_EQ(a->slot, 0);
  EXPECT_EQ(a->host, "10.1.2.3");
  EXPECT_EQ(a->port, 7000);

  // As RedisClient's Status message; IPv6 without brackets; no host.
  auto s = ParseRedisRedirect("redis: MOVED 16383 ::1:7001");
  ASSERT_TRUE(s.has_value());
  EXPECT_EQ(s->slot, 16383);
  EXPECT_EQ(s->host, "::1");
  EXPECT_EQ(s->port, 7001);
  auto e = ParseRedisRedirect("ASK 12 :7002");
  ASSERT_TRUE(e.has_value());
  EXPECT_EQ(e->host, "");
  EXPECT_EQ(e->port, 7002);

  for (const char* bad :
       {"", "MOVED", "MOVED 1", "MOVED 1 h", "MOVED 16384 h:1", "MOVED x h:1",
        "MOVED 1 h:0", "MOVED 1 h:65536", "MOVED 1 h:1 extra", "MOVEDX 1 h:1",
        "TRYAGAIN Multiple keys request during rehashing of slot",
        "ERR unknown command"}) {
    EXPECT_FALSE(ParseRedisRedirect(bad).has_value()) << bad;
  }
}

TEST(SlotMapTest, ParsesAndLooksUp) {
  RedisAddress asked{"10.0.0.1", 7000, 0, {}};
  auto map =
      RedisSlotMap::Parse(Arr({Range(10923, 16383, "10.0.0.3", 7002, "c"),
                               Range(0, 5460, "", 7000, "a"),
                               Range(5461, 10921, "10.0.0.2", 7001, "b")}),
                          asked);
  ASSERT_TRUE(map.ok()) << map.status().ToString();
  EXPECT_EQ(map->ranges().size(), 3u);
  EXPECT_EQ(map->covered(), 16383);  // 10922 is unassigned
  ASSERT_NE(map->Lookup(0), nullptr);
  EXPECT_EQ(map->Lookup(0)->host, "10.0.0.1");  // "" -> the node asked
  EXPECT_EQ(map->Lookup(5460)->port, 7000);
  EXPECT_EQ(map->Lookup(5461)->port, 7001);
  EXPECT_EQ(map->Lookup(10921)->host, "10.0.0.2");
  EXPECT_EQ(map->Lookup(10922), nullptr);
  EXPECT_EQ(map->Lookup(16383)->port, 7002);
  EXPECT_EQ(map->LookupRange(12000)->node_id, "c");
  auto primaries = map->Primaries();
  ASSERT_EQ(primaries.size(), 3u);
  EXPECT_EQ(primaries[0].port, 7000);
  EXPECT_EQ(primaries[2].port, 7002);

  EXPECT_FALSE(RedisSlotMap::Parse(Arr({Range(0, 100, "h", 1, "a"),
                                        Range(100, 200, "h", 2, "b")}),
                                   asked)
                   .ok());  // overlap
  EXPECT_FALSE(RedisSlotMap::Parse(Str("x"), asked).ok());
  EXPECT_FALSE(RedisSlotMap::Parse(Arr({Arr({Int(5), Int(1)})}), asked).ok());
  EXPECT_FALSE(
      RedisSlotMap::Parse(Arr({Range(0, 16384, "h", 1, "a")}), asked).ok());
  EXPECT_FALSE(
      RedisSlotMap::Parse(Arr({Range(0, 1, "h", 0, "a")}), asked).ok());
  auto empty = RedisSlotMap::Parse(Arr({}), asked);
  ASSERT_TRUE(empty.ok());
  EXPECT_EQ(empty->Lookup(0), nullptr);
}

TEST(ClusterTargetTest, ParsesClusterUrls) {
  auto t = ParseRedisTarget(
      "cluster://127.0.0.1:7000,node-2.example:7001,[::1]:7002");
  ASSERT_TRUE(t.ok()) << t.status().ToString();
  EXPECT_EQ(t->kind, RedisTarget::Kind::kCluster);
  ASSERT_EQ(t->addresses.size(), 3u);
  EXPECT_EQ(t->addresses[1].host, "node-2.example");
  EXPECT_EQ(t->addresses[2].host, "::1");
  EXPECT_EQ(t->addresses[2].port, 7002);
  EXPECT_EQ(t->db, 0);
  EXPECT_EQ(t->key, "");
  EXPECT_EQ(t->ToString(),
            "cluster://127.0.0.1:7000,node-2.example:7001,[::1]:7002");
  auto one = ParseRedisTarget("cluster://h:1");
  ASSERT_TRUE(one.ok()) << one.status().ToString();
  EXPECT_EQ(one->ToString(), "cluster://h:1");

  const std::pair<const char*, const char*> cases[] = {
      {"cluster://", "no seed address"},
      {"cluster:/h:1", "unknown scheme"},
      {"cluster://h:1/0", "a Redis Cluster has only db 0"},
      {"cluster://h:1/", "a Redis Cluster has only db 0"},
      {"cluster://h:1,k:2/3", "a Redis Cluster has only db 0"},
      {"cluster://h", "bad seed address 'h'"},
      {"cluster://h:0", "bad seed address 'h:0'"},
      {"cluster://h:1,,k:2", "empty seed address"},
      {"cluster://h:1,", "empty seed address"},
      {"cluster://,h:1", "empty seed address"},
      {"cluster://user:pw@h", "bad seed address 'h'"},
  };
  for (const auto& [url, why] : cases) {
    auto bad = ParseRedisTarget(url);
    ASSERT_FALSE(bad.ok()) << url;
    EXPECT_EQ(bad.status().code(), StatusCode::kInvalidArgument) << url;
    EXPECT_NE(bad.status().message().find(why), std::string::npos)
        << url << " -> " << bad.status().message();
  }
}

}  // namespace
}  // namespace yard
