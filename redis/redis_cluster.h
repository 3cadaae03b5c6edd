// Redis Cluster routing pieces: which slot a key lives in, which
// primary serves a slot (the slot map, from CLUSTER SLOTS), and the
// redirect errors a node answers for a slot it does not serve.
//
//   KeySlot("{jq:default:0}:s:1") == KeySlot("{jq:default:0}")  // hash tag
//   auto map = FetchSlotMap(seeds, /*timeout_ms=*/2000);
//   const RedisAddress* owner = map->Lookup(KeySlot(key));
//   auto r = ParseRedisRedirect("MOVED 3999 127.0.0.1:6381");
//
// Slots (cluster spec): slot = CRC16-XMODEM(h) & 16383, where h is the key,
// or, when the key has a '{' followed later by a '}' with at least one
// character between them, only those characters (the first '{' and the
// first '}' after it). "a{b}{c}" hashes "b"; "a{}{b}" hashes all of it.
//
// A slot map is a snapshot: a resharding or a failover makes it stale, and
// the nodes then answer MOVED (the slot has a new owner: fetch the map
// again) or ASK (the slot is being migrated and this key is already, or
// would be created, on the target). RedisClient reports both as
// kUnavailable (redis_client.h); ResolveRedisTarget (redis_target.h) fetches
// a fresh map on every call.
//
// Thread-safety: plain values and free functions; FetchSlotMap blocks the
// caller (bounded by timeout_ms).
#ifndef YARD_REDIS_REDIS_CLUSTER_H_
#define YARD_REDIS_REDIS_CLUSTER_H_

#include <cstddef>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "common/status.h"
#include "redis/redis_client.h"

namespace yard {

inline constexpr int kRedisClusterSlots = 16384;

// CRC16-XMODEM (polynomial 0x1021, initial 0, no reflection) of `data`;
// "123456789" -> 0x31C3.
uint16_t Crc16Xmodem(std::string_view data);

// The cluster slot of `key` (0..16383), with the hash-tag rule above.
uint16_t KeySlot(std::string_view key);

// The hash tag (without braces) of shard `shard` of `shards` of a queue, for
// the sharded queue on a Redis Cluster: "jq:NAME:K", or "jq:NAME:K~S" with
// the smallest salt S that puts the tag's slot in the K-th of `shards`
// equal slot ranges. Plain sequential tags land in a repeating pattern
// (CRC16 is linear: "default" with 3 shards put two on one of three
// primaries); these spread evenly over primaries that hold equal slot
// ranges, and every broker computes the same tags. REQUIRES: 0 <= shard <
// shards <= kRedisClusterSlots.
std::string ShardHashTag(std::string_view queue, int shard, int shards);

// A MOVED or ASK error reply, parsed.
struct RedisRedirect {
  enum class Kind : uint8_t { kMoved, kAsk };
  Kind kind = Kind::kMoved;
  uint16_t slot = 0;
  // Where the slot is now (MOVED) or where to ask once (ASK). An empty host
  // means the node that sent the redirect (Redis 7 sends ":PORT" when it
  // does not know the other node's address).
  std::string host;
  uint16_t port = 0;
};

// Parses "MOVED <slot> <host>:<port>" or "ASK <slot> <host>:<port>", also
// with the leading '-' of the wire form or the "redis: " that RedisClient
// puts before a server error (so a Status message can be passed as it is).
// IPv6 hosts come without brackets ("MOVED 1 ::1:7000"): the port is after
// the last ':'. nullopt for anything else.
std::optional<RedisRedirect> ParseRedisRedirect(std::string_view error);

// Which primary serves each slot, from one node's CLUSTER SLOTS.
class RedisSlotMap {
 public:
  struct Range {
    uint16_t first = 0;  // inclusive
    uint16_t last = 0;   // inclusive
    RedisAddress primary;
    std::string node_id;  // the primary's id ("" when the reply has none)
  };

  // Parses a CLUSTER SLOTS reply (RESP2: an array of [first, last,
  // [host, port, id, ...], replicas...]). `asked` is the node that answered:
  // its host stands in for an empty one (a node that has not met any other
  // does not know its own address). InvalidArgument when the reply is not
  // of that shape or ranges overlap. Slots no range covers are unassigned
  // (Lookup gives null): a map may be partial.
  static Result<RedisSlotMap> Parse(const RedisReply& reply,
                                    const RedisAddress& asked);

  // The primary serving `slot` (< 16384), or null when none does.
  const RedisAddress* Lookup(uint16_t slot) const;
  const Range* LookupRange(uint16_t slot) const;

  // Sorted by `first`, not overlapping.
  const std::vector<Range>& ranges() const { return ranges_; }
  // How many of the 16384 slots have a primary.
  int covered() const;
  // The distinct primaries, in slot order of their first range.
  std::vector<RedisAddress> Primaries() const;

 private:
  std::vector<Range> ranges_;
};

// Asks the seeds in order for CLUSTER SLOTS (a connection of its own each,
// closed after) and returns the first map that covers at least one slot.
// Each seed gets an equal share of the time still left, so one that hangs
// cannot starve the others; timeout_ms bounds the whole call. `answered`
// (optional) receives the index of the seed that answered. kUnavailable
// naming each seed and why it did not help when none did (down, not in
// cluster mode, no slots assigned yet).
Result<RedisSlotMap> FetchSlotMap(const std::vector<RedisAddress>& seeds,
                                  int64_t timeout_ms,
                                  size_t* answered = nullptr);

// "host:port", IPv6 hosts in brackets (for messages and URLs).
std::string RedisHostPort(const RedisAddress& address);

}  // namespace yard

#endif  // YARD_REDIS_REDIS_CLUSTER_H_
