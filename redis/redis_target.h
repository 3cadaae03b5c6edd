// RedisTarget: where the durable queue's Redis is, either one server
// ("redis://HOST:PORT[/DB]"), a primary that Redis Sentinel manages
// ("sentinel://HOST:PORT[,HOST:PORT...]/MASTER_NAME[/DB]"), or the primary
// of a Redis Cluster that serves one key's slot
// ("cluster://HOST:PORT[,HOST:PORT...]" plus RedisTarget::key), and how to
// find the current primary of the latter two. Each form takes credentials
// after the scheme ("redis://USER:PASSWORD@...", "cluster://:PASSWORD@...",
// ParseRedisUrl's rules): every connection to a data node (the server, the
// primaries Sentinel names, every cluster node) sends AUTH first. Sentinels
// themselves are asked without AUTH.
//
//   auto target =
//   ParseRedisTarget("sentinel://10.0.0.1:26379,10.0.0.2:26379/jobs"); auto
//   client = ConnectRedisTarget(*target, /*timeout_ms=*/2000);
//
// Sentinel resolution (research note redis-queue.md 4.1, redis-doc
// sentinel-clients.md), one pass over the Sentinels in order:
//   1. ask the Sentinel `SENTINEL get-master-addr-by-name MASTER_NAME`
//      (a Sentinel that does not answer, or answers nil, is skipped);
//   2. connect to the address it gives and check that `ROLE` says master
//      (a replica still being promoted, or an old primary, is skipped);
//   3. the first Sentinel whose answer passes goes to the front of
//      `addresses`, so the next resolution asks it first.
// Each Sentinel gets an equal share of the time left, so a Sentinel that
// hangs cannot starve the others. There is no retry loop: a caller that
// reconnects (RedisQueue) already retries with backoff, and must resolve
// again on every reconnect, because a failover moves the primary (Sentinel
// also kills the clients of the servers it reconfigures, which forces
// that reconnect).
//
// Cluster resolution (redis_cluster.h), every call: fetch the slot map
// from the seed nodes in `addresses` (FetchSlotMap: in order, each an equal
// share of the time; the seed that answered goes to the front), take the
// primary serving KeySlot(key) (the caller's connect checks that it answers
// PING: RedisClient::Connect does). Fetching
// the map on every resolution is the refresh: a caller whose commands come
// back MOVED or ASK (kUnavailable, redis_client.h) reconnects, which
// resolves again. During a slot migration the map still names the source
// until the migration ends, so ASK keeps coming back until then.
//
// Thread-safety: none; a RedisTarget belongs to one caller. Resolution and
// connection block the caller (bounded by timeout_ms).
#ifndef YARD_REDIS_REDIS_TARGET_H_
#define YARD_REDIS_REDIS_TARGET_H_

#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "common/status.h"
#include "redis/redis_client.h"

namespace yard {

struct RedisTarget {
  enum class Kind : uint8_t { kDirect, kSentinel, kCluster };
  Kind kind = Kind::kDirect;
  // kDirect: the one server; kSentinel: the Sentinels, the one that answered
  // last first; kCluster: the seed nodes, the one that answered last first.
  std::vector<RedisAddress> addresses;
  std::string master_name;  // kSentinel only
  // The data nodes' credentials (kDirect and kCluster: also in each of
  // `addresses`); Resolve gives them to the address it returns.
  RedisCredentials auth;
  int db = 0;  // SELECTed on the primary when not 0; kCluster: 0
  // kCluster only: resolution finds the primary serving this key's slot.
  // Usually a shard's hash tag ("{jq:default:0}"): every key with that tag
  // is in the same slot. Not part of the URL; the empty key is in slot 0.
  std::string key;

  // The URL form, for logs ("sentinel://127.0.0.1:26379,.../mymaster",
  // "cluster://127.0.0.1:7000,...", "redis://yard:***@h:6379"); the
  // Sentinels or seeds in their current order; never the password.
  std::string ToString() const;
};

// "redis://[USER[:PASSWORD]@]HOST:PORT[/DB]" (exactly as ParseRedisUrl),
// "sentinel://[USER[:PASSWORD]@]HOST:PORT[,HOST:PORT...]/MASTER_NAME[/DB]"
// (IPv6 hosts in brackets; a master name is 1..64 characters of
// [A-Za-z0-9_.-]) or "cluster://[USER[:PASSWORD]@]HOST:PORT[,HOST:PORT...]"
// (no /DB: a cluster has only db 0). Anything else is InvalidArgument, with
// the reason (and the URL with its password redacted).
Result<RedisTarget> ParseRedisTarget(std::string_view url);

// `url` (any of the forms above) with `password` as its password when it
// has none (percent-encoded; the user, if any, kept): how a password from a
// file or the environment joins a URL. A URL that has a password, or whose
// scheme is not one of the above, is returned as it is.
std::string RedisUrlWithPassword(std::string_view url,
                                 std::string_view password);

// The primary's address (with the target's db). kDirect: the address, no
// I/O. kSentinel, kCluster: the resolutions above, bounded by timeout_ms in
// total; kUnavailable naming each
// Sentinel or seed and why it did not help when none did, or the slot when
// no primary serves it. May reorder
// target.addresses.
Result<RedisAddress> ResolveRedisTarget(RedisTarget& target,
                                        int64_t timeout_ms);

// ResolveRedisTarget, then RedisClient::Connect (which SELECTs the db), both
// within timeout_ms (the connect gets at least 100 ms). kUnavailable when
// either fails.
Result<std::unique_ptr<RedisClient>> ConnectRedisTarget(RedisTarget& target,
                                                        int64_t timeout_ms);

}  // namespace yard

#endif  // YARD_REDIS_REDIS_TARGET_H_
