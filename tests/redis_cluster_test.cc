// Redis Cluster: key slots, cluster:// targets, the slot
// map, redirects as kUnavailable, and a live slot migration on a real
// three-primary cluster (testing/redis_server.h, RedisCluster).
//
// What the migration tests pin down about Redis 7.0 (the queue's sharding
// relies on it):
// - during a migration the source answers ASK for keys it no longer holds
//   (and for new keys), TRYAGAIN for multi-key commands and functions whose
//   declared keys are on both sides; a function that touches an undeclared
//   key the source no longer holds fails in the middle, its earlier writes
//   kept;
// - a blocked XREADGROUP on a stream that MIGRATE moves away is answered
//   UNBLOCKED;
// - MIGRATE carries a stream with its consumer groups, last-delivered id,
//   entries-read and the pending-entries list (owners, delivery counts,
//   delivery times);
// - after the migration the slot map names the new owner, and the old one
//   answers MOVED.
#include "redis/redis_cluster.h"

#include <gtest/gtest.h>
#include <zmq.h>

#include <chrono>
#include <csignal>
#include <cstdint>
#include <iostream>
#include <map>
#include <memory>
#include <nlohmann/json.hpp>
#include <optional>
#include <set>
#include <span>
#include <string>
#include <thread>
#include <unordered_set>
#include <vector>

#include "common/clock.h"
#include "queue/job_queue.h"
#include "queue/queue_events.h"
#include "queue/redis_layout.h"
#include "redis/redis_client.h"
#include "redis/redis_target.h"
#include "schemas/codec.h"
#include "testing/redis_cluster.h"
#include "testing/redis_server.h"

namespace yard {
namespace {

using Type = RedisReply::Type;

const bool kSigpipeIgnored = [] {  // hiredis writes with write(2)
  std::signal(SIGPIPE, SIG_IGN);
  return true;
}();

TEST(ClusterTargetTest, NoSeedAnswersIsUnavailable) {
  auto port = PickFreeLoopbackPort();  // nothing listens there
  ASSERT_TRUE(port.ok());
  auto t = ParseRedisTarget("cluster://127.0.0.1:" + std::to_string(*port));
  ASSERT_TRUE(t.ok());
  auto a = ResolveRedisTarget(*t, 300);
  ASSERT_FALSE(a.ok());
  EXPECT_EQ(a.status().code(), StatusCode::kUnavailable);
  EXPECT_NE(a.status().message().find("no cluster slot map"), std::string::npos)
      << a.status().message();
}

// ------------------------------------------------------- a real cluster

class RedisClusterTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    auto c = RedisCluster::Create(3);
    ASSERT_TRUE(c.ok()) << c.status().ToString();
    cluster_ = std::move(c).value().release();
  }
  static void TearDownTestSuite() {
    delete cluster_;
    cluster_ = nullptr;
  }
  void SetUp() override { ASSERT_NE(cluster_, nullptr); }
  void TearDown() override {
    if (HasFailure()) std::cerr << cluster_->LogTails() << "\n";
  }

  static RedisCluster& cluster() { return *cluster_; }

  std::unique_ptr<RedisClient> ConnectNode(size_t i) {
    RedisAddress a{"127.0.0.1", cluster().node(i).port(), 0, {}};
    auto c = RedisClient::Connect(a, 2000);
    EXPECT_TRUE(c.ok()) << c.status().ToString();
    return c.ok() ? std::move(c).value() : nullptr;
  }

  // The index of the node serving `slot` in a freshly fetched slot map.
  size_t MapOwner(uint16_t slot) {
    RedisTarget t = ParseRedisTarget(cluster().url()).value();
    auto map = FetchSlotMap(t.addresses, 2000);
    EXPECT_TRUE(map.ok()) << map.status().ToString();
    if (!map.ok() || map->Lookup(slot) == nullptr) return SIZE_MAX;
    for (size_t i = 0; i < cluster().size(); ++i) {
      if (cluster().node(i).port() == map->Lookup(slot)->port) return i;
    }
    return SIZE_MAX;
  }

  // A hash tag "{<prefix>:N}" whose slot node `i` serves.
  std::string TagOnNode(size_t i, const std::string& prefix) {
    for (int n = 0; n < 1000; ++n) {
      std::string tag = "{" + prefix + ":" + std::to_string(n) + "}";
      auto owner = cluster().Owner(KeySlot(tag));
      if (owner.ok() && *owner == i) return tag;
    }
    ADD_FAILURE() << "no tag on node " << i;
    return "";
  }

  static RedisCluster* cluster_;
};

RedisCluster* RedisClusterTest::cluster_ = nullptr;

TEST_F(RedisClusterTest, KeySlotAgreesWithTheServer) {
  auto c = ConnectNode(0);
  ASSERT_NE(c, nullptr);
  const std::vector<std::string> keys = {
      "",
      "a",
      "foo",
      "bar",
      "123456789",
      "{user1000}.following",
      "{user1000}.followers",
      "foo{}{bar}",
      "foo{{bar}}zap",
      "foo{bar}{zap}",
      "{jq:default:0}",
      "{jq:default:0}:s:2",
      "{jq:default:7}:dly",
      "{jq:a-very_long.queue-name:15}:dd:some idempotency key",
      "no{close",
      "}{x}",
      "{}",
      "{{}}",
      std::string("bin\0ary\xff", 8),
      "unicode-\xc3\xa9t\xc3\xa9"};
  for (const std::string& key : keys) {
    auto r = RedisCall(*c, {"CLUSTER", "KEYSLOT", key});
    ASSERT_TRUE(r.ok()) << r.status().ToString();
    ASSERT_EQ(r->type, Type::kInteger);
    EXPECT_EQ(r->integer, KeySlot(key)) << "key '" << key << "'";
  }
}

