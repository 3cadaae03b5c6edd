// The queue's layout in Redis, no server needed.
#include "queue/redis_layout.h"

#include <gtest/gtest.h>

#include <string>
#include <vector>

#include "redis/redis_cluster.h"

namespace yard {
namespace {

// Shard tags spread evenly over primaries holding equal slot ranges, and
// are the same on every call (every broker must agree).
TEST(KeySlotTest, ShardTagsSpreadOverEqualSlotRanges) {
  for (int shards : {3, 6, 12, 48}) {
    std::vector<int> per_node(3);
    for (int k = 0; k < shards; ++k) {
      const std::string tag = ShardHashTag("default", k, shards);
      EXPECT_EQ(tag, ShardHashTag("default", k, shards));
      EXPECT_EQ(tag.rfind("jq:default:" + std::to_string(k), 0), 0u) << tag;
      const int slot = KeySlot("{" + tag + "}:s:1");
      EXPECT_EQ(slot, KeySlot("{" + tag + "}"));
      EXPECT_GE(slot, k * kRedisClusterSlots / shards) << tag;
      EXPECT_LT(slot, (k + 1) * kRedisClusterSlots / shards) << tag;
      ++per_node[slot * 3 / kRedisClusterSlots];
    }
    for (int n : per_node) EXPECT_EQ(n, shards / 3) << shards << " shards";
  }
}

}  // namespace
}  // namespace yard