TEST_F(RedisClusterTest, FetchSlotMapAndResolveTheOwnerOfEachNode) {
  RedisTarget t = ParseRedisTarget(cluster().url()).value();
  auto map = FetchSlotMap(t.addresses, 2000);
  ASSERT_TRUE(map.ok()) << map.status().ToString();
  EXPECT_EQ(map->covered(), kRedisClusterSlots);
  EXPECT_EQ(map->Primaries().size(), 3u);
  for (const auto& r : map->ranges()) {
    EXPECT_EQ(r.primary.host, "127.0.0.1");
    EXPECT_EQ(r.node_id.size(), 40u);
  }
  for (size_t i = 0; i < cluster().size(); ++i) {
    RedisTarget target = t;
    target.key = TagOnNode(i, "resolve") + ":s:0";
    auto a = ResolveRedisTarget(target, 2000);
    ASSERT_TRUE(a.ok()) << a.status().ToString();
    EXPECT_EQ(a->port, cluster().node(i).port()) << target.key;
    EXPECT_EQ(a->db, 0);
    auto client = ConnectRedisTarget(target, 2000);
    ASSERT_TRUE(client.ok()) << client.status().ToString();
    auto set = RedisCall(**client, {"SET", target.key, "v"});
    EXPECT_TRUE(set.ok()) << set.status().ToString();
  }
}

TEST_F(RedisClusterTest, DeadSeedsAreSkippedAndTheOneThatAnsweredGoesFirst) {
  auto dead = PickFreeLoopbackPort();
  ASSERT_TRUE(dead.ok());
  const std::string live =
      "127.0.0.1:" + std::to_string(cluster().node(1).port());
  auto t = ParseRedisTarget("cluster://127.0.0.1:" + std::to_string(*dead) +
                            "," + live);
  ASSERT_TRUE(t.ok()) << t.status().ToString();
  t->key = "{jq:default:0}";
  auto a = ResolveRedisTarget(*t, 2000);
  ASSERT_TRUE(a.ok()) << a.status().ToString();
  EXPECT_EQ(a->port,
            cluster().node(cluster().Owner(KeySlot(t->key)).value()).port());
  EXPECT_EQ(t->ToString(),
            "cluster://" + live + ",127.0.0.1:" + std::to_string(*dead));
}

TEST_F(RedisClusterTest, AWrongNodeAnswersMovedAsUnavailable) {
  const std::string key = TagOnNode(2, "moved") + ":x";
  auto c = ConnectNode(0);
  ASSERT_NE(c, nullptr);
  auto r = RedisCall(*c, {"SET", key, "v"});
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.status().code(), StatusCode::kUnavailable);
  EXPECT_NE(r.status().message().find("MOVED"), std::string::npos)
      << r.status().message();
  auto redirect = ParseRedisRedirect(r.status().message());
  ASSERT_TRUE(redirect.has_value()) << r.status().message();
  EXPECT_EQ(redirect->kind, RedisRedirect::Kind::kMoved);
  EXPECT_EQ(redirect->slot, KeySlot(key));
  EXPECT_EQ(redirect->port, cluster().node(2).port());
  EXPECT_TRUE(c->connected());  // a redirect does not drop the connection
}

// Loads `lib` on every primary (Functions are not propagated in a cluster).
void LoadEverywhere(RedisCluster& c, const std::string& lib) {
  for (size_t i = 0; i < c.size(); ++i) {
    auto client =
        RedisClient::Connect({"127.0.0.1", c.node(i).port(), 0, {}}, 2000);
    ASSERT_TRUE(client.ok()) << client.status().ToString();
    auto r = RedisCall(**client, {"FUNCTION", "LOAD", "REPLACE", lib});
    ASSERT_TRUE(r.ok()) << r.status().ToString();
  }
}

constexpr char kTestLibrary[] = R"(#!lua name=yardclustertest
redis.register_function('sum2', function(keys, args)
  return redis.call('SCARD', keys[1]) + redis.call('SCARD', keys[2])
end)
redis.register_function('add_then_count', function(keys, args)
  redis.call('SADD', keys[1], 'added')
  return redis.call('SCARD', args[1])
end)
)";

void ExpectUnavailableWith(const Result<RedisReply>& r, const std::string& what,
                           const std::string& context) {
  ASSERT_FALSE(r.ok()) << context;
  EXPECT_EQ(r.status().code(), StatusCode::kUnavailable)
      << context << ": " << r.status().ToString();
  EXPECT_NE(r.status().message().find(what), std::string::npos)
      << context << ": " << r.status().message();
}

TEST_F(RedisClusterTest, DuringAMigrationAskAndTryagainThenTheNewOwner) {
  const std::string tag = TagOnNode(0, "mig");
  const uint16_t slot = KeySlot(tag);
  auto src = ConnectNode(0);
  ASSERT_NE(src, nullptr);
  // A function not loaded on a node is not found there.
  (void)RedisCall(*src, {"FUNCTION", "DELETE", "yardclustertest"});
  auto missing = RedisCall(*src, {"FCALL", "sum2", "2", tag + "a", tag + "b"});
  ASSERT_FALSE(missing.ok());
  EXPECT_NE(missing.status().message().find("Function not found"),
            std::string::npos)
      << missing.status().message();
  LoadEverywhere(cluster(), kTestLibrary);
  std::vector<std::string> keys;
  for (int i = 0; i < 6; ++i) {
    keys.push_back(tag + ":k" + std::to_string(i));
    ASSERT_TRUE(RedisCall(*src, {"SADD", keys.back(), "m"}).ok());
  }

  ASSERT_TRUE(cluster().BeginMigration(slot, 1).ok());
  auto moved = cluster().MoveKeys(3);
  ASSERT_TRUE(moved.ok()) << moved.status().ToString();
  EXPECT_EQ(*moved, 3);
  std::vector<std::string> gone, here;
  for (const std::string& k : keys) {
    auto e = RedisCall(*src, {"EXISTS", k});
    // EXISTS of a key the source no longer has is redirected too.
    (e.ok() ? here : gone).push_back(k);
  }
  ASSERT_EQ(gone.size() + here.size(), keys.size());
  ASSERT_FALSE(gone.empty());
  ASSERT_FALSE(here.empty());

  // A moved key: ASK, a kUnavailable naming the target.
  auto r = RedisCall(*src, {"SCARD", gone[0]});
  ExpectUnavailableWith(r, "ASK", "SCARD of a moved key");
  auto ask = ParseRedisRedirect(r.status().message());
  ASSERT_TRUE(ask.has_value());
  EXPECT_EQ(ask->kind, RedisRedirect::Kind::kAsk);
  EXPECT_EQ(ask->slot, slot);
  EXPECT_EQ(ask->port, cluster().node(1).port());
  // A key still on the source is served there; a new key is not.
  auto still = RedisCall(*src, {"SCARD", here[0]});
  ASSERT_TRUE(still.ok()) << still.status().ToString();
  EXPECT_EQ(still->integer, 1);
  ExpectUnavailableWith(RedisCall(*src, {"SET", tag + ":new", "v"}), "ASK",
                        "a new key");
  // Keys on both sides: TRYAGAIN, for a command and for a function.
  ExpectUnavailableWith(RedisCall(*src, {"SUNION", gone[0], here[0]}),
                        "TRYAGAIN", "SUNION across the migration");
  ExpectUnavailableWith(
      RedisCall(*src, {"FCALL", "sum2", "2", gone[0], here[0]}), "TRYAGAIN",
      "FCALL across the migration");
  // The hazard: a function whose declared key is still here but that
  // touches an undeclared key the source no longer has stops at that call,
  // after its earlier writes (the SADD) were made.
  auto f = RedisCall(*src, {"FCALL", "add_then_count", "1", here[0], gone[0]});
  ExpectUnavailableWith(f, "non local key", "FCALL, undeclared moved key");
  auto added = RedisCall(*src, {"SCARD", here[0]});
  ASSERT_TRUE(added.ok()) << added.status().ToString();
  EXPECT_EQ(added->integer, 2) << "the SADD before the failing call stays";
  // Until the migration ends, the slot map still names the source.
  EXPECT_EQ(MapOwner(slot), 0u);

  ASSERT_TRUE(cluster().FinishMigration().ok());
  EXPECT_EQ(MapOwner(slot), 1u);
  RedisTarget t = ParseRedisTarget(cluster().url()).value();
  t.key = tag;
  auto a = ResolveRedisTarget(t, 2000);
  ASSERT_TRUE(a.ok()) << a.status().ToString();
  EXPECT_EQ(a->port, cluster().node(1).port());
  ExpectUnavailableWith(RedisCall(*src, {"SCARD", here[0]}), "MOVED",
                        "the old owner");
  auto dst = ConnectRedisTarget(t, 2000);
  ASSERT_TRUE(dst.ok()) << dst.status().ToString();
  for (const std::string& k : keys) {
    auto n = RedisCall(**dst, {"SCARD", k});
    ASSERT_TRUE(n.ok()) << k << ": " << n.status().ToString();
    EXPECT_EQ(n->integer, k == here[0] ? 2 : 1) << k;
  }
}

// Sends `args` on `c` and returns once they are written (the reply comes
// later, to `out`).
void SendNow(RedisClient& c, std::vector<std::string> args,
             std::shared_ptr<std::optional<Result<RedisReply>>> out) {
  c.Command(std::move(args),
            [out](Result<RedisReply> r) { out->emplace(std::move(r)); });
  while (c.connected() && (c.events() & ZMQ_POLLOUT)) {
    zmq_pollitem_t item{nullptr, c.fd(), c.events(), 0};
    zmq_poll(&item, 1, 100);
    c.HandleEvents(item.revents);
  }
}

// Turns `c`'s loop until `out` holds a reply or `ms` pass.
void AwaitReply(RedisClient& c,
                const std::shared_ptr<std::optional<Result<RedisReply>>>& out,
                int ms) {
  const auto deadline =
      std::chrono::steady_clock::now() + std::chrono::milliseconds(ms);
  while (!*out && c.connected() &&
         std::chrono::steady_clock::now() < deadline) {
    zmq_pollitem_t item{nullptr, c.fd(), c.events(), 0};
    zmq_poll(&item, 1, 50);
    c.HandleEvents(item.revents);
  }
}

// A stream's consumer group state, as XPENDING and XINFO GROUPS tell it.
struct GroupState {
  std::vector<std::string> pending;  // "id consumer deliveries" each
  std::vector<int64_t> idle_ms;
  std::string last_delivered;
  int64_t entries_read = -1;
};

GroupState ReadGroup(RedisClient& c, const std::string& stream) {
  GroupState g;
  auto p = RedisCall(c, {"XPENDING", stream, "g", "-", "+", "100"});
  EXPECT_TRUE(p.ok()) << p.status().ToString();
  if (p.ok()) {
    for (const RedisReply& e : p->elements) {
      g.pending.push_back(e.elements[0].str + " " + e.elements[1].str + " " +
                          std::to_string(e.elements[3].integer));
      g.idle_ms.push_back(e.elements[2].integer);
    }
  }
  auto info = RedisCall(c, {"XINFO", "GROUPS", stream});
  EXPECT_TRUE(info.ok()) << info.status().ToString();
  if (info.ok() && info->elements.size() == 1) {
    const auto& f = info->elements[0].elements;
    for (size_t i = 0; i + 1 < f.size(); i += 2) {
      if (f[i].str == "last-delivered-id") g.last_delivered = f[i + 1].str;
      if (f[i].str == "entries-read") g.entries_read = f[i + 1].integer;
    }
  }
  return g;
}

TEST_F(RedisClusterTest, AStreamKeepsItsGroupAndPendingListAcrossAMigration) {
  RedisTarget t = ParseRedisTarget(cluster().url()).value();
  t.key = TagOnNode(2, "jq:e2e");
  const std::string stream = t.key + ":s:0";
  const std::string other_stream = t.key + ":s:1";
  const uint16_t slot = KeySlot(t.key);
  auto c = ConnectRedisTarget(t, 2000);
  ASSERT_TRUE(c.ok()) << c.status().ToString();
  RedisClient& before = **c;
  for (const std::string& s : {stream, other_stream}) {
    ASSERT_TRUE(
        RedisCall(before, {"XGROUP", "CREATE", s, "g", "0", "MKSTREAM"}).ok());
  }
  std::vector<std::string> ids;
  for (int i = 0; i < 5; ++i) {
    auto id = RedisCall(before, {"XADD", stream, "*", "j", std::to_string(i)});
    ASSERT_TRUE(id.ok()) << id.status().ToString();
    ids.push_back(id->str);
  }
  // Broker b1 claims 3; reading its own pending list again bumps their
  // delivery counts to 2; b2 claims 1.
  auto claim = RedisCall(before, {"XREADGROUP", "GROUP", "g", "b1", "COUNT",
                                  "3", "STREAMS", stream, ">"});
  ASSERT_TRUE(claim.ok()) << claim.status().ToString();
  ASSERT_TRUE(RedisCall(before, {"XREADGROUP", "GROUP", "g", "b1", "STREAMS",
                                 stream, "0"})
                  .ok());
  ASSERT_TRUE(RedisCall(before, {"XREADGROUP", "GROUP", "g", "b2", "COUNT", "1",
                                 "STREAMS", stream, ">"})
                  .ok());
  // When the group's state is read (the server's clock is within these).
  using Clock = std::chrono::steady_clock;
  const Clock::time_point was_from = Clock::now();
  const GroupState was = ReadGroup(before, stream);
  const Clock::time_point was_to = Clock::now();
  ASSERT_EQ(was.pending.size(), 4u);
  EXPECT_EQ(was.pending[0], ids[0] + " b1 2");
  EXPECT_EQ(was.pending[3], ids[3] + " b2 1");
  EXPECT_EQ(was.last_delivered, ids[3]);
  EXPECT_EQ(was.entries_read, 4);

  // A broker's doorbell: blocked on the other (empty) stream of the shard.
  auto waiter = ConnectNode(2);
  ASSERT_NE(waiter, nullptr);
  auto waiter_id = RedisCall(*waiter, {"CLIENT", "ID"});
  ASSERT_TRUE(waiter_id.ok()) << waiter_id.status().ToString();
  auto blocked = std::make_shared<std::optional<Result<RedisReply>>>();
  SendNow(*waiter,
          {"XREADGROUP", "GROUP", "g", "b3", "COUNT", "1", "BLOCK", "20000",
           "STREAMS", other_stream, ">"},
          blocked);
  // The node holds it blocked (flag b) before the slot moves.
  auto probe = ConnectNode(2);
  ASSERT_NE(probe, nullptr);
  const Clock::time_point give_up = Clock::now() + std::chrono::seconds(20);
  bool waiting = false;
  while (!waiting && Clock::now() < give_up) {
    auto client = RedisCall(
        *probe, {"CLIENT", "LIST", "ID", std::to_string(waiter_id->integer)});
    waiting = client.ok() &&
              client->str.find(" flags=b ") != std::string::npos &&
              client->str.find(" cmd=xreadgroup ") != std::string::npos;
    if (!waiting) std::this_thread::sleep_for(std::chrono::milliseconds(5));
  }
  ASSERT_TRUE(waiting) << "the XREADGROUP never blocked";
  EXPECT_FALSE(blocked->has_value());

  // At least 50 ms pass between the two reads of the group (idle grows).
  std::this_thread::sleep_for(std::chrono::milliseconds(50));
  Status migrated = cluster().MigrateSlot(slot, 0);
  ASSERT_TRUE(migrated.ok()) << migrated.ToString();

  // The blocked reader learns at once that its stream left.
  AwaitReply(*waiter, blocked, 5000);
  ASSERT_TRUE(blocked->has_value());
  ExpectUnavailableWith(**blocked, "UNBLOCKED", "the blocked XREADGROUP");
  // The old connection gets MOVED; resolving again finds the new owner.
  ExpectUnavailableWith(RedisCall(before, {"XLEN", stream}), "MOVED",
                        "the old owner");
  auto a = ResolveRedisTarget(t, 2000);
  ASSERT_TRUE(a.ok()) << a.status().ToString();
  EXPECT_EQ(a->port, cluster().node(0).port());
  auto after = ConnectRedisTarget(t, 2000);
  ASSERT_TRUE(after.ok()) << after.status().ToString();
  RedisClient& now = **after;

  const Clock::time_point is_from = Clock::now();
  const GroupState is = ReadGroup(now, stream);
  const Clock::time_point is_to = Clock::now();
  EXPECT_EQ(is.pending, was.pending);  // ids, owners, delivery counts
  EXPECT_EQ(is.last_delivered, was.last_delivered);
  EXPECT_EQ(is.entries_read, was.entries_read);
  ASSERT_EQ(is.idle_ms.size(), was.idle_ms.size());
  // Delivery times travel with the entries: idle grew by the time between
  // the two reads, as the test measured it (2 ms for the servers' clocks
  // and rounding), neither reset nor changed.
  auto ms = [](Clock::duration d) {
    return std::chrono::duration_cast<std::chrono::milliseconds>(d).count();
  };
  const int64_t least = ms(is_from - was_to), most = ms(is_to - was_from);
  ASSERT_GE(least, 50);
  for (size_t i = 0; i < is.idle_ms.size(); ++i) {
    EXPECT_GE(is.idle_ms[i], was.idle_ms[i] + least - 2) << i;
    EXPECT_LE(is.idle_ms[i], was.idle_ms[i] + most + 2) << i;
  }
  // The group goes on: the one unread entry, acks, a later id.
  auto rest = RedisCall(now, {"XREADGROUP", "GROUP", "g", "b1", "COUNT", "10",
                              "STREAMS", stream, ">"});
  ASSERT_TRUE(rest.ok()) << rest.status().ToString();
  ASSERT_EQ(rest->elements.size(), 1u);
  ASSERT_EQ(rest->elements[0].elements[1].elements.size(), 1u);
  EXPECT_EQ(rest->elements[0].elements[1].elements[0].elements[0].str, ids[4]);
  auto acked = RedisCall(
      now, {"XACK", stream, "g", ids[0], ids[1], ids[2], ids[3], ids[4]});
  ASSERT_TRUE(acked.ok()) << acked.status().ToString();
  EXPECT_EQ(acked->integer, 5);
  auto next = RedisCall(now, {"XADD", stream, "*", "j", "5"});
  ASSERT_TRUE(next.ok()) << next.status().ToString();
  EXPECT_GT(next->str, ids[4]);  // same length, ms first: a later id
  auto groups = RedisCall(now, {"XINFO", "GROUPS", other_stream});
  ASSERT_TRUE(groups.ok()) << groups.status().ToString();
  EXPECT_EQ(groups->elements.size(), 1u);  // the empty stream's group too
}

// ------------------------------------------------------- sharded queues

// The issue's Cluster scenario at the queue level: three queues, each split
// into three shards whose hash tags spread over the three primaries, driven
// as brokers drive them (push, claim, complete; a failed push is resent
// with the same ids, as producers do) while the slot of one shard migrates
// to another primary under load. Every accepted job is claimed and
// completed: none lost.
TEST_F(RedisClusterTest, ShardedQueuesLoseNothingAcrossASlotMigration) {
  constexpr int kQueues = 3, kShards = 3;
  constexpr size_t kJobs = 3000, kBatch = 10;  // per queue, per turn
  Writer writer;
  struct Broker {
    std::unique_ptr<DurableQueue> q;
    std::vector<JobId> ids;  // this queue's jobs, pushed kBatch at a time
    std::vector<std::string> idem, lock;  // their keys ("" none)
    size_t next = 0;                      // first id of the batch to push
    bool pushing = false;
    bool resend = false;
    std::unordered_set<JobId, JobIdHash> accepted, completed;
    std::vector<std::shared_ptr<std::string>> blobs;
    size_t push_errors = 0;
  };
  std::vector<Broker> brokers(kQueues);
  std::set<size_t> nodes;
  for (int i = 0; i < kQueues; ++i) {
    RedisQueueOptions o;
    o.url = cluster().url();
    o.queue = "shq" + std::to_string(i);
    o.consumer = "b" + std::to_string(i);
    o.shards = kShards;
    o.lease_ms = 3000;
    auto q = NewRedisQueue(o);
    ASSERT_TRUE(q.ok()) << q.status().ToString();
    brokers[i].q = std::move(q).value();
    for (size_t n = 0; n < kJobs; ++n) {
      brokers[i].ids.push_back(JobId{static_cast<uint64_t>(i + 1), n + 1});
      // Some jobs take the functions' path (idempotency keys), some hold a
      // per-key lock (a record of their own, unlocked by a function).
      // (std::string("i").append(...): GCC 12 warns falsely about
      // "literal" + std::string in Release builds.)
      brokers[i].idem.push_back(
          n % 5 == 0 ? std::string("i").append(std::to_string(n)) : "");
      brokers[i].lock.push_back(
          n % 7 == 0 ? std::string("L").append(std::to_string(n % 4)) : "");
    }
    for (const QueueKeys& k : ShardKeys(o.queue, kShards)) {
      auto owner = cluster().Owner(KeySlot(k.prefix));
      ASSERT_TRUE(owner.ok());
      nodes.insert(*owner);
    }
  }
  // The shards spread: every primary serves some.
  EXPECT_EQ(nodes.size(), cluster().size());

  const QueueKeys migrating("shq0", 0, kShards);
  const uint16_t slot = KeySlot(migrating.prefix);
  auto from = cluster().Owner(slot);
  ASSERT_TRUE(from.ok());
  enum class Phase { kBefore, kMoving, kDone } phase = Phase::kBefore;
  int moved = 0;
  int64_t next_move = 0;

  int64_t next_push = 0;
  auto push = [&](Broker& b) {
    if (b.pushing || b.next >= b.ids.size()) return;
    std::vector<NewJob> jobs;
    for (size_t n = b.next; n < std::min(b.next + kBatch, b.ids.size()); ++n) {
      JobSpec spec;
      spec.id = b.ids[n];
      spec.task = "echo";
      spec.idempotency_key = b.idem[n];
      spec.lock_key = b.lock[n];
      Bytes bytes = writer.EncodeJob(spec);
      auto blob = std::make_shared<std::string>(
          reinterpret_cast<const char*>(bytes.data()), bytes.size());
      b.blobs.push_back(blob);
      NewJob j;
      j.id = spec.id;
      j.blob = {blob,
                {reinterpret_cast<const uint8_t*>(blob->data()), blob->size()}};
      j.route = "producer";
      j.resend = b.resend;
      jobs.push_back(j);
    }
    b.pushing = true;
    b.q->Push(jobs, [&b, n = jobs.size()](Status st,
                                          std::span<const PushOutcome> out) {
      b.pushing = false;
      if (!st.ok()) {  // resend the same ids later
        ++b.push_errors;
        b.resend = true;
        return;
      }
      for (size_t k = 0; k < n && k < out.size(); ++k) {
        // kDuplicate: a resend whose first copy was queued.
        if (out[k] != PushOutcome::kBusy) b.accepted.insert(b.ids[b.next + k]);
      }
      b.resend = false;
      b.next += n;
    });
  };

  auto done = [&] {
    for (const Broker& b : brokers) {
      if (b.next < b.ids.size() || b.completed.size() < b.ids.size()) {
        return false;
      }
    }
    return phase == Phase::kDone;
  };
  const int64_t deadline = MonoMillis() + 90000;
  std::vector<zmq_pollitem_t> items(kMaxQueuePollItems * kQueues);
  std::vector<JobId> finished;
  while (!done() && MonoMillis() < deadline) {
    int total = 0;
    std::vector<int> counts;
    const bool push_now = MonoMillis() >= next_push;
    if (push_now) next_push = MonoMillis() + 10;  // ~3 s of pushes
    for (Broker& b : brokers) {
      if (push_now) push(b);
      counts.push_back(
          b.q->PollItems(items.data() + total, kMaxQueuePollItems));
      total += counts.back();
    }
    zmq_poll(items.data(), total, 10);
    int at = 0;
    for (size_t i = 0; i < brokers.size(); ++i) {
      Broker& b = brokers[i];
      b.q->OnPollEvents(items.data() + at, counts[i]);
      at += counts[i];
      b.q->Want(128);
      finished.clear();
      b.q->Claim(128, [&](std::span<const ClaimedJob> jobs) {
        for (const ClaimedJob& j : jobs) finished.push_back(j.id);
      });
      for (const JobId& id : finished) {
        b.completed.insert(id);
        Bytes r = writer.EncodeResult(id, wire::ResultStatus::Ok, {}, "", 1, 1);
        b.q->Complete(id, r);
      }
      b.q->Tick(MonoMillis());
    }
    // The migration starts once a quarter of the jobs are in, and moves two
    // keys every 100 ms, so the load runs through it.
    const int64_t now = MonoMillis();
    if (phase == Phase::kBefore && brokers[0].next >= kJobs / 4) {
      ASSERT_TRUE(cluster().BeginMigration(slot, (*from + 1) % 3).ok());
      phase = Phase::kMoving;
    } else if (phase == Phase::kMoving && now >= next_move) {
      next_move = now + 100;
      auto n = cluster().MoveKeys(2);
      ASSERT_TRUE(n.ok()) << n.status().ToString();
      moved += *n;
      if (*n == 0) {
        ASSERT_TRUE(cluster().FinishMigration().ok());
        phase = Phase::kDone;
      }
    }
  }
  EXPECT_EQ(phase, Phase::kDone);
  EXPECT_GT(moved, 3) << "the shard's keys (streams, stats, results...)";
  std::cerr << moved << " keys moved\n";
  auto to = cluster().Owner(slot);
  ASSERT_TRUE(to.ok());
  EXPECT_EQ(*to, (*from + 1) % 3);
  for (size_t i = 0; i < brokers.size(); ++i) {
    const Broker& b = brokers[i];
    EXPECT_EQ(b.next, kJobs) << "queue " << i << " did not push everything";
    EXPECT_EQ(b.accepted.size(), kJobs) << "queue " << i;
    size_t lost = 0;
    for (const JobId& id : b.accepted) lost += b.completed.count(id) ? 0 : 1;
    EXPECT_EQ(lost, 0u) << "queue " << i;
    nlohmann::json stats = nlohmann::json::object();
    b.q->DescribeStats(&stats);
    EXPECT_EQ(stats["durable"]["shards"].size(), static_cast<size_t>(kShards));
    if (i == 0) {
      // The migrated shard followed its slot to the new primary.
      EXPECT_GE(stats["durable"]["shards"][0]["counters"]["reconnects"], 1);
    }
    std::cerr << "queue " << i << ": " << b.push_errors
              << " push errors (resent); redis "
              << stats["durable"]["counters"].dump() << "\n";
  }
}

// ------------------------------------------------------- a failover

// Three primaries with one replica each (a cluster of its own: the suite's
// shared one has no replicas), node timeout 1000 ms.
class RedisClusterFailoverTest : public ::testing::Test {
 protected:
  void SetUp() override {
    const int64_t start = MonoMillis();
    auto c = RedisCluster::Create(3, 1);
    ASSERT_TRUE(c.ok()) << c.status().ToString();
    cluster_ = std::move(c).value();
    std::cerr << "cluster of 3 primaries + 3 replicas ready in "
              << MonoMillis() - start << " ms\n";
  }
  void TearDown() override {
    if (HasFailure() && cluster_) std::cerr << cluster_->LogTails() << "\n";
  }

  std::unique_ptr<RedisCluster> cluster_;
};

// The primary serving shard 0 of a three-shard queue is SIGKILLed under
// load; the cluster promotes its replica and the shard follows by itself
// (its connections fail, it reconnects from a slot map fetched from the
// surviving seeds). Submits wait for one replica (WAIT 1), so every job
// the queue accepted reached the replica before the kill: every accepted
// job is claimed, none lost. Claims start only at the kill, so shard 0
// holds a backlog (in its streams, and claimed ahead into its buffer) when
// its primary dies. After the failover shard 0 has no replica: its WAITs
// fail and its submits are refused (resent to the other shards).
TEST_F(RedisClusterFailoverTest, AShardFollowsItsSlotToThePromotedReplica) {
  constexpr int kShards = 3;
  constexpr size_t kJobs = 2000, kBatch = 10;
  RedisCluster& cluster = *cluster_;
  Writer writer;
  RedisQueueOptions o;
  o.url = cluster.url();
  o.queue = "foq";
  o.consumer = "b0";
  o.shards = kShards;
  o.lease_ms = 3000;
  o.wait_replicas = 1;
  o.wait_timeout_ms = 500;
  auto created = NewRedisQueue(o);
  ASSERT_TRUE(created.ok()) << created.status().ToString();
  std::unique_ptr<DurableQueue> q = std::move(created).value();

  const uint16_t slot = KeySlot(QueueKeys(o.queue, 0, kShards).prefix);
  auto owner = cluster.Owner(slot);
  ASSERT_TRUE(owner.ok()) << owner.status().ToString();
  const size_t victim = *owner;
  ASSERT_LT(victim, cluster.primaries());
  const size_t heir = cluster.replica(victim);

  std::vector<JobId> ids;
  for (size_t n = 0; n < kJobs; ++n) ids.push_back(JobId{7, n + 1});
  std::vector<std::shared_ptr<std::string>> blobs;
  std::unordered_set<JobId, JobIdHash> accepted, claimed;
  std::map<std::string, int> push_errors;  // message -> count
  size_t next = 0;                         // first id of the batch to push
  bool pushing = false, resend = false;
  int64_t kill_ms = -1;  // MonoMillis of the kill
  // Milliseconds after the kill (-1: not seen).
  int64_t failover_ms = -1, first_push_ms = -1, late_push_ms = -1,
          shard_down_ms = -1, shard_up_ms = -1, shard_claim_ms = -1;
  uint64_t shard_claimed_at_kill = 0;
  int64_t next_owner_check = 0;

  auto push = [&] {
    if (pushing || next >= ids.size()) return;
    std::vector<NewJob> jobs;
    for (size_t n = next; n < std::min(next + kBatch, ids.size()); ++n) {
      JobSpec spec;
      spec.id = ids[n];
      spec.task = "echo";
      Bytes bytes = writer.EncodeJob(spec);
      auto blob = std::make_shared<std::string>(
          reinterpret_cast<const char*>(bytes.data()), bytes.size());
      blobs.push_back(blob);
      NewJob j;
      j.id = spec.id;
      j.blob = {blob,
                {reinterpret_cast<const uint8_t*>(blob->data()), blob->size()}};
      j.route = "producer";
      j.resend = resend;
      jobs.push_back(j);
    }
    pushing = true;
    q->Push(jobs,
            [&, n = jobs.size()](Status st, std::span<const PushOutcome> out) {
              pushing = false;
              if (!st.ok()) {  // resend the same ids later
                ++push_errors[st.message()];
                resend = true;
                return;
              }
              if (kill_ms >= 0 && first_push_ms < 0) {
                first_push_ms = MonoMillis() - kill_ms;
              }
              if (shard_up_ms >= 0 && late_push_ms < 0) {
                late_push_ms = MonoMillis() - kill_ms;
              }
              for (size_t k = 0; k < n && k < out.size(); ++k) {
                // kDuplicate: a resend whose first copy was queued.
                if (out[k] == PushOutcome::kAccepted ||
                    out[k] == PushOutcome::kDuplicate) {
                  accepted.insert(ids[next + k]);
                }
              }
              resend = false;
              next += n;
            });
  };

  auto shard0 = [&] {
    nlohmann::json stats = nlohmann::json::object();
    q->DescribeStats(&stats);
    return stats["durable"]["shards"][0];
  };

  const int64_t start = MonoMillis();
  const int64_t deadline = start + 60000;
  std::vector<zmq_pollitem_t> items(kMaxQueuePollItems);
  std::vector<JobId> finished;
  int64_t next_push = 0;
  while (MonoMillis() < deadline) {
    if (kill_ms >= 0 && next >= ids.size() && claimed.size() >= ids.size() &&
        failover_ms >= 0) {
      break;
    }
    if (MonoMillis() >= next_push) {
      // ~4 s of pushes (more with the refusals): they go on past the
      // failover (~2-3 s after the kill).
      next_push = MonoMillis() + 20;
      push();
    }
    const int n = q->PollItems(items.data(), kMaxQueuePollItems);
    zmq_poll(items.data(), n, 10);
    q->OnPollEvents(items.data(), n);
    q->Want(128);  // claims ahead into the buffers from the start
    if (kill_ms >= 0) {
      finished.clear();
      q->Claim(128, [&](std::span<const ClaimedJob> jobs) {
        for (const ClaimedJob& j : jobs) finished.push_back(j.id);
      });
      for (const JobId& id : finished) {
        claimed.insert(id);
        Bytes r = writer.EncodeResult(id, wire::ResultStatus::Ok, {}, "", 1, 1);
        q->Complete(id, r);
      }
    }
    q->Tick(MonoMillis());

    const int64_t now = MonoMillis();
    if (kill_ms < 0 && next >= kJobs / 4) {
      const nlohmann::json at_kill = shard0();
      shard_claimed_at_kill = at_kill["counters"]["claimed"].get<uint64_t>();
      cluster.node(victim).Kill();
      kill_ms = MonoMillis();
      std::cerr << "killed node " << victim
                << " (:" << cluster.node(victim).port()
                << ", shard 0's primary) after " << kill_ms - start << " ms, "
                << next << " jobs pushed, " << accepted.size()
                << " accepted; shard 0 then: "
                << at_kill["counters"]["submitted"].dump() << " submitted, "
                << at_kill["leased"].dump() << " leased, "
                << at_kill["buffered"].dump() << " of them claimed ahead\n";
      continue;
    }
    if (kill_ms < 0) continue;
    if (failover_ms < 0 && now >= next_owner_check) {
      next_owner_check = now + 50;
      auto o_now = cluster.Owner(slot);
      if (o_now.ok() && *o_now == heir) failover_ms = now - kill_ms;
    }
    // Every turn: the turn that ends the run may be the one in which shard
    // 0 came back and claimed its backlog.
    nlohmann::json s0 = shard0();
    const bool up = s0["redis"] == "up";
    if (shard_down_ms < 0 && !up) shard_down_ms = now - kill_ms;
    if (shard_down_ms >= 0 && shard_up_ms < 0 && up) {
      shard_up_ms = now - kill_ms;
    }
    if (shard_up_ms >= 0 && shard_claim_ms < 0 &&
        s0["counters"]["claimed"].get<uint64_t>() > shard_claimed_at_kill) {
      shard_claim_ms = now - kill_ms;
    }
  }
  const int64_t took = MonoMillis() - start;

  EXPECT_GE(kill_ms, 0) << "never reached a quarter of the jobs";
  EXPECT_GE(failover_ms, 0) << "the replica never took over slot " << slot;
  Status promoted = cluster.AwaitOwner(slot, heir, std::chrono::seconds(5));
  EXPECT_TRUE(promoted.ok()) << promoted.ToString();
  EXPECT_EQ(next, kJobs) << "not every job was pushed";
  EXPECT_EQ(accepted.size(), kJobs);
  size_t lost = 0;
  std::string some_lost;
  for (const JobId& id : accepted) {
    if (claimed.count(id)) continue;
    if (++lost <= 5) some_lost += " " + id.ToString();
  }
  EXPECT_EQ(lost, 0u) << "accepted but never claimed:" << some_lost;
  nlohmann::json stats = nlohmann::json::object();
  q->DescribeStats(&stats);
  ASSERT_EQ(stats["durable"]["shards"].size(), static_cast<size_t>(kShards));
  const nlohmann::json& s0 = stats["durable"]["shards"][0];
  EXPECT_GE(s0["counters"]["reconnects"].get<uint64_t>(), 1u) << s0.dump();
  EXPECT_GE(shard_up_ms, 0) << "shard 0 did not come back: " << s0.dump();
  EXPECT_GE(shard_claim_ms, 0) << "shard 0 claimed nothing after the kill";
  EXPECT_GE(late_push_ms, 0) << "no submit was accepted after the failover";

  std::cerr << "run took " << took << " ms; after the kill (ms): slot owned "
            << "by the replica " << failover_ms << ", shard 0 down "
            << shard_down_ms << ", shard 0 up again " << shard_up_ms
            << ", first claim on shard 0 " << shard_claim_ms
            << ", first accepted push " << first_push_ms
            << ", first accepted push after shard 0 was back " << late_push_ms
            << "\n";
  int errors = 0;
  for (const auto& [message, count] : push_errors) errors += count;
  std::cerr << errors << " push errors (resent):\n";
  for (const auto& [message, count] : push_errors) {
    std::cerr << "  " << count << " x " << message << "\n";
  }
  std::cerr << "shard 0: " << s0["redis"].dump() << " " << s0["counters"].dump()
            << "\nall: " << stats["durable"]["counters"].dump() << "\n";
}

}  // namespace
}  // namespace yard
